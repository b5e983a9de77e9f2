//! Provenance drills: DSSE/in-toto signing, tampered envelopes, key rotation mid-flight,
//! revoked and unknown keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use tidegate_artifacts::dsse::{pae, Envelope, INTOTO_PAYLOAD_TYPE};
use tidegate_artifacts::intoto::{
    Material, Provenance, Statement, SLSA_PROVENANCE_V1, STATEMENT_TYPE,
};
use tidegate_artifacts::signing::{KeyStore, Keyring, Signer};
use tidegate_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, PutOptions};

const T0: u64 = 1_800_000_000;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn provenance(job: &str, at: u64) -> Provenance {
    Provenance {
        job_id: job.into(),
        zone: "onprem-a".into(),
        code_repo: "https://git.example.org/ml/fraud".into(),
        code_commit: "3f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291".into(),
        materials: vec![Material {
            uri: "dataset:claims@v3".into(),
            digest: Some(Digest::of(b"claims v3")),
        }],
        hyperparameters: BTreeMap::from([
            ("lr".to_string(), serde_json::json!(0.001)),
            ("epochs".to_string(), serde_json::json!(3)),
        ]),
        started_at: at - 600,
        finished_at: at,
    }
}

fn put_model(store: &ArtifactStore, body: &[u8], at: u64) -> Digest {
    store
        .put(
            body,
            ArtifactKind::Model,
            &PutOptions {
                name: "fraud-model".into(),
                ..Default::default()
            },
            at,
        )
        .unwrap()
        .digest
}

#[test]
fn envelope_is_dsse_holding_intoto_statement_with_slsa_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_at(dir.path(), &common::ledger(dir.path()), T0);
    let keys = KeyStore::new(&store.keys_dir());
    keys.create("zone:onprem-a", &["builder"], T0 - 60, 90, true)
        .unwrap();
    let d = put_model(&store, b"model bytes", T0);
    let signer = keys.active_signer(T0).unwrap();
    let env = store
        .sign_provenance(&d, &provenance("job-42", T0), &signer)
        .unwrap();

    assert_eq!(env.payload_type, INTOTO_PAYLOAD_TYPE);
    let json: serde_json::Value = serde_json::from_slice(&env.to_json().unwrap()).unwrap();
    assert!(json.get("payloadType").is_some() && json.get("signatures").is_some());
    let st: serde_json::Value = serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
    assert_eq!(st["_type"], STATEMENT_TYPE);
    assert_eq!(st["predicateType"], SLSA_PROVENANCE_V1);
    assert_eq!(st["subject"][0]["digest"]["sha256"], d.hex());
    assert_eq!(
        st["predicate"]["runDetails"]["builder"]["id"],
        "https://tidegate.dev/zones/onprem-a"
    );
    assert_eq!(
        st["predicate"]["runDetails"]["metadata"]["invocationId"],
        "job-42"
    );
    assert_eq!(
        st["predicate"]["buildDefinition"]["externalParameters"]["hyperparameters"]["lr"],
        0.001
    );
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(deps
        .iter()
        .any(|x| x["digest"]["gitCommit"] == "3f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291"));
    assert!(deps.iter().any(|x| x["uri"] == "dataset:claims@v3"));

    let report = store.verify(&d, &keys.keyring().unwrap(), T0 + 10).unwrap();
    let prov = report.provenance().unwrap();
    assert_eq!(prov.keyids, vec![signer.keyid().to_string()]);
    let back = Provenance::from_predicate(&prov.statement.predicate).unwrap();
    assert_eq!(back, provenance("job-42", T0));
}

#[test]
fn signature_is_over_pae_not_raw_payload() {
    let signer = Signer::generate();
    let env = signer.sign_payload(INTOTO_PAYLOAD_TYPE, b"{}");
    let sig = B64.decode(&env.signatures[0].sig).unwrap();
    let entry = signer.entry("x", &[], 0, u64::MAX);
    let vk = ed25519_dalek::VerifyingKey::from_bytes(
        &<[u8; 32]>::try_from(hex::decode(&entry.public_key).unwrap().as_slice()).unwrap(),
    )
    .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    assert!(vk
        .verify_strict(&pae(INTOTO_PAYLOAD_TYPE, b"{}"), &sig)
        .is_ok());
    assert!(vk.verify_strict(b"{}", &sig).is_err());
}

