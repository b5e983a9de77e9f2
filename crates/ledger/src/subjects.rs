//! The subject map: for every subject the log names, how many entries are about it, the last of
//! them and a hash chain over all of them, committed to by every group commit.
//!
//! It is what lets an evidence bundle prove it is *complete*: a bundle about a job carries the
//! map's entry for the job (its [`Head`]) with a [`MapProof`] leading to the root that the
//! signed checkpoint commits to (`tidegate-subjects <b64 root>`), and the verifier recomputes
//! the chain over the bundle's entries about the job. Dropping an entry, adding one, changing an
//! entry's subjects or re-labelling the bundle's subject changes the chain, the count or the
//! last index, and verification fails.
//!
//! Layout (pure and deterministic):
//! - a subject's key is `SHA-256("tidegate-subject\n" || kind || ":" || id)` ([`key`]);
//! - its head starts as zero and, for each entry about it (index `i`, leaf hash `l`), becomes
//!   `count + 1`, `last = i`, `chain = SHA-256(0x02 || chain || i as u64 BE || l)`;
//! - keys fall into 2^16 buckets by their first two bytes; a bucket's hash is
//!   `SHA-256(0x03 || for each key in the bucket, ascending: key || count BE || last BE || chain)`;
//! - the root is a complete binary tree of depth 16 over the buckets, nodes
//!   `SHA-256(0x04 || left || right)`.
//!
//! A proof is the whole bucket (every key in it, so absence is provable too) and the sixteen
//! sibling hashes from the bucket up. Updating after a group commit rehashes only the buckets it
//! touched and their paths.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::entry::SubjectKind;
use crate::entry_check::NotAnEntry;
use crate::merkle::Hash;

/// A subject's key in the map.
pub type Key = [u8; 32];

/// Depth of the bucket tree.
pub const DEPTH: usize = 16;
const BUCKETS: usize = 1 << DEPTH;

/// The key of subject `kind`/`id`.
#[must_use]
pub fn key(kind: SubjectKind, id: &str) -> Key {
    key_of(kind.as_str().as_bytes(), id.as_bytes())
}

fn key_of(kind: &[u8], id: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(b"tidegate-subject\n");
    h.update(kind);
    h.update(b":");
    h.update(id);
    h.finalize().into()
}

/// The keys of the subjects a canonical entry names, without decoding it (each once, in the
/// entry's order).
///
/// # Errors
/// [`NotAnEntry`] when the bytes hold no well-formed `subjects` member.
pub fn keys_of(entry: &[u8]) -> Result<Vec<Key>, NotAnEntry> {
    // No string in an entry can hold `"`, and no action member is named `subjects`, so this
    // marker occurs once: as the top-level member.
    const MARK: &[u8] = b",\"subjects\":[";
    let at = entry
        .windows(MARK.len())
        .position(|w| w == MARK)
        .ok_or(NotAnEntry)?;
    let mut rest = entry.get(at + MARK.len()..).ok_or(NotAnEntry)?;
    let mut out: Vec<Key> = Vec::with_capacity(4);
    if rest.starts_with(b"]") {
        return Ok(out);
    }
    loop {
        let r = rest.strip_prefix(b"{\"id\":\"").ok_or(NotAnEntry)?;
        let end = r.iter().position(|&c| c == b'"').ok_or(NotAnEntry)?;
        let id = &r[..end];
        let r = r
            .get(end..)
            .and_then(|r| r.strip_prefix(b"\",\"kind\":\""))
            .ok_or(NotAnEntry)?;
        let end = r.iter().position(|&c| c == b'"').ok_or(NotAnEntry)?;
        let kind = &r[..end];
        let k = key_of(kind, id);
        if !out.contains(&k) {
            out.push(k);
        }
        let r = r
            .get(end..)
            .and_then(|r| r.strip_prefix(b"\"}"))
            .ok_or(NotAnEntry)?;
        if r.starts_with(b"]") {
            return Ok(out);
        }
        rest = r.strip_prefix(b",").ok_or(NotAnEntry)?;
    }
}

/// What the map holds about one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Entries about the subject.
    pub count: u64,
    /// Index of the newest of them.
    pub last: u64,
    /// Hash chain over them, oldest first.
    pub chain: Hash,
}

impl Head {
    /// The head after one more entry (`index`, `leaf`) about the subject.
    #[must_use]
    pub fn then(&self, index: u64, leaf: &Hash) -> Self {
        let mut h = Sha256::new();
        h.update([2u8]);
        h.update(self.chain);
        h.update(index.to_be_bytes());
        h.update(leaf);
        Self {
            count: self.count + 1,
            last: index,
            chain: h.finalize().into(),
        }
    }
}

fn bucket_of(k: &Key) -> usize {
    usize::from(u16::from_be_bytes([k[0], k[1]]))
}

