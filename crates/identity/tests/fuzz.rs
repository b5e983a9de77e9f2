//! Fuzzing token parsing and verification: arbitrary text, minted tokens with flipped,
//! replaced, cut or inserted characters and bytes, attenuations and appended blocks of any
//! content, keyrings and private keys from arbitrary input. Nothing panics, nothing that is not a
//! token minted by a trusted key verifies, and no change a holder can make grants more than the
//! token it started from. `PROPTEST_CASES` sets the number of cases per property.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use tidegate_identity::{
    attenuate, Action, Attenuation, IdentityError, Issuer, Operation, Request, Role, RootKey,
    RootKeyring, TokenSpec, Verifier, MAX_TTL_MINUTES,
};

const T0: u64 = 1_800_000_000;
const CKPT: &str =
    "checkpoint:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Cases per property: `PROPTEST_CASES`, or `default` (sized so that this file runs in seconds
/// in a debug build).
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

struct Setup {
    issuer: Issuer,
    ring: RootKeyring,
    user: String,
    job: String,
}

fn setup() -> &'static Setup {
    static SETUP: std::sync::OnceLock<Setup> = std::sync::OnceLock::new();
    SETUP.get_or_init(|| {
        let issuer = Issuer::generate(7);
        let mut ring = RootKeyring::default();
        ring.add(issuer.root_key(T0 - 3600, T0 + 86_400)).unwrap();
        let user = issuer
            .mint(
                &ring,
                &TokenSpec::User {
                    subject: "ana".into(),
                    role: Role::Submitter,
                    team: "icu-ml".into(),
                    ttl_minutes: 60,
                },
                T0,
            )
            .unwrap();
        let job = issuer
            .mint(
                &ring,
                &TokenSpec::Job {
                    job_id: "job-1".into(),
                    zone: "onprem".into(),
                    inputs: vec![CKPT.into(), "dataset:ehr@v1".into()],
                    output_prefix: "artifacts/job-1/".into(),
                    ttl_minutes: 60,
                },
                T0,
            )
            .unwrap();
        Setup {
            issuer,
            ring,
            user,
            job,
        }
    })
}

fn verifier() -> Verifier {
    Verifier::new(setup().ring.clone())
}

// ---------- requests ----------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("onprem".to_owned()),
        Just("icu-ml".to_owned()),
        Just(CKPT.to_owned()),
        Just("dataset:ehr@v1".to_owned()),
        Just("artifacts/job-1/model.bin".to_owned()),
        Just("artifacts/job-1/../x".to_owned()),
        Just("artifacts/job-1//x".to_owned()),
        Just("artifacts/".to_owned()),
        Just("\"); role(\"admin".to_owned()),
        "\\PC{0,24}",
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Submit),
        Just(Action::Approve),
        Just(Action::Audit),
        Just(Action::Read),
        Just(Action::Cancel),
        Just(Action::Observe),
        Just(Action::Agent),
        Just(Action::Administer),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![Just(Operation::Read), Just(Operation::Write)]
}

/// Requests: mostly ones the starting tokens allow (so that a widening would show), and any.
fn request() -> impl Strategy<Value = Request> {
    let allowed = prop_oneof![
        (prop_oneof![
            Just(Action::Submit),
            Just(Action::Read),
            Just(Action::Cancel)
        ])
        .prop_map(|action| Request::Api {
            action,
            team: "icu-ml".into()
        }),
        prop_oneof![Just(CKPT), Just("dataset:ehr@v1")].prop_map(|r| Request::Data {
            operation: Operation::Read,
            resource: r.into(),
            zone: "onprem".into(),
        }),
        "artifacts/job-1/[a-z./]{0,12}".prop_map(|r| Request::Data {
            operation: Operation::Write,
            resource: r,
            zone: "onprem".into(),
        }),
    ];
    let any = prop_oneof![
        (operation(), text(), text()).prop_map(|(operation, resource, zone)| Request::Data {
            operation,
            resource,
            zone
        }),
        (action(), text()).prop_map(|(action, team)| Request::Api { action, team }),
    ];
    prop_oneof![3 => allowed, 2 => any]
}

