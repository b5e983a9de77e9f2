//! Fuzzing the HTTP API's request bodies: arbitrary and mutated JSON (keys deleted, duplicated or
//! unknown, values of other types, huge numbers, deep nesting, cut or flipped bytes, mutated job
//! manifests) is deserialized into every request type, and a bounded sample of mutated valid
//! bodies is posted to a real server on loopback. The server never answers 5xx and never drops a
//! connection, every 4xx is the JSON error shape `{"error":{"code","message"}}`, and it is
//! healthy afterwards. `PROPTEST_CASES` sets the number of cases per property.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::TestServer;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tidegate_api::{
    ApproveRequest, ConditionRequest, FleetApplyRequest, PromoteRequest, SubmitRequest,
    SyncRequest, TokenRequest,
};
use tidegate_identity::Role;

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

fn example_manifest() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/jobs/sepsis-hpo-sweep.yaml"),
        )
        .unwrap()
    })
}

// ---------- mutations of JSON bodies ----------

/// JSON text of every type and edge values, to put where a value was. Some are not JSON at
/// all (a lone surrogate, a number past f64), which a body must be refused for.
const RAW_VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "-0",
    "1e400",
    "-1e400",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "-9223372036854775809",
    "\"\"",
    "\" \"",
    "\"x\"",
    "[]",
    "{}",
    "[1,\"a\",null,{}]",
    "{\"a\":{\"b\":[]}}",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"é\\n\\t\"",
    "\"../../../etc\"",
    "\"/\"",
    "\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"",
    "\"healthy\"",
    "\"admin\"",
    "\"released-public\"",
    "NaN",
    "undefined",
];

const MARK: &str = "\u{0}raw\u{0}";

#[derive(Debug, Clone)]
enum Mutation {
    /// Remove a key of the top-level object (or of a nested one).
    RemoveKey(Index),
    /// Repeat a key with another value (textually: JSON objects may repeat keys).
    DuplicateKey(Index, Index),
    /// Add a key the type does not declare.
    UnknownKey(String),
    /// Put one of [`RAW_VALUES`] where a value was.
    ReplaceValue(Index, Index),
    /// Put an arbitrary string where a value was.
    ArbitraryString(Index, String),
    /// Nest a value `n` arrays or objects deep where a value was.
    Nest(Index, usize, bool),
    /// A very long string where a value was.
    LongString(Index),
    /// Mutate the job manifest inside the body (where there is one).
    Manifest(Vec<ManifestMutation>),
    /// Flip one bit of the body's text.
    FlipBit(Index, u8),
    /// Keep a prefix of the body's text.
    Truncate(Index),
    /// Insert text anywhere in the body.
    Insert(Index, String),
    /// The body is another JSON value or arbitrary text altogether.
    Replace(String),
}

#[derive(Debug, Clone)]
enum ManifestMutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    ReplaceValue(Index, String),
    FlipBit(Index, u8),
    Truncate(Index),
}

fn manifest_mutation() -> impl Strategy<Value = ManifestMutation> {
    let value = prop_oneof![
        Just("~".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just(".nan".to_owned()),
        Just("1e309".to_owned()),
        Just("public-us".to_owned()),
        Just("radiology-ai".to_owned()),
        Just("*a".to_owned()),
        "\\PC{0,20}",
    ];
    prop_oneof![
        any::<Index>().prop_map(ManifestMutation::DeleteLine),
        any::<Index>().prop_map(ManifestMutation::DuplicateLine),
        (any::<Index>(), value).prop_map(|(i, v)| ManifestMutation::ReplaceValue(i, v)),
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| ManifestMutation::FlipBit(i, b)),
        any::<Index>().prop_map(ManifestMutation::Truncate),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::RemoveKey),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::DuplicateKey(a, b)),
        1 => "[a-z_]{1,12}".prop_map(Mutation::UnknownKey),
        6 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::ReplaceValue(a, b)),
        3 => (any::<Index>(), "\\PC{0,30}").prop_map(|(a, s)| Mutation::ArbitraryString(a, s)),
        1 => (any::<Index>(), 1usize..300, any::<bool>()).prop_map(|(a, n, f)| Mutation::Nest(a, n, f)),
        1 => any::<Index>().prop_map(Mutation::LongString),
        4 => prop::collection::vec(manifest_mutation(), 1..4).prop_map(Mutation::Manifest),
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop_oneof![Just("{".to_owned()), Just("]".to_owned()), Just(",".to_owned()), Just("\"".to_owned()), "\\PC{0,8}"])
            .prop_map(|(i, s)| Mutation::Insert(i, s)),
        1 => prop_oneof![
            Just("null".to_owned()),
            Just("[]".to_owned()),
            Just("\"manifest\"".to_owned()),
            Just(String::new()),
            "\\PC{0,60}",
        ].prop_map(Mutation::Replace),
    ]
}