fn bucket_hash<'a>(items: impl IntoIterator<Item = (&'a Key, &'a Head)>) -> Hash {
    let mut h = Sha256::new();
    h.update([3u8]);
    for (k, v) in items {
        h.update(k);
        h.update(v.count.to_be_bytes());
        h.update(v.last.to_be_bytes());
        h.update(v.chain);
    }
    h.finalize().into()
}

fn node_hash(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([4u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// The map, with its bucket tree kept current by [`SubjectMap::root`].
#[derive(Clone)]
pub struct SubjectMap {
    heads: BTreeMap<Key, Head>,
    /// Heap-ordered tree: node 1 is the root, node `n` has children `2n`, `2n + 1`; buckets are
    /// nodes `BUCKETS..2 * BUCKETS`. Node 0 is unused.
    nodes: Vec<Hash>,
    dirty: Vec<usize>,
}

impl std::fmt::Debug for SubjectMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectMap")
            .field("subjects", &self.heads.len())
            .finish_non_exhaustive()
    }
}

impl Default for SubjectMap {
    fn default() -> Self {
        Self::new()
    }
}

impl SubjectMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        let mut nodes = vec![[0u8; 32]; 2 * BUCKETS];
        let mut level = bucket_hash(std::iter::empty());
        let mut width = BUCKETS;
        while width >= 1 {
            nodes[width..2 * width].fill(level);
            level = node_hash(&level, &level);
            width /= 2;
        }
        Self {
            heads: BTreeMap::new(),
            nodes,
            dirty: Vec::new(),
        }
    }

    /// The map over a whole log's entries (canonical bytes, by index); an entry whose subjects
    /// cannot be read counts for none.
    #[must_use]
    pub fn over(entries: &[Vec<u8>]) -> Self {
        let mut m = Self::new();
        for (i, e) in entries.iter().enumerate() {
            let keys = keys_of(e).unwrap_or_default();
            m.record(i as u64, &crate::merkle::leaf_hash(e), &keys);
        }
        m
    }

    /// Record entry `index` (leaf hash `leaf`) as being about each of `keys`.
    pub fn record(&mut self, index: u64, leaf: &Hash, keys: &[Key]) {
        for k in keys {
            let h = self.heads.entry(*k).or_default();
            *h = h.then(index, leaf);
            self.dirty.push(bucket_of(k));
        }
    }

    /// Number of subjects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// Whether no subject has been recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The head of `key`, if any entry is about it.
    #[must_use]
    pub fn head(&self, key: &Key) -> Option<Head> {
        self.heads.get(key).copied()
    }

    fn bucket(&self, b: usize) -> impl Iterator<Item = (&Key, &Head)> {
        let mut lo = [0u8; 32];
        let mut hi = [0xffu8; 32];
        let prefix = u16::try_from(b).unwrap_or(u16::MAX).to_be_bytes();
        lo[..2].copy_from_slice(&prefix);
        hi[..2].copy_from_slice(&prefix);
        self.heads.range(lo..=hi)
    }

    /// The root, rehashing what changed since the last call.
    pub fn root(&mut self) -> Hash {
        if !self.dirty.is_empty() {
            let mut level: Vec<usize> = std::mem::take(&mut self.dirty);
            level.sort_unstable();
            level.dedup();
            for &b in &level {
                self.nodes[BUCKETS + b] = bucket_hash(self.bucket(b));
            }
            let mut nodes: Vec<usize> = level.iter().map(|b| BUCKETS + b).collect();
            while nodes.first().is_some_and(|&n| n > 1) {
                let mut parents: Vec<usize> = nodes.iter().map(|n| n / 2).collect();
                parents.dedup();
                for &p in &parents {
                    self.nodes[p] = node_hash(&self.nodes[2 * p], &self.nodes[2 * p + 1]);
                }
                nodes = parents;
            }
        }
        self.nodes[1]
    }

    /// The proof for `key` against the current [`SubjectMap::root`].
    pub fn proof(&mut self, key: &Key) -> MapProof {
        let _ = self.root();
        let b = bucket_of(key);
        let bucket = self.bucket(b).map(|(k, v)| (*k, *v)).collect();
        let mut siblings = Vec::with_capacity(DEPTH);
        let mut n = BUCKETS + b;
        while n > 1 {
            siblings.push(self.nodes[n ^ 1]);
            n /= 2;
        }
        MapProof { bucket, siblings }
    }
}

/// A subject's bucket and the path from it to the map's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapProof {
    /// Every (key, head) of the bucket, ascending by key.
    pub bucket: Vec<(Key, Head)>,
    /// Sibling hashes, bucket side first ([`DEPTH`] of them).
    pub siblings: Vec<Hash>,
}

