//! Every route in the OpenAPI document, except health, refuses a request without a token (401),
//! with an expired token (401) and with a token of the wrong role or team (403; another team's
//! artifact digest is 404); the right token gets through. The routes and the action each needs
//! are read from the document itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{manifest, now, TestServer};
use serde_json::{json, Value};
use tidegate_identity::Role;

/// Roles whose tokens may not perform `action` for any team.
fn wrong_role(action: &str) -> Option<Role> {
    match action {
        "submit" | "cancel" | "agent" | "approve" => Some(Role::Auditor),
        "observe" | "administer" => Some(Role::Submitter),
        "read" => None, // every team role may read its own team's jobs: only the team can be wrong
        "any" => None,
        other => panic!("the document names an unknown action {other:?}"),
    }
}

/// The right role for `action` (team icu-ml).
fn right_role(action: &str) -> Role {
    match action {
        "submit" | "cancel" => Role::Submitter,
        "read" | "any" => Role::Approver,
        "observe" => Role::Auditor,
        "agent" => Role::Agent,
        "approve" => Role::Approver,
        _ => Role::Admin,
    }
}

fn team_scoped(action: &str) -> bool {
    matches!(action, "submit" | "cancel" | "read" | "agent" | "approve")
}

/// Stores a model for team icu-ml through the API, then signs its provenance and the attestations
/// the `validated` gate asks for directly in the data directory's store.
fn promotable_model(ts: &mut TestServer, agent_zones: Vec<String>) -> String {
    let sub = ts.token(Role::Submitter, "icu-ml");
    let (status, bytes, body) = ts.raw(
        "POST",
        "/v1/artifacts?kind=model&name=auth-model",
        Some(&sub),
        Some(b"auth model weights"),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&bytes));
    let digest = body["digest"].as_str().unwrap().to_owned();
    let d: tidegate_artifacts::Digest = digest.parse().unwrap();
    ts.offline_store(agent_zones, |store| sign_and_attest(store, &d));
    digest
}

fn sign_and_attest(store: &tidegate_artifacts::ArtifactStore, d: &tidegate_artifacts::Digest) {
    let keys = tidegate_artifacts::signing::KeyStore::new(&store.keys_dir());
    let t = now() - 60;
    keys.create("zone:hospital-onprem", &["builder"], t, 30, true)
        .unwrap();
    let approver = keys.create("alice", &["approver"], t, 30, false).unwrap();
    let builder = keys.active_signer(now()).unwrap();
    let prov = tidegate_artifacts::intoto::Provenance {
        job_id: "train-1".into(),
        zone: "hospital-onprem".into(),
        code_repo: "https://git.example.org/ml/auth".into(),
        code_commit: "3f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291".into(),
        materials: vec![],
        hyperparameters: Default::default(),
        started_at: t,
        finished_at: t + 10,
    };
    store.sign_provenance(d, &prov, &builder).unwrap();
    use tidegate_artifacts::gates::{attest, DATA_APPROVAL, FEATURE_PIN, VALIDATION_REPORT};
    let alice = keys.signer(&approver.keyid, now()).unwrap();
    attest(
        store,
        &alice,
        d,
        DATA_APPROVAL,
        json!({"dataset": "ehr-deid@2026-10"}),
        now(),
    )
    .unwrap();
    attest(
        store,
        &builder,
        d,
        FEATURE_PIN,
        json!({"featureSet": "vitals", "version": "7"}),
        now(),
    )
    .unwrap();
    attest(
        store,
        &builder,
        d,
        VALIDATION_REPORT,
        json!({"metric": "auc", "value": 0.93, "testSet": "holdout"}),
        now(),
    )
    .unwrap();
}

