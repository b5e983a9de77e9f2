//! Group-commit records: the signed checkpoint that seals each batch, and the pure check that a
//! log's commits vouch for every entry it holds.
//!
//! A commit record's payload is `note length (u32 LE) | signed note text | the leaf hashes of the
//! entries it adds (32 bytes each, in order)`. The note is a C2SP checkpoint whose
//! `tidegate-batch` line ([`crate::checkpoint::Batch`]) names the first index it adds, the digest
//! of those leaf hashes and the hash of the previous commit's whole note (body and signature
//! lines, [`note_hash`]). So:
//! - every commit authenticates all earlier ones (the chain), and the newest one's signature
//!   vouches for the whole log: verifying costs one signature, however many commits there are;
//! - an entry whose bytes differ from what was sealed is named by its exact index (its leaf hash
//!   differs from the sealed one), even when its checksums were recomputed;
//! - a removed, reordered or altered commit breaks the chain at that commit;
//! - entries after the newest commit were never acknowledged (or were forged): they are
//!   *unsealed*, reported as such and never vouched for.
//!
//! Everything here is pure: bytes and keys in, a verdict out.

use crate::checkpoint::{
    leaves_digest, Batch, Checkpoint, CheckpointError, NoteVerifier, SignedNote,
};
use crate::merkle::{Hash, MerkleTree};

/// What is wrong with a log's commits. Every variant names the first index that cannot be
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitFault {
    /// A commit record does not decode.
    #[error("first bad index {index}: the commit record sealing entries up to {index} is malformed: {why}")]
    Malformed {
        /// First index of the entries it should seal.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// A commit does not continue the one before it: a commit was removed, reordered or altered.
    #[error("first bad index {index}: the commit sealing entries {index}..{size} does not continue the previous commit ({why}); a commit record was removed or altered")]
    Chain {
        /// First index that the broken commit should seal.
        index: u64,
        /// Its size.
        size: u64,
        /// What does not match.
        why: &'static str,
    },
    /// An entry's bytes differ from what its commit sealed.
    #[error("first bad index {index}: the entry differs from what was signed at size {size} (it was rewritten after it was acknowledged)")]
    EntryDiffers {
        /// The entry.
        index: u64,
        /// Size of the commit that sealed it.
        size: u64,
    },
    /// The signed root does not match the sealed leaves: the commit was made by a key holder
    /// over some other history.
    #[error("first bad index {index}: the commit at size {size} signs a root its own entries do not produce")]
    Root {
        /// First index of the commit's batch.
        index: u64,
        /// Its size.
        size: u64,
    },
    /// The newest commit's subject map root is not the one its entries produce: the commit was
    /// made by a key holder over some other history.
    #[error("first bad index {index}: the commit at size {size} signs a subject map its entries do not produce")]
    Subjects {
        /// First index of the newest commit's batch.
        index: u64,
        /// Its size.
        size: u64,
    },
    /// The newest commits are not signed by the ledger key.
    #[error("first bad index {index}: the commit at size {size} is not signed by the ledger key ({why})")]
    Signature {
        /// First index that no validly signed commit vouches for.
        index: u64,
        /// Size of the newest commit.
        size: u64,
        /// The signature error.
        why: String,
    },
}

impl CommitFault {
    /// The first index that cannot be trusted.
    #[must_use]
    pub fn index(&self) -> u64 {
        match self {
            Self::Malformed { index, .. }
            | Self::Chain { index, .. }
            | Self::EntryDiffers { index, .. }
            | Self::Root { index, .. }
            | Self::Subjects { index, .. }
            | Self::Signature { index, .. } => *index,
        }
    }
}

/// One decoded commit record.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The signed note as stored.
    pub note: SignedNote,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
    /// Its batch line.
    pub batch: Batch,
    /// Leaf hashes of the entries it adds.
    pub leaves: Vec<Hash>,
}

/// Encode a commit record's payload.
#[must_use]
pub fn encode(note: &SignedNote, leaves: &[Hash]) -> Vec<u8> {
    let text = note.to_text();
    let mut out = Vec::with_capacity(4 + text.len() + 32 * leaves.len());
    out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    for l in leaves {
        out.extend_from_slice(l);
    }
    out
}

fn malformed(index: u64, why: impl Into<String>) -> CommitFault {
    CommitFault::Malformed {
        index,
        why: why.into(),
    }
}