fn signed_setup() -> (tempfile::TempDir, ArtifactStore, KeyStore, Digest) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_at(dir.path(), &common::ledger(dir.path()), T0);
    let keys = KeyStore::new(&store.keys_dir());
    keys.create("zone:onprem-a", &["builder"], T0 - 60, 90, true)
        .unwrap();
    let d = put_model(&store, b"model bytes", T0);
    let signer = keys.active_signer(T0).unwrap();
    store
        .sign_provenance(&d, &provenance("job-42", T0), &signer)
        .unwrap();
    (dir, store, keys, d)
}

fn envelope_path(dir: &std::path::Path, d: &Digest) -> std::path::PathBuf {
    let edir = dir.join("artifacts/envelopes/sha256").join(d.hex());
    std::fs::read_dir(edir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

#[test]
fn changed_signature_is_refused() {
    let (dir, store, keys, d) = signed_setup();
    let path = envelope_path(dir.path(), &d);
    let mut env = Envelope::from_json(&std::fs::read(&path).unwrap()).unwrap();
    let mut sig = B64.decode(&env.signatures[0].sig).unwrap();
    sig[0] ^= 0x80;
    env.signatures[0].sig = B64.encode(sig);
    std::fs::write(&path, env.to_json().unwrap()).unwrap();
    let err = store
        .verify(&d, &keys.keyring().unwrap(), T0 + 10)
        .unwrap_err();
    // The edited envelope is not the one the ledger recorded: it counts for nothing.
    assert!(matches!(err, ArtifactError::Signature(_)), "{err}");
    assert!(err.to_string().contains("never recorded"), "{err}");
}

#[test]
fn changed_payload_is_refused() {
    let (dir, store, keys, d) = signed_setup();
    let path = envelope_path(dir.path(), &d);
    let mut env = Envelope::from_json(&std::fs::read(&path).unwrap()).unwrap();
    let text = String::from_utf8(env.payload_bytes().unwrap())
        .unwrap()
        .replace("0.001", "0.1");
    env.payload = B64.encode(text);
    std::fs::write(&path, env.to_json().unwrap()).unwrap();
    let err = store
        .verify(&d, &keys.keyring().unwrap(), T0 + 10)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Signature(_)), "{err}");
    // Changing the payload type is also caught: the PAE binds it.
    let mut env2 = Envelope::from_json(&std::fs::read(&path).unwrap()).unwrap();
    env2.payload_type = "application/json".into();
    assert!(keys.keyring().unwrap().verify(&env2, T0 + 10).is_err());
}

#[test]
fn model_without_provenance_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_at(dir.path(), &common::ledger(dir.path()), T0);
    let d = put_model(&store, b"unsigned model", T0);
    let err = store.verify(&d, &Keyring::default(), T0).unwrap_err();
    assert!(
        err.to_string().contains("no signed SLSA provenance"),
        "{err}"
    );
    assert!(store.pull(&d, &Keyring::default(), T0).is_err());
}

#[test]
fn rotation_mid_flight_keeps_every_artifact_verifiable_and_pullable() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = common::ledger(dir.path());
    // The store as the command running at `t` sees it: its entries are stamped `t`.
    let at = |t: u64| common::store_at(dir.path(), &ledger, t);
    let store = at(T0);
    let keys = KeyStore::new(&store.keys_dir());
    let first = keys
        .create("zone:onprem-a", &["builder"], T0 - 60, 90, true)
        .unwrap();
    let s1 = keys.active_signer(T0).unwrap();
    let mut before = Vec::new();
    for i in 0..3u64 {
        let store = at(T0 + i);
        let d = put_model(&store, format!("model {i}").as_bytes(), T0 + i);
        store
            .sign_provenance(&d, &provenance(&format!("job-{i}"), T0 + i), &s1)
            .unwrap();
        before.push(d);
    }
    // Rotate while a job (job-9) is running: it started under the old key, finishes after.
    let rotated_at = T0 + 100;
    let second = keys.rotate("zone:onprem-a", rotated_at, 90).unwrap();
    assert_ne!(first.keyid, second.keyid);
    let s2 = keys.active_signer(rotated_at + 1).unwrap();
    assert_eq!(s2.keyid(), second.keyid);
    // The old key can no longer be used to sign.
    assert!(keys.signer(&first.keyid, rotated_at + 1).is_err());
    let store = at(rotated_at + 50);
    let after = put_model(&store, b"model 9", rotated_at + 50);
    store
        .sign_provenance(&after, &provenance("job-9", rotated_at + 50), &s2)
        .unwrap();

    let ring = keys.keyring().unwrap();
    let later = rotated_at + 86_400;
    for d in before.iter().chain([&after]) {
        let (content, report) = store.pull(d, &ring, later).unwrap();
        assert_eq!(&Digest::of(&content), d);
        assert!(report.provenance().is_some());
    }
    // A signature by the retired key made after rotation is refused.
    let store = at(rotated_at + 60);
    let late = put_model(&store, b"model late", rotated_at + 60);
    store
        .sign_provenance(&late, &provenance("job-late", rotated_at + 60), &s1)
        .unwrap();
    let err = store.verify(&late, &ring, later).unwrap_err();
    assert!(matches!(err, ArtifactError::Key(_)), "{err}");
    assert!(
        err.to_string().contains("not valid at signing time"),
        "{err}"
    );
}

