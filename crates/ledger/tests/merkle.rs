//! Merkle tree tests: RFC 6962 / transparency-dev vectors, and proofs for every tree size up to
//! a few thousand checked against a straightforward recursive reference implementation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tidegate_ledger::merkle::{
    empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, MerkleTree,
};

// ---------- reference: the RFC 6962 §2.1 definitions, written as literally as possible ----------

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[start:end]) straight from the definition; `memo` only caches results already computed
/// (keyed by range), so the thousands of tree sizes below stay fast in a debug build.
struct Reference<'a> {
    d: &'a [Hash],
    memo: std::collections::HashMap<(usize, usize), Hash>,
}

impl<'a> Reference<'a> {
    fn new(d: &'a [Hash]) -> Self {
        Self {
            d,
            memo: std::collections::HashMap::new(),
        }
    }

    fn mth(&mut self, start: usize, end: usize) -> Hash {
        if let Some(h) = self.memo.get(&(start, end)) {
            return *h;
        }
        let h = match end - start {
            0 => empty_root(),
            1 => self.d[start],
            n => {
                let k = k_of(n);
                let l = self.mth(start, start + k);
                let r = self.mth(start + k, end);
                node_hash(&l, &r)
            }
        };
        self.memo.insert((start, end), h);
        h
    }

    /// PATH(m, D[start:end]).
    fn path(&mut self, m: usize, start: usize, end: usize) -> Vec<Hash> {
        let n = end - start;
        if n <= 1 {
            return Vec::new();
        }
        let k = k_of(n);
        if m < k {
            let mut p = self.path(m, start, start + k);
            p.push(self.mth(start + k, end));
            p
        } else {
            let mut p = self.path(m - k, start + k, end);
            p.push(self.mth(start, start + k));
            p
        }
    }

    /// SUBPROOF(m, D[start:end], b).
    fn subproof(&mut self, m: usize, start: usize, end: usize, b: bool) -> Vec<Hash> {
        let n = end - start;
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![self.mth(start, end)]
            };
        }
        let k = k_of(n);
        if m <= k {
            let mut p = self.subproof(m, start, start + k, b);
            p.push(self.mth(start + k, end));
            p
        } else {
            let mut p = self.subproof(m - k, start + k, end, false);
            p.push(self.mth(start, start + k));
            p
        }
    }
}

fn ref_mth(leaves: &[Hash]) -> Hash {
    Reference::new(leaves).mth(0, leaves.len())
}

fn ref_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    Reference::new(leaves).path(m, 0, leaves.len())
}

fn ref_consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    Reference::new(leaves).subproof(m, 0, leaves.len(), true)
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("entry-{i}").as_bytes()))
        .collect()
}

fn tree_of(hashes: &[Hash]) -> MerkleTree {
    let mut t = MerkleTree::new();
    for h in hashes {
        t.push_leaf_hash(*h);
    }
    t
}

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

// ---------- published vectors ----------

const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn ct_tree() -> MerkleTree {
    let mut t = MerkleTree::new();
    for l in CT_LEAVES {
        t.push(&hex::decode(l).unwrap());
    }
    t
}

#[test]
fn rfc6962_roots_for_every_size() {
    let t = ct_tree();
    for (size, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(
            hex::encode(t.root_at(size as u64).unwrap()),
            *want,
            "size {size}"
        );
    }
}

#[test]
fn rfc6962_inclusion_vectors() {
    let t = ct_tree();
    let cases: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let proof = t.inclusion_proof(index, size).unwrap();
        let got: Vec<String> = proof.iter().map(hex::encode).collect();
        assert_eq!(got, want, "inclusion of {index} in {size}");
        let leaf = t.leaf(index).unwrap();
        verify_inclusion(&leaf, index, size, &proof, &h(CT_ROOTS[size as usize])).unwrap();
    }
}

#[test]
fn rfc6962_consistency_vectors() {
    let t = ct_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, want) in cases {
        let proof = t.consistency_proof(old, new).unwrap();
        let got: Vec<String> = proof.iter().map(hex::encode).collect();
        assert_eq!(got, want, "consistency {old} -> {new}");
        verify_consistency(
            old,
            new,
            &h(CT_ROOTS[old as usize]),
            &h(CT_ROOTS[new as usize]),
            &proof,
        )
        .unwrap();
    }
    // A wrong old root (a rewritten history) is rejected.
    let proof = t.consistency_proof(6, 8).unwrap();
    assert!(verify_consistency(6, 8, &h(CT_ROOTS[5]), &h(CT_ROOTS[8]), &proof).is_err());
}

// ---------- every size up to a few thousand ----------

const MAX_N: usize = 2100;

