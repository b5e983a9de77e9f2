//! Tokens minted through the API are never wider or longer-lived than the caller's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{now, TestServer};
use serde_json::json;
use tidegate_identity::{attenuate, Attenuation, Role};

#[test]
fn an_attenuated_or_short_lived_token_never_mints_a_wider_or_longer_one() {
    let ts = TestServer::start(16);
    let body = json!({"subject": "dana", "role": "admin", "team": "icu-ml", "minutes": 720});
    // An administrator token narrowed to one minute mints nothing (its restriction would not
    // carry over), and one narrowed to reads may not administer at all.
    let narrowed = attenuate(
        &ts.admin,
        &Attenuation {
            expires_at: Some(now() + 60),
            operation: None,
            resource_prefix: None,
            zone: None,
        },
    )
    .unwrap();
    let r = ts.post("/v1/tokens", &narrowed, &body);
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (403, Some("Authorization")),
        "{}",
        r.text
    );
    let read_only = attenuate(
        &ts.admin,
        &Attenuation {
            expires_at: None,
            operation: Some(tidegate_identity::Operation::Read),
            resource_prefix: None,
            zone: None,
        },
    )
    .unwrap();
    assert_eq!(ts.post("/v1/tokens", &read_only, &body).status, 403);
    // A five-minute administrator token cannot mint a twelve-hour one, and by default mints one
    // that ends no later than itself.
    let short = ts.token_at(Role::Admin, "admin", now(), 5);
    let r = ts.post("/v1/tokens", &short, &body);
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("minutes")),
        "{}",
        r.text
    );
    let r = ts.post(
        "/v1/tokens",
        &short,
        &json!({"subject": "dana", "role": "submitter", "team": "icu-ml"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.body["minutes"].as_u64().unwrap() <= 5, "{}", r.text);
    let (_, expires) =
        tidegate_server::auth::Auth::new(ts.keys(), tidegate_server::auth::system_clock())
            .unwrap()
            .token_id(r.body["token"].as_str().unwrap())
            .unwrap();
    assert!(
        expires <= now() + 5 * 60 + 1,
        "minted token outlives its maker: {expires}"
    );
}

#[test]
fn a_bad_subject_or_team_is_refused_naming_that_field_and_no_token_is_issued() {
    let ts = TestServer::start(16);
    let cases = [
        (
            json!({"subject": "", "role": "submitter", "team": "icu-ml"}),
            "subject",
        ),
        (
            json!({"subject": "dana smith", "role": "submitter", "team": "icu-ml"}),
            "subject",
        ),
        (
            json!({"subject": "x".repeat(200), "role": "submitter", "team": "icu-ml"}),
            "subject",
        ),
        (
            json!({"subject": "dana", "role": "submitter", "team": ""}),
            "team",
        ),
        (
            json!({"subject": "dana", "role": "submitter", "team": "ICU ML"}),
            "team",
        ),
        (
            json!({"subject": "dana", "role": "submitter", "team": "-icu"}),
            "team",
        ),
        (
            json!({"subject": "dana", "role": "wizard", "team": "icu-ml"}),
            "role",
        ),
    ];
    for (body, field) in &cases {
        let r = ts.post("/v1/tokens", &ts.admin, body);
        assert_eq!(
            (
                r.status,
                r.body["error"]["code"].as_str(),
                r.body["error"]["field"].as_str()
            ),
            (400, Some("invalid_request"), Some(*field)),
            "{body}: {}",
            r.text
        );
        assert!(r.body.get("token").is_none(), "{}", r.text);
    }
    // A good one still mints, and works.
    let r = ts.post(
        "/v1/tokens",
        &ts.admin,
        &json!({"subject": "dana.smith@icu", "role": "submitter", "team": "icu-ml"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(ts.get("/v1/jobs?team=icu-ml", token).status, 200);
}
