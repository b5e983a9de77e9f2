//! The layout of a data directory: the one place that names what lives at its top level.
//!
//! Every crate that keeps something in a data directory asks this type for its place instead
//! of spelling the name, so two crates can never disagree about where the ledger, the keys or
//! the run directories are (a tidy test refuses a spelled-out top-level name elsewhere). What
//! each crate keeps inside its own entry (the ledger's segments, the artifact store's blobs) is
//! that crate's layout.

use std::path::{Path, PathBuf};

/// A data directory (`tidegate up --data-dir`, default `./.tidegate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

const ENTRIES: &[(&str, &str)] = &[
    (STATE_DB, "the job store (SQLite, WAL mode)"),
    (
        LEDGER,
        "the evidence ledger's segments, checkpoints and documents",
    ),
    (
        KEYS,
        "signing and encryption keys (ledger, token, artifact keys)",
    ),
    (
        PKI,
        "the control plane's certificate authority and server certificate",
    ),
    (
        ARTIFACTS,
        "the artifact store: encrypted blobs, records, lineage, the upload spool",
    ),
    (DATASETS, "dataset registrations"),
    (
        ZONES,
        "local executors' run directories, one per zone (the only entry jobs enter)",
    ),
    (SLURM, "the Slurm executors' state, one directory per zone"),
    (
        SCRATCH,
        "scratch space for long operations (a sanitizer's staging)",
    ),
    (SERVER_URL, "the URL the running control plane listens on"),
    (
        ADMIN_TOKEN,
        "the first administrator token, written at the first start",
    ),
];

const STATE_DB: &str = "state.db";
const LEDGER: &str = "ledger";
const KEYS: &str = "keys";
const PKI: &str = "pki";
const ARTIFACTS: &str = "artifacts";
const DATASETS: &str = "datasets";
const ZONES: &str = "zones";
const SLURM: &str = "slurm";
const SCRATCH: &str = "tmp";
const SERVER_URL: &str = "server.url";
const ADMIN_TOKEN: &str = "admin.token";

impl DataDir {
    /// The names at a data directory's top level, with what each holds (for documentation and
    /// for the tidy test; the methods are the way to a path).
    pub const ENTRIES: &'static [(&'static str, &'static str)] = ENTRIES;

    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `state.db`: the job store's SQLite database.
    #[must_use]
    pub fn state_db(&self) -> PathBuf {
        self.root.join(STATE_DB)
    }

    /// `ledger/`: the evidence ledger.
    #[must_use]
    pub fn ledger(&self) -> PathBuf {
        self.root.join(LEDGER)
    }

    /// `keys/`: signing and encryption keys.
    #[must_use]
    pub fn keys(&self) -> PathBuf {
        self.root.join(KEYS)
    }

    /// `pki/`: the certificate authority and the server's certificate.
    #[must_use]
    pub fn pki(&self) -> PathBuf {
        self.root.join(PKI)
    }

    /// `artifacts/`: the artifact store.
    #[must_use]
    pub fn artifacts(&self) -> PathBuf {
        self.root.join(ARTIFACTS)
    }

    /// `artifacts/spool/`: uploads being received, before they are stored.
    #[must_use]
    pub fn upload_spool(&self) -> PathBuf {
        self.artifacts().join("spool")
    }

    /// `datasets/`: dataset registrations.
    #[must_use]
    pub fn datasets(&self) -> PathBuf {
        self.root.join(DATASETS)
    }

    /// `zones/`: the local executors' work root (one directory per zone).
    #[must_use]
    pub fn zones(&self) -> PathBuf {
        self.root.join(ZONES)
    }

    /// `slurm/`: the Slurm executors' state (one directory per zone).
    #[must_use]
    pub fn slurm(&self) -> PathBuf {
        self.root.join(SLURM)
    }

    /// `tmp/`: scratch space.
    #[must_use]
    pub fn scratch(&self) -> PathBuf {
        self.root.join(SCRATCH)
    }

    /// `server.url`: where the running control plane listens.
    #[must_use]
    pub fn server_url(&self) -> PathBuf {
        self.root.join(SERVER_URL)
    }

    /// `admin.token`: the first administrator token.
    #[must_use]
    pub fn admin_token(&self) -> PathBuf {
        self.root.join(ADMIN_TOKEN)
    }
}

impl AsRef<Path> for DataDir {
    fn as_ref(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_directly_under_the_root_and_named_once() {
        let d = DataDir::new("/d");
        let paths = [
            d.state_db(),
            d.ledger(),
            d.keys(),
            d.pki(),
            d.artifacts(),
            d.datasets(),
            d.zones(),
            d.slurm(),
            d.scratch(),
            d.server_url(),
            d.admin_token(),
        ];
        assert_eq!(paths.len(), ENTRIES.len());
        for (p, (name, _)) in paths.iter().zip(ENTRIES) {
            assert_eq!(p.parent(), Some(Path::new("/d")));
            assert_eq!(p.file_name().and_then(|n| n.to_str()), Some(*name));
        }
        let mut names: Vec<_> = ENTRIES.iter().map(|(n, _)| n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENTRIES.len());
        assert_eq!(d.upload_spool(), Path::new("/d/artifacts/spool"));
    }
}
