//! Evidence bundles: one self-contained, offline-verifiable file about a job, dataset or model.
//!
//! A bundle (`tidegate-evidence/v2`) is RFC 8785 canonical JSON holding: the subject; every
//! entry about it and about its lineage neighbours (entries that share a job, dataset, model,
//! artifact, checkpoint or token id with the subject's entries, plus the `policy.loaded` entries
//! of the policies that decided), each as its exact canonical bytes with an inclusion proof; the
//! signed checkpoint those proofs lead to (ledger signature only); and the documents the entries
//! refer to by digest (policy texts, justifications, reports), base64-encoded.
//!
//! It also carries the subject's entry in the subject map ([`crate::subjects`]) with its proof to
//! the root the checkpoint signs: the verifier recomputes the hash chain over the bundle's entries
//! about the subject, so a bundle that lacks one of them, holds one the ledger does not, or was
//! re-labelled to another subject does not verify. (Completeness is proven for the subject;
//! lineage entries are a selection and are proven included, one by one.)
//!
//! [`verify_bundle`] needs only the bundle and the ledger's public key. It rejects a bundle if
//! any byte differs from its canonical form, and otherwise names what failed: the checkpoint
//! signature, an entry (by index), an inclusion proof (by index), or a document (by digest).
//! Building and verifying are pure; reading the log and documents is the caller's job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::checkpoint::{Checkpoint, NoteVerifier, SignedNote};
use crate::entry::{Action, Digest, Entry, Subject, SubjectKind};
use crate::merkle::{leaf_hash, verify_inclusion, MerkleTree};
use crate::subjects::{self, Head, MapProof, SubjectMap};

/// Format identifier written into every bundle.
pub const FORMAT: &str = "tidegate-evidence/v2";

/// The bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// What the bundle is about.
    pub subject: Subject,
    /// The signed checkpoint (C2SP signed note text).
    pub checkpoint: String,
    /// Entries with their inclusion proofs, by increasing index.
    pub entries: Vec<BundleEntry>,
    /// Documents referenced by the entries, by increasing digest.
    pub documents: Vec<Document>,
    /// The subject's bucket of the subject map, with the path to the root the checkpoint signs.
    pub subject_map: MapProofDoc,
    /// Earlier checkpoints the bundle's checkpoint is proven to extend: the newest one a witness
    /// co-signed (with its co-signatures), and one an auditor kept (`--since`).
    pub anchors: Vec<Anchor>,
}

/// An earlier checkpoint and the consistency proof from it to the bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The checkpoint note (the log's signature, and any witness co-signatures).
    pub checkpoint: String,
    /// Consistency proof hashes (hex) from its size to the bundle's checkpoint size.
    pub proof: Vec<String>,
}

/// What [`verify_bundle_with`] requires beyond a valid bundle.
#[derive(Debug, Clone, Default)]
pub struct Require {
    /// Witness keys (`cosignature/v1`), each of which must have co-signed a checkpoint the
    /// bundle's checkpoint extends.
    pub witnesses: Vec<NoteVerifier>,
    /// A checkpoint the auditor kept: the bundle's checkpoint must extend it.
    pub since: Option<SignedNote>,
}

/// A witness co-signature a verified bundle carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// The witness key's name.
    pub witness: String,
    /// The size of the checkpoint it co-signed.
    pub size: u64,
    /// When it co-signed (Unix seconds).
    pub at: u64,
}

/// A [`MapProof`] as it is written into a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapProofDoc {
    /// Every subject of the bucket, ascending by key.
    pub bucket: Vec<MapItem>,
    /// Sibling hashes (hex), bucket side first.
    pub siblings: Vec<String>,
}

/// One subject of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapItem {
    /// The subject's key (hex).
    pub key: String,
    /// Entries about it.
    pub count: u64,
    /// The newest of them.
    pub last: u64,
    /// The hash chain over them (hex).
    pub chain: String,
}

