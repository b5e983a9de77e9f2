//! Token drills: scope, expiry, attenuation, root key rotation and revocation, user roles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use biscuit_auth::{Biscuit, BlockBuilder, UnverifiedBiscuit};
use tidegate_identity::{
    attenuate, Action, Attenuation, IdentityError, Issuer, Operation, Request, Role, RootKeyring,
    TokenSpec, Verifier,
};

const T0: u64 = 1_800_000_000;
const CKPT_A: &str =
    "checkpoint:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CKPT_B: &str =
    "checkpoint:sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn setup() -> (Issuer, RootKeyring) {
    let issuer = Issuer::generate(1);
    let mut ring = RootKeyring::default();
    ring.add(issuer.root_key(T0 - 3600, T0 + 86_400 * 30))
        .unwrap();
    (issuer, ring)
}

fn job_spec() -> TokenSpec {
    TokenSpec::Job {
        job_id: "job-42".into(),
        zone: "onprem-a".into(),
        inputs: vec!["dataset:claims@v3".into(), CKPT_A.into()],
        output_prefix: "artifacts/job-42/".into(),
        ttl_minutes: 15,
    }
}

fn read(resource: &str, zone: &str) -> Request {
    Request::Data {
        operation: Operation::Read,
        resource: resource.into(),
        zone: zone.into(),
    }
}

fn write(resource: &str, zone: &str) -> Request {
    Request::Data {
        operation: Operation::Write,
        resource: resource.into(),
        zone: zone.into(),
    }
}

#[test]
fn job_token_reads_its_inputs_and_writes_under_its_prefix() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    let v = Verifier::new(ring);
    let grant = v
        .authorize(&token, &read(CKPT_A, "onprem-a"), T0 + 60)
        .unwrap();
    assert_eq!(grant.claims.job.as_deref(), Some("job-42"));
    assert_eq!(grant.claims.expires_at, T0 + 15 * 60);
    v.authorize(&token, &read("dataset:claims@v3", "onprem-a"), T0 + 60)
        .unwrap();
    v.authorize(
        &token,
        &write("artifacts/job-42/model.safetensors", "onprem-a"),
        T0 + 60,
    )
    .unwrap();
}

#[test]
fn job_token_cannot_read_another_checkpoint() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    let err = Verifier::new(ring)
        .authorize(&token, &read(CKPT_B, "onprem-a"), T0 + 60)
        .unwrap_err();
    assert!(matches!(err, IdentityError::Denied(_)), "{err}");
}

#[test]
fn job_token_cannot_read_another_dataset_version_or_write_outside_prefix_or_zone() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    let v = Verifier::new(ring);
    for req in [
        read("dataset:claims@v4", "onprem-a"),
        read(CKPT_A, "gpuaas-eu"),
        write("artifacts/job-4/x", "onprem-a"),
        write("artifacts/job-42/x", "gpuaas-eu"),
        write(CKPT_A, "onprem-a"),
    ] {
        let err = v.authorize(&token, &req, T0 + 60).unwrap_err();
        assert!(matches!(err, IdentityError::Denied(_)), "{req:?}: {err}");
    }
}

#[test]
fn expired_token_is_refused() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    let v = Verifier::new(ring);
    v.authorize(&token, &read(CKPT_A, "onprem-a"), T0 + 15 * 60 - 1)
        .unwrap();
    let err = v
        .authorize(&token, &read(CKPT_A, "onprem-a"), T0 + 15 * 60)
        .unwrap_err();
    match err {
        IdentityError::Expired { expires_at, now } => {
            assert_eq!(expires_at, T0 + 900);
            assert_eq!(now, T0 + 900);
        }
        other => panic!("expected Expired, got {other}"),
    }
}

#[test]
fn attenuated_token_is_narrower() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    let narrowed = attenuate(
        &token,
        &Attenuation {
            operation: Some(Operation::Read),
            resource_prefix: Some("dataset:".into()),
            expires_at: Some(T0 + 120),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let v = Verifier::new(ring);
    v.authorize(&narrowed, &read("dataset:claims@v3", "onprem-a"), T0 + 60)
        .unwrap();
    // The original could read the checkpoint and write; the attenuated one cannot.
    v.authorize(&token, &read(CKPT_A, "onprem-a"), T0 + 60)
        .unwrap();
    assert!(matches!(
        v.authorize(&narrowed, &read(CKPT_A, "onprem-a"), T0 + 60)
            .unwrap_err(),
        IdentityError::Denied(_)
    ));
    assert!(matches!(
        v.authorize(&narrowed, &write("artifacts/job-42/x", "onprem-a"), T0 + 60)
            .unwrap_err(),
        IdentityError::Denied(_)
    ));
    // Its own, earlier expiry applies: past it, the token has expired.
    let err = v
        .authorize(&narrowed, &read("dataset:claims@v3", "onprem-a"), T0 + 121)
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::Expired { expires_at, .. } if expires_at == T0 + 120),
        "{err}"
    );
    assert_eq!(v.inspect(&narrowed, T0).unwrap().blocks, 2);
}

