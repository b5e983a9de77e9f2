//! Every error the API answers has the JSON error shape, with authentication first: unknown
//! routes, wrong methods and bodies over the limit included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestServer;
use serde_json::json;

#[test]
fn unknown_routes_wrong_methods_and_large_bodies_answer_json_errors_after_authentication() {
    let ts = TestServer::start(16);
    // No token: 401 first, whatever the route.
    let r = ts.request("GET", "/v1/nope", None, None, &[]);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("unauthenticated")),
        "{}",
        r.text
    );
    // With a token: a JSON 404 naming the path.
    let r = ts.get("/v1/nope", &ts.admin);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{}",
        r.text
    );
    assert!(r.text.contains("/v1/nope"), "{}", r.text);
    // A served route with another method: a JSON 405.
    let r = ts.post("/v1/zones", &ts.admin, &json!({}));
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{}",
        r.text
    );
    let r = ts.request("POST", "/v1/zones", None, Some(&json!({})), &[]);
    assert_eq!(r.status, 401, "{}", r.text);
    // A JSON body over the limit: 413 too_large, not 400.
    // Sent over a raw socket: the server may answer and close before the whole body is written,
    // so write errors are expected and the answer is read regardless.
    use std::io::{Read as _, Write as _};
    let big = json!({"manifest": "x".repeat(3 << 20)}).to_string();
    let addr = ts.url.trim_start_matches("http://").trim_end_matches('/');
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ts.admin,
        big.len()
    );
    sock.write_all(head.as_bytes()).unwrap();
    let _ = sock.write_all(big.as_bytes());
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        answer.chars().take(300).collect::<String>()
    );
    assert!(
        answer.contains("\"too_large\""),
        "{}",
        answer.chars().take(300).collect::<String>()
    );
}

/// One request over a fresh connection: the status, the response's headers and body as text.
fn raw_exchange(ts: &TestServer, request: &str) -> (u16, String, String) {
    use std::io::{Read as _, Write as _};
    let addr = ts.url.trim_start_matches("http://").trim_end_matches('/');
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    sock.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn get_with(
    ts: &TestServer,
    target: &str,
    token: Option<&str>,
    extra: &str,
) -> (u16, String, String) {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    raw_exchange(
        ts,
        &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{auth}{extra}Connection: close\r\n\r\n"),
    )
}

/// Asserts a JSON error with `code` (and `field` when given).
fn assert_json_error(got: &(u16, String, String), status: u16, code: &str, field: Option<&str>) {
    let (s, head, body) = got;
    assert_eq!(*s, status, "{head}\n{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["error"]["code"], code, "{body}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(f) = field {
        assert_eq!(v["error"]["field"], f, "{body}");
    }
}

#[test]
fn undecodable_paths_long_targets_and_large_heads_answer_json_errors_after_authentication() {
    let ts = TestServer::start(16);
    let admin = ts.admin.clone();
    // A path parameter that is not UTF-8: 401 without a token, then a JSON 400 naming it.
    for target in [
        "/v1/jobs/%FF",
        "/v1/jobs/%FF/cancel",
        "/v1/artifacts/%FF/verify",
    ] {
        let method = if target.ends_with("cancel") {
            "POST"
        } else {
            "GET"
        };
        let req = |auth: &str| {
            format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")
        };
        assert_json_error(
            &raw_exchange(&ts, &req("")),
            401,
            "unauthenticated",
            Some("Authorization"),
        );
        let field = if target.starts_with("/v1/jobs") {
            "id"
        } else {
            "digest"
        };
        let auth = format!("Authorization: Bearer {admin}\r\n");
        assert_json_error(
            &raw_exchange(&ts, &req(&auth)),
            400,
            "invalid_request",
            Some(field),
        );
    }
    // Unknown routes and wrong methods carry the JSON content type too.
    assert_json_error(
        &get_with(&ts, "/nope", None, ""),
        401,
        "unauthenticated",
        None,
    );
    assert_json_error(
        &get_with(&ts, "/nope", Some(&admin), ""),
        404,
        "not_found",
        None,
    );
    let wrong = raw_exchange(
        &ts,
        &format!("DELETE /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"),
    );
    assert_json_error(&wrong, 405, "method_not_allowed", None);
    // A request target over the bound: 401 first, then a JSON 414; /healthz needs no token.
    let long = format!("/v1/jobs?team={}", "a".repeat(16 * 1024));
    assert_json_error(
        &get_with(&ts, &long, None, ""),
        401,
        "unauthenticated",
        None,
    );
    assert_json_error(
        &get_with(&ts, &long, Some(&admin), ""),
        414,
        "uri_too_long",
        Some("uri"),
    );
    let long_health = format!("/healthz?{}", "a".repeat(16 * 1024));
    assert_json_error(
        &get_with(&ts, &long_health, None, ""),
        414,
        "uri_too_long",
        None,
    );
    // Headers over the bound, by size or by count: 401 first, then a JSON 431.
    let big: String = (0..10)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "b".repeat(8 * 1024)))
        .collect();
    let many: String = (0..150).map(|i| format!("X-Many-{i}: c\r\n")).collect();
    for extra in [&big, &many] {
        assert_json_error(
            &get_with(&ts, "/v1/zones", None, extra),
            401,
            "unauthenticated",
            None,
        );
        assert_json_error(
            &get_with(&ts, "/v1/zones", Some(&admin), extra),
            431,
            "headers_too_large",
            Some("headers"),
        );
    }
    // Within the bounds, the same route answers.
    assert_eq!(
        get_with(&ts, "/v1/zones", Some(&admin), "X-Pad: d\r\n").0,
        200
    );
}