/// Times: mostly within the tokens' lives, and around them and the extremes.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => T0..T0 + 3600,
        1 => T0 - 7200..T0 + 7200,
        1 => prop_oneof![
            Just(0),
            Just(T0 - 3600),
            Just(T0 + 3600),
            Just(i64::MAX as u64),
            Just(u64::MAX),
            any::<u64>(),
        ],
    ]
}

/// What the unchanged token decides: a changed token may refuse more, never allow more.
fn check_no_wider(original: &str, changed: &str, req: &Request, now: u64) {
    let v = verifier();
    match v.authorize(changed, req, now) {
        Ok(grant) => {
            let before = v.authorize(original, req, now);
            assert!(
                before.is_ok(),
                "a changed token allows {req:?} at {now}, the original does not: {before:?}"
            );
            assert_eq!(grant.claims.kind, before.unwrap().claims.kind);
        }
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
}

// ---------- mutations of the token text and bytes ----------

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Delete(Index),
    Insert(Index, u8),
    Swap(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        bytes.push(0);
    }
    let n = bytes.len();
    match m {
        Mutation::FlipBit(i, b) => bytes[i.index(n)] ^= 1 << b,
        Mutation::SetByte(i, b) => bytes[i.index(n)] = *b,
        Mutation::Truncate(i) => bytes.truncate(i.index(n)),
        Mutation::Delete(i) => {
            bytes.remove(i.index(n));
        }
        Mutation::Insert(i, b) => bytes.insert(i.index(n + 1), *b),
        Mutation::Swap(a, b) => bytes.swap(a.index(n), b.index(n)),
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn arbitrary_text_never_verifies(token in "\\PC{0,300}", req in request(), now in time()) {
        let v = verifier();
        prop_assert!(v.inspect(&token, now).is_err());
        prop_assert!(v.authorize(&token, &req, now).is_err());
        let narrow = Attenuation { zone: Some("z".into()), ..Default::default() };
        prop_assert!(attenuate(&token, &narrow).is_err(), "arbitrary text attenuated");
    }

    #[test]
    fn base64_of_arbitrary_bytes_never_verifies(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        req in request(),
        now in time(),
    ) {
        let token = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
        let v = verifier();
        prop_assert!(v.inspect(&token, now).is_err());
        prop_assert!(v.authorize(&token, &req, now).is_err());
    }

    #[test]
    fn mutated_token_text_is_refused_or_grants_no_more(
        job in any::<bool>(),
        ms in prop::collection::vec(mutation(), 1..4),
        req in request(),
        now in time(),
    ) {
        let s = setup();
        let original = if job { &s.job } else { &s.user };
        let mut bytes = original.as_bytes().to_vec();
        for m in &ms {
            apply(&mut bytes, m);
        }
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(claims) = verifier().inspect(&changed, now) {
            // Only a change that decodes to the same token (padding, surrounding space) verifies.
            prop_assert_eq!(claims, verifier().inspect(original, now).unwrap());
        }
        check_no_wider(original, &changed, &req, now);
    }

    #[test]
    fn mutated_token_bytes_are_refused_or_grant_no_more(
        job in any::<bool>(),
        ms in prop::collection::vec(mutation(), 1..4),
        req in request(),
        now in time(),
    ) {
        let s = setup();
        let original = if job { &s.job } else { &s.user };
        let engine = base64::engine::general_purpose::URL_SAFE;
        let unchanged = engine.decode(original).unwrap();
        let mut bytes = unchanged.clone();
        for m in &ms {
            apply(&mut bytes, m);
        }
        prop_assume!(bytes != unchanged);
        let changed = engine.encode(&bytes);
        // Protobuf re-encodings of the same token (an unknown field number for a default value)
        // verify, as the same token: the same claims and revocation id, so revoking the original
        // refuses them too. Any other change is refused.
        if let Ok(claims) = verifier().inspect(&changed, now) {
            prop_assert_eq!(claims, verifier().inspect(original, now).unwrap());
            let mut ring = setup().ring.clone();
            for rid in UnverifiedBiscuit::from_base64(&changed).unwrap().revocation_identifiers() {
                ring.revoke_token(&hex::encode(rid));
            }
            let refused = Verifier::new(ring).inspect(original, now);
            prop_assert!(matches!(refused, Err(IdentityError::RevokedToken(_))), "{refused:?}");
        }
        check_no_wider(original, &changed, &req, now);
    }

    #[test]
    fn attenuation_only_narrows(
        job in any::<bool>(),
        expires_at in prop::option::of(time()),
        operation in prop::option::of(operation()),
        resource_prefix in prop::option::of(text()),
        zone in prop::option::of(text()),
        req in request(),
        now in time(),
    ) {
        let s = setup();
        let original = if job { &s.job } else { &s.user };
        let restriction = Attenuation { expires_at, operation, resource_prefix, zone };
        match attenuate(original, &restriction) {
            Ok(narrowed) => {
                if let Ok(claims) = verifier().inspect(&narrowed, now) {
                    let before = verifier().inspect(original, now).unwrap();
                    prop_assert!(claims.expires_at <= before.expires_at);
                    prop_assert_eq!(claims.blocks, 2);
                }
                check_no_wider(original, &narrowed, &req, now);
            }
            Err(e) => prop_assert!(
                matches!(e, IdentityError::InvalidSpec(_)) && restriction == Attenuation::default(),
                "{e}"
            ),
        }
    }
}

// ---------- blocks a holder appends ----------

/// Datalog a holder may write into an appended block: facts and rules that try to widen the
/// token, checks, and whatever else parses.
fn block_code() -> impl Strategy<Value = String> {
    let stmt = prop_oneof![
        Just("role(\"admin\");".to_owned()),
        Just("kind(\"user\");".to_owned()),
        Just("kind(\"job\");".to_owned()),
        Just("team(\"radiology-ai\");".to_owned()),
        Just("input(\"checkpoint:sha256:bb\");".to_owned()),
        Just("job_zone(\"public-eu\");".to_owned()),
        Just("output_prefix(\"\");".to_owned()),
        Just("expires(2100-01-01T00:00:00Z);".to_owned()),
        Just("role($r) <- req_action($r);".to_owned()),
        Just("input($r) <- req_resource($r);".to_owned()),
        Just("job_zone($z) <- req_zone($z);".to_owned()),
        Just("team($t) <- req_team($t);".to_owned()),
        Just("role_allows(\"submitter\", \"administer\");".to_owned()),
        Just("check if true;".to_owned()),
        Just("check if time($t), $t < 1970-01-01T00:00:01Z;".to_owned()),
        Just("check if time($t), $t < 9999-12-31T23:59:59Z;".to_owned()),
        Just("check all time($t), $t < 2100-01-01T00:00:00Z;".to_owned()),
        Just("trusting authority check if role(\"admin\");".to_owned()),
        Just("check if req_zone($z), $z.starts_with(\"\");".to_owned()),
        "[a-z_]{1,8}\\(\"[ -~]{0,8}\"\\);",
        "check if [a-z_]{1,8}\\(\\$[a-z]\\);",
    ];
    prop::collection::vec(stmt, 1..6).prop_map(|v| v.join("\n"))
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn appended_blocks_grant_no_more(
        job in any::<bool>(),
        code in block_code(),
        req in request(),
        now in time(),
    ) {
        let s = setup();
        let original = if job { &s.job } else { &s.user };
        let Ok(block) = BlockBuilder::new().code(code.as_str()) else {
            return Ok(());
        };
        let widened = UnverifiedBiscuit::from_base64(original)
            .unwrap()
            .append(block)
            .unwrap()
            .to_base64()
            .unwrap();
        if let Ok(claims) = verifier().inspect(&widened, now) {
            let before = verifier().inspect(original, now).unwrap();
            // Facts of appended blocks are never read as claims.
            prop_assert_eq!(
                (&claims.kind, &claims.role, &claims.team, &claims.zone, &claims.inputs),
                (&before.kind, &before.role, &before.team, &before.zone, &before.inputs)
            );
            prop_assert!(claims.expires_at <= before.expires_at);
        }
        check_no_wider(original, &widened, &req, now);
    }
}

// ---------- minting, keyrings and keys from arbitrary input ----------

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Submitter),
        Just(Role::Approver),
        Just(Role::Auditor),
        Just(Role::Admin),
        Just(Role::Agent),
    ]
}