#[test]
fn attenuated_token_cannot_widen_by_adding_facts_or_later_expiry() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    // A holder appends a block claiming another input, another zone and a later expiry.
    let unverified = UnverifiedBiscuit::from_base64(&token).unwrap();
    let block = BlockBuilder::new()
        .code(format!(
            r#"input("{CKPT_B}"); job_zone("gpuaas-eu"); output_prefix("/"); kind("user"); role("admin");"#
        ))
        .unwrap();
    let widened = unverified.append(block).unwrap().to_base64().unwrap();
    let v = Verifier::new(ring);
    for req in [
        read(CKPT_B, "onprem-a"),
        read(CKPT_A, "gpuaas-eu"),
        write("other/x", "onprem-a"),
    ] {
        let err = v.authorize(&widened, &req, T0 + 60).unwrap_err();
        assert!(matches!(err, IdentityError::Denied(_)), "{req:?}: {err}");
    }
    let api = Request::Api {
        action: Action::Administer,
        team: "x".into(),
    };
    assert!(matches!(
        v.authorize(&widened, &api, T0 + 60).unwrap_err(),
        IdentityError::Denied(_)
    ));
    // Attenuating with a later expiry does not extend the token.
    let later = attenuate(
        &token,
        &Attenuation {
            expires_at: Some(T0 + 86_400),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        v.authorize(&later, &read(CKPT_A, "onprem-a"), T0 + 3600)
            .unwrap_err(),
        IdentityError::Expired { .. }
    ));
    // The verified claims ignore facts from appended blocks.
    let claims = v.inspect(&widened, T0).unwrap();
    assert_eq!(
        claims.inputs,
        vec![CKPT_A.to_string(), "dataset:claims@v3".to_string()]
    );
    assert_eq!(claims.zone.as_deref(), Some("onprem-a"));
}

#[test]
fn empty_attenuation_is_refused() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    assert!(matches!(
        attenuate(&token, &Attenuation::default()),
        Err(IdentityError::InvalidSpec(_))
    ));
}

#[test]
fn token_from_revoked_root_key_is_refused() {
    let (issuer, mut ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    ring.revoke(1, T0 + 10).unwrap();
    let v = Verifier::new(ring.clone());
    let err = v
        .authorize(&token, &read(CKPT_A, "onprem-a"), T0 + 60)
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::RevokedRootKey { id: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("revoked"));
    // Minting with a revoked key is refused too.
    assert!(matches!(
        issuer.mint(&ring, &job_spec(), T0 + 60),
        Err(IdentityError::RevokedRootKey { .. })
    ));
}

#[test]
fn token_from_unknown_root_key_is_refused() {
    let (_, ring) = setup();
    let stranger = Issuer::generate(7);
    let mut own_ring = RootKeyring::default();
    own_ring.add(stranger.root_key(0, u64::MAX)).unwrap();
    let token = stranger.mint(&own_ring, &job_spec(), T0).unwrap();
    let err = Verifier::new(ring)
        .authorize(&token, &read(CKPT_A, "onprem-a"), T0)
        .unwrap_err();
    assert!(matches!(err, IdentityError::UnknownRootKey(7)), "{err}");
}

#[test]
fn token_signed_by_other_key_under_a_trusted_id_is_refused() {
    let (_, ring) = setup();
    // Same id 1 as the trusted key, but a different private key.
    let impostor = Issuer::generate(1);
    let mut own_ring = RootKeyring::default();
    own_ring.add(impostor.root_key(0, u64::MAX)).unwrap();
    let token = impostor.mint(&own_ring, &job_spec(), T0).unwrap();
    let err = Verifier::new(ring)
        .authorize(&token, &read(CKPT_A, "onprem-a"), T0)
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::BadSignature { id: 1, .. }),
        "{err}"
    );
}

