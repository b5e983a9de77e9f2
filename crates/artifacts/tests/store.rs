//! Store drills: content addressing, encryption at rest, tamper refusal, crypto-shredding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use tidegate_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, Lane, PutOptions};

const NOW: u64 = 1_800_000_000;

fn opts(name: &str) -> PutOptions {
    PutOptions {
        name: name.into(),
        ..PutOptions::default()
    }
}

#[test]
fn put_returns_named_sha256_digest_and_get_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let rec = store
        .put(b"hello features", ArtifactKind::FeatureSet, &opts("f"), NOW)
        .unwrap();
    assert!(rec.digest.to_string().starts_with("sha256:"));
    assert_eq!(rec.digest, Digest::of(b"hello features"));
    assert_eq!(store.get(&rec.digest).unwrap(), b"hello features");
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn blobs_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let secret = b"patient-id,diagnosis\n12345,diabetes\n".repeat(4);
    let rec = store
        .put(&secret, ArtifactKind::DatasetSnapshot, &opts("d"), NOW)
        .unwrap();
    let on_disk = fs::read(store.blob_path(&rec.digest)).unwrap();
    assert!(
        !on_disk.windows(10).any(|w| w == b"patient-id"),
        "plaintext found on disk"
    );
    assert_ne!(on_disk.len(), secret.len());
    let kek = dir.path().join("keys").join("kek.key");
    assert!(kek.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&kek).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "KEK must be owner-only, got {mode:o}");
        let wrapped = dir
            .path()
            .join("keys/wrapped/sha256")
            .join(format!("{}.json", rec.digest.hex()));
        assert_eq!(
            fs::metadata(wrapped).unwrap().permissions().mode() & 0o077,
            0
        );
    }
}

#[test]
fn put_is_idempotent_and_immutable() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let a = store
        .put(b"x", ArtifactKind::ModelCard, &opts("card"), NOW)
        .unwrap();
    let b = store
        .put(b"x", ArtifactKind::ModelCard, &opts("card"), NOW + 5)
        .unwrap();
    assert_eq!(a, b, "second put returns the original record");
    let err = store
        .put(b"x", ArtifactKind::Model, &opts("m"), NOW)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Conflict { .. }), "{err}");
    let exp = PutOptions {
        lane: Lane::Experiment,
        ..opts("card")
    };
    assert!(matches!(
        store.put(b"x", ArtifactKind::ModelCard, &exp, NOW),
        Err(ArtifactError::Conflict { .. })
    ));
}

#[test]
fn blob_changed_on_disk_is_refused_by_get() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let rec = store
        .put(
            b"weights weights weights",
            ArtifactKind::Checkpoint,
            &opts("c"),
            NOW,
        )
        .unwrap();
    let path = store.blob_path(&rec.digest);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = store.get(&rec.digest).unwrap_err();
    assert!(matches!(err, ArtifactError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains(&rec.digest.to_string()));
}

#[test]
fn blob_swapped_for_another_objects_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let a = store
        .put(b"aaaa", ArtifactKind::EvaluationReport, &opts("a"), NOW)
        .unwrap();
    let b = store
        .put(b"bbbb", ArtifactKind::EvaluationReport, &opts("b"), NOW)
        .unwrap();
    fs::copy(store.blob_path(&b.digest), store.blob_path(&a.digest)).unwrap();
    assert!(matches!(
        store.get(&a.digest),
        Err(ArtifactError::Tampered { .. })
    ));
}

#[test]
fn record_kind_changed_on_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let rec = store
        .put(b"card", ArtifactKind::ModelCard, &opts("c"), NOW)
        .unwrap();
    let path = dir
        .path()
        .join("artifacts/records/sha256")
        .join(format!("{}.json", rec.digest.hex()));
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("model-card", "sanitizer-report");
    fs::write(&path, text).unwrap();
    assert!(matches!(
        store.get(&rec.digest),
        Err(ArtifactError::Tampered { .. })
    ));
}

