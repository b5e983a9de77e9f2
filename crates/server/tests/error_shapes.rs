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
    let big = json!({"manifest": "x".repeat(3 << 20)});
    let r = ts.post("/v1/jobs", &ts.admin, &big);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{}",
        r.text.chars().take(300).collect::<String>()
    );
}
