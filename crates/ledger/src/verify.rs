//! Full verification of a ledger directory: every record, every entry, every checkpoint.
//!
//! Nothing is repaired and nothing is skipped: the first problem found is returned with the
//! index of the first entry that cannot be trusted. The checks, in order:
//! 1. segment structure and checksums, indexes in sequence (byte flips, reordering, removal);
//! 2. each entry is well-formed and canonical, and its `seq` equals its position: proven by the
//!    zero-copy [`check_entry`] ([`Depth::Full`]), which accepts exactly what
//!    [`Entry::decode`] accepts; [`Depth::FullDecode`] runs the decoder itself (the reference,
//!    and the benchmark's naive way), [`Depth::Integrity`] skips this step;
//! 3. every commit record ([`crate::commit`]) continues the chain and seals exactly the entries'
//!    recomputed leaves, and the newest is signed by the ledger key: an entry rewritten with its
//!    checksums recomputed is named by its exact index;
//! 4. no entry lies past the newest commit (such entries were never acknowledged, or were
//!    forged): they are reported, never passed;
//! 5. each stored checkpoint is signed by the ledger key, covers no more entries than the log
//!    holds (truncation), and its root equals the recomputed root at its size (rewriting).
//!
//! When several checks fail, the lowest bad index is reported.

use std::path::Path;

use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::commit::{self, CommitFault};
use crate::entry::Entry;
use crate::entry_check::check_entry;
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
    /// The signed commits do not vouch for the entries.
    #[error(transparent)]
    Commit(#[from] CommitFault),
    /// Entries lie past the newest signed commit: never acknowledged, or forged.
    #[error("first bad index {index}: {count} entries from {index} are sealed by no signed commit (never acknowledged, or appended by someone without the ledger key); the next open sets them aside")]
    Unsealed {
        /// First unsealed entry.
        index: u64,
        /// How many.
        count: u64,
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
            Self::Commit(f) => Some(f.index()),
            Self::BadEntry { index, .. }
            | Self::Truncated { index, .. }
            | Self::Unsealed { index, .. } => Some(*index),
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
    /// Checkpoint files verified.
    pub checkpoints: usize,
    /// Signed commits verified (one per group commit).
    pub commits: usize,
    /// The newest checkpoint.
    pub latest: Option<Checkpoint>,
    /// A torn tail (unacknowledged partial write) that the next open will cut: (file, offset).
    pub torn_tail: Option<(String, usize)>,
}

fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8)
}

/// How much of each entry verification checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Checksums, positions, the Merkle tree and the signed checkpoints (the cryptographic part).
    Integrity,
    /// Also prove every entry canonical and well-formed and its `seq` equal to its position, with
    /// the zero-copy [`check_entry`] (what `tidegate audit verify` runs).
    Full,
    /// The same as `Full`, by decoding every entry with serde and re-encoding it
    /// ([`Entry::decode`]); the reference the fast check is tested against, and the benchmark's
    /// naive way.
    FullDecode,
}

fn bad(index: u64, why: impl Into<String>) -> VerifyFailure {
    VerifyFailure::BadEntry {
        index,
        why: why.into(),
    }
}

/// Check one entry at `index` to `depth` (nothing for [`Depth::Integrity`]).
fn check_one(index: u64, payload: &[u8], depth: Depth) -> Result<(), VerifyFailure> {
    let seq = match depth {
        Depth::Integrity => return Ok(()),
        Depth::Full => match check_entry(payload) {
            Ok(c) => c.seq,
            // The rare path: let the decoder say what is wrong (it is the reference).
            Err(_) => {
                Entry::decode(payload)
                    .map_err(|e| bad(index, e.to_string()))?
                    .seq
            }
        },
        Depth::FullDecode => {
            Entry::decode(payload)
                .map_err(|e| bad(index, e.to_string()))?
                .seq
        }
    };
    if seq != index {
        return Err(bad(
            index,
            format!("entry says seq {seq} at position {index}"),
        ));
    }
    Ok(())
}