#[test]
fn a_manifest_command_element_that_is_not_a_string_is_a_400_naming_the_element() {
    let ts = TestServer::start(16);
    let sub = ts.token(tidegate_identity::Role::Submitter, "icu-ml");
    let good = common::manifest("cmd-probe", "icu-ml", 1, Some("true"));
    let bad = good.replace("[sh, -c, 'true']", "[sh, -c, 3]");
    assert_ne!(good, bad);
    let r = ts.submit(&sub, &bad, None);
    assert_eq!(
        (
            r.status,
            r.body["error"]["code"].as_str(),
            r.body["error"]["field"].as_str()
        ),
        (
            400,
            Some("invalid_manifest"),
            Some("manifest.spec.command[2]")
        ),
        "{}",
        r.text
    );
    // Nothing was created.
    let r = ts.get("/v1/jobs?team=icu-ml", &ts.admin);
    assert_eq!(
        r.body["jobs"].as_array().map(Vec::len),
        Some(0),
        "{}",
        r.text
    );
}

#[test]
fn a_manifest_naming_a_team_the_fleet_does_not_declare_is_refused() {
    let ts = TestServer::start(16);
    let token = ts.token(tidegate_identity::Role::Submitter, "oncology");
    let r = ts.submit(
        &token,
        &common::manifest("stray", "oncology", 1, None),
        None,
    );
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_manifest")),
        "{}",
        r.text
    );
    assert_eq!(
        r.body["error"]["field"], "manifest.metadata.team",
        "{}",
        r.text
    );
    // Every team the example jobs use is one of the example fleet's.
    let jobs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs");
    let admin = ts.admin.clone();
    for e in std::fs::read_dir(jobs).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let r = ts.submit(&admin, &text, None);
        assert_ne!(
            r.body["error"]["field"], "manifest.metadata.team",
            "an example job's team is not in the example fleet: {}",
            r.text
        );
    }
}

#[test]
fn a_fleet_without_teams_takes_any_team() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = common::copy_fleet(dir.path());
    let path = fleet.join("fleet.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("\nteams:\n").unwrap();
    let end = text[start..].find("\n# Job classes").unwrap() + start;
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let ts = TestServer::start_fleet(&fleet, 16, Default::default(), vec![]);
    let token = ts.token(tidegate_identity::Role::Submitter, "oncology");
    let r = ts.submit(
        &token,
        &common::manifest("stray", "oncology", 1, None),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
}
