//! A witness in the C2SP `tlog-witness` protocol: it co-signs a log's checkpoint only after a
//! consistency proof shows that it extends the last checkpoint of that log the witness co-signed,
//! so a log that rewrites or cuts its history can never again gather the witness's signature.
//!
//! The request (`POST /add-checkpoint`) is
//! ```text
//! old <size the client believes the witness has>
//! <consistency proof hash, base64>   (one per line)
//!
//! <the signed checkpoint note>
//! ```
//! and the answer is the witness's `cosignature/v1` line(s). Refusals carry the status the
//! protocol gives them ([`WitnessError::status`]): 400 malformed, 403 no valid log signature,
//! 404 unknown log, 409 the old size is not the witness's (with the witness's size, so the
//! client can retry), 422 the proof does not verify or the body differs from the one co-signed at
//! that size (the log equivocates).
//!
//! [`Witness::add_checkpoint`] is pure: state, keys, request and clock in; the new state and the
//! co-signature out. The caller persists the state durably *before* answering.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{NoteSigner, NoteVerifier, SignedNote};
use crate::merkle::{verify_consistency, Hash};

/// What a witness remembers of one log: the newest checkpoint it co-signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    /// Its size.
    pub size: u64,
    /// Its root (hex).
    pub root: String,
    /// SHA-256 (hex) of its whole body, extension lines included: another body at the same
    /// size (a re-signed subject map root, say) is never co-signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A witness's whole state: per log origin, the newest checkpoint co-signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessState {
    /// By log origin.
    pub logs: BTreeMap<String, LogHead>,
}

/// Why a checkpoint was not co-signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The request is not an `add-checkpoint` body.
    #[error("malformed add-checkpoint request: {0}")]
    Malformed(String),
    /// The witness does not know the log.
    #[error("unknown log {0:?}: this witness is not configured for it")]
    UnknownLog(String),
    /// No signature by the log's key verifies.
    #[error("the checkpoint is not signed by the key of log {0:?}")]
    Signature(String),
    /// The client's old size is not the witness's.
    #[error("the witness's last co-signed checkpoint of this log is at size {0}; retry with a proof from there")]
    Conflict(u64),
    /// The checkpoint is older than the one the witness co-signed.
    #[error(
        "the checkpoint (size {size}) is older than the one this witness co-signed (size {have})"
    )]
    Older {
        /// Its size.
        size: u64,
        /// The witness's.
        have: u64,
    },
    /// Another checkpoint body at the size the witness co-signed: the log says two things.
    #[error("the witness co-signed another checkpoint at size {0}: this one differs from it (the log equivocates)")]
    Equivocation(u64),
    /// The consistency proof does not show the checkpoint extends the witnessed one.
    #[error("the consistency proof from size {from} does not verify: the log does not extend the checkpoint this witness co-signed ({why})")]
    Inconsistent {
        /// The witnessed size.
        from: u64,
        /// What failed.
        why: String,
    },
}

impl WitnessError {
    /// The HTTP status the protocol gives this refusal.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::Older { .. } => 400,
            Self::Signature(_) => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict(_) => 409,
            Self::Equivocation(_) => 422,
            Self::Inconsistent { .. } => 422,
        }
    }
}

/// The body of an `add-checkpoint` request.
#[must_use]
pub fn add_checkpoint_request(old: u64, proof: &[Hash], note: &SignedNote) -> String {
    let mut out = format!("old {old}\n");
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&note.to_text());
    out
}

/// A parsed `add-checkpoint` request.
#[derive(Debug, Clone)]
pub struct AddCheckpoint {
    /// The size the client believes the witness has.
    pub old: u64,
    /// The consistency proof from `old`.
    pub proof: Vec<Hash>,
    /// The checkpoint.
    pub note: SignedNote,
}

/// Parse an `add-checkpoint` request body.
///
/// # Errors
/// [`WitnessError::Malformed`].
pub fn parse_add_checkpoint(body: &str) -> Result<AddCheckpoint, WitnessError> {
    let bad = |s: &str| WitnessError::Malformed(s.to_owned());
    let (head, note) = body
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    let mut proof = Vec::new();
    for l in lines {
        let raw = B64
            .decode(l)
            .map_err(|_| bad("a proof line is not base64"))?;
        let h: Hash = raw
            .try_into()
            .map_err(|_| bad("a proof line is not a 32-byte hash"))?;
        if proof.len() >= 64 {
            return Err(bad("more than 64 proof hashes"));
        }
        proof.push(h);
    }
    let note = SignedNote::parse(note).map_err(|e| WitnessError::Malformed(e.to_string()))?;
    Ok(AddCheckpoint { old, proof, note })
}