#[test]
fn every_route_but_health_needs_a_valid_token_of_the_right_role_and_team() {
    let mut ts = TestServer::start_full(16, Default::default(), vec!["public-eu".into()]);
    // An artifact to address in /v1/artifacts/{digest} routes: team icu-ml's model, signed and
    // attested so that a promotion to `validated` gets through the gates.
    let digest = promotable_model(&mut ts, vec!["public-eu".into()]);
    let sub = ts.token(Role::Submitter, "icu-ml");
    // A job to address in /v1/jobs/{id} routes: long-running so cancel has something to do.
    let created = ts.submit(
        &sub,
        &manifest("auth-target", "icu-ml", 8, Some("sleep 30")),
        None,
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["job"]["id"].as_str().unwrap().to_owned();

    let doc = ts.get("/openapi.json", &ts.admin);
    assert_eq!(doc.status, 200, "{}", doc.text);
    let paths = doc.body["paths"].as_object().unwrap();
    let expired = ts.token_at(Role::Admin, "icu-ml", now() - 3600, 1);
    let mut checked = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let method = method.to_uppercase();
            let url = path
                .replace("{id}", &id)
                .replace("{zone}", "public-eu")
                .replace("{digest}", &digest);
            let security = op.get("security").and_then(Value::as_array);
            if path == "/healthz" {
                assert!(security.is_none_or(Vec::is_empty), "health must be public");
                let r = ts.request(&method, &url, None, None, &[]);
                assert_eq!(r.status, 200, "{method} {path}: {}", r.text);
                continue;
            }
            let action = security
                .and_then(|s| s.first())
                .and_then(|s| s.get("bearer"))
                .and_then(|b| b.as_array())
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{method} {path} declares no bearer scope"))
                .to_owned();
            let body: Option<Value> = match (method.as_str(), path.as_str()) {
                ("POST", "/v1/jobs") => {
                    Some(json!({"manifest": manifest("auth-probe", "icu-ml", 1, Some("true"))}))
                }
                ("POST", "/v1/tokens") => {
                    Some(json!({"subject": "x", "role": "submitter", "team": "icu-ml"}))
                }
                ("POST", "/v1/tokens/revoke") => Some(json!({"revocation_id": "00ff"})),
                ("POST", "/v1/tokens/job") => Some(
                    json!({"job": "j-1", "zone": "hospital-onprem", "inputs": [], "output_prefix": "out/j-1/"}),
                ),
                ("POST", "/v1/zones/{zone}/condition") => Some(json!({"health": "healthy"})),
                ("POST", "/v1/agents/{zone}/sync") => Some(json!({"agent": "a1", "runs": []})),
                ("POST", "/v1/agents/{zone}/certificate") => Some(
                    json!({"csr": tidegate_pki::new_key_and_csr("public-eu").unwrap().csr_pem}),
                ),
                ("POST", "/v1/jobs/{id}/approve") => Some(json!({"scope": "burst"})),
                ("POST", "/v1/artifacts/{digest}/promote") => Some(json!({"to": "validated"})),
                ("POST", _) => Some(json!({})),
                _ => None,
            };
            let url = match (method.as_str(), path.as_str()) {
                ("GET", "/v1/jobs" | "/v1/artifacts") => format!("{url}?team=icu-ml"),
                ("POST", "/v1/artifacts") => format!("{url}?kind=model-card&team=icu-ml"),
                _ => url,
            };
            let call = |token: Option<&str>| ts.request(&method, &url, token, body.as_ref(), &[]);

            let r = call(None);
            assert_eq!(r.status, 401, "{method} {path} without a token: {}", r.text);
            assert_eq!(
                r.body["error"]["code"], "unauthenticated",
                "{method} {path}"
            );

            let r = call(Some("not-a-token"));
            assert_eq!(r.status, 401, "{method} {path} with garbage: {}", r.text);

            let r = call(Some(&expired));
            assert_eq!(
                r.status, 401,
                "{method} {path} with an expired token: {}",
                r.text
            );
            assert_eq!(r.body["error"]["code"], "token_expired", "{method} {path}");

            if let Some(role) = wrong_role(&action) {
                let r = call(Some(&ts.token(role, "icu-ml")));
                assert_eq!(
                    r.status, 403,
                    "{method} {path} with role {role:?}: {}",
                    r.text
                );
                assert_eq!(r.body["error"]["code"], "forbidden", "{method} {path}");
            }
            // The team an action concerns: the job's team, or for agents the zone.
            let team = if action == "agent" {
                "public-eu"
            } else {
                "icu-ml"
            };
            if team_scoped(&action) {
                let r = call(Some(&ts.token(right_role(&action), "radiology-ai")));
                // Another team's artifact is not found, as one nobody stored: a 403 would tell
                // that someone holds those bytes.
                let refused = if path.starts_with("/v1/artifacts/{digest}") {
                    404
                } else {
                    403
                };
                assert_eq!(
                    r.status, refused,
                    "{method} {path} from another team: {}",
                    r.text
                );
            }
            let r = call(Some(&ts.token(right_role(&action), team)));
            // This server serves plain HTTP: it has no authority to issue certificates from (the
            // TLS tests issue them).
            let no_authority = path == "/v1/agents/{zone}/certificate"
                && r.status == 409
                && r.body["error"]["code"] == "no_authority";
            assert!(
                r.status < 300 || no_authority,
                "{method} {path} with the right token: {} {}",
                r.status,
                r.text
            );
            checked += 1;
        }
    }
    assert!(checked >= 17, "only {checked} routes checked");
    let _ = id;
}

