//! Promotion gates: a model moves candidate → validated → approved → released-private →
//! released-public | released-edge, and each step needs evidence, decided by Cedar policy over
//! verified attestations.
//!
//! Two layers:
//! - `gates/decision.rs`, pure: [`decide`] takes the policy, the artifact's facts, the verified
//!   statements and the target stage and gives a [`GateDecision`]; [`check_in_force`] says
//!   whether a policy is the one the ledger recorded; [`attestation`] builds a statement for a
//!   given time. No filesystem, no clock, no store.
//! - this module, the thin shell: [`load_policy`] reads the policy file and the ledger's record
//!   of it, [`promote`] verifies the artifact and its envelopes, reads its stage from the
//!   ledger, calls [`decide`] and records the outcome; [`attest`], [`set_policy`],
//!   [`write_default_policy`] and [`current_stage`] are the store's other gate operations.

mod decision;

pub use decision::{
    attestation, check_in_force, decide, ArtifactFacts, Evidence, GateDecision, PromotionPolicy,
    PromotionRecord, Stage, APPROVER_ROLE, DATA_APPROVAL, DEFAULT_POLICY, FEATURE_PIN,
    LEAKAGE_CHECK, MODEL_CARD, SECURITY_REVIEW, VALIDATION_REPORT,
};

use serde_json::Value;

use crate::atomic::write_atomic;
use crate::events::ArtifactEvent;
use crate::signing::{Keyring, Signer};
use crate::{ArtifactError, ArtifactStore, Digest};

/// Signs an attestation about `digest` and attaches it in the store, only with a keyring the
/// store's evidence ledger vouches for ([`ArtifactStore::check_signing_keyring`]).
///
/// # Errors
/// As [`ArtifactStore::trusted_keyring`], [`attestation`] and [`ArtifactStore::attach`].
pub fn attest(
    store: &ArtifactStore,
    signer: &Signer,
    digest: &Digest,
    predicate_type: &str,
    fields: Value,
    now: u64,
) -> Result<(), ArtifactError> {
    store.check_signing_keyring()?;
    let record = store.record(digest)?;
    let st = attestation(&record.name, digest, predicate_type, fields, now)?;
    store.attach(digest, &signer.sign_statement(&st)?)?;
    Ok(())
}

/// The current stage of `digest`: what its promotions recorded in the evidence ledger say
/// (candidate when never promoted). No file in the data directory is consulted.
///
/// # Errors
/// When the ledger cannot be read ([`ArtifactStore::history`]).
pub fn current_stage(store: &ArtifactStore, digest: &Digest) -> Result<Stage, ArtifactError> {
    Ok(store.history()?.stage(digest))
}

fn policy_path(store: &ArtifactStore) -> std::path::PathBuf {
    store.data_dir().join("policies").join("promotion.cedar")
}

/// The promotion policy in force: `<data-dir>/policies/promotion.cedar` if present, else the
/// built-in default, and only if it is the policy the evidence ledger last recorded (or, when
/// no change was ever recorded, the built-in default). A policy file edited or replaced in the
/// data directory, or removed, refuses every promotion until the change is recorded with
/// [`set_policy`].
///
/// # Errors
/// I/O or policy parse errors, [`ArtifactError::Policy`] for an unrecorded policy.
pub fn load_policy(store: &ArtifactStore) -> Result<PromotionPolicy, ArtifactError> {
    let path = policy_path(store);
    let (policy, from) = match std::fs::read_to_string(&path) {
        Ok(text) => (PromotionPolicy::parse(&text)?, path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            PromotionPolicy::default_policy()?,
            "the built-in promotion policy".to_owned(),
        ),
        Err(e) => return Err(ArtifactError::io(&path, e)),
    };
    let history = store.history()?;
    check_in_force(&policy, &from, history.promotion_policy().map(|(h, _)| h))?;
    Ok(policy)
}

/// Makes `text` the promotion policy, for `approver` (a signing key id the caller has checked
/// holds the approver role): the change is recorded in the evidence ledger (`policy.loaded`
/// about policy `promotion`, the text kept as a document) before the file is written.
///
/// # Errors
/// Cedar parse errors, a ledger that refuses the entry, or I/O errors.
pub fn set_policy(
    store: &ArtifactStore,
    text: &str,
    approver: &str,
    now: u64,
) -> Result<PromotionPolicy, ArtifactError> {
    let policy = PromotionPolicy::parse(text)?;
    let _lock = store.write_lock()?;
    store.record_document(text.as_bytes())?;
    store.record_event(&ArtifactEvent::PromotionPolicySet {
        policy_hash: policy.hash().clone(),
        actor: approver.to_owned(),
        at: now,
    })?;
    write_atomic(&policy_path(store), text.as_bytes())?;
    Ok(policy)
}

/// Writes the built-in policy to `<data-dir>/policies/promotion.cedar` for editing.
///
/// # Errors
/// I/O errors.
pub fn write_default_policy(store: &ArtifactStore) -> Result<std::path::PathBuf, ArtifactError> {
    let path = policy_path(store);
    write_atomic(&path, DEFAULT_POLICY.as_bytes())?;
    Ok(path)
}

/// Promotes `digest` to `to`: verifies the artifact and its envelopes at `now`, decides with
/// `policy`, and on allow appends the stage change. Refusals name the missing evidence.
///
/// # Errors
/// Verification errors, or [`ArtifactError::PromotionRefused`].
pub fn promote(
    store: &ArtifactStore,
    keyring: &Keyring,
    policy: &PromotionPolicy,
    digest: &Digest,
    to: Stage,
    actor: &str,
    now: u64,
) -> Result<PromotionRecord, ArtifactError> {
    let _lock = store.write_lock()?;
    let report = store.verify(digest, keyring, now)?;
    let facts = ArtifactFacts {
        digest: digest.clone(),
        kind: report.record.kind,
        lane: report.record.lane,
        sensitive: report.record.sensitive,
        stage: current_stage(store, digest)?,
    };
    let decision = decide(policy, &facts, &report.statements, to);
    if !decision.allowed {
        tracing::warn!(%digest, to = %to, reasons = ?decision.reasons, "promotion refused");
        store.record_event(&ArtifactEvent::PromotionRefused {
            digest: digest.clone(),
            to: to.to_string(),
            reasons: decision.reasons.clone(),
            codes: decision.codes.clone(),
            at: now,
        })?;
        return Err(ArtifactError::PromotionRefused {
            digest: digest.clone(),
            to: to.to_string(),
            reasons: decision.reasons,
        });
    }
    let record = PromotionRecord {
        digest: digest.clone(),
        from: facts.stage,
        to,
        actor: actor.to_owned(),
        at: now,
        policy_hash: decision.policy_hash,
        evidence: decision.evidence,
    };
    // The deciding policy's text travels with the evidence: a bundle about the artifact carries
    // what allowed the promotion.
    store.record_document(policy.text().as_bytes())?;
    store.record_event(&ArtifactEvent::Promote {
        digest: digest.clone(),
        from: record.from.to_string(),
        to: to.to_string(),
        actor: actor.to_owned(),
        policy_hash: record.policy_hash.clone(),
        at: now,
    })?;
    tracing::info!(%digest, from = %record.from, to = %to, "promoted");
    Ok(record)
}