/// A witness: its cosigning key and the logs it follows.
#[derive(Debug, Clone)]
pub struct Witness {
    /// Its `cosignature/v1` key.
    pub key: NoteSigner,
    /// The logs it follows, by origin (their verifier keys).
    pub logs: BTreeMap<String, NoteVerifier>,
}

impl Witness {
    /// Handle one request at `now` (Unix seconds): check the log's signature and that the
    /// checkpoint extends the one co-signed before (from the state), then co-sign it. Returns
    /// the new state (persist it before answering) and the co-signature line(s) to answer with.
    ///
    /// # Errors
    /// See [`WitnessError`]; nothing is co-signed and the state is unchanged.
    pub fn add_checkpoint(
        &self,
        state: &WitnessState,
        body: &str,
        now: u64,
    ) -> Result<(WitnessState, String), WitnessError> {
        let req = parse_add_checkpoint(body)?;
        let cp = req
            .note
            .checkpoint()
            .map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let log = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| WitnessError::UnknownLog(cp.origin.clone()))?;
        req.note
            .verify(log)
            .map_err(|_| WitnessError::Signature(cp.origin.clone()))?;
        let body = hex::encode(crate::checkpoint::body_hash(&req.note.body));
        let (have, have_root) = match state.logs.get(&cp.origin) {
            Some(h) => (
                h.size,
                hex::decode(&h.root)
                    .ok()
                    .and_then(|r| <Hash>::try_from(r).ok())
                    .ok_or_else(|| {
                        WitnessError::Malformed("the witness's own state is damaged".into())
                    })?,
            ),
            None => (0, crate::merkle::empty_root()),
        };
        if req.old != have {
            return Err(WitnessError::Conflict(have));
        }
        if cp.size < have {
            return Err(WitnessError::Older {
                size: cp.size,
                have,
            });
        }
        if have > 0 || !req.proof.is_empty() {
            verify_consistency(have, cp.size, &have_root, &cp.root, &req.proof).map_err(|e| {
                WitnessError::Inconsistent {
                    from: have,
                    why: e.to_string(),
                }
            })?;
        }
        // Same tree, another body (its extension lines re-signed): the log says two things at
        // one size.
        if let Some(h) = state.logs.get(&cp.origin) {
            if h.size == cp.size && h.body.as_ref().is_some_and(|b| *b != body) {
                return Err(WitnessError::Equivocation(cp.size));
            }
        }
        let mut next = state.clone();
        next.logs.insert(
            cp.origin.clone(),
            LogHead {
                size: cp.size,
                root: hex::encode(cp.root),
                body: Some(body),
            },
        );
        let line = self.key.cosign_body(&req.note.body, now);
        let mut only = req.note.clone();
        only.signatures = vec![line];
        let text = only.to_text();
        let sigs = text
            .split_once("\n\n")
            .map_or(String::new(), |(_, s)| s.to_owned());
        Ok((next, sigs))
    }
}