/// Decode a commit record's payload; `size` is the size its record header gives.
///
/// # Errors
/// [`CommitFault::Malformed`] naming the first entry it should seal.
pub fn decode(payload: &[u8], size: u64) -> Result<Commit, CommitFault> {
    let bad = |why: String| malformed(size, why);
    let len = payload
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| bad("shorter than its note length".into()))? as usize;
    let text = payload
        .get(4..4 + len)
        .ok_or_else(|| bad("note cut short".into()))?;
    let text = std::str::from_utf8(text).map_err(|_| bad("note is not UTF-8".into()))?;
    let note = SignedNote::parse(text).map_err(|e: CheckpointError| bad(e.to_string()))?;
    let checkpoint = note.checkpoint().map_err(|e| bad(e.to_string()))?;
    let batch = checkpoint
        .batch
        .ok_or_else(|| bad("its checkpoint has no batch line".into()))?;
    let index = batch.first;
    if checkpoint.size != size {
        return Err(malformed(
            index,
            format!(
                "its checkpoint says size {} but it sits after entry {}",
                checkpoint.size,
                size.wrapping_sub(1)
            ),
        ));
    }
    let rest = &payload[4 + len..];
    let n = usize::try_from(size - batch.first).unwrap_or(usize::MAX);
    if rest.len() != n.saturating_mul(32) {
        return Err(malformed(
            index,
            format!(
                "it holds {} bytes of leaf hashes for {n} entries",
                rest.len()
            ),
        ));
    }
    let leaves: Vec<Hash> = rest
        .chunks_exact(32)
        .filter_map(|c| <Hash>::try_from(c).ok())
        .collect();
    if leaves_digest(&leaves) != batch.leaves {
        return Err(malformed(
            index,
            "its leaf hashes do not match the digest its note signs",
        ));
    }
    Ok(Commit {
        note,
        checkpoint,
        batch,
        leaves,
    })
}

/// What a log's commits vouch for.
#[derive(Debug, Clone, Default)]
pub struct Sealed {
    /// Entries vouched for by the newest commit (its size).
    pub size: u64,
    /// Number of commits checked.
    pub commits: usize,
    /// The newest commit's note (absent when the log has no commit).
    pub latest: Option<(SignedNote, Checkpoint)>,
    /// The newest commit's note hash ([`note_hash`], the next commit's `prev`), zeros when there is
    /// none.
    pub head: Hash,
}

/// Check a log's commits, oldest first, against the leaf hashes recomputed from its entries and
/// the tree over them.
///
/// `commits` holds (size from the record header, payload). Checks, in order of index: every
/// commit decodes, continues the previous one (first index, previous body hash), seals exactly
/// the entries' recomputed leaves (the exact index of the first that differs) and a root those
/// leaves produce; then the newest commit is signed by `verifier` (which, through the chain,
/// vouches for all). Entries past the newest commit are not vouched for: `tree.len() -
/// Sealed::size` of them.
///
/// # Errors
/// The lowest-index fault.
pub fn check<'a>(
    tree: &MerkleTree,
    commits: impl IntoIterator<Item = (u64, &'a [u8])>,
    verifier: &NoteVerifier,
) -> Result<Sealed, CommitFault> {
    let mut sealed = Sealed {
        head: [0u8; 32],
        ..Sealed::default()
    };
    // The newest commits' notes, so a bad newest signature can fall back to the newest good one.
    let mut recent: std::collections::VecDeque<(u64, SignedNote)> =
        std::collections::VecDeque::with_capacity(RECENT);
    for (size, payload) in commits {
        // Whatever is wrong with a commit, the entries from the end of the last good one on are
        // the first that nothing vouches for.
        let c = decode(payload, size).map_err(|e| match e {
            CommitFault::Malformed { why, .. } => malformed(sealed.size, why),
            other => other,
        })?;
        let b = c.batch;
        if b.first != sealed.size {
            return Err(CommitFault::Chain {
                index: sealed.size,
                size,
                why: "its first index is not where the previous commit ended",
            });
        }
        if b.prev != sealed.head {
            return Err(CommitFault::Chain {
                index: sealed.size,
                size,
                why: "it names another previous commit",
            });
        }
        if let Some((_, first)) = recent.front() {
            if first
                .checkpoint()
                .is_ok_and(|f| f.origin != c.checkpoint.origin)
            {
                return Err(malformed(
                    b.first,
                    format!("its origin {:?} is not the log's", c.checkpoint.origin),
                ));
            }
        }
        for (i, sealed_leaf) in c.leaves.iter().enumerate() {
            let index = b.first + i as u64;
            if tree.leaf(index) != Some(*sealed_leaf) {
                return Err(CommitFault::EntryDiffers { index, size });
            }
        }
        if tree.root_at(size).ok() != Some(c.checkpoint.root) {
            return Err(CommitFault::Root {
                index: b.first,
                size,
            });
        }
        sealed.size = size;
        sealed.commits += 1;
        sealed.head = note_hash(&c.note);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back((size, c.note));
    }
    if let Some((size, note)) = recent.back() {
        if let Err(e) = note.verify(verifier) {
            // The chain makes the newest validly signed commit vouch for everything before it.
            let vouched = recent
                .iter()
                .rev()
                .find(|(_, n)| n.verify(verifier).is_ok())
                .map_or(0, |(s, _)| *s);
            return Err(CommitFault::Signature {
                index: vouched,
                size: *size,
                why: e.to_string(),
            });
        }
        let cp = note
            .checkpoint()
            .map_err(|e| malformed(*size, e.to_string()))?;
        if cp.origin != verifier.name {
            return Err(CommitFault::Signature {
                index: 0,
                size: *size,
                why: format!("its origin is {:?}, not {:?}", cp.origin, verifier.name),
            });
        }
        sealed.latest = Some((note.clone(), cp));
    }
    Ok(sealed)
}