#[test]
fn token_without_key_id_and_garbage_are_refused() {
    let (issuer, ring) = setup();
    let kp = biscuit_auth::KeyPair::new();
    let no_id = Biscuit::builder()
        .code(r#"kind("job");"#)
        .unwrap()
        .build(&kp)
        .unwrap();
    let v = Verifier::new(ring);
    let err = v.inspect(&no_id.to_base64().unwrap(), T0).unwrap_err();
    assert!(matches!(err, IdentityError::MissingKeyId), "{err}");
    assert!(matches!(
        v.inspect("not-a-token", T0).unwrap_err(),
        IdentityError::Malformed(_)
    ));
    let _ = issuer;
}

#[test]
fn rotation_keeps_old_tokens_valid_until_old_key_window_ends() {
    let (old, mut ring) = setup();
    let old_token = old.mint(&ring, &job_spec(), T0).unwrap();
    let new = Issuer::generate(2);
    ring.add(new.root_key(T0 + 30, T0 + 86_400 * 60)).unwrap();
    ring.retire(1, T0 + 600).unwrap();
    let new_token = new.mint(&ring, &job_spec(), T0 + 60).unwrap();
    let v = Verifier::new(ring.clone());
    v.authorize(&old_token, &read(CKPT_A, "onprem-a"), T0 + 120)
        .unwrap();
    let grant = v
        .authorize(&new_token, &read(CKPT_A, "onprem-a"), T0 + 120)
        .unwrap();
    assert_eq!(grant.claims.key_id, 2);
    let err = v
        .authorize(&old_token, &read(CKPT_A, "onprem-a"), T0 + 601)
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::RootKeyOutsideWindow { id: 1, .. }),
        "{err}"
    );
    assert!(matches!(
        old.mint(&ring, &job_spec(), T0 + 601),
        Err(IdentityError::RootKeyOutsideWindow { .. })
    ));
}

