//! Merkle tree hashing, inclusion and consistency proofs as defined by RFC 6962 / RFC 9162.
//!
//! This is a small in-house implementation rather than `ct-merkle`. The reasons:
//! the ledger keeps every leaf hash in memory anyway (it is rebuilt from the segment files on
//! open), and a tree that caches every complete subtree lets any proof or root for any past tree
//! size be produced in O(log n) hash lookups without re-hashing leaves; verification follows the
//! RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms literally, over plain `[u8; 32]` values, so evidence
//! bundles can be checked with nothing but this module and SHA-256. The whole module is pure: no
//! I/O, no clocks, no panics on any input.

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash value: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Hash of a leaf: `SHA-256(0x00 || data)`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: `SHA-256("")`.
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the requested tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf.
        index: u64,
        /// The tree size asked about.
        size: u64,
    },
    /// The requested tree size is larger than the tree.
    #[error("tree size {size} is larger than the log ({have} entries)")]
    SizeTooLarge {
        /// The requested tree size.
        size: u64,
        /// How many leaves the tree has.
        have: u64,
    },
    /// A consistency proof needs `0 < old <= new`.
    #[error("no consistency proof from size {old} to size {new}")]
    BadRange {
        /// The old tree size.
        old: u64,
        /// The new tree size.
        new: u64,
    },
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not inside the tree the proof is for.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes the sizes call for.
        expected: usize,
    },
    /// The recomputed root differs from the expected root.
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
    /// Sizes that no consistency proof can relate (old > new, or old = 0 with a proof).
    #[error("sizes {old} and {new} cannot be related by a consistency proof")]
    BadRange {
        /// The old tree size.
        old: u64,
        /// The new tree size.
        new: u64,
    },
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    // n >= 2 here, so (n - 1) >= 1 and the shift is in range.
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a tree: the roots of its perfect subtrees, largest first (a compact range).
/// Enough to compute the root after appending more leaves, in `O(log n)` space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

impl Frontier {
    /// Number of leaves covered.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether it covers no leaves.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Append a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            if let Some(left) = self.roots.pop() {
                carry = node_hash(&left, &carry);
            }
            s >>= 1;
        }
        self.roots.push(carry);
        self.size += 1;
    }

    /// The root of the tree it is the edge of.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut it = self.roots.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }
}

