//! Reads from inside a zone: the zone is proven by its agent's token, never taken from the query
//! alone; a job token never hands data to a zone it may not be in; a checkpoint inherits its
//! job's classification, which a caller cannot lower.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{raw_manifest, TestServer};
use serde_json::Value;
use tidegate_artifacts::access::resource_name;
use tidegate_artifacts::ArtifactKind;
use tidegate_identity::{Issuer, Role, TokenSpec};

fn put(ts: &TestServer, token: &str, query: &str, body: &[u8]) -> (u16, Value) {
    let (status, _, json) = ts.raw(
        "POST",
        &format!("/v1/artifacts?{query}"),
        Some(token),
        Some(body),
    );
    (status, json)
}

fn job_token(ts: &TestServer, zone: &str, inputs: Vec<String>) -> String {
    let keys = ts.keys();
    let issuer: Issuer = keys.issuer().unwrap();
    let spec = TokenSpec::Job {
        job_id: "reader-1".into(),
        zone: zone.into(),
        inputs,
        output_prefix: "runs/reader-1/".into(),
        ttl_minutes: 10,
    };
    issuer
        .mint(&keys.keyring().unwrap(), &spec, common::now())
        .unwrap()
}

#[test]
fn a_zone_is_proven_by_its_agent_token_and_data_never_reaches_a_zone_it_may_not_be_in() {
    let mut ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    // A job on raw PHI (restricted/phi): its checkpoint inherits that.
    let r = ts.submit(&sub, &raw_manifest("phi-train", "sleep 5"), None);
    assert_eq!(r.status, 201, "{}", r.text);
    let job = r.body["job"]["id"].as_str().unwrap().to_owned();
    let (status, body) = put(&ts, &sub, "kind=checkpoint&name=ckpt", b"weights");
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("job")),
        "a checkpoint names its job: {body}"
    );
    // Declaring it public does not lower it: the job's classification wins.
    let (status, ckpt) = put(
        &ts,
        &sub,
        &format!("kind=checkpoint&name=ckpt&job={job}&classification=public"),
        b"weights",
    );
    assert_eq!(status, 201, "{ckpt}");
    let class = ckpt["classification"].as_str().unwrap();
    assert!(
        class.starts_with("restricted/") && class.contains("phi"),
        "{ckpt}"
    );
    assert_eq!(ckpt["sensitive"], true);
    assert_eq!(ckpt["labels"]["job"], job.as_str());
    // Another team's job cannot be named.
    let other = ts.token(Role::Submitter, "radiology-ai");
    let (status, body) = put(
        &ts,
        &other,
        &format!("kind=checkpoint&name=x&job={job}"),
        b"other weights",
    );
    assert_eq!(status, 403, "{body}");
    // Nor by naming one's own team for it.
    let (status, body) = put(
        &ts,
        &other,
        &format!("kind=checkpoint&name=x&job={job}&team=radiology-ai"),
        b"other weights",
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (403, Some("job")),
        "{body}"
    );
    // An administrator's upload for the job (as `checkpoint push` with an admin token) belongs
    // to the job's team and inherits its classification.
    let admin = ts.admin.clone();
    let (status, body) = put(
        &ts,
        &admin,
        &format!("kind=checkpoint&name=by-admin&job={job}"),
        b"admin weights",
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["team"], "icu-ml", "{body}");
    assert!(
        body["classification"]
            .as_str()
            .unwrap()
            .starts_with("restricted/"),
        "{body}"
    );

    let digest = ckpt["digest"].as_str().unwrap().to_owned();
    let granted = resource_name(ArtifactKind::Checkpoint, &digest.parse().unwrap());
    let path = format!("/v1/artifacts/{digest}?zone=public-eu");
    let token = job_token(&ts, "public-eu", vec![granted]);
    // The token grants it, the zone's identity is proven, but PHI may not be in public-eu.
    let (status, _, body) = ts.get_in_zone(&path, &token, "public-eu");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("zone_not_allowed")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("private-only"),
        "{body}"
    );
    // Without the zone's identity, the query parameter alone counts for nothing.
    let (status, _, body) = ts.raw("GET", &path, Some(&token), None);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (401, Some("x-tidegate-zone-token")),
        "{body}"
    );
    // Another zone's agent token does not prove public-eu, nor does an administrator's token.
    let us = ts.token(Role::Agent, "public-us");
    let (status, _, body) = ts.raw_with(
        "GET",
        &path,
        Some(&token),
        None,
        &[("X-Tidegate-Zone-Token", &us)],
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (403, Some("x-tidegate-zone-token")),
        "{body}"
    );
    let admin = ts.admin.clone();
    let onprem_path = format!("/v1/artifacts/{digest}?zone=hospital-onprem");
    let onprem_token = job_token(
        &ts,
        "hospital-onprem",
        vec![resource_name(
            ArtifactKind::Checkpoint,
            &digest.parse().unwrap(),
        )],
    );
    let (status, _, body) = ts.raw_with(
        "GET",
        &onprem_path,
        Some(&onprem_token),
        None,
        &[("X-Tidegate-Zone-Token", &admin)],
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (403, Some("x-tidegate-zone-token")),
        "an admin token is no zone: {body}"
    );

    // Raw rows claimed public are refused at the door (one byte more or less changes nothing).
    let raw = b"Id,SSN,FIRST\n1,999-12-3456,Ann\n2,999-65-4321,Bob\n\n";
    let (status, body) = put(
        &ts,
        &sub,
        "kind=feature-set&name=near&classification=public",
        raw,
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("classification")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("Ssn"),
        "{body}"
    );
    let (status, body) = put(
        &ts,
        &sub,
        "kind=feature-set&name=near&classification=restricted/phi",
        raw,
    );
    assert_eq!(status, 201, "as what it is, it is stored: {body}");
    // Under another kind, or with the SSNs written without dashes, it is still raw rows.
    let (status, body) = put(
        &ts,
        &sub,
        "kind=evaluation-report&name=r&classification=public",
        raw,
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("classification")),
        "{body}"
    );
    let bare = b"Id,SSN,FIRST\n1,999123456,Ann\n";
    let (status, body) = put(
        &ts,
        &sub,
        "kind=model-card&name=c&classification=public",
        bare,
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("classification")),
        "{body}"
    );

    // Public data may be read there with the same machinery.
    let (status, snap) = put(
        &ts,
        &sub,
        "kind=dataset-snapshot&name=open&classification=public",
        b"open data",
    );
    assert_eq!(status, 201, "{snap}");
    let open = snap["digest"].as_str().unwrap().to_owned();
    let token = job_token(
        &ts,
        "public-eu",
        vec![resource_name(
            ArtifactKind::DatasetSnapshot,
            &open.parse().unwrap(),
        )],
    );
    let (status, bytes, body) = ts.get_in_zone(
        &format!("/v1/artifacts/{open}?zone=public-eu"),
        &token,
        "public-eu",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(bytes, b"open data");
    // An unclassified artifact is judged as the most sensitive data the fleet knows.
    let (status, snap) = put(
        &ts,
        &sub,
        "kind=dataset-snapshot&name=unknown",
        b"who knows",
    );
    assert_eq!(status, 201, "{snap}");
    let unknown = snap["digest"].as_str().unwrap().to_owned();
    let token = job_token(
        &ts,
        "public-eu",
        vec![resource_name(
            ArtifactKind::DatasetSnapshot,
            &unknown.parse().unwrap(),
        )],
    );
    let (status, _, body) = ts.get_in_zone(
        &format!("/v1/artifacts/{unknown}?zone=public-eu"),
        &token,
        "public-eu",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("zone_not_allowed")),
        "{body}"
    );

    // The evidence: the checkpoint's classification is in its `artifact.stored` entry, and the
    // refused reads are `token.refused` entries.
    ts.stop();
    let contents = tidegate_ledger::ledger::read_log(&ts.dir.path().join("ledger"), true).unwrap();
    let entries: Vec<Value> = contents
        .entries
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    let stored = entries
        .iter()
        .find(|e| {
            e["action"]["type"] == "artifact.stored" && e["action"]["artifact"] == digest.as_str()
        })
        .unwrap_or_else(|| panic!("no artifact.stored for {digest}"));
    let recorded = stored["action"]["classification"].as_str().unwrap();
    assert!(
        recorded.starts_with("restricted/") && recorded.contains("phi"),
        "{stored}"
    );
    let refused = entries
        .iter()
        .filter(|e| {
            e["action"]["type"] == "token.refused" && e["action"]["reason"] == "zone-not-allowed"
        })
        .count();
    assert_eq!(refused, 2, "both refused reads are recorded");
}
