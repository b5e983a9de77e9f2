//! Auditing a data directory's evidence ledger: the log as far as its signed commits vouch for
//! it, the checkpoint for its current size, consistency of a checkpoint kept earlier with the
//! log now, and the consistency proofs a witness is sent. Readers never sign: the file ledger's
//! checkpoint is its newest signed commit; only the PostgreSQL ledger, whose own checkpoints do
//! not commit to the subject map, gets one signed here, over the history just verified.

use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
use crate::keys;
use crate::ledger::{
    checkpoint_path, key_path, ledger_dir, read_sealed, write_atomic, LogContents,
};
use crate::merkle::{verify_consistency, ProofError};
use crate::witness::WitnessError;

/// Why an audit step failed. The messages say what to run next.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The ledger's public key cannot be read.
    #[error("no ledger key in {} ({reason}); is --data-dir right?", dir.display())]
    NoLedgerKey {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        reason: keys::KeyError,
    },
    /// The ledger's signing key is missing.
    #[error("no ledger signing key at {}; is --data-dir right?", path.display())]
    NoSigningKey {
        /// Where it should be.
        path: PathBuf,
    },
    /// A key file cannot be read or created.
    #[error("{0}")]
    Key(keys::KeyError),
    /// The log differs from what its commits signed.
    #[error("the ledger does not match what it signed: {reason}; run `tidegate audit verify`; nothing was signed")]
    NotAsSigned {
        /// The first difference.
        reason: crate::ledger::SealError,
    },
    /// The log has no signed commit.
    #[error("the ledger holds no signed commit yet")]
    NoCommit,
    /// A checkpoint larger than the log was signed.
    #[error("history rewritten: a checkpoint at size {old} was signed, but the log now has {now} entries")]
    Shrunk {
        /// The checkpoint's size.
        old: u64,
        /// The log's size.
        now: u64,
    },
    /// The log does not extend a checkpoint signed over it.
    #[error("history rewritten: the log at size {now} does not extend the checkpoint at size {old} (consistency proof fails); some entry below index {old} was changed")]
    NotExtended {
        /// The checkpoint's size.
        old: u64,
        /// The log's size.
        now: u64,
    },
    /// The witness co-signed a checkpoint larger than the log.
    #[error("history rewritten: the witness co-signed a checkpoint at size {old}, but the log now has {now} entries")]
    WitnessAhead {
        /// The witness's size.
        old: u64,
        /// The log's size.
        now: u64,
    },
    /// A witness refused a checkpoint because the history it was shown was rewritten.
    #[error("history rewritten: {0}")]
    Rewritten(WitnessError),
    /// A witness refused for another reason.
    #[error("{0}")]
    Witness(WitnessError),
    /// A proof cannot be built.
    #[error("{0}")]
    Proof(ProofError),
    /// The checkpoint cannot be stored.
    #[error("storing the checkpoint")]
    Store(#[source] std::io::Error),
    /// The PostgreSQL ledger does not verify.
    #[error("ledger verification FAILED: {0}; nothing was signed; run `tidegate audit verify --database`")]
    PgUnverified(crate::verify::VerifyFailure),
    /// The PostgreSQL ledger cannot be read whole.
    #[error("ledger is damaged: {0}; run `tidegate audit verify --database`")]
    PgDamaged(crate::verify::VerifyFailure),
    /// The PostgreSQL ledger's checkpoints cannot be read or written.
    #[error("{0}")]
    PgCheckpoints(String),
    /// A checkpoint stored in PostgreSQL does not read, or does not match the log.
    #[error("stored checkpoint at size {size}{why}")]
    PgStored {
        /// Its size.
        size: u64,
        /// What is wrong, after the size.
        why: String,
    },
}

/// The ledger's public key in `data_dir`.
pub fn ledger_verifier(data_dir: &Path) -> Result<NoteVerifier, AuditError> {
    let pub_path = keys::public_path(&key_path(data_dir));
    keys::load_verifier(&pub_path).map_err(|reason| AuditError::NoLedgerKey {
        dir: data_dir.to_owned(),
        reason,
    })
}

/// The ledger's signing key in `data_dir` (never created here: a missing one is an error).
pub fn ledger_signer(data_dir: &Path) -> Result<NoteSigner, AuditError> {
    let path = key_path(data_dir);
    if !path.exists() {
        return Err(AuditError::NoSigningKey { path });
    }
    keys::load_or_create_signer(&path, "tidegate-ledger").map_err(AuditError::Key)
}

/// The log as far as its signed commits vouch for it.
#[derive(Debug)]
pub struct Vouched {
    /// The newest commit's note.
    pub note: SignedNote,
    /// The sealed entries and their tree.
    pub log: LogContents,
    /// Entries past the newest commit, left out (never acknowledged, or forged).
    pub unsealed: u64,
    /// The index of the first of them.
    pub unsealed_from: u64,
}

