//! The OpenAPI document states what the server checks: every path parameter has the pattern the
//! server enforces and its operation documents the 400 a value outside it gets, every JSON body
//! documents 400 and 413, its required strings are bounded (a pattern or a minimum length), and
//! every operation but `/healthz` documents 401. A request outside a documented pattern is
//! answered 400; one inside it is not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestServer;
use serde_json::Value;

fn schema<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => s,
    }
}

#[test]
fn every_operation_documents_its_inputs_bounds_and_the_refusals_they_cause() {
    let ts = TestServer::start(16);
    let r = ts.get("/openapi.json", &ts.admin);
    assert_eq!(r.status, 200, "{}", r.text);
    let doc = &r.body;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            let responses = op["responses"].as_object().unwrap();
            if path != "/healthz" {
                assert!(responses.contains_key("401"), "{at} documents no 401");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert!(
                        p["schema"]["pattern"].is_string(),
                        "{at}: path parameter {} has no pattern",
                        p["name"]
                    );
                    assert!(responses.contains_key("400"), "{at} documents no 400");
                }
            }
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            if !body.is_object() {
                continue;
            }
            for code in ["400", "413"] {
                assert!(responses.contains_key(code), "{at} documents no {code}");
            }
            let body = schema(doc, body);
            for name in body["required"].as_array().into_iter().flatten() {
                let prop = &body["properties"][name.as_str().unwrap()];
                if prop["type"] == "string" {
                    assert!(
                        prop["pattern"].is_string() || prop["minLength"].as_u64() >= Some(1),
                        "{at}: required string `{name}` is unbounded: {prop}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} operations with a JSON body");
}

#[test]
fn a_path_parameter_outside_its_documented_pattern_is_answered_400_one_inside_is_not() {
    let ts = TestServer::start(16);
    for path in [
        "/v1/jobs/a%20b",
        "/v1/jobs/a%2Fb/logs",
        "/v1/artifacts/sha256:ABC",
        "/v1/artifacts/0/verify",
    ] {
        let r = ts.get(path, &ts.admin);
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert_eq!(
            r.body["error"]["code"], "invalid_request",
            "{path}: {}",
            r.text
        );
    }
    let digest = format!("sha256:{}", "0".repeat(64));
    for path in [
        "/v1/jobs/job-0000".to_owned(),
        format!("/v1/artifacts/{digest}"),
    ] {
        let r = ts.get(&path, &ts.admin);
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
}

#[test]
fn a_json_body_that_is_not_an_object_and_a_tail_past_its_maximum_are_refused() {
    // Found by schemathesis (negative data): serde reads a struct from a JSON array too, so
    // `[]` re-read the fleet and `["run"]` approved; and tail_bytes past 1 MiB was cut to 1 MiB
    // where the document says at most 1 MiB.
    let ts = TestServer::start(16);
    let r = ts.submit(&ts.admin, &common::manifest("t", "icu-ml", 1, None), None);
    assert_eq!(r.status, 201, "{}", r.text);
    let job = r.body["job"]["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("/v1/fleet".to_owned(), serde_json::json!([])),
        (
            format!("/v1/jobs/{job}/approve"),
            serde_json::json!(["run"]),
        ),
        (
            "/v1/tokens".to_owned(),
            serde_json::json!(["ana", "submitter", "icu-ml", 5]),
        ),
    ] {
        let r = ts.post(&path, &ts.admin, &body);
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some("body")),
            "{path}: {}",
            r.text
        );
        assert!(r.text.contains("JSON object"), "{path}: {}", r.text);
    }
    // The object form of the same approval is accepted.
    let r = ts.post(
        &format!("/v1/jobs/{job}/approve"),
        &ts.admin,
        &serde_json::json!({"scope": "run"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = ts.get(
        &format!("/v1/jobs/{job}/logs?tail_bytes=1048577"),
        &ts.admin,
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("tail_bytes")),
        "{}",
        r.text
    );
    let r = ts.get(
        &format!("/v1/jobs/{job}/logs?tail_bytes=1048576"),
        &ts.admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
}