impl MapProofDoc {
    fn from_proof(p: &MapProof) -> Self {
        Self {
            bucket: p
                .bucket
                .iter()
                .map(|(k, h)| MapItem {
                    key: hex::encode(k),
                    count: h.count,
                    last: h.last,
                    chain: hex::encode(h.chain),
                })
                .collect(),
            siblings: p.siblings.iter().map(hex::encode).collect(),
        }
    }

    fn to_proof(&self) -> Result<MapProof, String> {
        let bucket = self
            .bucket
            .iter()
            .map(|i| {
                Ok((
                    hash_hex(&i.key)?,
                    Head {
                        count: i.count,
                        last: i.last,
                        chain: hash_hex(&i.chain)?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let siblings = self
            .siblings
            .iter()
            .map(|s| hash_hex(s))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(MapProof { bucket, siblings })
    }
}

/// A 32-byte hash written as lowercase hex.
fn hash_hex(h: &str) -> Result<[u8; 32], String> {
    let raw = hex::decode(h).map_err(|e| e.to_string())?;
    if hex::encode(&raw) != *h {
        return Err("hash is not lowercase hex".to_owned());
    }
    <[u8; 32]>::try_from(raw).map_err(|_| "hash is not 32 bytes".to_owned())
}

/// One entry and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// Leaf index.
    pub index: u64,
    /// The entry's canonical JSON, exactly as hashed.
    pub entry: String,
    /// Inclusion proof hashes (hex), leaf side first.
    pub proof: Vec<String>,
}

/// A document attached by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// `sha256:` digest of the content.
    pub digest: Digest,
    /// The content, standard base64.
    pub content: String,
}

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The checkpoint does not belong to this tree.
    #[error("checkpoint does not match the log: {0}")]
    Checkpoint(String),
    /// An entry in the log does not decode.
    #[error("entry {index} does not decode: {why}")]
    Entry {
        /// The entry.
        index: u64,
        /// Why.
        why: String,
    },
    /// No entry mentions the subject.
    #[error("no ledger entry mentions {kind} {id}")]
    NoEntries {
        /// Subject kind.
        kind: &'static str,
        /// Subject id.
        id: String,
    },
    /// Encoding failed.
    #[error("could not encode the bundle: {0}")]
    Encode(String),
}

/// Why a bundle did not verify. Each variant says what was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON of the bundle shape.
    #[error("not an evidence bundle: {0}")]
    Parse(String),
    /// The bytes differ from the canonical encoding of what they parse to.
    #[error("bundle bytes were altered: not in canonical form from byte {offset}")]
    NotCanonical {
        /// First differing byte offset.
        offset: usize,
    },
    /// Unknown format string.
    #[error("unknown bundle format {0:?}")]
    Format(String),
    /// The checkpoint is malformed or its signature does not verify.
    #[error("checkpoint signature: {0}")]
    Checkpoint(String),
    /// An entry is malformed or not at its claimed index.
    #[error("entry {index}: {why}")]
    Entry {
        /// The entry index.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// An inclusion proof does not lead to the signed root.
    #[error(
        "entry {index}: inclusion proof does not verify against the signed checkpoint ({why})"
    )]
    Proof {
        /// The entry index.
        index: u64,
        /// What failed.
        why: String,
    },
    /// A document's content does not match its digest, or it is not referenced.
    #[error("document {digest}: {why}")]
    Document {
        /// The digest it claims.
        digest: String,
        /// What is wrong.
        why: String,
    },
    /// No entry in the bundle is about the named subject.
    #[error("no entry in the bundle mentions the subject {0}")]
    Subject(String),
    /// The bundle's entries about its subject are not all the ledger holds about it.
    #[error("incomplete: {0}")]
    Incomplete(String),
    /// An anchor (an earlier checkpoint) is not signed by the log, or the bundle's checkpoint is
    /// not proven to extend it.
    #[error("anchor at size {size}: {why}")]
    Anchor {
        /// Its size (0 when it does not parse).
        size: u64,
        /// What failed.
        why: String,
    },
    /// A required witness or auditor checkpoint is not met.
    #[error("{0}")]
    Required(String),
}