/// The log in `data_dir` as far as its signed commits vouch for it, with the newest commit's
/// note. Anything that differs from what was signed is an error naming the first bad index;
/// entries past the newest commit are left out (counted in [`Vouched::unsealed`]).
pub fn sealed_log(data_dir: &Path) -> Result<Vouched, AuditError> {
    let verifier = ledger_verifier(data_dir)?;
    let s = read_sealed(&ledger_dir(data_dir), &verifier, true)
        .map_err(|reason| AuditError::NotAsSigned { reason })?;
    let unsealed_from = s.sealed.size;
    let (note, _) = s.sealed.latest.ok_or(AuditError::NoCommit)?;
    Ok(Vouched {
        note,
        log: s.log,
        unsealed: s.unsealed,
        unsealed_from,
    })
}

/// The file ledger's checkpoint for its current size: its newest signed commit, checked with
/// the whole log, stored with the ledger's checkpoints if it is not there yet. Nothing new is
/// signed.
pub fn current_checkpoint(data_dir: &Path) -> Result<Vouched, AuditError> {
    let v = sealed_log(data_dir)?;
    let size = v.note.checkpoint().map_or(0, |c| c.size);
    let path = checkpoint_path(&ledger_dir(data_dir), size);
    if !path.exists() {
        write_atomic(&path, v.note.to_text().as_bytes()).map_err(AuditError::Store)?;
    }
    Ok(v)
}

/// The PostgreSQL ledger's checkpoint for its current size, with its entries and tree: the
/// stored one when it commits to the subject map the log produces, else one signed with
/// `signer` over the history just verified (and stored); never over a history that is not
/// consistent with every checkpoint signed before.
#[cfg(feature = "postgres")]
pub fn current_checkpoint_pg(
    signer: &NoteSigner,
    pg: &mut crate::pg::PgLog,
) -> Result<(SignedNote, LogContents), AuditError> {
    use crate::subjects::SubjectMap;
    pg.verify(&signer.verifier(), crate::verify::Depth::Integrity)
        .map_err(AuditError::PgUnverified)?;
    let contents = pg.read().map_err(AuditError::PgDamaged)?;
    let size = contents.tree.len();
    let stored = pg
        .checkpoints()
        .map_err(|e| AuditError::PgCheckpoints(e.to_string()))?
        .into_iter()
        .find(|(s, _)| *s == size);
    let mut subjects = SubjectMap::over(&contents.entries);
    let log = LogContents {
        entries: contents.entries,
        tree: contents.tree,
        torn_tail: None,
        damage: None,
        segments: Vec::new(),
        commits: Vec::new(),
        unsealed_at: None,
        subjects: subjects.clone(),
    };
    let map_root = subjects.root();
    if let Some((_, text)) = stored {
        let (note, cp) =
            crate::ledger::read_checkpoint(&text, &signer.verifier()).map_err(|e| {
                AuditError::PgStored {
                    size,
                    why: format!(" in {}: {e}", pg.location()),
                }
            })?;
        if cp.root != log.tree.root() {
            return Err(AuditError::PgStored {
                size,
                why: " does not match the log: history was rewritten".into(),
            });
        }
        if cp.subjects.is_some() {
            if cp.subjects != Some(map_root) {
                return Err(AuditError::PgStored {
                    size,
                    why: " signs a subject map the log does not produce".into(),
                });
            }
            return Ok((note, log));
        }
    }
    // The database's own checkpoints do not commit to the subject map: one that does is
    // signed here, over the history just verified (the stored one at this size is kept).
    let note = signer.sign_checkpoint(&Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root: log.tree.root(),
        batch: None,
        subjects: Some(map_root),
    });
    pg.store_checkpoint(size, &note.to_text())
        .map_err(|e| AuditError::PgCheckpoints(e.to_string()))?;
    Ok((note, log))
}

/// Whether the log (`log`, at `new_size` with root `new_root`) extends the checkpoint `old`
/// signed earlier: not smaller, and a consistency proof from it verifies.
pub fn consistent(
    log: &LogContents,
    old: &Checkpoint,
    new_size: u64,
    new_root: &[u8; 32],
) -> Result<(), AuditError> {
    if old.size > new_size {
        return Err(AuditError::Shrunk {
            old: old.size,
            now: new_size,
        });
    }
    let ok = if old.size == 0 {
        true
    } else {
        let proof = log
            .tree
            .consistency_proof(old.size, new_size)
            .map_err(AuditError::Proof)?;
        verify_consistency(old.size, new_size, &old.root, new_root, &proof).is_ok()
    };
    if ok {
        Ok(())
    } else {
        Err(AuditError::NotExtended {
            old: old.size,
            now: new_size,
        })
    }
}

/// The consistency proof a witness that co-signed size `old` is sent for the log at `size`
/// (none from 0); a witness ahead of the log means the history was cut.
pub fn witness_proof(log: &LogContents, old: u64, size: u64) -> Result<Vec<[u8; 32]>, AuditError> {
    if old > size {
        return Err(AuditError::WitnessAhead { old, now: size });
    }
    if old == 0 {
        return Ok(Vec::new());
    }
    log.tree
        .consistency_proof(old, size)
        .map_err(AuditError::Proof)
}

/// A witness's refusal: a rewritten history where the witness says the log does not extend,
/// or goes back on, what it co-signed; otherwise the witness's own error.
pub fn witness_refusal(e: WitnessError) -> AuditError {
    match e {
        WitnessError::Inconsistent { .. }
        | WitnessError::Older { .. }
        | WitnessError::Equivocation(_) => AuditError::Rewritten(e),
        other => AuditError::Witness(other),
    }
}