/// Every value in `v` with its path, depth first (the root first).
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i.to_string());
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Object(m) => m.get_mut(k).unwrap(),
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        _ => unreachable!(),
    })
}

/// A value other than the root (the root when there is none).
fn pick_value<'a>(v: &'a mut Value, i: &Index) -> &'a mut Value {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = if all.len() > 1 {
        all[1 + i.index(all.len() - 1)].clone()
    } else {
        Vec::new()
    };
    at_mut(v, &path)
}

fn mutate_manifest(text: &str, ms: &[ManifestMutation]) -> String {
    let mut text = text.to_owned();
    for m in ms {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match m {
            ManifestMutation::DeleteLine(i) => {
                lines.remove(i.index(n));
            }
            ManifestMutation::DuplicateLine(i) => {
                let l = lines[i.index(n)].clone();
                lines.insert(i.index(n), l);
            }
            ManifestMutation::ReplaceValue(i, v) => {
                let l = &mut lines[i.index(n)];
                if let Some((k, _)) = l.split_once(": ") {
                    *l = format!("{k}: {v}");
                }
            }
            ManifestMutation::FlipBit(i, b) => {
                let mut bytes = text.into_bytes();
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] ^= 1 << b;
                }
                text = String::from_utf8_lossy(&bytes).into_owned();
                continue;
            }
            ManifestMutation::Truncate(i) => {
                let mut at = i.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.truncate(at);
                continue;
            }
        }
        text = lines.join("\n");
        text.push('\n');
    }
    text
}

fn nested(n: usize, array: bool) -> Value {
    (0..n).fold(json!(1), |v, _| {
        if array {
            Value::Array(vec![v])
        } else {
            json!({ "k": v })
        }
    })
}

/// Applies `ms` to `body`: first those on the value, then those on its text.
fn mutated_body(body: &Value, ms: &[Mutation]) -> Vec<u8> {
    let mut v = body.clone();
    let mut raw: Vec<&str> = Vec::new();
    let mut duplicates: Vec<(String, String)> = Vec::new();
    for m in ms {
        match m {
            Mutation::RemoveKey(i) => {
                let target = pick_value(&mut v, i);
                if let Value::Object(o) = target {
                    if let Some(k) = o.keys().nth(i.index(o.len().max(1))).cloned() {
                        o.remove(&k);
                    }
                } else if let Value::Object(o) = &mut v {
                    if let Some(k) = o.keys().nth(i.index(o.len().max(1))).cloned() {
                        o.remove(&k);
                    }
                }
            }
            Mutation::DuplicateKey(k, r) => {
                if let Value::Object(o) = &v {
                    if let Some(key) = o.keys().nth(k.index(o.len().max(1))) {
                        duplicates
                            .push((key.clone(), RAW_VALUES[r.index(RAW_VALUES.len())].into()));
                    }
                }
            }
            Mutation::UnknownKey(k) => {
                if let Value::Object(o) = &mut v {
                    o.insert(k.clone(), json!("x"));
                }
            }
            Mutation::ReplaceValue(i, r) => {
                raw.push(RAW_VALUES[r.index(RAW_VALUES.len())]);
                *pick_value(&mut v, i) = Value::String(format!("{MARK}{}", raw.len() - 1));
            }
            Mutation::ArbitraryString(i, s) => *pick_value(&mut v, i) = Value::String(s.clone()),
            Mutation::Nest(i, n, array) => *pick_value(&mut v, i) = nested(*n, *array),
            Mutation::LongString(i) => *pick_value(&mut v, i) = Value::String("x".repeat(300_000)),
            Mutation::Manifest(mm) => {
                if let Some(Value::String(m)) = v.get_mut("manifest") {
                    *m = mutate_manifest(m, mm);
                }
            }
            _ => {}
        }
    }
    let mut text = v.to_string();
    for (i, r) in raw.iter().enumerate() {
        let marker = serde_json::to_string(&format!("{MARK}{i}")).unwrap();
        text = text.replacen(&marker, r, 1);
    }
    for (k, r) in duplicates {
        if text.starts_with('{') {
            text.insert_str(1, &format!("{}:{r},", serde_json::to_string(&k).unwrap()));
        }
    }
    let mut bytes = text.into_bytes();
    for m in ms {
        match m {
            Mutation::FlipBit(i, b) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] ^= 1 << b;
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            Mutation::Insert(i, s) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, s.bytes());
            }
            Mutation::Replace(s) => bytes = s.clone().into_bytes(),
            _ => {}
        }
    }
    bytes
}

