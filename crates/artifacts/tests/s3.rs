//! S3 backend drills against an S3-compatible server (moto in CI): round trip, encryption at
//! rest, tamper refusal and crypto-shred on object storage. Needs the `s3` feature and
//! `TIDEGATE_S3_TEST_ENDPOINT`; `s3-test.sh` starts a server and runs these. Without the
//! endpoint they skip with a message, except under `CI=true`, where a missing endpoint fails.
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tidegate_artifacts::blobs::s3::{S3Blobs, S3Config};
use tidegate_artifacts::blobs::BlobBackend;
use tidegate_artifacts::kms::FileKeyManager;
use tidegate_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, PutOptions};

const NOW: u64 = 1_800_000_000;

/// The endpoint from `TIDEGATE_S3_TEST_ENDPOINT`, or `None` (test skips) when it is unset
/// outside CI. Under `CI=true` a missing endpoint is a failure, not a skip.
fn endpoint() -> Option<String> {
    match std::env::var("TIDEGATE_S3_TEST_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true but TIDEGATE_S3_TEST_ENDPOINT is unset: run crates/artifacts/s3-test.sh"
            );
            eprintln!(
                "skipping S3 drills: TIDEGATE_S3_TEST_ENDPOINT is unset (crates/artifacts/s3-test.sh starts moto and sets it)"
            );
            None
        }
    }
}

fn config(endpoint: &str, prefix: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_string()),
        bucket: std::env::var("TIDEGATE_S3_TEST_BUCKET").unwrap_or_else(|_| "tidegate-test".into()),
        region: "us-east-1".into(),
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        prefix: prefix.into(),
        allow_http: true,
    }
}

fn store(dir: &std::path::Path, endpoint: &str, prefix: &str) -> ArtifactStore {
    let kms = FileKeyManager::open(&dir.join("keys")).unwrap();
    ArtifactStore::with_backends(
        dir,
        Box::new(kms),
        Box::new(S3Blobs::new(&config(endpoint, prefix)).unwrap()),
    )
}

#[test]
fn s3_round_trip_tamper_and_shred() {
    let Some(endpoint) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("run-{}", tidegate_artifacts::lineage::random_uuid_v4());
    let s = store(dir.path(), &endpoint, &prefix);
    let body = b"checkpoint bytes on object storage".repeat(100);
    let rec = s
        .put(&body, ArtifactKind::Checkpoint, &PutOptions::default(), NOW)
        .unwrap();
    assert_eq!(s.get(&rec.digest).unwrap(), body);
    // Nothing is on local disk; the object in the bucket is ciphertext.
    assert!(!s.blob_path(&rec.digest).exists());
    let raw = S3Blobs::new(&config(&endpoint, &prefix)).unwrap();
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