#[test]
fn a_read_only_attenuation_reads_every_get_route_and_writes_nothing() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let created = ts.submit(
        &sub,
        &manifest("ro-target", "icu-ml", 8, Some("sleep 30")),
        None,
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["job"]["id"].as_str().unwrap().to_owned();
    let read_only = tidegate_identity::attenuate(
        &ts.admin,
        &tidegate_identity::Attenuation {
            operation: Some(tidegate_identity::Operation::Read),
            ..Default::default()
        },
    )
    .unwrap();
    for path in [
        "/openapi.json".to_owned(),
        "/metrics".to_owned(),
        "/v1/zones".to_owned(),
        "/v1/fleet".to_owned(),
        "/v1/jobs".to_owned(),
        "/v1/artifacts".to_owned(),
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/logs"),
    ] {
        let r = ts.get(&path, &read_only);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
    }
    let writes = [
        (
            "/v1/jobs".to_owned(),
            json!({"manifest": manifest("ro-probe", "icu-ml", 1, Some("true"))}),
        ),
        (format!("/v1/jobs/{id}/cancel"), json!({})),
        (format!("/v1/jobs/{id}/approve"), json!({"scope": "burst"})),
        (
            "/v1/zones/public-eu/condition".to_owned(),
            json!({"health": "healthy"}),
        ),
        (
            "/v1/tokens".to_owned(),
            json!({"subject": "x", "role": "submitter", "team": "icu-ml"}),
        ),
        ("/v1/fleet".to_owned(), json!({})),
    ];
    for (path, body) in &writes {
        let r = ts.post(path, &read_only, body);
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "POST {path}: {}",
            r.text
        );
    }
    // The job was not cancelled by the refused write.
    let r = ts.get(&format!("/v1/jobs/{id}"), &ts.admin);
    assert_ne!(r.body["job"]["state"], "cancelled", "{}", r.text);
}

#[test]
fn an_attenuated_token_cannot_widen_and_a_revoked_key_is_refused() {
    let ts = TestServer::start(16);
    let admin_like = ts.token(Role::Admin, "icu-ml");
    // Narrowing a token keeps it working within its narrower bounds.
    let narrowed = tidegate_identity::attenuate(
        &admin_like,
        &tidegate_identity::Attenuation {
            expires_at: Some(now() + 60),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ts.get("/v1/zones", &narrowed).status, 200);
    // The same token narrowed to a moment already past is refused: attenuation blocks apply.
    let lapsed = tidegate_identity::attenuate(
        &admin_like,
        &tidegate_identity::Attenuation {
            expires_at: Some(now() - 10),
            ..Default::default()
        },
    )
    .unwrap();
    let r = ts.get("/v1/zones", &lapsed);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("token_expired")),
        "{}",
        r.text
    );
    // Revoke the root key through the API: every token it signed (the admin token too) is
    // refused at once.
    let r = ts.request(
        "POST",
        "/v1/tokens/revoke",
        Some(&ts.admin),
        Some(&json!({"root_key": 1})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = ts.get("/v1/zones", &admin_like);
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("revoked"), "{}", r.text);
    // A revocation made behind the control plane's back (the keyring file edited) is not
    // adopted: tokens are refused until the recorded keyring is restored.
    let ring = ts.keys().keyring_path();
    let recorded = std::fs::read_to_string(&ring).unwrap();
    ts.keys().revoke_token("00ee").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(6)); // the keyring is re-read every 5 s
    let r = ts.get("/v1/zones", &ts.admin);
    assert_eq!(r.status, 503, "{}", r.text);
    std::fs::write(&ring, recorded).unwrap();
}