// ---------- request types ----------

/// A valid body of each request type the API accepts.
fn valid_bodies() -> Vec<(&'static str, Value)> {
    vec![
        ("submit", json!({ "manifest": example_manifest() })),
        ("approve", json!({ "scope": "run" })),
        (
            "condition",
            json!({ "health": "degraded", "throttled": true, "reason": "drill" }),
        ),
        (
            "sync",
            json!({ "agent": "agent-1", "runs": [
                { "run_id": "run-1", "status": "exited", "exit_code": 0, "log_tail": "done" },
                { "run_id": "run-2", "status": "running" }
            ] }),
        ),
        (
            "token",
            json!({ "subject": "ana", "role": "submitter", "team": "icu-ml", "minutes": 30 }),
        ),
        ("fleet", json!({ "dir": common::example_fleet() })),
        ("promote", json!({ "to": "validated", "actor": "ana" })),
    ]
}

/// `bytes` as the request type `T`: refused, or a value that serializes back to JSON that
/// parses as `T` again to the same value.
fn roundtrip<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<T>(bytes) {
        Ok(t) => {
            let once = serde_json::to_value(&t).unwrap();
            let again: T = serde_json::from_value(once.clone()).unwrap();
            assert_eq!(serde_json::to_value(&again).unwrap(), once);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

fn deserialize_as(kind: &str, bytes: &[u8]) -> bool {
    match kind {
        "submit" => roundtrip::<SubmitRequest>(bytes),
        "approve" => roundtrip::<ApproveRequest>(bytes),
        "condition" => roundtrip::<ConditionRequest>(bytes),
        "sync" => roundtrip::<SyncRequest>(bytes),
        "token" => roundtrip::<TokenRequest>(bytes),
        "fleet" => roundtrip::<FleetApplyRequest>(bytes),
        "promote" => roundtrip::<PromoteRequest>(bytes),
        other => panic!("no request type {other}"),
    }
}

#[test]
fn the_valid_bodies_deserialize() {
    for (kind, body) in valid_bodies() {
        assert!(
            deserialize_as(kind, body.to_string().as_bytes()),
            "{kind}: {body}"
        );
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn mutated_bodies_deserialize_or_are_refused(
        which in any::<Index>(),
        ms in prop::collection::vec(mutation(), 1..4),
    ) {
        let bodies = valid_bodies();
        let (kind, body) = &bodies[which.index(bodies.len())];
        deserialize_as(kind, &mutated_body(body, &ms));
    }

    #[test]
    fn arbitrary_bytes_deserialize_or_are_refused(
        which in any::<Index>(),
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            "\\PC{0,200}".prop_map(String::into_bytes),
            "([{}\\[\\],:]|\"[a-z_]{0,8}\"|-?[0-9]{1,25}(\\.[0-9]+)?(e-?[0-9]{1,4})?|null|true){0,40}".prop_map(String::into_bytes),
        ],
    ) {
        let bodies = valid_bodies();
        let (kind, _) = &bodies[which.index(bodies.len())];
        deserialize_as(kind, &bytes);
    }
}

// ---------- against a real server ----------

struct Target {
    ts: TestServer,
    job: String,
    digest: String,
    zone_token: String,
}

impl Target {
    fn start() -> Self {
        let ts = TestServer::start_full(16, Default::default(), vec!["edge-clinic".into()]);
        let r = ts.submit(&ts.admin, example_manifest(), None);
        assert_eq!(r.status, 201, "{}", r.text);
        let job = r.body["job"]["id"].as_str().unwrap().to_owned();
        let (status, _, body) = ts.raw(
            "POST",
            "/v1/artifacts?kind=model-card&name=fuzz&team=icu-ml&classification=internal",
            Some(&ts.admin),
            Some(b"a model card"),
        );
        assert_eq!(status, 201, "{body}");
        let digest = body["digest"].as_str().unwrap().to_owned();
        let zone_token = ts.token(Role::Agent, "edge-clinic");
        Self {
            ts,
            job,
            digest,
            zone_token,
        }
    }

    /// The route a body of `kind` is posted to, with `other` in place of its path parameter.
    fn path(&self, kind: &str, other: &Option<String>) -> String {
        match kind {
            "submit" => "/v1/jobs".to_owned(),
            "approve" => format!("/v1/jobs/{}/approve", segment(&self.job, other)),
            "condition" => format!("/v1/zones/{}/condition", segment("public-us", other)),
            "sync" => format!("/v1/agents/{}/sync", segment("edge-clinic", other)),
            "token" => "/v1/tokens".to_owned(),
            "fleet" => "/v1/fleet".to_owned(),
            "promote" => format!("/v1/artifacts/{}/promote", segment(&self.digest, other)),
            other => panic!("no route for {other}"),
        }
    }

    /// The token a body of `kind` is sent with: the zone's agent token for a sync, the admin's
    /// otherwise.
    fn token(&self, kind: &str) -> &str {
        if kind == "sync" {
            &self.zone_token
        } else {
            &self.ts.admin
        }
    }

    /// Posts `body` and checks the answer: below 500, JSON, and every 4xx the JSON error shape.
    /// Over a raw connection: the server may answer a body it refuses before reading all of it,
    /// so a failed write is no failure, and the answer is read regardless.
    fn post(&self, path: &str, token: Option<&str>, ctype: Option<&str>, body: &[u8]) -> u16 {
        use std::io::{Read as _, Write as _};
        let addr = self
            .ts
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(tok) = token {
            head.push_str(&format!("Authorization: Bearer {tok}\r\n"));
        }
        if let Some(c) = ctype {
            head.push_str(&format!("Content-Type: {c}\r\n"));
        }
        head.push_str("\r\n");
        let sent = || String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
        sock.write_all(head.as_bytes()).unwrap();
        let _ = sock.write_all(body);
        let mut answer = Vec::new();
        sock.read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("POST {path}: no answer ({e}); body sent: {:?}", sent()));
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "POST {path}: not an HTTP answer: {text:?}; body sent: {:?}",
                    sent()
                )
            });
        let payload = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(payload)
        } else {
            payload.to_owned()
        };
        let shown = || {
            format!(
                "POST {path} answered {status}: {}\nbody sent: {:?}",
                payload.chars().take(600).collect::<String>(),
                sent()
            )
        };
        assert!(status < 500, "{}", shown());
        let json: Value =
            serde_json::from_str(&payload).unwrap_or_else(|_| panic!("not JSON: {}", shown()));
        if (400..500).contains(&status) {
            let e = &json["error"];
            assert!(
                e["code"].as_str().is_some_and(|c| !c.is_empty()) && e["message"].is_string(),
                "{}",
                shown()
            );
            assert!(e.get("field").is_none_or(Value::is_string), "{}", shown());
        }
        status
    }
}

