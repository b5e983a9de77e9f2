//! Full verification of a ledger directory: every record, every entry, every checkpoint.
//!
//! Nothing is repaired and nothing is skipped: the first problem found is returned with the
//! index of the first entry that cannot be trusted. The checks, in order:
//! 1. segment structure and checksums, indexes in sequence (byte flips, reordering, removal);
//! 2. each entry decodes, is canonical, and its `seq` equals its position;
//! 3. each stored checkpoint is signed by the ledger key, covers no more entries than the log
//!    holds (truncation), and its root equals the recomputed root at its size (rewriting).

use std::path::Path;

use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::entry::Entry;
use crate::ledger::{list_checkpoints, read_checkpoint, read_log, OpenError};
use crate::segment::Damage;

/// What verification found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// The log could not be read at all.
    #[error(transparent)]
    Io(#[from] OpenError),
    /// A record is damaged.
    #[error("first bad index {}: {}", .0.index, .0.kind)]
    Damaged(Damage),
    /// An entry does not decode or sits at the wrong position.
    #[error("first bad index {index}: {why}")]
    BadEntry {
        /// The entry.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// Entries covered by a signed checkpoint are missing.
    #[error("first bad index {index}: missing; checkpoint {file} covers {size} entries but the log holds {index} (truncated)")]
    Truncated {
        /// First missing index (= entries present).
        index: u64,
        /// Checkpoint size.
        size: u64,
        /// Checkpoint file.
        file: String,
    },
    /// The recomputed root differs from a signed checkpoint's root.
    #[error("first bad index in {from}..{to}: the root at size {to} differs from signed checkpoint {file}; history was rewritten")]
    Rewritten {
        /// Size of the newest checkpoint that still matches (0 when none).
        from: u64,
        /// Size of the first checkpoint that does not match.
        to: u64,
        /// Checkpoint file.
        file: String,
    },
    /// A checkpoint file is not validly signed by the ledger key.
    #[error("checkpoint {file}: {why}")]
    Checkpoint {
        /// Checkpoint file.
        file: String,
        /// What is wrong.
        why: String,
    },
}

impl VerifyFailure {
    /// The first index that cannot be trusted, where one can be named.
    #[must_use]
    pub fn index(&self) -> Option<u64> {
        match self {
            Self::Damaged(d) => Some(d.index),
            Self::BadEntry { index, .. } | Self::Truncated { index, .. } => Some(*index),
            Self::Rewritten { from, .. } => Some(*from),
            Self::Io(_) | Self::Checkpoint { .. } => None,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// The newest checkpoint.
    pub latest: Option<Checkpoint>,
    /// A torn tail (unacknowledged partial write) that the next open will cut: (file, offset).
    pub torn_tail: Option<(String, usize)>,
}

/// Verify the ledger in `ledger_dir` against checkpoints signed by `verifier`.
///
/// # Errors
/// The first failure found.
pub fn verify_ledger(ledger_dir: &Path, verifier: &NoteVerifier) -> Result<VerifyReport, VerifyFailure> {
    let log = read_log(ledger_dir, true)?;
    if let Some(d) = log.damage {
        return Err(VerifyFailure::Damaged(d));
    }
    for (i, bytes) in log.entries.iter().enumerate() {
        let index = i as u64;
        let e = Entry::decode(bytes).map_err(|e| VerifyFailure::BadEntry { index, why: e.to_string() })?;
        if e.seq != index {
            return Err(VerifyFailure::BadEntry { index, why: format!("entry says seq {} at position {index}", e.seq) });
        }
    }
    let n = log.tree.len();
    let cps = list_checkpoints(ledger_dir).map_err(|source| OpenError::Io { path: ledger_dir.to_owned(), source })?;
    let mut good = 0u64;
    let mut latest = None;
    let count = cps.len();
    for (path, size) in cps {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| VerifyFailure::Checkpoint { file: file.clone(), why: e.to_string() })?;
        let (_, cp) = read_checkpoint(&text, verifier)
            .map_err(|e| VerifyFailure::Checkpoint { file: file.clone(), why: e.to_string() })?;
        if cp.size != size {
            return Err(VerifyFailure::Checkpoint { file, why: format!("file name says size {size}, note says {}", cp.size) });
        }
        if cp.size > n {
            return Err(VerifyFailure::Truncated { index: n, size: cp.size, file });
        }
        if log.tree.root_at(cp.size).ok() != Some(cp.root) {
            return Err(VerifyFailure::Rewritten { from: good, to: cp.size, file });
        }
        good = cp.size;
        latest = Some(cp);
    }
    Ok(VerifyReport {
        entries: n,
        checkpoints: count,
        latest,
        torn_tail: log.torn_tail.map(|(p, o)| (p.display().to_string(), o)),
    })
}
