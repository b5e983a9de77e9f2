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
use crate::ledger::{list_checkpoints, list_segments, read_checkpoint, OpenError};
use crate::merkle::{leaf_hash, Hash, MerkleTree};
use crate::segment::{scan_segment, Damage, RecordRef, Tail};

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

fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).clamp(1, 8)
}

/// Check one segment's records: leaf hashes, and (when `decode`) that each entry decodes, is
/// canonical and carries its position as `seq`. Work is split across threads; the first failure
/// (lowest index) wins.
fn check_records(bytes: &[u8], records: &[RecordRef], decode: bool) -> Result<Vec<Hash>, VerifyFailure> {
    let workers = workers();
    let chunk = records.len().div_ceil(workers).max(1024);
    let check = |part: &[RecordRef]| -> Result<Vec<Hash>, VerifyFailure> {
        let mut out = Vec::with_capacity(part.len());
        for r in part {
            let payload = &bytes[r.start..r.end];
            if decode {
                let index = r.index;
                let e = Entry::decode(payload).map_err(|e| VerifyFailure::BadEntry { index, why: e.to_string() })?;
                if e.seq != index {
                    return Err(VerifyFailure::BadEntry { index, why: format!("entry says seq {} at position {index}", e.seq) });
                }
            }
            out.push(leaf_hash(payload));
        }
        Ok(out)
    };
    if records.len() <= chunk {
        return check(records);
    }
    let results: Vec<Result<Vec<Hash>, VerifyFailure>> = std::thread::scope(|scope| {
        let handles: Vec<_> = records.chunks(chunk).map(|part| scope.spawn(move || check(part))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(VerifyFailure::BadEntry { index: 0, why: "verifier thread panicked".into() })))
            .collect()
    });
    let mut leaves = Vec::with_capacity(records.len());
    for r in results {
        leaves.extend(r?);
    }
    Ok(leaves)
}

/// Verify the ledger in `ledger_dir` against checkpoints signed by `verifier`: every check
/// listed in the module docs.
///
/// # Errors
/// The first failure found.
pub fn verify_ledger(ledger_dir: &Path, verifier: &NoteVerifier) -> Result<VerifyReport, VerifyFailure> {
    verify_with(ledger_dir, verifier, true)
}

/// Like [`verify_ledger`], but without decoding entries (step 2): checksums, positions, the
/// Merkle tree and the signed checkpoints only — the cryptographic part of verification.
///
/// # Errors
/// The first failure found.
pub fn verify_ledger_merkle(ledger_dir: &Path, verifier: &NoteVerifier) -> Result<VerifyReport, VerifyFailure> {
    verify_with(ledger_dir, verifier, false)
}

fn verify_with(ledger_dir: &Path, verifier: &NoteVerifier, decode: bool) -> Result<VerifyReport, VerifyFailure> {
    let io = |path: &Path, source: std::io::Error| VerifyFailure::Io(OpenError::Io { path: path.to_owned(), source });
    let segs = list_segments(ledger_dir).map_err(|e| io(ledger_dir, e))?;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut torn_tail = None;
    let count = segs.len();
    for (i, (path, _)) in segs.into_iter().enumerate() {
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let scan = scan_segment(&bytes, leaves.len() as u64, i + 1 == count);
        // Entries before the damage are checked first, so the lowest bad index is reported.
        leaves.extend(check_records(&bytes, &scan.records, decode)?);
        if let Some(d) = scan.damage {
            return Err(VerifyFailure::Damaged(d));
        }
        if let Tail::Torn { offset } = scan.tail {
            torn_tail = Some((path.display().to_string(), offset));
        }
    }
    let tree = MerkleTree::from_leaf_hashes(leaves, workers());
    let n = tree.len();
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
        if tree.root_at(cp.size).ok() != Some(cp.root) {
            return Err(VerifyFailure::Rewritten { from: good, to: cp.size, file });
        }
        good = cp.size;
        latest = Some(cp);
    }
    Ok(VerifyReport {
        entries: n,
        checkpoints: count,
        latest,
        torn_tail,
    })
}