/// The body of a chunked answer.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A path segment: the real one, or anything (percent-encoded).
fn segment(real: &str, other: &Option<String>) -> String {
    match other {
        None => real.to_owned(),
        Some(s) => s
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    }
}

#[derive(Debug, Clone)]
enum Auth {
    Valid,
    None,
    Garbage(String),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        17 => Just(Auth::Valid),
        2 => Just(Auth::None),
        1 => "[A-Za-z0-9_=-]{0,80}".prop_map(Auth::Garbage),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        18 => Just(Some("application/json")),
        1 => Just(Some("text/plain")),
        1 => Just(None),
    ]
}

#[test]
fn mutated_bodies_posted_to_a_server_are_never_a_server_error() {
    let t = Target::start();
    let json = Some("application/json");
    // The valid bodies succeed: the mutations start from answers that are not refusals.
    for (kind, body) in valid_bodies() {
        let path = t.path(kind, &None);
        let status = t.post(
            &path,
            Some(t.token(kind)),
            json,
            body.to_string().as_bytes(),
        );
        let ok: &[u16] = match kind {
            "submit" | "token" => &[201],
            // The job may already be running (nothing to approve), the artifact lack what
            // validation asks: refusals, not failures.
            "approve" => &[200, 409],
            "promote" => &[200, 403, 409, 422],
            _ => &[200],
        };
        assert!(ok.contains(&status), "{kind}: {path} answered {status}");
    }

    let mut runner = proptest::test_runner::TestRunner::new(config(800));
    let strategy = (
        any::<Index>(),
        prop::collection::vec(mutation(), 0..4),
        auth(),
        content_type(),
        prop::option::weighted(0.1, "\\PC{0,20}"),
    );
    let bodies = valid_bodies();
    runner
        .run(&strategy, |(which, ms, auth, ctype, other)| {
            let (kind, body) = &bodies[which.index(bodies.len())];
            let token = match &auth {
                Auth::Valid => Some(t.token(kind).to_owned()),
                Auth::None => None,
                Auth::Garbage(g) => Some(g.clone()),
            };
            let path = t.path(kind, &other);
            let status = t.post(&path, token.as_deref(), ctype, &mutated_body(body, &ms));
            if !matches!(auth, Auth::Valid) {
                // Authentication comes first, whatever the body.
                prop_assert_eq!(status, 401);
            }
            Ok(())
        })
        .unwrap();

    // After every request, the server is healthy.
    let r = t.ts.request("GET", "/healthz", None, None, &[]);
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("ok")),
        "{}",
        r.text
    );
}