#[test]
fn record_classification_lane_or_sensitivity_edited_on_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let class = tidegate_artifacts::ArtifactClass {
        level: "restricted".into(),
        tags: ["phi".to_owned()].into_iter().collect(),
        residency: Some(["US".to_owned()].into_iter().collect()),
    };
    let options = PutOptions {
        sensitive: true,
        lane: Lane::Experiment,
        classification: Some(class),
        ..opts("ckpt")
    };
    let rec = store
        .put(
            b"weights of a PHI training",
            ArtifactKind::Checkpoint,
            &options,
            NOW,
        )
        .unwrap();
    assert_eq!(
        store
            .record(&rec.digest)
            .unwrap()
            .classification
            .unwrap()
            .level,
        "restricted"
    );
    let path = dir
        .path()
        .join("artifacts/records/sha256")
        .join(format!("{}.json", rec.digest.hex()));
    let original = fs::read_to_string(&path).unwrap();
    let edits: Vec<(&str, String)> = vec![
        ("level", original.replace("\"restricted\"", "\"public\"")),
        ("tags", original.replace("\"phi\"", "\"pii\"")),
        ("residency", original.replace("\"US\"", "\"EU\"")),
        (
            "sensitive",
            original.replace("\"sensitive\": true", "\"sensitive\": false"),
        ),
        ("lane", original.replace("\"experiment\"", "\"production\"")),
    ];
    for (what, text) in edits {
        assert_ne!(text, original, "the edit of {what} changed nothing");
        fs::write(&path, &text).unwrap();
        assert!(
            matches!(store.get(&rec.digest), Err(ArtifactError::Tampered { .. })),
            "an edited {what} still opened"
        );
    }
    // Dropping the classification (so it would read as another one) is refused too.
    let dropped: serde_json::Value = {
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        v.as_object_mut().unwrap().remove("classification");
        v
    };
    fs::write(&path, serde_json::to_vec(&dropped).unwrap()).unwrap();
    assert!(matches!(
        store.get(&rec.digest),
        Err(ArtifactError::Tampered { .. })
    ));
    fs::write(&path, &original).unwrap();
    assert_eq!(
        store.get(&rec.digest).unwrap(),
        b"weights of a PHI training"
    );
}

#[test]
fn destroying_the_wrapped_data_key_crypto_shreds() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let rec = store
        .put(
            b"to be forgotten",
            ArtifactKind::DatasetSnapshot,
            &opts("d"),
            NOW,
        )
        .unwrap();
    let keep = store
        .put(
            b"to be kept",
            ArtifactKind::DatasetSnapshot,
            &opts("k"),
            NOW,
        )
        .unwrap();
    store.shred(&rec.digest).unwrap();
    let err = store.get(&rec.digest).unwrap_err();
    assert!(matches!(err, ArtifactError::Shredded(_)), "{err}");
    assert!(!store.blob_path(&rec.digest).exists());
    assert_eq!(store.get(&keep.digest).unwrap(), b"to be kept");
    // Storing the same content again later gives a fresh key; the record stays the original.
    let again = store
        .put(
            b"to be forgotten",
            ArtifactKind::DatasetSnapshot,
            &opts("d"),
            NOW + 9,
        )
        .unwrap();
    assert_eq!(again.created_at, NOW);
    assert_eq!(store.get(&rec.digest).unwrap(), b"to be forgotten");
}

#[test]
fn wrong_kek_cannot_open_data_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let rec = store
        .put(b"secret", ArtifactKind::Model, &opts("m"), NOW)
        .unwrap();
    drop(store);
    fs::remove_file(dir.path().join("keys/kek.key")).unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    assert!(matches!(store.get(&rec.digest), Err(ArtifactError::Kms(_))));
}

#[test]
fn unknown_digest_is_not_found_and_bad_digest_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.get(&Digest::of(b"nothing")),
        Err(ArtifactError::NotFound(_))
    ));
    assert!("sha256:1234".parse::<Digest>().is_err());
}

#[test]
fn every_kind_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    for kind in ArtifactKind::ALL {
        let body = format!("content of {kind}");
        let rec = store
            .put(body.as_bytes(), kind, &opts(kind.as_str()), NOW)
            .unwrap();
        assert_eq!(rec.kind, kind);
        assert_eq!(kind.as_str().parse::<ArtifactKind>().unwrap(), kind);
        assert_eq!(store.get(&rec.digest).unwrap(), body.as_bytes());
    }
    assert!("weights".parse::<ArtifactKind>().is_err());
}

#[test]
fn concurrent_puts_of_the_same_content_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let body = b"same snapshot from many writers".repeat(1000);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                // Each writer opens its own store, as separate processes would.
                let store = ArtifactStore::open(dir.path()).unwrap();
                store
                    .put(&body, ArtifactKind::DatasetSnapshot, &opts("d"), NOW)
                    .unwrap();
            });
        }
    });
    let store = ArtifactStore::open(dir.path()).unwrap();
    let d = Digest::of(&body);
    assert_eq!(store.get(&d).unwrap(), body);
}

struct BrokenLedger;

impl tidegate_artifacts::events::EventSink for BrokenLedger {
    fn record(&self, _: &tidegate_artifacts::events::ArtifactEvent) -> Result<(), ArtifactError> {
        Err(ArtifactError::Invalid("ledger unavailable".into()))
    }
}

