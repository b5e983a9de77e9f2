//! I/O shell for evidence bundles: reads the log, checks that its signed commits vouch for every
//! entry, and builds the bundle against the newest commit's checkpoint, with the documents found
//! under `<data-dir>/documents/`. Nothing is signed here: a log that differs from what the ledger
//! signed yields no bundle, only the first bad index.

use std::fs;
use std::path::Path;

use crate::bundle::{build_bundle, BuildError, Bundle};
use crate::entry::Subject;
use crate::keys::{self, KeyError};
use crate::ledger::{document_path, key_path, ledger_dir, read_sealed, OpenError, SealError};

/// Why a bundle could not be produced from a data directory.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Reading the log failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The log is damaged or differs from what was signed: no evidence is produced from it.
    #[error("the ledger does not match what it signed ({0}); run `tidegate audit verify`; no evidence was produced")]
    Unsealed(#[from] SealError),
    /// No commit has been signed yet.
    #[error("the ledger holds no signed commit yet: there is nothing to give evidence of")]
    Empty,
    /// Building failed.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Build the evidence bundle about `subject` from the ledger under `data_dir`.
///
/// # Errors
/// See [`EvidenceError`].
pub fn bundle_for(data_dir: &Path, subject: &Subject) -> Result<Bundle, EvidenceError> {
    let kp = key_path(data_dir);
    if !kp.exists() {
        let source = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no ledger key: is this the right data dir?",
        );
        return Err(EvidenceError::Key(KeyError::Io { path: kp, source }));
    }
    let verifier = keys::load_verifier(&keys::public_path(&kp))?;
    let sealed = read_sealed(&ledger_dir(data_dir), &verifier, true)?;
    if sealed.unsealed > 0 {
        tracing::warn!(
            entries = sealed.unsealed,
            from = sealed.sealed.size,
            "entries past the newest signed commit are not vouched for and are left out"
        );
    }
    let (note, _) = sealed.sealed.latest.ok_or(EvidenceError::Empty)?;
    let mut log = sealed.log;
    let bundle = build_bundle(
        &log.entries,
        &log.tree,
        &mut log.subjects,
        &note,
        &verifier,
        subject,
        |d| fs::read(document_path(data_dir, d)).ok(),
    )?;
    Ok(bundle)
}
