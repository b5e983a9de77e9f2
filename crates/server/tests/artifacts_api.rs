//! The artifact API: content stored through `/v1/artifacts` comes back byte for byte under its
//! SHA-256 digest, lists and verifies; a blob changed on disk is refused by reads and
//! verification; the promotion gates name the missing evidence; a scoped job token reads only
//! its own artifact and only while it is valid; and every one of those events is in the
//! control plane's evidence ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{now, TestServer};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tidegate_artifacts::access::resource_name;
use tidegate_artifacts::intoto::Provenance;
use tidegate_artifacts::signing::KeyStore;
use tidegate_artifacts::{ArtifactKind, ArtifactStore, Digest};
use tidegate_identity::{Role, TokenSpec};

fn sha256(content: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(content)))
}

fn put(ts: &TestServer, token: &str, query: &str, content: &[u8]) -> Value {
    let (status, bytes, body) = ts.raw(
        "POST",
        &format!("/v1/artifacts?{query}"),
        Some(token),
        Some(content),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&bytes));
    body
}

/// A scoped job token for `inputs`, minted at `at` with the server's token root key.
fn job_token(ts: &TestServer, inputs: Vec<String>, at: u64, minutes: u32) -> String {
    let keys = ts.keys();
    let spec = TokenSpec::Job {
        job_id: "finetune-2".into(),
        zone: "hospital-onprem".into(),
        inputs,
        output_prefix: "artifacts/finetune-2/".into(),
        ttl_minutes: minutes,
    };
    keys.issuer()
        .unwrap()
        .mint(&keys.keyring().unwrap(), &spec, at)
        .unwrap()
}

