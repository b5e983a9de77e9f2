//! I/O shell for evidence bundles: reads the log, signs a checkpoint of its current size with
//! the ledger key (stored like any other checkpoint), and builds the bundle with the documents
//! found under `<data-dir>/documents/`.

use std::fs;
use std::path::Path;

use crate::bundle::{build_bundle, BuildError, Bundle};
use crate::checkpoint::Checkpoint;
use crate::entry::Subject;
use crate::keys::{self, KeyError};
use crate::ledger::{
    checkpoint_path, document_path, key_path, ledger_dir, read_log, write_atomic, OpenError,
};

/// Why a bundle could not be produced from a data directory.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Reading the log failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The log is damaged: no evidence is produced from a damaged log.
    #[error("the ledger is damaged ({0}); run `tidegate audit verify`")]
    Damaged(crate::segment::Damage),
    /// Storing the checkpoint failed.
    #[error("storing the checkpoint: {0}")]
    Io(std::io::Error),
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
    let signer = keys::load_or_create_signer(&kp, "tidegate-ledger")?;
    let dir = ledger_dir(data_dir);
    let log = read_log(&dir, true)?;
    if let Some(d) = log.damage {
        return Err(EvidenceError::Damaged(d));
    }
    let cp = Checkpoint {
        origin: signer.name().to_owned(),
        size: log.tree.len(),
        root: log.tree.root(),
    };
    let note = signer.sign_checkpoint(&cp);
    let path = checkpoint_path(&dir, cp.size);
    if !path.exists() {
        write_atomic(&path, note.to_text().as_bytes()).map_err(EvidenceError::Io)?;
    }
    let bundle = build_bundle(
        &log.entries,
        &log.tree,
        &note,
        &signer.verifier(),
        subject,
        |d| fs::read(document_path(data_dir, d)).ok(),
    )?;
    Ok(bundle)
}
