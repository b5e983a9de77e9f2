//! I/O shell for evidence bundles: reads the log, checks that its signed commits vouch for every
//! entry, and builds the bundle against the newest commit's checkpoint, with the documents found
//! under `<data-dir>/documents/`. Nothing is signed here: a log that differs from what the ledger
//! signed yields no bundle, only the first bad index.

use std::fs;
use std::path::Path;

use crate::bundle::{build_bundle, BuildError, Bundle};
use crate::checkpoint::{NoteVerifier, SignedNote};
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
    bundle_since(data_dir, subject, None)
}

/// As [`bundle_for`], anchored also to `since` (a checkpoint an auditor kept): the bundle proves
/// its checkpoint extends it. The newest stored checkpoint a witness co-signed is always an
/// anchor.
///
/// # Errors
/// See [`EvidenceError`]; a log that does not extend `since` is refused.
pub fn bundle_since(
    data_dir: &Path,
    subject: &Subject,
    since: Option<&SignedNote>,
) -> Result<Bundle, EvidenceError> {
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
    let mut anchors: Vec<SignedNote> = witnessed_checkpoint(data_dir, &verifier)
        .into_iter()
        .collect();
    anchors.extend(since.cloned());
    let mut log = sealed.log;
    let bundle = build_bundle(
        &log.entries,
        &log.tree,
        &mut log.subjects,
        &note,
        &anchors,
        &verifier,
        subject,
        |d| fs::read(document_path(data_dir, d)).ok(),
    )?;
    Ok(bundle)
}

/// The newest stored checkpoint that carries a signature besides the log's (a witness's
/// co-signature); stored checkpoints were checked against the log by [`read_sealed`].
fn witnessed_checkpoint(data_dir: &Path, verifier: &NoteVerifier) -> Option<SignedNote> {
    let dir = ledger_dir(data_dir);
    let files = crate::ledger::list_checkpoints(&dir).ok()?;
    files.iter().rev().find_map(|(path, _)| {
        let note = SignedNote::parse(&fs::read_to_string(path).ok()?).ok()?;
        let others = note
            .signatures
            .iter()
            .any(|s| !(s.name == verifier.name && s.key_id == verifier.key_id));
        (others && note.verify(verifier).is_ok()).then_some(note)
    })
}