#[test]
fn artifacts_round_trip_verify_refuse_tampering_and_are_ledgered() {
    let mut ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let reader = ts.token(Role::Approver, "icu-ml");

    // Put: the digest is the SHA-256 of the content, the team is the caller's.
    let content = b"a frozen snapshot of ehr-deid@2026-10".to_vec();
    let stored = put(
        &ts,
        &sub,
        "kind=dataset-snapshot&name=ehr-deid&label=source%3Dsynthea",
        &content,
    );
    let digest = stored["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest, sha256(&content));
    assert_eq!(
        (stored["kind"].as_str(), stored["size"].as_u64()),
        (Some("dataset-snapshot"), Some(content.len() as u64))
    );
    assert_eq!(stored["team"], "icu-ml");
    assert_eq!(stored["labels"]["source"], "synthea");
    // Storing it again is idempotent.
    assert_eq!(
        put(&ts, &sub, "kind=dataset-snapshot&name=ehr-deid", &content)["digest"],
        digest.as_str()
    );
    // A bad request names its field.
    let (status, _, body) = ts.raw("POST", "/v1/artifacts?kind=weights", Some(&sub), Some(b"x"));
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("kind")),
        "{body}"
    );

    // Get: the same bytes.
    let (status, bytes, _) = ts.raw(
        "GET",
        &format!("/v1/artifacts/{digest}"),
        Some(&reader),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, content);
    // List and verify.
    let list = ts.get("/v1/artifacts", &reader);
    assert_eq!(list.status, 200, "{}", list.text);
    let listed = list.body["artifacts"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|a| a["digest"] == digest.as_str() && a["stage"] == "candidate"),
        "{}",
        list.text
    );
    let other_team = ts.get("/v1/artifacts", &ts.token(Role::Approver, "radiology-ai"));
    assert_eq!(other_team.status, 200, "{}", other_team.text);
    assert!(
        other_team.body["artifacts"].as_array().unwrap().is_empty(),
        "{}",
        other_team.text
    );
    let verified = ts.get(&format!("/v1/artifacts/{digest}/verify"), &reader);
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.body["verified"], true);
    assert_eq!(verified.body["artifact"]["digest"], digest.as_str());

    // A model with signed provenance but no attestations: the gates refuse and name what is missing.
    let model = b"weights of a sepsis model".to_vec();
    let model_digest = put(&ts, &sub, "kind=model&name=sepsis", &model)["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // Signing is a direct-mode step (`tidegate artifact sign --data-dir`): the control plane
    // stops, the builder signs into the evidence ledger, the control plane starts again. A
    // signature written into the store's files without a ledger entry would count for nothing.
    ts.offline_store(vec![], |store| {
        let keys = KeyStore::new(&store.keys_dir());
        keys.create("zone:hospital-onprem", &["builder"], now() - 60, 30, true)
            .unwrap();
        let prov = Provenance {
            job_id: "train-1".into(),
            zone: "hospital-onprem".into(),
            code_repo: "https://git.example.org/ml/sepsis".into(),
            code_commit: "3f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291".into(),
            materials: vec![],
            hyperparameters: Default::default(),
            started_at: now() - 30,
            finished_at: now() - 10,
        };
        let d: Digest = model_digest.parse().unwrap();
        store
            .sign_provenance(&d, &prov, &keys.active_signer(now()).unwrap())
            .unwrap();
    });
    let verified = ts.get(&format!("/v1/artifacts/{model_digest}/verify"), &reader);
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(
        verified.body["provenance"]["buildDefinition"]["externalParameters"]["job"], "train-1",
        "{}",
        verified.text
    );
    let approver = ts.token(Role::Approver, "icu-ml");
    let refused = ts.post(
        &format!("/v1/artifacts/{model_digest}/promote"),
        &approver,
        &json!({"to": "validated"}),
    );
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "promotion_refused");
    let why = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("data approval")
            && why.contains("feature version")
            && why.contains("validation report"),
        "{why}"
    );
    // Someone else's name is refused for a non-administrator.
    let spoof = ts.post(
        &format!("/v1/artifacts/{model_digest}/promote"),
        &approver,
        &json!({"to": "validated", "actor": "alice"}),
    );
    assert_eq!(
        (spoof.status, spoof.body["error"]["field"].as_str()),
        (403, Some("actor")),
        "{}",
        spoof.text
    );

    // Job tokens: the granted artifact only, and only while valid.
    let other = put(
        &ts,
        &sub,
        "kind=dataset-snapshot&name=other",
        b"another snapshot",
    )["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let granted = resource_name(ArtifactKind::DatasetSnapshot, &digest.parse().unwrap());
    let token = job_token(&ts, vec![granted.clone()], now(), 10);
    let (status, bytes, _) = ts.get_in_zone(
        &format!("/v1/artifacts/{digest}?zone=hospital-onprem"),
        &token,
        "hospital-onprem",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, content);
    let (status, _, body) = ts.get_in_zone(
        &format!("/v1/artifacts/{other}?zone=hospital-onprem"),
        &token,
        "hospital-onprem",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("token_not_granted")),
        "{body}"
    );
    let (status, _, body) = ts.get_in_zone(
        &format!("/v1/artifacts/{digest}?zone=public-eu"),
        &token,
        "public-eu",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("token_not_granted")),
        "another zone: {body}"
    );
    let expired = job_token(&ts, vec![granted], now() - 3600, 10);
    let (status, _, body) = ts.get_in_zone(
        &format!("/v1/artifacts/{digest}?zone=hospital-onprem"),
        &expired,
        "hospital-onprem",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_expired")),
        "{body}"
    );
    // A job token is not a user token: without a zone it calls the API and is refused.
    let (status, _, _) = ts.raw(
        "GET",
        &format!("/v1/artifacts/{digest}"),
        Some(&token),
        None,
    );
    assert_eq!(status, 401);

    // Tamper with the stored blob: reads and verification refuse and say so.
    let store = ArtifactStore::open(ts.dir.path()).unwrap();
    let blob = store.blob_path(&digest.parse().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    let (status, _, body) = ts.raw(
        "GET",
        &format!("/v1/artifacts/{digest}"),
        Some(&reader),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("artifact_tampered")),
        "{body}"
    );
    let r = ts.get(&format!("/v1/artifacts/{digest}/verify"), &reader);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("artifact_tampered")),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(&digest) && r.text.contains("integrity"),
        "{}",
        r.text
    );

    // Everything above is in the evidence ledger.
    ts.stop();
    let contents = tidegate_ledger::ledger::read_log(&ts.dir.path().join("ledger"), true).unwrap();
    let entries: Vec<Value> = contents
        .entries
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    let of = |t: &str| {
        entries
            .iter()
            .filter(|e| e["action"]["type"] == t)
            .cloned()
            .collect::<Vec<_>>()
    };
    let stored = of("artifact.stored");
    assert_eq!(stored.len(), 3, "three distinct objects stored: {stored:?}");
    assert!(stored
        .iter()
        .any(|e| e["action"]["artifact"] == digest.as_str()));
    let used = of("token.used");
    assert_eq!(used.len(), 1, "{used:?}");
    assert_eq!(
        (
            used[0]["action"]["resource"].as_str(),
            used[0]["actor"].as_str()
        ),
        (Some(digest.as_str()), Some("finetune-2"))
    );
    let refusals = of("token.refused");
    let reasons: Vec<&str> = refusals
        .iter()
        .filter_map(|e| e["action"]["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3, "{refusals:?}");
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "token-request-denied")
            .count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.contains(&"token-expired"), "{reasons:?}");
    let promotion = of("artifact.promotion_refused");
    assert_eq!(promotion.len(), 1, "{promotion:?}");
    let codes = promotion[0]["action"]["reasons"].as_array().unwrap();
    assert!(
        codes.iter().any(|c| c == "data-approval") && codes.iter().any(|c| c == "feature-pin"),
        "{codes:?}"
    );
}