/// An append-only Merkle tree that caches the hash of every complete, aligned subtree.
///
/// `levels[k][j]` is the hash of leaves `[j * 2^k, (j + 1) * 2^k)`. Memory is about two hashes per
/// leaf. Roots and proofs for any size up to the current one are available.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self {
            levels: vec![Vec::new()],
        }
    }

    /// Build a tree from leaf hashes, hashing each level's nodes on up to `threads` threads.
    /// Same result as pushing the leaves one by one.
    #[must_use]
    pub fn from_leaf_hashes(leaves: Vec<Hash>, threads: usize) -> Self {
        const PARALLEL_MIN: usize = 1 << 14;
        let mut levels = vec![leaves];
        while let Some(row) = levels.last().filter(|r| r.len() >= 2) {
            let pairs = row.len() / 2;
            let next: Vec<Hash> = if threads > 1 && pairs >= PARALLEL_MIN {
                let per = pairs.div_ceil(threads);
                std::thread::scope(|scope| {
                    let handles: Vec<_> = row[..pairs * 2]
                        .chunks(per * 2)
                        .map(|part| {
                            scope.spawn(move || {
                                part.chunks_exact(2)
                                    .map(|p| node_hash(&p[0], &p[1]))
                                    .collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    let mut out = Vec::with_capacity(pairs);
                    for h in handles {
                        match h.join() {
                            Ok(v) => out.extend(v),
                            // A hashing thread cannot panic on valid slices; recompute inline if it did.
                            Err(_) => out.clear(),
                        }
                    }
                    if out.len() != pairs {
                        out = row[..pairs * 2]
                            .chunks_exact(2)
                            .map(|p| node_hash(&p[0], &p[1]))
                            .collect();
                    }
                    out
                })
            } else {
                row.chunks_exact(2)
                    .map(|p| node_hash(&p[0], &p[1]))
                    .collect()
            };
            levels.push(next);
        }
        Self { levels }
    }

    /// Number of leaves.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append a leaf hash (already computed with [`leaf_hash`]).
    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let mut level = 0;
        let mut carry = leaf;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(carry);
            let n = row.len();
            if n % 2 == 1 {
                break;
            }
            carry = node_hash(&row[n - 2], &row[n - 1]);
            level += 1;
        }
    }

    /// The tree's right edge, from which roots of the tree extended by more leaves are computed
    /// without changing the tree.
    #[must_use]
    pub fn frontier(&self) -> Frontier {
        let n = self.len();
        let mut roots = Vec::new();
        let mut start = 0u64;
        for k in (0..64usize).rev() {
            if (n >> k) & 1 == 1 {
                let idx = usize::try_from(start >> k).unwrap_or(usize::MAX);
                if let Some(h) = self.levels.get(k).and_then(|row| row.get(idx)) {
                    roots.push(*h);
                }
                start += 1 << k;
            }
        }
        Frontier { size: n, roots }
    }

    /// Keep only the first `size` leaves (no-op when it holds fewer).
    pub fn truncate(&mut self, size: u64) {
        for (k, row) in self.levels.iter_mut().enumerate() {
            row.truncate(usize::try_from(size >> k).unwrap_or(usize::MAX));
        }
        while self.levels.len() > 1 && self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// Append the leaf for `data`.
    pub fn push(&mut self, data: &[u8]) {
        self.push_leaf_hash(leaf_hash(data));
    }

    /// The leaf hash at `index`, if present.
    #[must_use]
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// Hash of leaves `[start, end)`, where `start` is a multiple of the largest power of two
    /// not exceeding `end - start` (always true for the ranges RFC 6962 proofs use).
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            let idx = usize::try_from(start >> level).unwrap_or(usize::MAX);
            if let Some(h) = self.levels.get(level).and_then(|row| row.get(idx)) {
                return *h;
            }
        }
        if n == 1 {
            // Not reachable for in-range calls; keep total behaviour without panicking.
            return empty_root();
        }
        let k = split_point(n);
        node_hash(
            &self.range_hash(start, start + k),
            &self.range_hash(start + k, end),
        )
    }

    /// Root hash of the first `size` leaves.
    ///
    /// # Errors
    /// [`ProofError::SizeTooLarge`] when `size` exceeds the number of leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeTooLarge {
                size,
                have: self.len(),
            });
        }
        Ok(self.range_hash(0, size))
    }

    /// Root hash of the whole tree.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.range_hash(0, self.len())
    }

    /// Inclusion proof (RFC 6962 `PATH(m, D[n])`) for leaf `index` in the tree of `size` leaves.
    ///
    /// # Errors
    /// When `size` exceeds the tree or `index >= size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeTooLarge {
                size,
                have: self.len(),
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        let (mut m, mut start, mut end) = (index, 0u64, size);
        // Walk down from the root, collecting siblings; reversed at the end (leaf first).
        while end - start > 1 {
            let k = split_point(end - start);
            if m < k {
                proof.push(self.range_hash(start + k, end));
                end = start + k;
            } else {
                proof.push(self.range_hash(start, start + k));
                start += k;
                m -= k;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// Consistency proof (RFC 6962 `PROOF(m, D[n])`) between sizes `old` and `new`.
    ///
    /// # Errors
    /// When `new` exceeds the tree or not `0 < old <= new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if new > self.len() {
            return Err(ProofError::SizeTooLarge {
                size: new,
                have: self.len(),
            });
        }
        if old == 0 || old > new {
            return Err(ProofError::BadRange { old, new });
        }
        let mut proof = Vec::new();
        // SUBPROOF(m, D[start:end], b), iteratively; nodes are appended bottom-up at the end.
        let (mut m, mut start, mut end, mut complete) = (old, 0u64, new, true);
        let mut stack = Vec::new();
        loop {
            let n = end - start;
            if m == n {
                if !complete {
                    stack.push(self.range_hash(start, end));
                }
                break;
            }
            let k = split_point(n);
            if m <= k {
                stack.push(self.range_hash(start + k, end));
                end = start + k;
            } else {
                stack.push(self.range_hash(start, start + k));
                start += k;
                m -= k;
                complete = false;
            }
        }
        while let Some(h) = stack.pop() {
            proof.push(h);
        }
        Ok(proof)
    }
}

