//! Promotion gate drills: Cedar over verified attestations, missing evidence named, experiment
//! lane kept apart, approver-only reviews, sensitive-data leakage checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::json;
use tidegate_artifacts::gates::{
    self, attest, current_stage, decide, promote, ArtifactFacts, PromotionPolicy, Stage,
    DATA_APPROVAL, FEATURE_PIN, LEAKAGE_CHECK, MODEL_CARD, SECURITY_REVIEW, VALIDATION_REPORT,
};
use tidegate_artifacts::intoto::{Provenance, Statement};
use tidegate_artifacts::signing::{KeyStore, Keyring, Signer, VerifiedStatement};
use tidegate_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, Lane, PutOptions};

const T0: u64 = 1_800_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: ArtifactStore,
    keys: KeyStore,
    builder: Signer,
    approver: Signer,
    policy: PromotionPolicy,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_at(dir.path(), &common::ledger(dir.path()), T0);
    let keys = KeyStore::new(&store.keys_dir());
    keys.create("zone:onprem-a", &["builder"], T0 - 60, 90, true)
        .unwrap();
    let approver_entry = keys
        .create("alice@risk", &["approver"], T0 - 60, 90, false)
        .unwrap();
    let builder = keys.active_signer(T0).unwrap();
    let approver = keys.signer(&approver_entry.keyid, T0).unwrap();
    Fixture {
        _dir: dir,
        store,
        keys,
        builder,
        approver,
        policy: PromotionPolicy::default_policy().unwrap(),
    }
}

fn model(f: &Fixture, body: &[u8], lane: Lane, sensitive: bool) -> Digest {
    let opts = PutOptions {
        name: "fraud".into(),
        lane,
        sensitive,
        ..Default::default()
    };
    let d = f
        .store
        .put(body, ArtifactKind::Model, &opts, T0)
        .unwrap()
        .digest;
    let prov = Provenance {
        job_id: "job-1".into(),
        zone: "onprem-a".into(),
        code_repo: "https://git.example.org/ml".into(),
        code_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        materials: vec![],
        hyperparameters: Default::default(),
        started_at: T0 - 10,
        finished_at: T0,
    };
    f.store.sign_provenance(&d, &prov, &f.builder).unwrap();
    d
}

fn validation_evidence(f: &Fixture, d: &Digest, value: f64) {
    attest(
        &f.store,
        &f.approver,
        d,
        DATA_APPROVAL,
        json!({"dataset": "claims@v3"}),
        T0,
    )
    .unwrap();
    attest(
        &f.store,
        &f.builder,
        d,
        FEATURE_PIN,
        json!({"featureSet": "claims-features", "version": "7"}),
        T0,
    )
    .unwrap();
    attest(
        &f.store,
        &f.builder,
        d,
        VALIDATION_REPORT,
        json!({"metric": "auc", "value": value, "testSet": "claims@v3-test"}),
        T0,
    )
    .unwrap();
}

fn approval_evidence(f: &Fixture, d: &Digest) {
    attest(
        &f.store,
        &f.builder,
        d,
        MODEL_CARD,
        json!({"modelCard": Digest::of(b"card").to_string()}),
        T0,
    )
    .unwrap();
    attest(
        &f.store,
        &f.approver,
        d,
        SECURITY_REVIEW,
        json!({"reviewer": "alice", "verdict": "approved"}),
        T0,
    )
    .unwrap();
}

fn ring(f: &Fixture) -> Keyring {
    f.keys.keyring().unwrap()
}

fn go(f: &Fixture, d: &Digest, to: Stage) -> Result<gates::PromotionRecord, ArtifactError> {
    promote(&f.store, &ring(f), &f.policy, d, to, "ops", T0 + 60)
}

