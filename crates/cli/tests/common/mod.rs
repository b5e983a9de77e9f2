//! Helpers shared by the process-level tests: the repository root, a child process that is
//! killed when the test ends, an HTTP client (over HTTPS trusting a control plane's certificate
//! authority), polling.
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
    agent_trusting(None)
}

/// An HTTP client that returns error statuses as responses, trusting the certificate authority
/// in the PEM file `ca` for `https://` URLs.
pub fn agent_trusting(ca: Option<&Path>) -> ureq::Agent {
    use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};
    let roots: Vec<ureq::tls::Certificate<'static>> = match ca {
        Some(ca) => {
            let pem = std::fs::read(ca).unwrap();
            ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i.unwrap() {
                    PemItem::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect()
        }
        None => Vec::new(),
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .root_certs(RootCerts::new_with_certs(&roots))
        .build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(tls)
        .build();
    ureq::Agent::new_with_config(config)
}

/// GET (no body) or POST (JSON body) with a bearer token: status and JSON answer.
pub fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    call_trusting(None, method, url, token, body)
}

/// As [`call`], trusting the certificate authority in `ca` for `https://` URLs.
pub fn call_trusting(
    ca: Option<&Path>,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let a = agent_trusting(ca);
    let resp = if method == "GET" {
        a.get(url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
    } else {
        a.post(url)
            .header("Authorization", format!("Bearer {token}"))
            .send_json(body.unwrap_or(json!({})))
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

/// A control plane started with `tidegate up` on `data` (the example fleet, `listen`, agent
/// zones and any `extra` arguments), once it has written its URL. It serves HTTPS unless
/// `extra` has `--plain-http`.
pub struct ControlPlane {
    /// The process (stopped on drop).
    pub proc: Proc,
    /// Its port.
    pub port: String,
    /// The admin token it wrote.
    pub admin: String,
    /// The URL it wrote (`https://127.0.0.1:PORT` under TLS).
    pub url: String,
    /// Its certificate authority, `<data>/pki/ca.pem` (absent with `--plain-http`).
    pub ca: PathBuf,
}

impl ControlPlane {
    /// [`call_trusting`] this control plane's certificate authority.
    pub fn call(&self, method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        call_trusting(
            Some(&self.ca).filter(|c| c.exists()).map(PathBuf::as_path),
            method,
            url,
            token,
            body,
        )
    }
}

/// Starts a control plane and waits for it.
pub fn start_control_plane(
    data: &std::path::Path,
    listen: &str,
    agent_zones: &[&str],
    extra: &[&str],
) -> ControlPlane {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"));
    cmd.args(["up", "--listen", listen]);
    for z in agent_zones {
        cmd.args(["--agent-zone", z]);
    }
    cmd.args(extra)
        .arg("--data-dir")
        .arg(data)
        .arg("--fleet")
        .arg(repo().join("examples/fleet"));
    let proc = Proc(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the control plane", 60, || data.join("server.url").exists());
    std::thread::sleep(Duration::from_millis(300));
    let url = std::fs::read_to_string(data.join("server.url"))
        .unwrap()
        .trim()
        .to_owned();
    let port = url.rsplit(':').next().unwrap().to_owned();
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    ControlPlane {
        proc,
        port,
        admin,
        url,
        ca: data.join("pki").join("ca.pem"),
    }
}

/// Mints an agent token for `zone` with the control plane's keys in `data`; writes it to `file`.
pub fn agent_token(data: &std::path::Path, zone: &str, file: &std::path::Path) {
    let minted = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "token",
            "mint",
            "--user",
            &format!("agent-{zone}"),
            "--role",
            "agent",
            "--team",
            zone,
            "--minutes",
            "60",
            "--data-dir",
        ])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    std::fs::write(file, &minted.stdout).unwrap();
}

/// Starts `tidegate agent` for `zone`, optionally inside network namespace `ns`, trusting the
/// certificate authority `ca` (an `https://` control plane).
pub fn start_agent(
    ns: Option<&str>,
    zone: &str,
    control_plane: &str,
    ca: Option<&Path>,
    token: &std::path::Path,
    work: &std::path::Path,
) -> Proc {
    let tg = env!("CARGO_BIN_EXE_tidegate");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, tg]);
            c
        }
        None => std::process::Command::new(tg),
    };
    cmd.args([
        "agent",
        "--zone",
        zone,
        "--interval-ms",
        "200",
        "--control-plane",
        control_plane,
        "--token",
    ])
    .arg(token)
    .arg("--work-dir")
    .arg(work);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    Proc(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The standard output of a command that must have succeeded (its arguments and standard error
/// otherwise in the failure).
pub fn succeeded(out: &std::process::Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every entry of the data directory's file ledger, as JSON text lines, oldest first.
pub fn ledger_lines(dir: &Path) -> Vec<String> {
    let log =
        tidegate_ledger::ledger::read_log(&tidegate_ledger::ledger::ledger_dir(dir), true).unwrap();
    log.entries
        .iter()
        .map(|e| String::from_utf8(e.clone()).unwrap())
        .collect()
}

/// A one-GPU training job of team icu-ml on raw PHI (so it stays in the hospital), running
/// `command` (shell text, no single quotes).
pub fn train_job(name: &str, command: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: icu-ml
spec:
  kind: train
  inputs:
    - dataset: ehr-raw@2026-10
  resources:
    gpus: 1
    gpu_types: [H100]
    expected_hours: 1
  budget_class: research
  command: [sh, -c, '{command}']
"
    )
}