/// Why a map proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// Not [`DEPTH`] siblings.
    #[error("the subject map proof has {0} sibling hashes, not 16")]
    Depth(usize),
    /// The bucket holds a key of another bucket, or keys out of order.
    #[error("the subject map proof's bucket is not one sorted bucket")]
    Bucket,
    /// The proof leads to another root.
    #[error("the subject map proof does not lead to the root the checkpoint signs")]
    Root,
}

/// Check `proof` for `key` against `root`; the subject's head, or `None` when the log names it
/// in no entry.
///
/// # Errors
/// See [`MapError`].
pub fn verify_proof(root: &Hash, key: &Key, proof: &MapProof) -> Result<Option<Head>, MapError> {
    if proof.siblings.len() != DEPTH {
        return Err(MapError::Depth(proof.siblings.len()));
    }
    let b = bucket_of(key);
    if proof.bucket.iter().any(|(k, _)| bucket_of(k) != b)
        || proof.bucket.windows(2).any(|w| w[0].0 >= w[1].0)
    {
        return Err(MapError::Bucket);
    }
    let mut h = bucket_hash(proof.bucket.iter().map(|(k, v)| (k, v)));
    let mut n = BUCKETS + b;
    for s in &proof.siblings {
        h = if n.is_multiple_of(2) {
            node_hash(&h, s)
        } else {
            node_hash(s, &h)
        };
        n /= 2;
    }
    if h != *root {
        return Err(MapError::Root);
    }
    Ok(proof.bucket.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u32) -> Key {
        key(SubjectKind::Job, &format!("job-{i}"))
    }

    fn leaf(i: u64) -> Hash {
        crate::merkle::leaf_hash(&i.to_be_bytes())
    }

    #[test]
    fn the_root_is_the_same_however_updates_are_grouped() {
        let mut one = SubjectMap::new();
        let mut many = SubjectMap::new();
        for i in 0..500u64 {
            let keys = [k(u32::try_from(i % 37).unwrap()), k(1000)];
            one.record(i, &leaf(i), &keys);
            many.record(i, &leaf(i), &keys);
            let _ = many.root();
        }
        assert_eq!(one.root(), many.root());
        assert_ne!(one.root(), SubjectMap::new().root());
        assert_eq!(one.head(&k(1000)).unwrap().count, 500);
        assert_eq!(one.head(&k(1000)).unwrap().last, 499);
    }

    #[test]
    fn proofs_verify_and_catch_every_change() {
        let mut m = SubjectMap::new();
        for i in 0..300u64 {
            m.record(i, &leaf(i), &[k(u32::try_from(i % 50).unwrap())]);
        }
        let root = m.root();
        let p = m.proof(&k(7));
        let head = verify_proof(&root, &k(7), &p).unwrap().unwrap();
        assert_eq!(head.count, 6);
        assert_eq!(head.last, 257);
        // Absent subjects are provably absent.
        assert_eq!(
            verify_proof(&root, &k(999), &m.proof(&k(999))).unwrap(),
            None
        );
        // A lower count, another chain, a dropped neighbour, a wrong sibling: all fail.
        let mut fewer = p.clone();
        for (key, h) in &mut fewer.bucket {
            if *key == k(7) {
                h.count -= 1;
            }
        }
        assert_eq!(verify_proof(&root, &k(7), &fewer), Err(MapError::Root));
        let mut sib = p.clone();
        sib.siblings[3][0] ^= 1;
        assert_eq!(verify_proof(&root, &k(7), &sib), Err(MapError::Root));
        let mut short = p.clone();
        short.siblings.pop();
        assert_eq!(verify_proof(&root, &k(7), &short), Err(MapError::Depth(15)));
        let mut hidden = p;
        hidden.bucket.retain(|(key, _)| *key != k(7));
        assert!(verify_proof(&root, &k(7), &hidden).is_err());
    }

    #[test]
    fn keys_come_from_the_canonical_bytes() {
        let e = crate::entry::EntryDraft::new(
            crate::entry::Ident::new("alice").unwrap(),
            crate::entry::Action::JobSubmitted {
                spec: crate::entry::Digest::of(b"x"),
            },
            vec![
                crate::entry::Subject::new(SubjectKind::Job, "job-1").unwrap(),
                crate::entry::Subject::new(SubjectKind::Dataset, "ds:v1").unwrap(),
                crate::entry::Subject::new(SubjectKind::Job, "job-1").unwrap(),
            ],
        )
        .unwrap()
        .into_entry(3, 9)
        .encode()
        .unwrap();
        assert_eq!(
            keys_of(&e).unwrap(),
            vec![
                key(SubjectKind::Job, "job-1"),
                key(SubjectKind::Dataset, "ds:v1")
            ]
        );
        assert!(keys_of(b"{\"subjects\":[]}").is_err());
        assert!(keys_of(b"{\"a\":1,\"subjects\":[{\"id\":\"x\"").is_err());
    }
}