/// Check entries to `depth` and hash them into leaves; `item(k)` gives the index and bytes of the
/// `k`-th of `len` entries. Work is split across threads; the first failure (lowest index) wins.
pub(crate) fn check_entries<'a>(
    len: usize,
    item: &(dyn Fn(usize) -> (u64, &'a [u8]) + Sync),
    depth: Depth,
) -> Result<Vec<Hash>, VerifyFailure> {
    let workers = workers();
    let chunk = len.div_ceil(workers).max(1024);
    let check = |range: std::ops::Range<usize>| -> Result<Vec<Hash>, VerifyFailure> {
        let mut out = Vec::with_capacity(range.len());
        for k in range {
            let (index, payload) = item(k);
            check_one(index, payload, depth)?;
            out.push(leaf_hash(payload));
        }
        Ok(out)
    };
    if len <= chunk {
        return check(0..len);
    }
    let results: Vec<Result<Vec<Hash>, VerifyFailure>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..len)
            .step_by(chunk)
            .map(|start| {
                let check = &check;
                scope.spawn(move || check(start..(start + chunk).min(len)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(bad(0, "verifier thread panicked")))
            })
            .collect()
    });
    let mut leaves = Vec::with_capacity(len);
    for r in results {
        leaves.extend(r?);
    }
    Ok(leaves)
}

fn check_records(
    bytes: &[u8],
    records: &[RecordRef],
    depth: Depth,
) -> Result<Vec<Hash>, VerifyFailure> {
    check_entries(
        records.len(),
        &|k| (records[k].index, &bytes[records[k].start..records[k].end]),
        depth,
    )
}

/// Check signed checkpoints, smallest size first, given as (name for messages, size the store
/// files it under, note text), against the tree: each is signed by `verifier`, covers no more
/// than the log holds, and its root equals the recomputed root at its size.
///
/// # Errors
/// The first failure.
pub(crate) fn check_checkpoints(
    tree: &MerkleTree,
    cps: impl IntoIterator<Item = (String, u64, Result<String, String>)>,
    verifier: &NoteVerifier,
) -> Result<(usize, Option<Checkpoint>), VerifyFailure> {
    let n = tree.len();
    let mut good = 0u64;
    let mut latest = None;
    let mut count = 0;
    for (file, size, text) in cps {
        count += 1;
        let text = text.map_err(|why| VerifyFailure::Checkpoint {
            file: file.clone(),
            why,
        })?;
        let (_, cp) = read_checkpoint(&text, verifier).map_err(|e| VerifyFailure::Checkpoint {
            file: file.clone(),
            why: e.to_string(),
        })?;
        if cp.size != size {
            return Err(VerifyFailure::Checkpoint {
                file,
                why: format!("stored under size {size}, note says {}", cp.size),
            });
        }
        if cp.size > n {
            return Err(VerifyFailure::Truncated {
                index: n,
                size: cp.size,
                file,
            });
        }
        if tree.root_at(cp.size).ok() != Some(cp.root) {
            return Err(VerifyFailure::Rewritten {
                from: good,
                to: cp.size,
                file,
            });
        }
        good = cp.size;
        latest = Some(cp);
    }
    Ok((count, latest))
}

/// Check every checkpoint file under `ledger_dir/checkpoints` against `tree` (see
/// [`check_checkpoints`]).
///
/// # Errors
/// The first failure.
pub(crate) fn check_checkpoint_dir(
    ledger_dir: &Path,
    tree: &MerkleTree,
    verifier: &NoteVerifier,
) -> Result<(usize, Option<Checkpoint>), VerifyFailure> {
    let cps = list_checkpoints(ledger_dir).map_err(|source| OpenError::Io {
        path: ledger_dir.to_owned(),
        source,
    })?;
    let cps = cps.into_iter().map(|(path, size)| {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
        (path.display().to_string(), size, text)
    });
    check_checkpoints(tree, cps, verifier)
}