#[test]
fn roots_and_proofs_match_reference_for_every_size() {
    let all = leaves(MAX_N);
    let mut reference = Reference::new(&all);
    let mut t = MerkleTree::new();
    for n in 1..=MAX_N {
        t.push_leaf_hash(all[n - 1]);
        let root = reference.mth(0, n);
        assert_eq!(t.root(), root, "root at size {n}");
        // A spread of leaf indices and old sizes per tree size (first, last, middle, pseudo-random).
        let pick = |salt: usize| (n.wrapping_mul(2_654_435_761) ^ salt) % n;
        for m in [0, n - 1, n / 2, pick(17)] {
            let proof = t.inclusion_proof(m as u64, n as u64).unwrap();
            assert_eq!(proof, reference.path(m, 0, n), "inclusion {m} in {n}");
            verify_inclusion(&all[m], m as u64, n as u64, &proof, &root).unwrap();
        }
        for old in [1, n, n / 2 + 1, 1 + pick(91)] {
            let old = old.min(n);
            let proof = t.consistency_proof(old as u64, n as u64).unwrap();
            assert_eq!(
                proof,
                reference.subproof(old, 0, n, true),
                "consistency {old} -> {n}"
            );
            let old_root = reference.mth(0, old);
            verify_consistency(old as u64, n as u64, &old_root, &root, &proof).unwrap();
        }
    }
}

#[test]
fn every_index_and_every_pair_verifies_and_tampering_fails_up_to_300() {
    let all = leaves(300);
    let t = tree_of(&all);
    let roots: Vec<Hash> = (0..=300u64).map(|n| t.root_at(n).unwrap()).collect();
    for n in 1..=300u64 {
        let root = roots[n as usize];
        for m in 0..n {
            let proof = t.inclusion_proof(m, n).unwrap();
            let leaf = all[m as usize];
            verify_inclusion(&leaf, m, n, &proof, &root).unwrap();
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0][0] ^= 1;
                assert!(verify_inclusion(&leaf, m, n, &bad, &root).is_err());
                assert!(verify_inclusion(&leaf, m, n, &proof[1..], &root).is_err());
                let mut long = proof.clone();
                long.push(*first);
                assert!(verify_inclusion(&leaf, m, n, &long, &root).is_err());
            }
            assert!(verify_inclusion(&leaf, m + 1, n, &proof, &root).is_err());
            let mut other = leaf;
            other[31] ^= 0x80;
            assert!(verify_inclusion(&other, m, n, &proof, &root).is_err());
        }
        for old in 1..=n {
            let proof = t.consistency_proof(old, n).unwrap();
            let old_root = roots[old as usize];
            verify_consistency(old, n, &old_root, &root, &proof).unwrap();
            if old < n {
                let mut bad = proof.clone();
                let last = bad.len() - 1;
                bad[last][5] ^= 4;
                assert!(verify_consistency(old, n, &old_root, &root, &bad).is_err());
                assert!(verify_consistency(old, n, &old_root, &root, &proof[..last]).is_err());
                let mut forged_old = old_root;
                forged_old[0] ^= 1;
                assert!(verify_consistency(old, n, &forged_old, &root, &proof).is_err());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sizes_match_reference(n in 1usize..4097, a in any::<usize>(), b in any::<usize>()) {
        let all = leaves(n);
        let t = tree_of(&all);
        let root = ref_mth(&all);
        prop_assert_eq!(t.root(), root);
        let m = a % n;
        let proof = t.inclusion_proof(m as u64, n as u64).unwrap();
        prop_assert_eq!(&proof, &ref_path(m, &all));
        prop_assert!(verify_inclusion(&all[m], m as u64, n as u64, &proof, &root).is_ok());
        let old = 1 + b % n;
        let cproof = t.consistency_proof(old as u64, n as u64).unwrap();
        prop_assert_eq!(&cproof, &ref_consistency(old, &all));
        prop_assert!(verify_consistency(old as u64, n as u64, &ref_mth(&all[..old]), &root, &cproof).is_ok());
    }

    #[test]
    fn rewritten_history_is_never_consistent(n in 2usize..1500, a in any::<usize>(), b in any::<usize>()) {
        // Change one leaf below the old size: the old root no longer extends to the new tree.
        let mut all = leaves(n);
        let old = 1 + a % (n - 1);
        let old_root = ref_mth(&all[..old]);
        all[b % old] = leaf_hash(b"rewritten");
        let t = tree_of(&all);
        let proof = t.consistency_proof(old as u64, n as u64).unwrap();
        prop_assert!(verify_consistency(old as u64, n as u64, &old_root, &t.root(), &proof).is_err());
    }
}