/// An answer to a put, without what differs between any two contents (digest, size, time).
fn shape(mut v: Value) -> Value {
    for k in ["digest", "size", "created_at"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn bytes_another_team_stored_are_answered_as_new_and_disclose_nothing() {
    let ts = TestServer::start(16);
    let icu = ts.token(Role::Submitter, "icu-ml");
    let radiology = ts.token(Role::Submitter, "radiology-ai");

    // icu-ml stores two artifacts; radiology-ai knows (or guesses) both digests.
    let shared = b"bytes both teams happen to hold, 0001".to_vec();
    let private = b"bytes only icu-ml ever held, 0000002".to_vec();
    let fresh = b"bytes nobody stored before, 000000003".to_vec();
    assert_eq!(shared.len(), fresh.len());
    let owned = put(
        &ts,
        &icu,
        "kind=dataset-snapshot&name=icu-secret&label=ward%3D7",
        &shared,
    );
    let private_digest = put(&ts, &icu, "kind=dataset-snapshot&name=icu-other", &private)["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let digest = sha256(&shared);
    assert_eq!(owned["digest"], digest.as_str());

    // Before storing anything, radiology-ai's reads of icu-ml's digests answer as for a digest
    // nobody stored.
    let unknown = sha256(b"never stored");
    let (status, _, absent) = ts.raw(
        "GET",
        &format!("/v1/artifacts/{unknown}"),
        Some(&radiology),
        None,
    );
    assert_eq!(status, 404, "{absent}");
    for d in [&digest, &private_digest] {
        for path in [
            format!("/v1/artifacts/{d}"),
            format!("/v1/artifacts/{d}/verify"),
        ] {
            let (status, _, body) = ts.raw("GET", &path, Some(&radiology), None);
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(body["error"]["code"], absent["error"]["code"], "{body}");
            assert_eq!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .replace(d.as_str(), "D"),
                absent["error"]["message"]
                    .as_str()
                    .unwrap()
                    .replace(&unknown, "D"),
                "{body}"
            );
        }
    }

    // The same query for fresh bytes and for icu-ml's bytes: the same answer.
    let query = "kind=dataset-snapshot&name=rad-scan&label=site%3Dnorth";
    let (fresh_status, _, fresh_body) = ts.raw(
        "POST",
        &format!("/v1/artifacts?{query}"),
        Some(&radiology),
        Some(&fresh),
    );
    let (status, _, body) = ts.raw(
        "POST",
        &format!("/v1/artifacts?{query}"),
        Some(&radiology),
        Some(&shared),
    );
    assert_eq!(fresh_status, 201, "{fresh_body}");
    assert_eq!(status, fresh_status, "{body}");
    assert_eq!(shape(body.clone()), shape(fresh_body), "{body}");
    assert_eq!(body["digest"], digest.as_str());
    assert_eq!(body["team"], "radiology-ai");
    assert!(
        !body.to_string().contains("icu"),
        "icu-ml's metadata is disclosed: {body}"
    );
    // Storing it again is idempotent, as for its own artifacts.
    let (status, _, again) = ts.raw(
        "POST",
        &format!("/v1/artifacts?{query}"),
        Some(&radiology),
        Some(&shared),
    );
    assert_eq!(
        (status, &again["name"]),
        (201, &json!("rad-scan")),
        "{again}"
    );

    // radiology-ai now reads what it stored, under its own metadata, and lists it.
    let (status, bytes, _) = ts.raw(
        "GET",
        &format!("/v1/artifacts/{digest}"),
        Some(&radiology),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, shared);
    let list = ts.get("/v1/artifacts", &radiology);
    let listed = list.body["artifacts"].as_array().unwrap();
    let mine = listed
        .iter()
        .find(|a| a["digest"] == digest.as_str())
        .unwrap();
    assert_eq!(
        (&mine["team"], &mine["name"]),
        (&json!("radiology-ai"), &json!("rad-scan")),
        "{}",
        list.text
    );
    assert!(
        !list.text.contains("icu") && !list.text.contains(&private_digest),
        "{}",
        list.text
    );
    // ... but still nothing it did not store itself.
    let (status, _, body) = ts.raw(
        "GET",
        &format!("/v1/artifacts/{private_digest}"),
        Some(&radiology),
        None,
    );
    assert_eq!(status, 404, "{body}");

    // icu-ml's record is unchanged.
    let list = ts.get("/v1/artifacts", &icu);
    let theirs = list.body["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["digest"] == digest.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (&theirs["team"], &theirs["name"], &theirs["labels"]["ward"]),
        (&json!("icu-ml"), &json!("icu-secret"), &json!("7")),
        "{theirs}"
    );
    assert!(!list.text.contains("rad-scan"), "{}", list.text);
}

#[test]
fn a_team_that_is_no_team_name_is_refused_naming_the_field_not_answered_unavailable() {
    // A team name past what fits a file name (its holdings file is named by its bytes in hex)
    // answered 503 "artifact storage cannot be read"; any name that is not a team name is now a
    // 400 naming `team`, listing and storing alike.
    let ts = TestServer::start(16);
    let long = "a".repeat(200);
    for team in [long.as_str(), "Icu-ML", "icu_ml", "%F0%9D%93%A3"] {
        let r = ts.get(&format!("/v1/artifacts?team={team}"), &ts.admin);
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some("team")),
            "{}",
            r.text
        );
        let (status, _, body) = ts.raw(
            "POST",
            &format!("/v1/artifacts?kind=model-card&team={team}"),
            Some(&ts.admin),
            Some(b"card"),
        );
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some("team")),
            "{body}"
        );
    }
    // A team name still lists (nothing stored for it yet).
    let r = ts.get("/v1/artifacts?team=icu-ml", &ts.admin);
    assert_eq!(r.status, 200, "{}", r.text);
}