fn refused_reasons(r: Result<gates::PromotionRecord, ArtifactError>) -> Vec<String> {
    match r {
        Err(ArtifactError::PromotionRefused { reasons, .. }) => reasons,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn full_path_to_public_release_with_all_evidence() {
    let f = fixture();
    let d = model(&f, b"good model", Lane::Production, false);
    validation_evidence(&f, &d, 0.93);
    go(&f, &d, Stage::Validated).unwrap();
    approval_evidence(&f, &d);
    go(&f, &d, Stage::Approved).unwrap();
    go(&f, &d, Stage::ReleasedPrivate).unwrap();
    let rec = go(&f, &d, Stage::ReleasedPublic).unwrap();
    assert_eq!(rec.from, Stage::ReleasedPrivate);
    assert_eq!(current_stage(&f.store, &d).unwrap(), Stage::ReleasedPublic);
    assert_eq!(f.store.history().unwrap().of(&d).promotions.len(), 4);
}

#[test]
fn promotion_without_attestations_is_refused_naming_missing_evidence() {
    let f = fixture();
    let d = model(&f, b"bare model", Lane::Production, false);
    let reasons = refused_reasons(go(&f, &d, Stage::Validated));
    let all = reasons.join("\n");
    assert!(all.contains("data approval"), "{all}");
    assert!(all.contains("pinned feature version"), "{all}");
    assert!(all.contains("validation report"), "{all}");
    assert_eq!(reasons.len(), 3, "{all}");
    assert_eq!(current_stage(&f.store, &d).unwrap(), Stage::Candidate);
}

#[test]
fn approval_needs_model_card_and_approver_signed_security_review() {
    let f = fixture();
    let d = model(&f, b"model b", Lane::Production, false);
    validation_evidence(&f, &d, 0.95);
    go(&f, &d, Stage::Validated).unwrap();
    // A security review signed by the builder key (not an approver) does not count.
    attest(
        &f.store,
        &f.builder,
        &d,
        SECURITY_REVIEW,
        json!({"reviewer": "bob", "verdict": "approved"}),
        T0,
    )
    .unwrap();
    let all = refused_reasons(go(&f, &d, Stage::Approved)).join("\n");
    assert!(all.contains("model card"), "{all}");
    assert!(all.contains("security review"), "{all}");
    assert!(!all.contains("leakage"), "not sensitive: {all}");
    approval_evidence(&f, &d);
    go(&f, &d, Stage::Approved).unwrap();
}

#[test]
fn validation_metric_below_threshold_is_refused() {
    let f = fixture();
    let d = model(&f, b"weak model", Lane::Production, false);
    validation_evidence(&f, &d, 0.85);
    let reasons = refused_reasons(go(&f, &d, Stage::Validated));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains(">= 0.90"), "{reasons:?}");
}

#[test]
fn sensitive_model_needs_leakage_check() {
    let f = fixture();
    let d = model(&f, b"phi model", Lane::Production, true);
    validation_evidence(&f, &d, 0.95);
    go(&f, &d, Stage::Validated).unwrap();
    approval_evidence(&f, &d);
    let reasons = refused_reasons(go(&f, &d, Stage::Approved));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("leakage / memorisation"), "{reasons:?}");
    attest(
        &f.store,
        &f.builder,
        &d,
        LEAKAGE_CHECK,
        json!({"method": "canary-exposure", "passed": false}),
        T0,
    )
    .unwrap();
    assert!(
        go(&f, &d, Stage::Approved).is_err(),
        "a failed check is not evidence"
    );
    attest(
        &f.store,
        &f.builder,
        &d,
        LEAKAGE_CHECK,
        json!({"method": "canary-exposure", "passed": true}),
        T0 + 1,
    )
    .unwrap();
    go(&f, &d, Stage::Approved).unwrap();
}

#[test]
fn experiment_lane_cannot_reach_a_release_stage() {
    let f = fixture();
    let d = model(&f, b"experiment model", Lane::Experiment, false);
    validation_evidence(&f, &d, 0.99);
    approval_evidence(&f, &d);
    go(&f, &d, Stage::Validated).unwrap();
    go(&f, &d, Stage::Approved).unwrap();
    let reasons = refused_reasons(go(&f, &d, Stage::ReleasedPrivate));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("experiment lane"), "{reasons:?}");
}