/// A bundle whose every byte checked out.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The subject.
    pub subject: Subject,
    /// The signed checkpoint.
    pub checkpoint: Checkpoint,
    /// The signer's key (name and id).
    pub signer: String,
    /// Entries, by index.
    pub entries: Vec<Entry>,
    /// Documents by digest.
    pub documents: BTreeMap<Digest, Vec<u8>>,
    /// Witness co-signatures on checkpoints the bundle's checkpoint is proven to extend.
    pub witnessed: Vec<Witnessed>,
    /// Sizes of the anchors proven extended (witnessed or the auditor's).
    pub extends: Vec<u64>,
}

fn lineage_kind(k: SubjectKind) -> bool {
    matches!(
        k,
        SubjectKind::Job
            | SubjectKind::Dataset
            | SubjectKind::Model
            | SubjectKind::Artifact
            | SubjectKind::Checkpoint
            | SubjectKind::Token
    )
}

/// Which of `entries` (positions in the slice) belong in a bundle about `subject`: every entry
/// about it; entries that share a lineage subject (dataset, model, artifact, checkpoint, token)
/// with those, except, in a job's bundle, entries about other jobs (other people's evidence); and
/// the `policy.loaded` entries of the policies that decided. Empty when no entry is about the
/// subject. The builder applies it to the whole log, the verifier to the bundle's own entries:
/// an honest bundle selects all of itself, so an entry added from elsewhere in the log is caught.
fn select(subject: &Subject, entries: &[Entry]) -> BTreeSet<usize> {
    let direct: BTreeSet<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.subjects.contains(subject))
        .map(|(i, _)| i)
        .collect();
    if direct.is_empty() {
        return direct;
    }
    let ids: BTreeSet<&Subject> = direct
        .iter()
        .flat_map(|i| entries[*i].subjects.iter())
        .filter(|s| lineage_kind(s.kind))
        .collect();
    let about_other_job = |e: &Entry| {
        subject.kind == SubjectKind::Job
            && e.subjects
                .iter()
                .any(|s| s.kind == SubjectKind::Job && s != subject)
    };
    let mut chosen: BTreeSet<usize> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            direct.contains(i)
                || (e.subjects.iter().any(|s| ids.contains(s)) && !about_other_job(e))
        })
        .map(|(i, _)| i)
        .collect();
    let policies: BTreeSet<&Digest> = chosen
        .iter()
        .filter_map(|i| match &entries[*i].action {
            Action::JobPlaced { policy_hash, .. }
            | Action::JobRevoked { policy_hash, .. }
            | Action::JobAdmitted { policy_hash, .. } => Some(policy_hash),
            _ => None,
        })
        .collect();
    for (i, e) in entries.iter().enumerate() {
        if let Action::PolicyLoaded { policy_hash } = &e.action {
            if policies.contains(policy_hash) {
                chosen.insert(i);
            }
        }
    }
    chosen
}