/// `SHA-256` of a commit's whole note text, body and signature lines: what the next commit names
/// as `prev`, so an altered or added signature line on any earlier commit breaks the chain.
#[must_use]
pub fn note_hash(note: &SignedNote) -> Hash {
    crate::checkpoint::body_hash(&note.to_text())
}

/// How many of the newest commits a failed newest signature falls back over.
const RECENT: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::NoteSigner;
    use crate::merkle::leaf_hash;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("tidegate-ledger", &[7u8; 32]).unwrap()
    }

    /// A log of `n` entries sealed in batches of `per`: (tree, commit records).
    fn sealed_log(n: u64, per: u64, s: &NoteSigner) -> (MerkleTree, Vec<(u64, Vec<u8>)>) {
        let mut tree = MerkleTree::new();
        let mut commits = Vec::new();
        let mut head = [0u8; 32];
        let mut first = 0;
        while first < n {
            let end = (first + per).min(n);
            let leaves: Vec<Hash> = (first..end)
                .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
                .collect();
            for l in &leaves {
                tree.push_leaf_hash(*l);
            }
            let cp = Checkpoint {
                origin: s.name().to_owned(),
                size: end,
                root: tree.root(),
                batch: Some(Batch {
                    first,
                    leaves: leaves_digest(&leaves),
                    prev: head,
                }),
                subjects: None,
            };
            let note = s.sign_checkpoint(&cp);
            head = note_hash(&note);
            commits.push((end, encode(&note, &leaves)));
            first = end;
        }
        (tree, commits)
    }

    fn run(
        tree: &MerkleTree,
        commits: &[(u64, Vec<u8>)],
        v: &NoteVerifier,
    ) -> Result<Sealed, CommitFault> {
        check(tree, commits.iter().map(|(s, p)| (*s, p.as_slice())), v)
    }

    #[test]
    fn a_sealed_log_verifies_with_one_signature() {
        let s = signer();
        let (tree, commits) = sealed_log(10, 3, &s);
        let sealed = run(&tree, &commits, &s.verifier()).unwrap();
        assert_eq!(sealed.size, 10);
        assert_eq!(sealed.commits, 4);
        assert_eq!(sealed.latest.unwrap().1.size, 10);
    }

    #[test]
    fn every_rewritten_entry_is_named_exactly() {
        let s = signer();
        let (_, commits) = sealed_log(10, 4, &s);
        for bad in 0..10u64 {
            let mut tree = MerkleTree::new();
            for i in 0..10u64 {
                let text = if i == bad {
                    "forged".to_owned()
                } else {
                    format!("entry {i}")
                };
                tree.push(text.as_bytes());
            }
            let err = run(&tree, &commits, &s.verifier()).unwrap_err();
            assert_eq!(
                err,
                CommitFault::EntryDiffers {
                    index: bad,
                    size: (bad / 4 + 1).saturating_mul(4).min(10)
                }
            );
        }
    }

    #[test]
    fn removing_or_reordering_a_commit_breaks_the_chain() {
        let s = signer();
        let (tree, commits) = sealed_log(9, 3, &s);
        let mut dropped = commits.clone();
        dropped.remove(1);
        let err = run(&tree, &dropped, &s.verifier()).unwrap_err();
        assert!(matches!(err, CommitFault::Chain { index: 3, .. }), "{err}");
        let mut swapped = commits.clone();
        swapped.swap(0, 1);
        assert!(run(&tree, &swapped, &s.verifier()).is_err());
    }

    #[test]
    fn another_key_vouches_for_nothing() {
        let s = signer();
        let other = NoteSigner::from_seed("tidegate-ledger", &[9u8; 32]).unwrap();
        let (tree, commits) = sealed_log(5, 2, &other);
        let err = run(&tree, &commits, &s.verifier()).unwrap_err();
        assert!(matches!(err, CommitFault::Signature { .. }), "{err}");
    }

    #[test]
    fn altered_leaf_hashes_are_malformed_not_trusted() {
        let s = signer();
        let (tree, mut commits) = sealed_log(4, 4, &s);
        let last = commits[0].1.len() - 1;
        commits[0].1[last] ^= 1;
        let err = run(&tree, &commits, &s.verifier()).unwrap_err();
        assert!(
            matches!(err, CommitFault::Malformed { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn entries_past_the_newest_commit_are_not_vouched_for() {
        let s = signer();
        let (mut tree, commits) = sealed_log(6, 3, &s);
        tree.push(b"appended without a commit");
        let sealed = run(&tree, &commits, &s.verifier()).unwrap();
        assert_eq!(sealed.size, 6);
        assert_eq!(tree.len() - sealed.size, 1);
    }
}