#[test]
fn stages_cannot_be_skipped_or_reversed() {
    let f = fixture();
    let d = model(&f, b"skipper", Lane::Production, false);
    validation_evidence(&f, &d, 0.99);
    approval_evidence(&f, &d);
    let all = refused_reasons(go(&f, &d, Stage::ReleasedPublic)).join("\n");
    assert!(all.contains("stage order"), "{all}");
    go(&f, &d, Stage::Validated).unwrap();
    assert!(refused_reasons(go(&f, &d, Stage::Candidate))
        .join("\n")
        .contains("stage order"));
}

#[test]
fn attestation_from_revoked_key_blocks_promotion() {
    let f = fixture();
    let d = model(&f, b"revoked evidence", Lane::Production, false);
    validation_evidence(&f, &d, 0.99);
    f.keys.revoke(f.approver.keyid(), T0 + 30).unwrap();
    let err = go(&f, &d, Stage::Validated).unwrap_err();
    assert!(matches!(err, ArtifactError::Key(_)), "{err}");
}

#[test]
fn decide_is_pure_and_reports_policy_hash() {
    let policy = PromotionPolicy::default_policy().unwrap();
    let d = Digest::of(b"m");
    let facts = ArtifactFacts {
        digest: d.clone(),
        kind: ArtifactKind::Model,
        lane: Lane::Production,
        sensitive: false,
        stage: Stage::Candidate,
    };
    let stmt = |pt: &str, fields: serde_json::Value, roles: &[&str]| VerifiedStatement {
        statement: gates::attestation("m", &d, pt, fields, T0).unwrap(),
        keyids: vec!["k".into()],
        owners: vec!["o".into()],
        roles: roles.iter().map(|r| r.to_string()).collect(),
        signed_at: T0,
    };
    let evidence = vec![
        stmt(
            DATA_APPROVAL,
            json!({"dataset": "claims@v3"}),
            &["approver"],
        ),
        stmt(
            FEATURE_PIN,
            json!({"featureSet": "f", "version": 1}),
            &["builder"],
        ),
        stmt(
            VALIDATION_REPORT,
            json!({"metric": "auc", "value": 0.9, "testSet": "t"}),
            &["builder"],
        ),
    ];
    let a = decide(&policy, &facts, &evidence, Stage::Validated);
    let b = decide(&policy, &facts, &evidence, Stage::Validated);
    assert!(a.allowed, "{:?}", a.reasons);
    assert_eq!(a, b);
    assert_eq!(&a.policy_hash, policy.hash());
    // Data approval signed by a non-approver does not count.
    let mut weak = evidence.clone();
    weak[0].roles = vec!["builder".into()];
    let c = decide(&policy, &facts, &weak, Stage::Validated);
    assert!(!c.allowed);
    assert!(c.reasons[0].contains("data approval"), "{:?}", c.reasons);
    // Evidence about another artifact does not count.
    let other = Statement::new(
        "x",
        &Digest::of(b"other"),
        DATA_APPROVAL,
        json!({"dataset": "d", "issuedOn": "2027-01-15T08:00:00Z"}),
    );
    let mut wrong = evidence;
    wrong[0].statement = other;
    assert!(!decide(&policy, &facts, &wrong, Stage::Validated).allowed);
}

#[test]
fn datasets_are_not_promoted_and_bad_policy_is_rejected() {
    let policy = PromotionPolicy::default_policy().unwrap();
    let facts = ArtifactFacts {
        digest: Digest::of(b"d"),
        kind: ArtifactKind::DatasetSnapshot,
        lane: Lane::Production,
        sensitive: false,
        stage: Stage::Candidate,
    };
    let dec = decide(&policy, &facts, &[], Stage::Validated);
    assert!(!dec.allowed);
    assert!(
        dec.reasons
            .iter()
            .any(|r| r.contains("only models and checkpoints")),
        "{:?}",
        dec.reasons
    );
    assert!(PromotionPolicy::parse("permit (principal, action, resource) when {").is_err());
    // A policy that never permits denies with a named reason, fail closed.
    let empty = PromotionPolicy::parse("").unwrap();
    let dec = decide(&empty, &facts, &[], Stage::Validated);
    assert!(!dec.allowed && !dec.reasons.is_empty());
}

