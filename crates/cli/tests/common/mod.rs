//! Helpers shared by the process-level tests: the repository root, a child process that is
//! killed when the test ends, a plain HTTP client, polling.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process killed (and reaped) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP client that returns error statuses as responses.
pub fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build();
    ureq::Agent::new_with_config(config)
}

/// GET (no body) or POST (JSON body) with a bearer token: status and JSON answer.
pub fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let a = agent();
    let resp = if method == "GET" {
        a.get(url).header("Authorization", format!("Bearer {token}")).call()
    } else {
        a.post(url).header("Authorization", format!("Bearer {token}")).send_json(body.unwrap_or(json!({})))
    };
    let mut r = resp.unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

/// Polls `f` every 100 ms until it holds, failing after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A burst-eligible 8-GPU sweep for team icu-ml confined by `allowed_execution_zone`, in budget
/// class `class`, running `command` (shell text).
pub fn zone_job(name: &str, zone: &str, dataset: &str, class: &str, command: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: icu-ml
  labels:
    burst_eligible: true
    allowed_execution_zone: {zone}
spec:
  kind: hpo-sweep
  inputs:
    - dataset: {dataset}
  resources:
    gpus: 8
    gpu_types: [H100, H200]
    expected_hours: 1
  budget_class: {class}
  justification: {class} drill
  command: [sh, -c, '{command}']
"
    )
}