/// Verify an inclusion proof (RFC 9162 §2.1.3.2).
///
/// # Errors
/// When the index is outside the tree, the proof length is wrong, or the root does not match.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(VerifyError::WrongLength {
                got: proof.len(),
                expected: inclusion_len(index, size),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyError::WrongLength {
            got: proof.len(),
            expected: inclusion_len(index, size),
        });
    }
    if r == *root {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch)
    }
}

/// Number of hashes in an inclusion proof for `index` in a tree of `size` (index < size).
fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut len, mut start, mut end, mut m) = (0usize, 0u64, size, index);
    while end - start > 1 {
        let k = split_point(end - start);
        if m < k {
            end = start + k;
        } else {
            start += k;
            m -= k;
        }
        len += 1;
    }
    len
}

/// Verify a consistency proof between an old tree (`old`, `old_root`) and a new one
/// (`new`, `new_root`) (RFC 9162 §2.1.4.2).
///
/// # Errors
/// When the sizes cannot be related, the proof has the wrong shape, or either root differs.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old > new {
        return Err(VerifyError::BadRange { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(VerifyError::WrongLength {
                got: proof.len(),
                expected: 0,
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    if old == 0 {
        // Every tree is consistent with the empty tree; there is nothing to prove.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(VerifyError::WrongLength {
                got: proof.len(),
                expected: 0,
            })
        };
    }
    let (start, path) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => {
                return Err(VerifyError::WrongLength {
                    got: 0,
                    expected: 1,
                })
            }
        }
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in path {
        if sn == 0 {
            return Err(VerifyError::WrongLength {
                got: proof.len(),
                expected: proof.len() - 1,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyError::WrongLength {
            got: proof.len(),
            expected: proof.len() + 1,
        });
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(MerkleTree::new().root(), empty_root());
    }

    #[test]
    fn a_frontier_extends_to_the_same_roots_as_the_tree() {
        let mut tree = MerkleTree::new();
        for n in 0..70u64 {
            let mut f = tree.frontier();
            assert_eq!(f.len(), n);
            assert_eq!(f.root(), tree.root(), "size {n}");
            let mut ext = tree.clone();
            for k in 0..5u64 {
                let leaf = leaf_hash(&(n * 100 + k).to_le_bytes());
                f.push(leaf);
                ext.push_leaf_hash(leaf);
                assert_eq!(f.root(), ext.root(), "size {n} + {}", k + 1);
            }
            tree.push(&n.to_le_bytes());
        }
    }

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
    }

    #[test]
    fn parallel_build_equals_incremental_build() {
        for n in [0usize, 1, 2, 3, 5, 8, 13, 1000, 40_000, 65_537] {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let mut inc = MerkleTree::new();
            for l in &leaves {
                inc.push_leaf_hash(*l);
            }
            let par = MerkleTree::from_leaf_hashes(leaves, 3);
            assert_eq!(par.len(), inc.len());
            assert_eq!(par.root(), inc.root(), "n = {n}");
            if n > 2 {
                let m = (n / 3) as u64;
                assert_eq!(
                    par.inclusion_proof(m, n as u64).unwrap(),
                    inc.inclusion_proof(m, n as u64).unwrap()
                );
                assert_eq!(
                    par.consistency_proof(m + 1, n as u64).unwrap(),
                    inc.consistency_proof(m + 1, n as u64).unwrap()
                );
            }
            // And it keeps growing correctly.
            let mut par = par;
            par.push(b"next");
            inc.push(b"next");
            assert_eq!(par.root(), inc.root());
        }
    }

    #[test]
    fn out_of_range_requests_are_errors() {
        let mut t = MerkleTree::new();
        t.push(b"a");
        assert!(t.inclusion_proof(1, 1).is_err());
        assert!(t.inclusion_proof(0, 2).is_err());
        assert!(t.consistency_proof(0, 1).is_err());
        assert!(t.consistency_proof(1, 2).is_err());
        assert!(verify_inclusion(&leaf_hash(b"a"), 1, 1, &[], &t.root()).is_err());
    }
}