/// Add the co-signature line(s) a witness answered with to `note`.
///
/// # Errors
/// When the lines are not signature lines.
pub fn add_cosignatures(note: &mut SignedNote, lines: &str) -> Result<(), WitnessError> {
    let parsed = SignedNote::parse(&format!("{}\n{lines}", note.body))
        .map_err(|e| WitnessError::Malformed(format!("the witness's answer: {e}")))?;
    for s in parsed.signatures {
        note.signatures
            .retain(|o| !(o.name == s.name && o.key_id == s.key_id));
        note.signatures.push(s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::merkle::{leaf_hash, MerkleTree};

    fn log(n: u64) -> MerkleTree {
        let mut t = MerkleTree::new();
        for i in 0..n {
            t.push_leaf_hash(leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    fn note(signer: &NoteSigner, t: &MerkleTree, size: u64) -> SignedNote {
        signer.sign_checkpoint(&Checkpoint {
            origin: signer.name().to_owned(),
            size,
            root: t.root_at(size).unwrap(),
            batch: None,
            subjects: None,
        })
    }

    #[test]
    fn co_signs_only_extensions_of_what_it_co_signed() {
        let log_key = NoteSigner::from_seed("example-log", &[1; 32]).unwrap();
        let w = Witness {
            key: NoteSigner::cosigner_from_seed("witness", &[2; 32]).unwrap(),
            logs: [(log_key.name().to_owned(), log_key.verifier())].into(),
        };
        let t = log(20);
        // First contact: old 0, no proof.
        let (state, sigs) = w
            .add_checkpoint(
                &WitnessState::default(),
                &add_checkpoint_request(0, &[], &note(&log_key, &t, 10)),
                1_000,
            )
            .unwrap();
        let mut n10 = note(&log_key, &t, 10);
        add_cosignatures(&mut n10, &sigs).unwrap();
        let s = n10.verified_signature(&w.key.verifier()).unwrap();
        assert_eq!(s.timestamp, Some(1_000));
        n10.verify(&log_key.verifier()).unwrap();
        // A plain verifier of the same key does not accept a cosignature line as its own.
        // Growing: a proof from 10 to 20.
        let proof = t.consistency_proof(10, 20).unwrap();
        let (state2, _) = w
            .add_checkpoint(
                &state,
                &add_checkpoint_request(10, &proof, &note(&log_key, &t, 20)),
                1_001,
            )
            .unwrap();
        assert_eq!(state2.logs["example-log"].size, 20);
        // The same checkpoint again is co-signed again; another body at that size (its
        // extension lines re-signed by the log key) is refused: the log equivocates.
        let n20 = note(&log_key, &t, 20);
        assert!(w
            .add_checkpoint(&state2, &add_checkpoint_request(20, &[], &n20), 1_001)
            .is_ok());
        let other_body = log_key.sign_checkpoint(&Checkpoint {
            origin: log_key.name().to_owned(),
            size: 20,
            root: t.root_at(20).unwrap(),
            batch: None,
            subjects: Some([9; 32]),
        });
        let err = w
            .add_checkpoint(
                &state2,
                &add_checkpoint_request(20, &[], &other_body),
                1_001,
            )
            .unwrap_err();
        assert_eq!(err, WitnessError::Equivocation(20));
        // A stale old size: 409 with the witness's size.
        let err = w
            .add_checkpoint(
                &state2,
                &add_checkpoint_request(10, &proof, &note(&log_key, &t, 20)),
                1_002,
            )
            .unwrap_err();
        assert_eq!(err, WitnessError::Conflict(20));
        assert_eq!(err.status(), 409);
        // A rewritten history of size 25: no proof from 20 verifies.
        let mut other = MerkleTree::new();
        for i in 0..25u64 {
            other.push_leaf_hash(leaf_hash(&(i + 1000).to_be_bytes()));
        }
        let bad = other.consistency_proof(20, 25).unwrap();
        let err = w
            .add_checkpoint(
                &state2,
                &add_checkpoint_request(20, &bad, &note(&log_key, &other, 25)),
                1_003,
            )
            .unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
        // Another key, an unknown log, garbage.
        let impostor = NoteSigner::from_seed("example-log", &[9; 32]).unwrap();
        let err = w
            .add_checkpoint(
                &state2,
                &add_checkpoint_request(20, &[], &note(&impostor, &t, 20)),
                1_004,
            )
            .unwrap_err();
        assert_eq!(err.status(), 403);
        let stranger = NoteSigner::from_seed("other-log", &[3; 32]).unwrap();
        let err = w
            .add_checkpoint(
                &state2,
                &add_checkpoint_request(0, &[], &note(&stranger, &t, 5)),
                1_005,
            )
            .unwrap_err();
        assert_eq!(err.status(), 404);
        for junk in ["", "old 01\n\nx", "old 1\nnot-base64!\n\nx", "hello"] {
            assert_eq!(
                w.add_checkpoint(&state2, junk, 1).unwrap_err().status(),
                400,
                "{junk:?}"
            );
        }
        // A shorter checkpoint than the witnessed one.
        let err = w
            .add_checkpoint(
                &state2,
                &add_checkpoint_request(20, &[], &note(&log_key, &t, 15)),
                1_006,
            )
            .unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