fn spec() -> impl Strategy<Value = TokenSpec> {
    let ttl = prop_oneof![0..=MAX_TTL_MINUTES + 1, any::<u32>()];
    prop_oneof![
        (text(), role(), text(), ttl.clone()).prop_map(|(subject, role, team, ttl_minutes)| {
            TokenSpec::User {
                subject,
                role,
                team,
                ttl_minutes,
            }
        }),
        (
            text(),
            text(),
            prop::collection::vec(text(), 0..4),
            text(),
            ttl
        )
            .prop_map(|(job_id, zone, inputs, output_prefix, ttl_minutes)| {
                TokenSpec::Job {
                    job_id,
                    zone,
                    inputs,
                    output_prefix,
                    ttl_minutes,
                }
            }),
    ]
}

/// A keyring whose one key is valid at every time.
fn forever() -> (&'static Issuer, RootKeyring) {
    let s = setup();
    let mut ring = RootKeyring::default();
    ring.add(s.issuer.root_key(0, u64::MAX)).unwrap();
    (&s.issuer, ring)
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn minting_any_spec_at_any_time_is_a_token_or_a_refusal(spec in spec(), now in time()) {
        let (issuer, ring) = forever();
        match issuer.mint(&ring, &spec, now) {
            Ok(token) => {
                let v = Verifier::new(ring);
                match v.inspect(&token, now) {
                    Ok(claims) => {
                        let (kind, subject) = match &spec {
                            TokenSpec::User { subject, .. } => ("user", Some(subject.clone())),
                            TokenSpec::Job { .. } => ("job", None),
                        };
                        prop_assert_eq!(claims.kind.as_str(), kind);
                        prop_assert_eq!(claims.subject, subject);
                        prop_assert!(claims.expires_at > now);
                    }
                    // Minted at the end of time: it has already expired.
                    Err(IdentityError::Expired { expires_at, .. }) => {
                        prop_assert!(expires_at <= now)
                    }
                    Err(e) => prop_assert!(false, "a minted token does not verify: {e}"),
                }
            }
            // A bad spec, or the last second of time (outside every key's window).
            Err(e) => prop_assert!(
                matches!(e, IdentityError::InvalidSpec(_))
                    || matches!(e, IdentityError::RootKeyOutsideWindow { now: u64::MAX, .. }),
                "{e}"
            ),
        }
    }

    #[test]
    fn keyrings_from_arbitrary_json_are_valid_or_refused(
        ms in prop::collection::vec(mutation(), 0..4),
        text in "\\PC{0,200}",
        arbitrary in any::<bool>(),
    ) {
        let json = if arbitrary {
            text
        } else {
            let mut bytes = setup().ring.to_json().unwrap().into_bytes();
            for m in &ms {
                apply(&mut bytes, m);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        match RootKeyring::from_json(&json) {
            Ok(ring) => {
                prop_assert!(ring.validate().is_ok());
                for k in &ring.keys {
                    prop_assert!(k.not_before < k.not_after);
                }
            }
            Err(e) => prop_assert!(matches!(e, IdentityError::InvalidKeyring(_)), "{e}"),
        }
    }

    #[test]
    fn private_keys_roles_and_root_keys_from_arbitrary_text_are_parsed_or_refused(
        text in prop_oneof!["[0-9a-fA-F]{0,70}", "\\PC{0,80}"],
        id in any::<u32>(),
        not_before in any::<u64>(),
        not_after in any::<u64>(),
    ) {
        match Issuer::from_private_hex(id, &text) {
            Ok(issuer) => prop_assert_eq!(issuer.key_id(), id),
            Err(e) => prop_assert!(matches!(e, IdentityError::InvalidKeyring(_)), "{e}"),
        }
        match Role::parse(&text) {
            Ok(r) => prop_assert_eq!(r.as_str(), text.as_str()),
            Err(e) => prop_assert!(matches!(e, IdentityError::InvalidSpec(_)), "{e}"),
        }
        let mut ring = RootKeyring::default();
        let key = RootKey {
            id,
            algorithm: "ed25519".into(),
            public_key: text.clone(),
            not_before,
            not_after,
            revoked_at: None,
        };
        if ring.add(key).is_ok() {
            prop_assert_eq!(ring.keys.len(), 1);
        }
    }
}

#[test]
fn a_reencoded_token_is_the_same_token_and_revoking_it_revokes_both() {
    // Found by the harness: flipping bits 4 to 6 of the tag of the next key's algorithm field
    // (value 0, Ed25519) renumbers the field; protobuf skips an unknown field and the algorithm
    // stays its default, so the token decodes to the same content and verifies. It is the same
    // token, not a new one: same claims, same revocation id.
    let s = setup();
    let engine = base64::engine::general_purpose::URL_SAFE;
    let bytes = engine.decode(&s.job).unwrap();
    let at = bytes
        .windows(6)
        .rposition(|w| w[..2] == [0x12, 0x24] && w[2..] == [0x08, 0x00, 0x12, 0x20])
        .expect("the next key's encoding")
        + 2;
    let mut changed = bytes.clone();
    changed[at] ^= 1 << 4;
    let changed = engine.encode(&changed);
    assert_ne!(changed, s.job);
    let v = verifier();
    let claims = v.inspect(&changed, T0 + 60).unwrap();
    assert_eq!(claims, v.inspect(&s.job, T0 + 60).unwrap());
    let mut ring = s.ring.clone();
    ring.revoke_token(&claims.revocation_id);
    let v = Verifier::new(ring);
    for token in [&s.job, &changed] {
        let err = v.inspect(token, T0 + 60).unwrap_err();
        assert!(matches!(err, IdentityError::RevokedToken(_)), "{err}");
    }
}

#[test]
fn the_starting_tokens_verify() {
    // The harness's starting points are valid: a mutation is what breaks them.
    let s = setup();
    let v = verifier();
    v.authorize(
        &s.user,
        &Request::Api {
            action: Action::Submit,
            team: "icu-ml".into(),
        },
        T0 + 60,
    )
    .unwrap();
    v.authorize(
        &s.job,
        &Request::Data {
            operation: Operation::Read,
            resource: CKPT.into(),
            zone: "onprem".into(),
        },
        T0 + 60,
    )
    .unwrap();
}

#[test]
fn dates_past_what_the_system_clock_holds_are_refused_not_a_panic() {
    // Found by the harness: dates went through `SystemTime`, which overflows (a panic) past
    // about i64::MAX seconds; tokens carry any u64 date.
    let s = setup();
    let req = Request::Api {
        action: Action::Submit,
        team: "icu-ml".into(),
    };
    for exp in [i64::MAX as u64 + 1, u64::MAX] {
        let narrowed = attenuate(
            &s.user,
            &Attenuation {
                expires_at: Some(exp),
                ..Default::default()
            },
        )
        .unwrap();
        // A later expiry narrows nothing: the token still works until its own.
        let grant = verifier().authorize(&narrowed, &req, T0 + 60).unwrap();
        assert_eq!(grant.claims.expires_at, T0 + 3600);
    }
    let err = verifier().authorize(&s.user, &req, u64::MAX).unwrap_err();
    assert!(
        matches!(err, IdentityError::RootKeyOutsideWindow { .. }),
        "{err}"
    );
    // Minted at the end of time with a key valid then: it lives until the last second.
    let (issuer, ring) = forever();
    let spec = TokenSpec::User {
        subject: "ana".into(),
        role: Role::Admin,
        team: "icu-ml".into(),
        ttl_minutes: 1,
    };
    let token = issuer.mint(&ring, &spec, u64::MAX - 1).unwrap();
    let grant = Verifier::new(ring)
        .authorize(&token, &req, u64::MAX - 1)
        .unwrap();
    assert_eq!(grant.claims.expires_at, u64::MAX);
}