#[test]
fn no_effect_without_its_event_recorded_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let rec = store
        .put(b"kept", ArtifactKind::ModelCard, &opts("c"), NOW)
        .unwrap();
    let events =
        tidegate_artifacts::events::JsonlSink::new(dir.path().join("artifacts/events.jsonl"));
    let all = events.read_all().unwrap();
    assert!(
        matches!(&all[..], [tidegate_artifacts::events::ArtifactEvent::Put { digest, .. }] if digest == &rec.digest)
    );
    let text = fs::read_to_string(dir.path().join("artifacts/events.jsonl")).unwrap();
    assert!(
        !text.contains("kept"),
        "events hold digests, not content: {text}"
    );

    let broken = ArtifactStore::open(dir.path())
        .unwrap()
        .with_event_sink(Box::new(BrokenLedger));
    let err = broken
        .put(b"refused", ArtifactKind::ModelCard, &opts("r"), NOW)
        .unwrap_err();
    assert!(err.to_string().contains("ledger unavailable"), "{err}");
    assert!(matches!(
        store.get(&Digest::of(b"refused")),
        Err(ArtifactError::NotFound(_))
    ));
    assert!(broken.shred(&rec.digest).is_err());
    assert_eq!(
        store.get(&rec.digest).unwrap(),
        b"kept",
        "shred refused, object intact"
    );
}

#[test]
fn signed_provenance_carries_the_artifacts_classification() {
    use tidegate_artifacts::intoto::Provenance;
    use tidegate_artifacts::signing::KeyStore;
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_at(dir.path(), &common::ledger(dir.path()), NOW);
    let keys = KeyStore::new(&store.keys_dir());
    keys.create("zone:onprem-a", &["builder"], NOW - 60, 30, true)
        .unwrap();
    let class = tidegate_artifacts::ArtifactClass {
        level: "restricted".into(),
        tags: ["phi".to_owned()].into_iter().collect(),
        residency: None,
    };
    let options = PutOptions {
        classification: Some(class),
        ..opts("ckpt")
    };
    let d = store
        .put(b"weights", ArtifactKind::Checkpoint, &options, NOW)
        .unwrap()
        .digest;
    let prov = Provenance {
        job_id: "train-1".into(),
        zone: "onprem-a".into(),
        code_repo: "r".into(),
        code_commit: "abcdef1234567".into(),
        materials: vec![],
        hyperparameters: Default::default(),
        started_at: NOW - 5,
        finished_at: NOW,
    };
    store
        .sign_provenance(&d, &prov, &keys.active_signer(NOW).unwrap())
        .unwrap();
    let report = store.verify(&d, &keys.keyring().unwrap(), NOW).unwrap();
    let p = report.provenance().unwrap();
    assert_eq!(
        p.statement
            .predicate
            .pointer("/buildDefinition/internalParameters/classification")
            .and_then(|v| v.as_str()),
        Some("restricted/phi")
    );
}

/// Blobs that cannot be written (a full disk on the object store).
#[derive(Debug)]
struct FullBlobs;

impl tidegate_artifacts::blobs::BlobBackend for FullBlobs {
    fn put(&self, _: &str, _: &[u8]) -> Result<(), ArtifactError> {
        Err(ArtifactError::Backend("no space left on device".into()))
    }
    fn get(&self, _: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        Ok(None)
    }
    fn exists(&self, _: &str) -> Result<bool, ArtifactError> {
        Ok(false)
    }
    fn delete(&self, _: &str) -> Result<(), ArtifactError> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "full"
    }
}

#[test]
fn a_put_that_cannot_be_stored_says_so_and_the_ledger_records_it_undone() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = common::ledger(dir.path());
    let kms = tidegate_artifacts::kms::FileKeyManager::open(&dir.path().join("keys")).unwrap();
    let sink =
        tidegate_artifacts::ledger_sink::LedgerSink::new(dir.path(), ledger.clone() as _, NOW)
            .unwrap();
    let store = ArtifactStore::with_backends(dir.path(), Box::new(kms), Box::new(FullBlobs))
        .with_event_sink(Box::new(sink));
    let err = store
        .put(b"weights", ArtifactKind::Checkpoint, &opts("ckpt"), NOW)
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::NotStored { recorded: true, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("was NOT stored"), "{err}");
    let d = Digest::of(b"weights");
    assert!(
        store.record(&d).is_err(),
        "no record of an object that is not there"
    );
    let trail = store.history().unwrap().of(&d);
    assert!(trail.stored.is_some() && trail.shredded, "{trail:?}");
}