#[test]
fn revoked_token_id_is_refused() {
    let (issuer, mut ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    let rid = Verifier::new(ring.clone())
        .inspect(&token, T0)
        .unwrap()
        .revocation_id;
    ring.revoke_token(&rid);
    let err = Verifier::new(ring)
        .authorize(&token, &read(CKPT_A, "onprem-a"), T0)
        .unwrap_err();
    assert!(matches!(err, IdentityError::RevokedToken(_)), "{err}");
}

#[test]
fn user_token_with_wrong_role_or_team_is_refused() {
    let (issuer, ring) = setup();
    let spec = TokenSpec::User {
        subject: "ana".into(),
        role: Role::Submitter,
        team: "fraud".into(),
        ttl_minutes: 30,
    };
    let token = issuer.mint(&ring, &spec, T0).unwrap();
    let v = Verifier::new(ring.clone());
    let api = |action, team: &str| Request::Api {
        action,
        team: team.into(),
    };
    v.authorize(&token, &api(Action::Submit, "fraud"), T0)
        .unwrap();
    for req in [
        api(Action::Approve, "fraud"),
        api(Action::Submit, "risk"),
        api(Action::Administer, "fraud"),
    ] {
        let err = v.authorize(&token, &req, T0).unwrap_err();
        assert!(matches!(err, IdentityError::Denied(_)), "{req:?}: {err}");
    }
    // A user token is not a data credential.
    assert!(matches!(
        v.authorize(&token, &read(CKPT_A, "onprem-a"), T0),
        Err(IdentityError::Denied(_))
    ));
    // Admin may act for any team; approver and auditor only their own action.
    let admin = TokenSpec::User {
        subject: "root".into(),
        role: Role::Admin,
        team: "ops".into(),
        ttl_minutes: 5,
    };
    let admin = issuer.mint(&ring, &admin, T0).unwrap();
    v.authorize(&admin, &api(Action::Approve, "risk"), T0)
        .unwrap();
    let auditor = TokenSpec::User {
        subject: "au".into(),
        role: Role::Auditor,
        team: "risk".into(),
        ttl_minutes: 5,
    };
    let auditor = issuer.mint(&ring, &auditor, T0).unwrap();
    v.authorize(&auditor, &api(Action::Audit, "risk"), T0)
        .unwrap();
    assert!(v
        .authorize(&auditor, &api(Action::Approve, "risk"), T0)
        .is_err());
}

#[test]
fn invalid_specs_are_refused() {
    let (issuer, ring) = setup();
    let mut spec = job_spec();
    if let TokenSpec::Job { output_prefix, .. } = &mut spec {
        *output_prefix = String::new();
    }
    assert!(matches!(
        issuer.mint(&ring, &spec, T0),
        Err(IdentityError::InvalidSpec(_))
    ));
    let mut spec = job_spec();
    if let TokenSpec::Job { ttl_minutes, .. } = &mut spec {
        *ttl_minutes = 60 * 24 * 7;
    }
    assert!(matches!(
        issuer.mint(&ring, &spec, T0),
        Err(IdentityError::InvalidSpec(_))
    ));
}

#[test]
fn keyring_round_trips_and_rejects_duplicates() {
    let (issuer, ring) = setup();
    let text = ring.to_json().unwrap();
    assert_eq!(RootKeyring::from_json(&text).unwrap(), ring);
    let mut dup = ring.clone();
    assert!(dup.add(issuer.root_key(0, 10)).is_err());
    let restored = Issuer::from_private_hex(1, &issuer.private_hex()).unwrap();
    assert!(restored.mint(&ring, &job_spec(), T0).is_ok());
}

#[test]
fn key_store_rotation_keeps_live_tokens_and_revocation_refuses() {
    use tidegate_identity::RootKeyStore;
    let dir = tempfile::tempdir().unwrap();
    let keys = RootKeyStore::new(dir.path());
    assert!(keys.issuer().is_err(), "no key yet");
    keys.rotate(T0, 30).unwrap();
    let old = keys.issuer().unwrap();
    let token = old.mint(&keys.keyring().unwrap(), &job_spec(), T0).unwrap();
    let second = keys.rotate(T0 + 60, 30).unwrap();
    assert_eq!(second.id, 2);
    assert_eq!(keys.issuer().unwrap().key_id(), 2);
    // The token minted before rotation still verifies until it expires.
    let v = Verifier::new(keys.keyring().unwrap());
    v.authorize(&token, &read(CKPT_A, "onprem-a"), T0 + 120)
        .unwrap();
    keys.revoke(1, T0 + 130).unwrap();
    let v = Verifier::new(keys.keyring().unwrap());
    assert!(matches!(
        v.authorize(&token, &read(CKPT_A, "onprem-a"), T0 + 140),
        Err(IdentityError::RevokedRootKey { id: 1, .. })
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("token/root-2.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private key must not be readable by others"
        );
    }
}

#[test]
fn path_traversal_out_of_the_output_prefix_is_refused() {
    let (issuer, ring) = setup();
    let token = issuer.mint(&ring, &job_spec(), T0).unwrap();
    let v = Verifier::new(ring);
    for bad in [
        "artifacts/job-42/../job-43/model",
        "artifacts/job-42/./x",
        "artifacts/job-42//x",
        "artifacts/job-42/a\\..\\b",
        "artifacts/job-42/x\n",
    ] {
        let err = v
            .authorize(&token, &write(bad, "onprem-a"), T0 + 1)
            .unwrap_err();
        assert!(matches!(err, IdentityError::Denied(_)), "{bad:?}: {err}");
    }
    v.authorize(
        &token,
        &write("artifacts/job-42/sub/model.bin", "onprem-a"),
        T0 + 1,
    )
    .unwrap();
}

#[test]
fn an_attenuation_that_has_lapsed_is_an_expired_token_and_a_read_only_one_reads_but_never_writes() {
    let (issuer, ring) = setup();
    let spec = TokenSpec::User {
        subject: "ana".into(),
        role: Role::Admin,
        team: "fraud".into(),
        ttl_minutes: 60,
    };
    let token = issuer.mint(&ring, &spec, T0).unwrap();
    let v = Verifier::new(ring);
    let api = |action| Request::Api {
        action,
        team: "fraud".into(),
    };
    // Narrowed to ten minutes: the token's expiry is the attenuation's, and past it both
    // inspection and authorization say it expired (not that it was denied).
    let lapsing = attenuate(
        &token,
        &Attenuation {
            expires_at: Some(T0 + 600),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(v.inspect(&lapsing, T0).unwrap().expires_at, T0 + 600);
    v.authorize(&lapsing, &api(Action::Submit), T0 + 599)
        .unwrap();
    assert!(
        matches!(
            v.inspect(&lapsing, T0 + 600),
            Err(IdentityError::Expired { expires_at, .. }) if expires_at == T0 + 600
        ),
        "{:?}",
        v.inspect(&lapsing, T0 + 600)
    );
    assert!(matches!(
        v.authorize(&lapsing, &api(Action::Read), T0 + 601),
        Err(IdentityError::Expired { .. })
    ));
    // Narrowed to reading: the read-like actions pass, every other one is denied.
    let read_only = attenuate(
        &token,
        &Attenuation {
            operation: Some(Operation::Read),
            ..Default::default()
        },
    )
    .unwrap();
    for action in [Action::Read, Action::Observe, Action::Audit] {
        v.authorize(&read_only, &api(action), T0)
            .unwrap_or_else(|e| panic!("{action:?}: {e}"));
    }
    for action in [
        Action::Submit,
        Action::Approve,
        Action::Cancel,
        Action::Agent,
        Action::Administer,
    ] {
        assert!(
            matches!(
                v.authorize(&read_only, &api(action), T0),
                Err(IdentityError::Denied(_))
            ),
            "{action:?}"
        );
    }
    // And narrowed to writing, it reads nothing.
    let write_only = attenuate(
        &token,
        &Attenuation {
            operation: Some(Operation::Write),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(v.authorize(&write_only, &api(Action::Read), T0).is_err());
    v.authorize(&write_only, &api(Action::Submit), T0).unwrap();
}