#[test]
fn a_retired_key_cannot_sign_by_backdating_its_statement() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = common::ledger(dir.path());
    let at = |t: u64| common::store_at(dir.path(), &ledger, t);
    let keys = KeyStore::new(&at(T0).keys_dir());
    let first = keys
        .create("zone:onprem-a", &["builder"], T0 - 60, 90, true)
        .unwrap();
    // Kept by whoever held the retired key: it still signs bytes.
    let retired = keys.signer(&first.keyid, T0).unwrap();
    let rotated_at = T0 + 100;
    keys.rotate("zone:onprem-a", rotated_at, 90).unwrap();
    let ring = keys.keyring().unwrap();
    let store = at(rotated_at + 500);
    let d = put_model(&store, b"smuggled model", rotated_at + 500);
    // The statement claims it was finished before the rotation; the ledger records it now.
    store
        .sign_provenance(&d, &provenance("job-old", T0 + 10), &retired)
        .unwrap();
    let err = store.verify(&d, &ring, rotated_at + 600).unwrap_err();
    assert!(matches!(err, ArtifactError::Key(_)), "{err}");
    assert!(
        err.to_string().contains("not valid at signing time"),
        "{err}"
    );
    // And an envelope written straight into the store's files (no ledger entry) counts for
    // nothing, whatever it claims.
    let d2 = put_model(&store, b"model two", rotated_at + 500);
    let st = Statement::provenance("x", &d2, &provenance("job-old", T0 + 10)).unwrap();
    let env = retired.sign_statement(&st).unwrap();
    let json = env.to_json().unwrap();
    let path = dir
        .path()
        .join("artifacts/envelopes/sha256")
        .join(d2.hex())
        .join(format!("{}.dsse.json", Digest::of(&json).hex()));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &json).unwrap();
    let err = store.verify(&d2, &ring, rotated_at + 600).unwrap_err();
    assert!(
        err.to_string()
            .contains("never recorded in the evidence ledger"),
        "{err}"
    );
}

#[test]
fn revoked_key_is_refused_with_clear_error() {
    let (_dir, store, keys, d) = signed_setup();
    let keyid = keys.active_keyid().unwrap().unwrap();
    keys.revoke(&keyid, T0 + 5).unwrap();
    let err = store
        .verify(&d, &keys.keyring().unwrap(), T0 + 10)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Key(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("revoked") && msg.contains(&keyid), "{msg}");
    assert!(store.pull(&d, &keys.keyring().unwrap(), T0 + 10).is_err());
    assert!(
        keys.active_signer(T0 + 10).is_err(),
        "a revoked key must not sign"
    );
}

#[test]
fn unknown_key_is_refused_with_clear_error() {
    let (_dir, store, _keys, d) = signed_setup();
    let err = store.verify(&d, &Keyring::default(), T0 + 10).unwrap_err();
    assert!(matches!(err, ArtifactError::Key(_)), "{err}");
    assert!(err.to_string().contains("unknown signing key"), "{err}");
}

#[test]
fn statement_about_another_artifact_is_not_attached() {
    let (_dir, store, keys, d) = signed_setup();
    let other = Digest::of(b"other");
    let st = Statement::provenance("x", &other, &provenance("job-1", T0)).unwrap();
    let env = keys.active_signer(T0).unwrap().sign_statement(&st).unwrap();
    assert!(matches!(
        store.attach(&d, &env),
        Err(ArtifactError::Signature(_))
    ));
}

#[test]
fn future_dated_statement_is_refused() {
    let (_dir, store, keys, _d) = signed_setup();
    let d = put_model(&store, b"future", T0);
    let signer = keys.active_signer(T0).unwrap();
    store
        .sign_provenance(&d, &provenance("job-f", T0 + 3600), &signer)
        .unwrap();
    let err = store.verify(&d, &keys.keyring().unwrap(), T0).unwrap_err();
    assert!(err.to_string().contains("future"), "{err}");
}