/// Build a bundle about `subject` from the log's entries (canonical bytes, by index), its tree,
/// its subject map and a signed checkpoint of that whole log; `document` looks attached
/// documents up by digest.
///
/// # Errors
/// See [`BuildError`].
#[allow(clippy::too_many_arguments)]
pub fn build_bundle(
    entries: &[Vec<u8>],
    tree: &MerkleTree,
    map: &mut SubjectMap,
    note: &SignedNote,
    anchors: &[SignedNote],
    verifier: &NoteVerifier,
    subject: &Subject,
    document: impl Fn(&Digest) -> Option<Vec<u8>>,
) -> Result<Bundle, BuildError> {
    let cp = note
        .checkpoint()
        .map_err(|e| BuildError::Checkpoint(e.to_string()))?;
    if tree.root_at(cp.size).ok() != Some(cp.root) {
        return Err(BuildError::Checkpoint(format!(
            "root at size {} differs",
            cp.size
        )));
    }
    // Completeness is proven against the map of exactly this log: the checkpoint must be of the
    // whole log and commit to the map the log produces.
    if cp.size != tree.len() || entries.len() as u64 != tree.len() {
        return Err(BuildError::Checkpoint(format!(
            "the checkpoint is at size {} but the log holds {} entries",
            cp.size,
            tree.len()
        )));
    }
    if cp.subjects != Some(map.root()) {
        return Err(BuildError::Checkpoint(
            "the checkpoint does not commit to the log's subject map".into(),
        ));
    }
    let map_proof = map.proof(&subjects::key(subject.kind, subject.id.as_str()));
    let size = usize::try_from(cp.size)
        .unwrap_or(usize::MAX)
        .min(entries.len());
    let decoded = entries[..size]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Entry::decode(b).map_err(|e| BuildError::Entry {
                index: i as u64,
                why: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let chosen = select(subject, &decoded);
    if chosen.is_empty() {
        return Err(BuildError::NoEntries {
            kind: subject.kind.as_str(),
            id: subject.id.to_string(),
        });
    }
    let mut out_entries = Vec::with_capacity(chosen.len());
    let mut digests = BTreeSet::new();
    for i in chosen {
        let proof = tree
            .inclusion_proof(i as u64, cp.size)
            .map_err(|e| BuildError::Checkpoint(e.to_string()))?;
        let text = String::from_utf8(entries[i].clone()).map_err(|e| BuildError::Entry {
            index: i as u64,
            why: e.to_string(),
        })?;
        out_entries.push(BundleEntry {
            index: i as u64,
            entry: text,
            proof: proof.iter().map(hex::encode).collect(),
        });
        digests.extend(decoded[i].action.digests().into_iter().cloned());
    }
    let documents = digests
        .into_iter()
        .filter_map(|d| {
            document(&d)
                .filter(|c| Digest::of(c) == d)
                .map(|c| Document {
                    digest: d,
                    content: B64.encode(c),
                })
        })
        .collect();
    let mut log_only = note.clone();
    log_only
        .signatures
        .retain(|s| s.name == verifier.name && s.key_id == verifier.key_id);
    let mut anchored = Vec::with_capacity(anchors.len());
    for a in anchors {
        let acp = a
            .checkpoint()
            .map_err(|e| BuildError::Checkpoint(format!("an earlier checkpoint: {e}")))?;
        if acp.size > cp.size || tree.root_at(acp.size).ok() != Some(acp.root) {
            return Err(BuildError::Checkpoint(format!(
                "the log does not extend the earlier checkpoint at size {}: history was rewritten",
                acp.size
            )));
        }
        let proof = tree
            .consistency_proof(acp.size, cp.size)
            .map_err(|e| BuildError::Checkpoint(e.to_string()))?;
        anchored.push(Anchor {
            checkpoint: a.to_text(),
            proof: proof.iter().map(hex::encode).collect(),
        });
    }
    Ok(Bundle {
        format: FORMAT.to_owned(),
        subject: subject.clone(),
        checkpoint: log_only.to_text(),
        entries: out_entries,
        documents,
        subject_map: MapProofDoc::from_proof(&map_proof),
        anchors: anchored,
    })
}

/// The canonical bytes of a bundle (what is written to the file).
///
/// # Errors
/// When encoding fails.
pub fn encode_bundle(b: &Bundle) -> Result<Vec<u8>, BuildError> {
    canonical::to_vec_of(b).map_err(|e| BuildError::Encode(e.to_string()))
}

/// Verify a bundle offline with the ledger's public key.
///
/// # Errors
/// The first problem found; see [`BundleError`].
pub fn verify_bundle(bytes: &[u8], verifier: &NoteVerifier) -> Result<VerifiedBundle, BundleError> {
    verify_bundle_with(bytes, verifier, &Require::default())
}

/// Verify a bundle offline with the ledger's public key, and require what `require` names:
/// witness co-signatures, and an auditor's earlier checkpoint, each on a checkpoint the bundle's
/// checkpoint is proven to extend.
///
/// # Errors
/// The first problem found; see [`BundleError`].
pub fn verify_bundle_with(
    bytes: &[u8],
    verifier: &NoteVerifier,
    require: &Require,
) -> Result<VerifiedBundle, BundleError> {
    let b: Bundle = serde_json::from_slice(bytes).map_err(|e| BundleError::Parse(e.to_string()))?;
    let canon = canonical::to_vec_of(&b).map_err(|e| BundleError::Parse(e.to_string()))?;
    if canon != bytes {
        let offset = canon
            .iter()
            .zip(bytes)
            .position(|(a, c)| a != c)
            .unwrap_or(canon.len().min(bytes.len()));
        return Err(BundleError::NotCanonical { offset });
    }
    if b.format != FORMAT {
        return Err(BundleError::Format(b.format));
    }
    let note =
        SignedNote::parse(&b.checkpoint).map_err(|e| BundleError::Checkpoint(e.to_string()))?;
    note.verify(verifier)
        .map_err(|e| BundleError::Checkpoint(e.to_string()))?;
    if note.signatures.len() != 1 {
        return Err(BundleError::Checkpoint(
            "signature lines by other keys are not allowed in a bundle".into(),
        ));
    }
    let cp = note
        .checkpoint()
        .map_err(|e| BundleError::Checkpoint(e.to_string()))?;
    let mut entries = Vec::with_capacity(b.entries.len());
    let mut last: Option<u64> = None;
    for be in &b.entries {
        let index = be.index;
        if last.is_some_and(|l| index <= l) {
            return Err(BundleError::Entry {
                index,
                why: "entries are not in increasing index order".into(),
            });
        }
        last = Some(index);
        let e = Entry::decode(be.entry.as_bytes()).map_err(|e| BundleError::Entry {
            index,
            why: e.to_string(),
        })?;
        if e.seq != index {
            return Err(BundleError::Entry {
                index,
                why: format!("entry says seq {}", e.seq),
            });
        }
        let proof = be
            .proof
            .iter()
            .map(|h| hash_hex(h).map_err(|why| format!("proof {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| BundleError::Proof { index, why })?;
        verify_inclusion(
            &leaf_hash(be.entry.as_bytes()),
            index,
            cp.size,
            &proof,
            &cp.root,
        )
        .map_err(|e| BundleError::Proof {
            index,
            why: e.to_string(),
        })?;
        entries.push(e);
    }
    let named = format!("{} {}", b.subject.kind.as_str(), b.subject.id);
    if !entries.iter().any(|e| e.subjects.contains(&b.subject)) {
        return Err(BundleError::Subject(named));
    }
    // Complete: the chain over the bundle's entries about the subject is the one the signed
    // subject map holds for it.
    let map_root = cp.subjects.ok_or_else(|| {
        BundleError::Incomplete("the checkpoint commits to no subject map".into())
    })?;
    let proof = b
        .subject_map
        .to_proof()
        .map_err(|why| BundleError::Incomplete(format!("subject map proof: {why}")))?;
    let head = subjects::verify_proof(
        &map_root,
        &subjects::key(b.subject.kind, b.subject.id.as_str()),
        &proof,
    )
    .map_err(|e| BundleError::Incomplete(e.to_string()))?
    .ok_or_else(|| BundleError::Incomplete(format!("the ledger names {named} in no entry")))?;
    let held = b
        .entries
        .iter()
        .zip(&entries)
        .filter(|(_, e)| e.subjects.contains(&b.subject))
        .fold(Head::default(), |h, (be, _)| {
            h.then(be.index, &leaf_hash(be.entry.as_bytes()))
        });
    if held != head {
        return Err(BundleError::Incomplete(if held.count == head.count {
            format!("the bundle's entries about {named} are not the ones the ledger holds (its newest is at index {})", head.last)
        } else {
            format!(
                "the bundle holds {} entries about {named} but the ledger holds {} (the newest at index {})",
                held.count, head.count, head.last
            )
        }));
    }
    let chosen = select(&b.subject, &entries);
    if let Some((_, e)) = entries
        .iter()
        .enumerate()
        .find(|(i, _)| !chosen.contains(i))
    {
        return Err(BundleError::Entry {
            index: e.seq,
            why: format!("it is not part of the evidence about {named} (neither about it, nor lineage of what it used, nor a policy that decided)"),
        });
    }
    let referenced: BTreeSet<&Digest> = entries.iter().flat_map(|e| e.action.digests()).collect();
    let mut documents = BTreeMap::new();
    for d in &b.documents {
        let digest = d.digest.to_string();
        let content = B64.decode(&d.content).map_err(|e| BundleError::Document {
            digest: digest.clone(),
            why: e.to_string(),
        })?;
        if Digest::of(&content) != d.digest {
            return Err(BundleError::Document {
                digest,
                why: "content does not match its digest".into(),
            });
        }
        if !referenced.contains(&d.digest) {
            return Err(BundleError::Document {
                digest,
                why: "not referenced by any entry in the bundle".into(),
            });
        }
        if documents.insert(d.digest.clone(), content).is_some() {
            return Err(BundleError::Document {
                digest,
                why: "attached twice".into(),
            });
        }
    }
    let (witnessed, extends) = check_anchors(&b.anchors, verifier, &cp, require)?;
    Ok(VerifiedBundle {
        subject: b.subject,
        checkpoint: cp,
        signer: format!("{} ({})", verifier.name, hex::encode(verifier.key_id)),
        entries,
        documents,
        witnessed,
        extends,
    })
}

/// Every anchor is signed by the log and proven extended by `cp`; then what `require` names holds.
fn check_anchors(
    anchors: &[Anchor],
    verifier: &NoteVerifier,
    cp: &Checkpoint,
    require: &Require,
) -> Result<(Vec<Witnessed>, Vec<u64>), BundleError> {
    let mut proven: Vec<(SignedNote, Checkpoint)> = Vec::with_capacity(anchors.len());
    for a in anchors {
        let bad = |size: u64, why: String| BundleError::Anchor { size, why };
        let note = SignedNote::parse(&a.checkpoint).map_err(|e| bad(0, e.to_string()))?;
        let acp = note.checkpoint().map_err(|e| bad(0, e.to_string()))?;
        note.verify(verifier)
            .map_err(|e| bad(acp.size, format!("log signature: {e}")))?;
        let proof = a
            .proof
            .iter()
            .map(|h| hash_hex(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| bad(acp.size, format!("consistency proof {why}")))?;
        crate::merkle::verify_consistency(acp.size, cp.size, &acp.root, &cp.root, &proof).map_err(
            |e| {
                bad(
                    acp.size,
                    format!("the bundle's checkpoint does not extend it: {e}"),
                )
            },
        )?;
        proven.push((note, acp));
    }
    let mut witnessed = Vec::new();
    // A witness vouches for the bundle only by co-signing the bundle's own checkpoint: one that
    // merely extends an older co-signed checkpoint could be a cut or rewritten tail.
    for w in &require.witnesses {
        let found = proven
            .iter()
            .filter(|(_, acp)| acp.size == cp.size && acp.root == cp.root)
            .find_map(|(n, acp)| {
                n.verified_signature(w)
                    .ok()
                    .map(|s| (acp.size, s.timestamp))
            });
        match found {
            Some((size, at)) => witnessed.push(Witnessed {
                witness: w.name.clone(),
                size,
                at: at.unwrap_or(0),
            }),
            None => {
                return Err(BundleError::Required(format!(
                    "the bundle's checkpoint (size {}) is not co-signed by witness {} ({}); ask it with `tidegate audit witness --url`, then write the bundle again",
                    cp.size,
                    w.name,
                    hex::encode(w.key_id)
                )))
            }
        }
    }
    // Co-signatures the bundle carries by keys not asked for are not reported: unverified.
    if let Some(since) = &require.since {
        let scp = since
            .checkpoint()
            .map_err(|e| BundleError::Required(format!("--since: {e}")))?;
        since.verify(verifier).map_err(|e| {
            BundleError::Required(format!("--since: not signed by the ledger key: {e}"))
        })?;
        let extends = (scp.size == cp.size && scp.root == cp.root)
            || proven
                .iter()
                .any(|(_, a)| a.size == scp.size && a.root == scp.root);
        if !extends {
            return Err(BundleError::Required(format!(
                "the bundle does not prove that its checkpoint (size {}) extends the one kept (size {}): write it with `--since` that checkpoint; if it was, history was rewritten",
                cp.size, scp.size
            )));
        }
    }
    let extends = proven.iter().map(|(_, a)| a.size).collect();
    Ok((witnessed, extends))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for unix milliseconds (proleptic Gregorian, UTC).
#[must_use]
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn subjects_text(e: &Entry) -> String {
    e.subjects
        .iter()
        .map(|s| format!("{} {}", s.kind.as_str(), s.id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn doc_note(v: &VerifiedBundle, d: &Digest) -> String {
    match v.documents.get(d) {
        Some(c) => format!("{d} (attached, {} bytes, digest checked)", c.len()),
        None => format!("{d} (document not attached)"),
    }
}

/// A plain-language summary: where it ran and why that was allowed; what data moved, where, when
/// and in what form; who approved what. Built only from the verified entries.
#[must_use]
pub fn summary(v: &VerifiedBundle) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Evidence for {} {}: VERIFIED",
        v.subject.kind.as_str(),
        v.subject.id
    );
    let _ = writeln!(
        s,
        "  checkpoint: log {} at size {}, signed by {}; {} entries, each proven included; {} documents, digests checked",
        v.checkpoint.origin,
        v.checkpoint.size,
        v.signer,
        v.entries.len(),
        v.documents.len()
    );
    for w in &v.witnessed {
        let _ = writeln!(
            s,
            "  witnessed: witness {} co-signed this checkpoint (size {}) at {}",
            w.witness,
            w.size,
            format_time(w.at.saturating_mul(1000))
        );
    }
    let _ = writeln!(
        s,
        "  complete: these are all {} entries the ledger holds about {} {} up to size {} (proven by the signed subject map)",
        v.entries.iter().filter(|e| e.subjects.contains(&v.subject)).count(),
        v.subject.kind.as_str(),
        v.subject.id,
        v.checkpoint.size
    );
    let (mut ran, mut moved, mut approved, mut other) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in &v.entries {
        let at = format_time(e.ts_ms);
        let who = &e.actor;
        let what = subjects_text(e);
        let idx = e.seq;
        match &e.action {
            Action::JobPlaced { decision, zone, pool, reasons, policy_hash } => ran.push(format!(
                "{at} [{idx}] {what}: placement {decision:?} in zone {zone}, pool {pool}, decided by {who}; reasons: {}; policy {}",
                reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                doc_note(v, policy_hash)
            )),
            Action::JobRevoked { zone, pool, run, reasons, policy_hash } => ran.push(format!(
                "{at} [{idx}] {what}: run {run} in zone {zone}, pool {pool} withdrawn by {who}: no longer allowed; reasons: {}; policy {}",
                reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                doc_note(v, policy_hash)
            )),
            Action::JobAdmitted { zone, pool, run, policy_hash } => ran.push(format!(
                "{at} [{idx}] {what}: run {run} admitted to zone {zone}, pool {pool} by {who}; policy {}",
                doc_note(v, policy_hash)
            )),
            Action::ArtifactDeployed { artifact, deployment } => ran.push(format!(
                "{at} [{idx}] {what}: {artifact} deployed as {deployment} by {who}"
            )),
            Action::JobRun { zone, pool, run, event } => ran.push(format!(
                "{at} [{idx}] {what}: run {run} in zone {zone}, pool {pool}: {event}"
            )),
            Action::JobBurst { zone, pool, justification } => ran.push(format!(
                "{at} [{idx}] {what}: burst to zone {zone}, pool {pool}, by {who}; business justification {}",
                doc_note(v, justification)
            )),
            Action::PolicyLoaded { policy_hash } => {
                ran.push(format!("{at} [{idx}] policy set loaded by {who}: {}", doc_note(v, policy_hash)));
            }
            Action::DatasetCopied { version, from_zone, to_zone, form, content, bytes, report } => moved.push(format!(
                "{at} [{idx}] {what}: version {version} copied from zone {from_zone} to zone {to_zone} as {form:?}, {bytes} bytes (content {content}){}, by {who}",
                report.as_ref().map(|r| format!("; sanitizer report {}", doc_note(v, r))).unwrap_or_default()
            )),
            Action::DatasetRegistered { version, snapshot, level, zone, report, .. } => moved.push(format!(
                "{at} [{idx}] {what}: version {version} registered in zone {zone} as {level} (snapshot {snapshot}){}, by {who}",
                report.as_ref().map(|r| format!("; classification earned by sanitizer report {}", doc_note(v, r))).unwrap_or_default()
            )),
            Action::ArtifactDeployedEdge { artifact, site } => {
                moved.push(format!("{at} [{idx}] {what}: artifact {artifact} deployed to edge site {site} by {who}"));
            }
            Action::CheckpointArchived { checkpoint, zone } => {
                moved.push(format!("{at} [{idx}] {what}: checkpoint {checkpoint} archived in zone {zone} by {who}"));
            }
            Action::JobApproved { scope } => approved.push(format!("{at} [{idx}] {who} approved {scope} for {what}")),
            Action::ArtifactSigned { artifact, key_id, signature } => approved.push(format!(
                "{at} [{idx}] {who} signed artifact {artifact} ({what}) with key {key_id}; envelope {}",
                doc_note(v, signature)
            )),
            Action::ArtifactPromoted { artifact, from_stage, to_stage, policy_hash } => approved.push(format!(
                "{at} [{idx}] {who} promoted artifact {artifact} ({what}) from {from_stage} to {to_stage}; promotion policy {}",
                doc_note(v, policy_hash)
            )),
            Action::ArtifactAttested { artifact, predicate, key_id, envelope } => approved.push(format!(
                "{at} [{idx}] {who} attested {predicate} for artifact {artifact} ({what}) with key {key_id}; envelope {}",
                doc_note(v, envelope)
            )),
            Action::ArtifactPromotionRefused { artifact, to_stage, reasons } => approved.push(format!(
                "{at} [{idx}] promotion of artifact {artifact} ({what}) to {to_stage} asked by {who} was REFUSED; reasons: {}",
                reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            )),
            Action::TokenUsed { token_id, resource, zone } => moved.push(format!(
                "{at} [{idx}] {what}: {resource} read from zone {zone} with token {token_id}, by {who}"
            )),
            Action::TokenRefused { resource, zone, reason, token_id } => moved.push(format!(
                "{at} [{idx}] {what}: read of {resource} from zone {zone} REFUSED ({reason}){}",
                token_id.as_ref().map(|t| format!(", token {t}")).unwrap_or_default()
            )),
            a => other.push(format!("{at} [{idx}] {} by {who} ({what})", a.name())),
        }
    }
    for (title, lines) in [
        ("Where it ran and why that was allowed", ran),
        ("What data moved, where, when and in what form", moved),
        ("Who approved what", approved),
        ("Other recorded actions", other),
    ] {
        let _ = writeln!(s, "\n{title}:");
        if lines.is_empty() {
            let _ = writeln!(s, "  (no such entries in this bundle)");
        }
        for l in lines {
            let _ = writeln!(s, "  {l}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_time(1_763_900_000_123), "2025-11-23T12:13:20.123Z");
    }
}
