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