#[test]
fn the_stage_is_what_the_ledgered_promotions_say_not_a_file() {
    let f = fixture();
    let d = model(&f, b"experiment model", Lane::Experiment, true);
    // A line claiming a release, appended where promotions used to be kept, changes nothing.
    let forged = json!({"digest": d.to_string(), "from": "approved", "to": "released-edge",
        "actor": "ops", "at": T0, "policy_hash": Digest::of(b"p").to_string(),
        "evidence": {}});
    std::fs::write(
        f.store
            .data_dir()
            .join("artifacts")
            .join("promotions.jsonl"),
        format!("{forged}\n"),
    )
    .unwrap();
    assert_eq!(current_stage(&f.store, &d).unwrap(), Stage::Candidate);
    // An experiment-lane model is still kept from a release by the gates.
    assert!(go(&f, &d, Stage::Validated).is_err());
}

#[test]
fn the_promotion_policy_in_force_is_the_one_the_ledger_recorded() {
    use tidegate_artifacts::ops;
    let f = fixture();
    let d = model(&f, b"bare model", Lane::Experiment, true);
    let permit_all = "permit(principal, action, resource);\n";
    let file = f.store.data_dir().join("policies").join("promotion.cedar");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // Replacing the policy file in the data directory: every promotion is refused, naming it.
    std::fs::write(&file, permit_all).unwrap();
    let err = ops::promote(&f.store, &d, Stage::Validated, "ops", T0 + 60).unwrap_err();
    assert!(matches!(err, ArtifactError::Policy(_)), "{err}");
    assert!(
        err.to_string()
            .contains("is not the promotion policy in force"),
        "{err}"
    );
    assert_eq!(current_stage(&f.store, &d).unwrap(), Stage::Candidate);
    // The default written back (what `init-policy` writes) is accepted again.
    gates::write_default_policy(&f.store).unwrap();
    assert!(matches!(
        ops::promote(&f.store, &d, Stage::Validated, "ops", T0 + 60),
        Err(ArtifactError::PromotionRefused { .. })
    ));
    // A change recorded by an approver takes effect, and the promotion names its hash.
    let policy = gates::set_policy(&f.store, permit_all, f.approver.keyid(), T0 + 30).unwrap();
    let rec = ops::promote(&f.store, &d, Stage::Validated, "ops", T0 + 60).unwrap();
    assert_eq!(&rec.policy_hash, policy.hash());
    let h = f.store.history().unwrap();
    assert_eq!(h.promotion_policy().unwrap().0, policy.hash().to_string());
    assert_eq!(
        h.of(&d).promotions[0].policy_hash,
        policy.hash().to_string()
    );
    // Removing the file afterwards is a change too: refused.
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(
        ops::promote(&f.store, &d, Stage::Approved, "ops", T0 + 60),
        Err(ArtifactError::Policy(_))
    ));
}

#[test]
fn no_policy_lowers_the_floor_of_stage_order_and_the_experiment_lane() {
    let f = fixture();
    let permit_all = PromotionPolicy::parse("permit(principal, action, resource);\n").unwrap();
    let d = model(&f, b"experiment under permit-all", Lane::Experiment, true);
    let go_with = |to| promote(&f.store, &ring(&f), &permit_all, &d, to, "ops", T0 + 60);
    // A skip is refused even when the policy permits everything.
    let all = refused_reasons(go_with(Stage::ReleasedEdge)).join("\n");
    assert!(all.contains("stage order"), "{all}");
    go_with(Stage::Validated).unwrap();
    go_with(Stage::Approved).unwrap();
    // And an experiment-lane artifact is never released.
    let all = refused_reasons(go_with(Stage::ReleasedPrivate)).join("\n");
    assert!(all.contains("experiment lane"), "{all}");
}
