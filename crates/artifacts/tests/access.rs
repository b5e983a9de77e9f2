//! Token-gated read drills: a job token reads exactly its checkpoint, nothing else, and every
//! use or refusal is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidegate_artifacts::access::{read_with_token, resource_name};
use tidegate_artifacts::events::{ArtifactEvent, JsonlSink};
use tidegate_artifacts::intoto::Provenance;
use tidegate_artifacts::signing::KeyStore;
use tidegate_artifacts::{ArtifactError, ArtifactKind, PutOptions};
use tidegate_identity::{Issuer, RootKeyring, TokenSpec, Verifier};

const T0: u64 = 1_800_000_000;

#[test]
fn job_token_reads_its_checkpoint_only_and_uses_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_at(dir.path(), &common::ledger(dir.path()), T0);
    let keys = KeyStore::new(&store.keys_dir());
    keys.create("zone:onprem-a", &["builder"], T0 - 60, 30, true)
        .unwrap();
    let signer = keys.active_signer(T0).unwrap();
    let mut digests = Vec::new();
    for body in [b"ckpt a".as_slice(), b"ckpt b".as_slice()] {
        let d = store
            .put(body, ArtifactKind::Checkpoint, &PutOptions::default(), T0)
            .unwrap()
            .digest;
        let prov = Provenance {
            job_id: "train-1".into(),
            zone: "onprem-a".into(),
            code_repo: "r".into(),
            code_commit: "abcdef1234567".into(),
            materials: vec![],
            hyperparameters: Default::default(),
            started_at: T0 - 5,
            finished_at: T0,
        };
        store.sign_provenance(&d, &prov, &signer).unwrap();
        digests.push(d);
    }
    let (a, b) = (&digests[0], &digests[1]);

    let issuer = Issuer::generate(1);
    let mut roots = RootKeyring::default();
    roots.add(issuer.root_key(T0 - 60, T0 + 86_400)).unwrap();
    let spec = TokenSpec::Job {
        job_id: "finetune-2".into(),
        zone: "onprem-a".into(),
        inputs: vec![resource_name(ArtifactKind::Checkpoint, a)],
        output_prefix: "artifacts/finetune-2/".into(),
        ttl_minutes: 10,
    };
    let token = issuer.mint(&roots, &spec, T0).unwrap();
    let verifier = Verifier::new(roots);
    let ring = keys.keyring().unwrap();
    let anywhere = |_: &tidegate_artifacts::ArtifactRecord, _: &str| Ok(());

    assert_eq!(
        read_with_token(
            &store,
            &verifier,
            &ring,
            &anywhere,
            &token,
            a,
            "onprem-a",
            T0 + 1
        )
        .unwrap(),
        b"ckpt a"
    );
    let err = read_with_token(
        &store,
        &verifier,
        &ring,
        &anywhere,
        &token,
        b,
        "onprem-a",
        T0 + 1,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::TokenRefused {
                code: "token-request-denied",
                ..
            }
        ),
        "{err}"
    );
    let err = read_with_token(
        &store,
        &verifier,
        &ring,
        &anywhere,
        &token,
        a,
        "gpuaas-eu",
        T0 + 1,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::TokenRefused {
                code: "token-request-denied",
                ..
            }
        ),
        "{err}"
    );
    let err = read_with_token(
        &store,
        &verifier,
        &ring,
        &anywhere,
        &token,
        a,
        "onprem-a",
        T0 + 600,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    let events = JsonlSink::new(dir.path().join("artifacts/events.jsonl"))
        .read_all()
        .unwrap();
    let uses: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, ArtifactEvent::TokenUse { .. }))
        .collect();
    let refusals = events
        .iter()
        .filter(|e| matches!(e, ArtifactEvent::TokenRefused { .. }))
        .count();
    assert_eq!(uses.len(), 1);
    assert_eq!(refusals, 3);
    // Every refusal names the token refused: the same id its valid use was recorded under.
    let used_id = tidegate_identity::Verifier::claimed_token_id(&token).unwrap();
    assert!(events.iter().all(|e| match e {
        ArtifactEvent::TokenRefused { token_id, .. } =>
            token_id.as_deref() == Some(used_id.as_str()),
        _ => true,
    }));
    match uses[0] {
        ArtifactEvent::TokenUse {
            subject,
            key_id,
            digest,
            job,
            ..
        } => {
            assert_eq!(subject, "finetune-2");
            assert_eq!(job.as_deref(), Some("finetune-2"));
            assert_eq!(*key_id, 1);
            assert_eq!(digest, a);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_granted_read_into_a_zone_the_artifact_may_not_be_in_is_refused_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_at(dir.path(), &common::ledger(dir.path()), T0);
    let keys = KeyStore::new(&store.keys_dir());
    keys.create("zone:onprem-a", &["builder"], T0 - 60, 30, true)
        .unwrap();
    let d = store
        .put(
            b"snapshot",
            ArtifactKind::DatasetSnapshot,
            &PutOptions::default(),
            T0,
        )
        .unwrap()
        .digest;
    let issuer = Issuer::generate(1);
    let mut roots = RootKeyring::default();
    roots.add(issuer.root_key(T0 - 60, T0 + 86_400)).unwrap();
    let spec = TokenSpec::Job {
        job_id: "leak-1".into(),
        zone: "gpuaas-eu".into(),
        inputs: vec![resource_name(ArtifactKind::DatasetSnapshot, &d)],
        output_prefix: "artifacts/leak-1/".into(),
        ttl_minutes: 10,
    };
    let token = issuer.mint(&roots, &spec, T0).unwrap();
    let verifier = Verifier::new(roots);
    let ring = keys.keyring().unwrap();
    // The token grants it; the zone rule does not.
    let only_private = |_: &tidegate_artifacts::ArtifactRecord, z: &str| {
        if z.starts_with("onprem") {
            Ok(())
        } else {
            Err(format!("private-only data may not be in zone {z}"))
        }
    };
    let err = read_with_token(
        &store,
        &verifier,
        &ring,
        &only_private,
        &token,
        &d,
        "gpuaas-eu",
        T0 + 1,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ArtifactError::TokenRefused { code: tidegate_artifacts::access::ZONE_NOT_ALLOWED, reason, .. } if reason.contains("private-only")),
        "{err}"
    );
    let events = JsonlSink::new(dir.path().join("artifacts/events.jsonl"))
        .read_all()
        .unwrap();
    assert!(
        events.iter().any(
            |e| matches!(e, ArtifactEvent::TokenRefused { code, .. } if code == "zone-not-allowed")
        ),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ArtifactEvent::TokenUse { .. })),
        "no use was recorded"
    );
}