/// Verify the ledger in `ledger_dir` against checkpoints signed by `verifier`: every check
/// listed in the module docs.
///
/// # Errors
/// The first failure found.
pub fn verify_ledger(
    ledger_dir: &Path,
    verifier: &NoteVerifier,
) -> Result<VerifyReport, VerifyFailure> {
    verify_with(ledger_dir, verifier, Depth::Full)
}

/// Like [`verify_ledger`], but without decoding entries (step 2): checksums, positions, the
/// Merkle tree and the signed checkpoints only — the cryptographic part of verification.
///
/// # Errors
/// The first failure found.
pub fn verify_ledger_merkle(
    ledger_dir: &Path,
    verifier: &NoteVerifier,
) -> Result<VerifyReport, VerifyFailure> {
    verify_with(ledger_dir, verifier, Depth::Integrity)
}

/// Verify the ledger in `ledger_dir` to `depth`.
///
/// # Errors
/// The first failure found.
pub fn verify_with(
    ledger_dir: &Path,
    verifier: &NoteVerifier,
    depth: Depth,
) -> Result<VerifyReport, VerifyFailure> {
    let io = |path: &Path, source: std::io::Error| {
        VerifyFailure::Io(OpenError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let segs = list_segments(ledger_dir).map_err(|e| io(ledger_dir, e))?;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut commits: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut torn_tail = None;
    // The first failure found by reading (a bad entry or damage); commits are still checked over
    // what was read, so that the lowest bad index wins.
    let mut failure: Option<VerifyFailure> = None;
    let count = segs.len();
    for (i, (path, _)) in segs.into_iter().enumerate() {
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let scan = scan_segment(&bytes, leaves.len() as u64, i + 1 == count);
        let mut entries = Vec::with_capacity(scan.records.len());
        for r in &scan.records {
            if r.commit {
                commits.push((r.index, bytes[r.start..r.end].to_vec()));
            } else {
                entries.push(*r);
            }
        }
        match check_records(&bytes, &entries, depth) {
            Ok(l) => leaves.extend(l),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if let Some(d) = scan.damage {
            failure = Some(VerifyFailure::Damaged(d));
            break;
        }
        if let Tail::Torn { offset } = scan.tail {
            torn_tail = Some((path.display().to_string(), offset));
        }
    }
    let tree = MerkleTree::from_leaf_hashes(leaves, workers());
    let read_to = tree.len();
    let sealed = commit::check(
        &tree,
        commits
            .iter()
            .filter(|(size, _)| *size <= read_to)
            .map(|(s, p)| (*s, p.as_slice())),
        verifier,
    );
    let sealed = match (sealed, failure) {
        (Err(f), Some(e)) if f.index() < e.index().unwrap_or(u64::MAX) => return Err(f.into()),
        // Damage in a commit record leaves the entries it sealed vouched for by nothing.
        (Ok(s), Some(VerifyFailure::Damaged(d))) if s.size < d.index => {
            return Err(VerifyFailure::Damaged(crate::segment::Damage {
                index: s.size,
                kind: d.kind,
            }))
        }
        (_, Some(e)) => return Err(e),
        (Err(f), None) => return Err(f.into()),
        (Ok(s), None) => s,
    };
    if sealed.size < read_to {
        return Err(VerifyFailure::Unsealed {
            index: sealed.size,
            count: read_to - sealed.size,
        });
    }
    let n = tree.len();
    let (count, latest_file) = check_checkpoint_dir(ledger_dir, &tree, verifier)?;
    Ok(VerifyReport {
        entries: n,
        checkpoints: count,
        commits: sealed.commits,
        latest: sealed.latest.map(|(_, cp)| cp).or(latest_file),
        torn_tail,
    })
}
