//! Sync-back drills: an artifact built in a public burst zone comes back to the private store
//! only through verified, zone-gated transfer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidegate_artifacts::intoto::Provenance;
use tidegate_artifacts::signing::{KeyStore, Signer};
use tidegate_artifacts::transfer::import;
use tidegate_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, PutOptions};

const T0: u64 = 1_800_000_000;

struct Zones {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    burst: ArtifactStore,
    private: ArtifactStore,
    private_keys: KeyStore,
    burst_signer: Signer,
}

fn zones() -> Zones {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let burst = common::store_at(a.path(), &common::ledger(a.path()), T0);
    let private = common::store_at(b.path(), &common::ledger(b.path()), T0);
    let burst_keys = KeyStore::new(&burst.keys_dir());
    let entry = burst_keys
        .create("zone:gpuaas-eu", &["builder"], T0 - 60, 30, true)
        .unwrap();
    let private_keys = KeyStore::new(&private.keys_dir());
    private_keys.trust(entry).unwrap();
    let burst_signer = burst_keys.active_signer(T0).unwrap();
    Zones {
        _dirs: (a, b),
        burst,
        private,
        private_keys,
        burst_signer,
    }
}

fn built(z: &Zones, body: &[u8], zone: &str, signer: &Signer) -> Digest {
    let d = z
        .burst
        .put(
            body,
            ArtifactKind::Checkpoint,
            &PutOptions {
                name: "ckpt".into(),
                ..Default::default()
            },
            T0,
        )
        .unwrap()
        .digest;
    let prov = Provenance {
        job_id: "burst-7".into(),
        zone: zone.into(),
        code_repo: "https://git.example.org/ml".into(),
        code_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        materials: vec![],
        hyperparameters: Default::default(),
        started_at: T0 - 100,
        finished_at: T0,
    };
    z.burst.sign_provenance(&d, &prov, signer).unwrap();
    d
}

fn allowed() -> Vec<String> {
    vec!["gpuaas-eu".to_string()]
}

#[test]
fn signed_artifact_from_allowed_zone_is_imported_and_verifies() {
    let z = zones();
    let d = built(&z, b"checkpoint from burst", "gpuaas-eu", &z.burst_signer);
    let ring = z.private_keys.keyring().unwrap();
    let rep = import(&z.burst, &z.private, &ring, &allowed(), &d, T0 + 10).unwrap();
    assert_eq!(rep.zone, "gpuaas-eu");
    assert_eq!(rep.job_id, "burst-7");
    assert_eq!(rep.envelopes, 1);
    let (content, _) = z.private.pull(&d, &ring, T0 + 20).unwrap();
    assert_eq!(content, b"checkpoint from burst");
}

#[test]
fn tampered_in_source_is_not_imported() {
    let z = zones();
    let d = built(&z, b"checkpoint", "gpuaas-eu", &z.burst_signer);
    let p = z.burst.blob_path(&d);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[30] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let ring = z.private_keys.keyring().unwrap();
    let err = import(&z.burst, &z.private, &ring, &allowed(), &d, T0 + 10).unwrap_err();
    assert!(matches!(err, ArtifactError::Tampered { .. }), "{err}");
    assert!(matches!(
        z.private.record(&d),
        Err(ArtifactError::NotFound(_))
    ));
}

#[test]
fn untrusted_signer_or_wrong_zone_is_not_imported() {
    let z = zones();
    let stranger = Signer::generate();
    let d = built(&z, b"from a stranger", "gpuaas-eu", &stranger);
    let ring = z.private_keys.keyring().unwrap();
    let err = import(&z.burst, &z.private, &ring, &allowed(), &d, T0 + 10).unwrap_err();
    assert!(err.to_string().contains("unknown signing key"), "{err}");

    let d2 = built(&z, b"from elsewhere", "edge-3", &z.burst_signer);
    let err = import(&z.burst, &z.private, &ring, &allowed(), &d2, T0 + 10).unwrap_err();
    assert!(
        err.to_string().contains("not an allowed source zone"),
        "{err}"
    );
    assert!(z.private.list().unwrap().is_empty());
}

#[test]
fn unsigned_report_is_not_imported() {
    let z = zones();
    let d = z
        .burst
        .put(
            b"report",
            ArtifactKind::EvaluationReport,
            &PutOptions::default(),
            T0,
        )
        .unwrap()
        .digest;
    let ring = z.private_keys.keyring().unwrap();
    let err = import(&z.burst, &z.private, &ring, &allowed(), &d, T0 + 10).unwrap_err();
    assert!(
        err.to_string().contains("no signed SLSA provenance"),
        "{err}"
    );
}
