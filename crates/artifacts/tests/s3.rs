//! S3 backend drills against an S3-compatible server (moto in CI): round trip, encryption at
//! rest, tamper refusal and crypto-shred on object storage. Needs the `s3` feature and
//! `TIDEGATE_S3_TEST_ENDPOINT`; `s3-test.sh` starts a server and runs these.
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tidegate_artifacts::blobs::s3::{S3Blobs, S3Config};
use tidegate_artifacts::blobs::BlobBackend;
use tidegate_artifacts::kms::FileKeyManager;
use tidegate_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, PutOptions};

const NOW: u64 = 1_800_000_000;

fn config(prefix: &str) -> S3Config {
    let endpoint = std::env::var("TIDEGATE_S3_TEST_ENDPOINT")
        .expect("set TIDEGATE_S3_TEST_ENDPOINT (s3-test.sh does) to run the S3 drills");
    S3Config {
        endpoint: Some(endpoint),
        bucket: std::env::var("TIDEGATE_S3_TEST_BUCKET").unwrap_or_else(|_| "tidegate-test".into()),
        region: "us-east-1".into(),
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        prefix: prefix.into(),
        allow_http: true,
    }
}

fn store(dir: &std::path::Path, prefix: &str) -> ArtifactStore {
    let kms = FileKeyManager::open(&dir.join("keys")).unwrap();
    ArtifactStore::with_backends(
        dir,
        Box::new(kms),
        Box::new(S3Blobs::new(&config(prefix)).unwrap()),
    )
}

#[test]
#[ignore = "needs an S3 endpoint; run crates/artifacts/s3-test.sh"]
fn s3_round_trip_tamper_and_shred() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("run-{}", tidegate_artifacts::lineage::random_uuid_v4());
    let s = store(dir.path(), &prefix);
    let body = b"checkpoint bytes on object storage".repeat(100);
    let rec = s
        .put(&body, ArtifactKind::Checkpoint, &PutOptions::default(), NOW)
        .unwrap();
    assert_eq!(s.get(&rec.digest).unwrap(), body);
    // Nothing is on local disk; the object in the bucket is ciphertext.
    assert!(!s.blob_path(&rec.digest).exists());
    let raw = S3Blobs::new(&config(&prefix)).unwrap();
    let key = format!("blobs/sha256/{}", rec.digest.hex());
    let stored = raw.get(&key).unwrap().unwrap();
    assert!(!stored.windows(16).any(|w| w == &body[..16]));
    // Tamper with the object in the bucket: get refuses.
    let mut bad = stored.clone();
    bad[40] ^= 1;
    raw.put(&key, &bad).unwrap();
    assert!(matches!(
        s.get(&rec.digest),
        Err(ArtifactError::Tampered { .. })
    ));
    raw.put(&key, &stored).unwrap();
    assert_eq!(s.get(&rec.digest).unwrap(), body);
    // Crypto-shred removes key and object.
    s.shred(&rec.digest).unwrap();
    assert!(!raw.exists(&key).unwrap());
    assert!(matches!(
        s.get(&rec.digest),
        Err(ArtifactError::Shredded(_))
    ));
    assert!(matches!(
        s.get(&Digest::of(b"absent")),
        Err(ArtifactError::NotFound(_))
    ));
}
