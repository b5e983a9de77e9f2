//! A control plane started in-process on a free loopback port, over a temporary data directory
//! and the example fleet, with a tiny HTTP client for the tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidegate_identity::{Role, RootKeyStore};
use tidegate_server::control::LoopConfig;
use tidegate_server::{HttpLimits, Server, ServerConfig};

pub fn example_fleet() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")
}

/// A copy of the example fleet in `dir` (to edit), returning its path.
pub fn copy_fleet(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let to = dir.join("fleet");
    copy(&example_fleet(), &to);
    to
}

/// Rewrites the classification of dataset `name` in a fleet copy's `datasets.yaml`.
pub fn reclassify(fleet_dir: &Path, name: &str, classification: &str) {
    let path = fleet_dir.join("datasets.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut in_it = false;
    let mut skipping = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("  - name: ") {
            in_it = rest.trim() == name;
        }
        if in_it && line.trim_start().starts_with("classification:") {
            out.push_str("    classification:\n");
            for l in classification.lines() {
                out.push_str("      ");
                out.push_str(l);
                out.push('\n');
            }
            skipping = true;
            continue;
        }
        if skipping && (line.starts_with("      ") || line.trim().is_empty()) {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        out != text,
        "dataset {name} not found in {}",
        path.display()
    );
    std::fs::write(&path, out).unwrap();
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub struct TestServer {
    pub rt: tokio::runtime::Runtime,
    pub server: Option<Server>,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub admin: String,
    agent: ureq::Agent,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl TestServer {
    /// Starts a server; the token root key is created two hours in the past so tests can mint
    /// tokens that have already expired.
    pub fn start(burst_queue_depth: usize) -> Self {
        Self::start_with(burst_queue_depth, Default::default())
    }

    /// Starts a server whose named zones use the given executors.
    pub fn start_with(
        burst_queue_depth: usize,
        executors: std::collections::BTreeMap<String, std::sync::Arc<dyn tidegate_exec::Executor>>,
    ) -> Self {
        Self::start_full(burst_queue_depth, executors, vec![])
    }

    /// Starts a server with executors and agent-run zones.
    pub fn start_full(
        burst_queue_depth: usize,
        executors: std::collections::BTreeMap<String, std::sync::Arc<dyn tidegate_exec::Executor>>,
        agent_zones: Vec<String>,
    ) -> Self {
        Self::start_fleet(&example_fleet(), burst_queue_depth, executors, agent_zones)
    }

    /// Starts a server on the fleet in `fleet_dir`.
    pub fn start_fleet(
        fleet_dir: &Path,
        burst_queue_depth: usize,
        executors: std::collections::BTreeMap<String, std::sync::Arc<dyn tidegate_exec::Executor>>,
        agent_zones: Vec<String>,
    ) -> Self {
        Self::start_fleet_http(
            fleet_dir,
            burst_queue_depth,
            executors,
            agent_zones,
            HttpLimits::default(),
        )
    }

    /// Starts a server on the example fleet whose HTTP listener has the given limits.
    pub fn start_http(http: HttpLimits) -> Self {
        Self::start_fleet_http(&example_fleet(), 16, Default::default(), vec![], http)
    }

    /// As [`Self::start_fleet`], with the HTTP listener's limits.
    pub fn start_fleet_http(
        fleet_dir: &Path,
        burst_queue_depth: usize,
        executors: std::collections::BTreeMap<String, std::sync::Arc<dyn tidegate_exec::Executor>>,
        agent_zones: Vec<String>,
        http: HttpLimits,
    ) -> Self {
        Self::start_store(
            fleet_dir,
            burst_queue_depth,
            executors,
            agent_zones,
            http,
            None,
        )
    }

    /// Starts a server on the example fleet over `store` instead of the SQLite file in its data
    /// directory.
    pub fn start_on(store: std::sync::Arc<dyn tidegate_store::Store>) -> Self {
        Self::start_store(
            &example_fleet(),
            16,
            Default::default(),
            vec![],
            HttpLimits::default(),
            Some(store),
        )
    }

    /// As [`Self::start_fleet_http`], over `store` when one is given.
    pub fn start_store(
        fleet_dir: &Path,
        burst_queue_depth: usize,
        executors: std::collections::BTreeMap<String, std::sync::Arc<dyn tidegate_exec::Executor>>,
        agent_zones: Vec<String>,
        http: HttpLimits,
        store: Option<std::sync::Arc<dyn tidegate_store::Store>>,
    ) -> Self {
        Self::start_lease(
            fleet_dir,
            burst_queue_depth,
            executors,
            agent_zones,
            http,
            store,
            LoopConfig::default().lease_ttl,
        )
    }

    /// As [`Self::start_store`], with the scheduler lease's time to live.
    pub fn start_lease(
        fleet_dir: &Path,
        burst_queue_depth: usize,
        executors: std::collections::BTreeMap<String, std::sync::Arc<dyn tidegate_exec::Executor>>,
        agent_zones: Vec<String>,
        http: HttpLimits,
        store: Option<std::sync::Arc<dyn tidegate_store::Store>>,
        lease_ttl: Duration,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = RootKeyStore::new(&dir.path().join("keys"));
        keys.rotate(now() - 7200, 30).unwrap();
        let mut loop_cfg = LoopConfig {
            tick: Duration::from_millis(50),
            time_scale: 3600.0 * 100.0,
            lease_ttl,
            ..LoopConfig::default()
        };
        loop_cfg.sched.burst_queue_depth = burst_queue_depth;
        let cfg = ServerConfig {
            data_dir: dir.path().to_owned(),
            fleet_dir: fleet_dir.to_owned(),
            database: None,
            store,
            listen: "127.0.0.1:0".parse().unwrap(),
            loop_cfg,
            work_root: None,
            keys_dir: None,
            executors,
            admin_token_minutes: 60,
            agent_zones,
            replica: "test".into(),
            scheduler: true,
            http,
            tls: None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(tidegate_server::start(
                cfg,
                tidegate_server::auth::system_clock(),
            ))
            .unwrap();
        let url = server.url.clone();
        let admin = std::fs::read_to_string(&server.admin_token_path)
            .unwrap()
            .trim()
            .to_owned();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Self {
            rt,
            server: Some(server),
            url,
            dir,
            admin,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// Stops this server and starts another on the same data directory with the fleet in
    /// `fleet_dir` (an edited copy, say), the same agent zones and no other executors.
    pub fn restart_with_fleet(&mut self, fleet_dir: &Path, agent_zones: Vec<String>) {
        self.restart_replica(fleet_dir, agent_zones, true);
    }

    /// As [`Self::restart_with_fleet`]; `scheduler: false` starts an API-only replica (it
    /// serves requests and never schedules).
    pub fn restart_replica(&mut self, fleet_dir: &Path, agent_zones: Vec<String>, scheduler: bool) {
        self.stop();
        let cfg = ServerConfig {
            data_dir: self.dir.path().to_owned(),
            fleet_dir: fleet_dir.to_owned(),
            database: None,
            store: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            loop_cfg: LoopConfig {
                tick: Duration::from_millis(50),
                time_scale: 3600.0 * 100.0,
                ..LoopConfig::default()
            },
            work_root: None,
            keys_dir: None,
            executors: Default::default(),
            admin_token_minutes: 60,
            agent_zones,
            replica: "test".into(),
            scheduler,
            http: Default::default(),
            tls: None,
        };
        let server = self
            .rt
            .block_on(tidegate_server::start(
                cfg,
                tidegate_server::auth::system_clock(),
            ))
            .unwrap();
        self.url = server.url.clone();
        self.admin = std::fs::read_to_string(&server.admin_token_path)
            .unwrap()
            .trim()
            .to_owned();
        self.server = Some(server);
    }

    /// Runs `f` on the data directory's artifact store in direct mode, as `tidegate artifact
    /// --data-dir` does: this server stops, `f` records into the evidence ledger, and the server
    /// starts again on the example fleet with `agent_zones`.
    pub fn offline_store<T>(
        &mut self,
        agent_zones: Vec<String>,
        f: impl FnOnce(&tidegate_artifacts::ArtifactStore) -> T,
    ) -> T {
        self.stop();
        let out = {
            let ledger = std::sync::Arc::new(
                tidegate_ledger::Ledger::open(self.dir.path(), Default::default()).unwrap(),
            );
            let sink = tidegate_artifacts::ledger_sink::LedgerSink::new(
                self.dir.path(),
                ledger.clone() as _,
                now(),
            )
            .unwrap();
            let store = tidegate_artifacts::ArtifactStore::open(self.dir.path())
                .unwrap()
                .with_event_sink(Box::new(sink));
            let out = f(&store);
            ledger.close().unwrap();
            out
        };
        self.restart_with_fleet(&example_fleet(), agent_zones);
        out
    }

    pub fn keys(&self) -> RootKeyStore {
        RootKeyStore::new(&self.dir.path().join("keys"))
    }

    /// A user token minted at `at` (Unix seconds) for `minutes`.
    pub fn token_at(&self, role: Role, team: &str, at: u64, minutes: u32) -> String {
        tidegate_server::auth::mint(&self.keys(), "tester", role, team, minutes, at).unwrap()
    }

    pub fn token(&self, role: Role, team: &str) -> String {
        self.token_at(role, team, now(), 30)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = format!("{}{path}", self.url);
        let resp = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(t) = token {
                    r = r.header("Authorization", format!("Bearer {t}"));
                }
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            "POST" => {
                let mut r = self.agent.post(&url);
                if let Some(t) = token {
                    r = r.header("Authorization", format!("Bearer {t}"));
                }
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                match body {
                    Some(b) => r.send_json(b),
                    None => r.send_empty(),
                }
            }
            other => panic!("method {other}"),
        };
        let mut resp = resp.unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    /// A request with a raw body (POST) or none (GET), answering status, raw bytes and the body
    /// as JSON when it is JSON.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, Vec<u8>, Value) {
        self.raw_with(method, path, token, body, &[])
    }

    /// A GET from inside `zone`: the job's `token` as bearer, the zone's agent token as its
    /// identity.
    pub fn get_in_zone(&self, path: &str, token: &str, zone: &str) -> (u16, Vec<u8>, Value) {
        let zone_token = self.token(Role::Agent, zone);
        self.raw_with(
            "GET",
            path,
            Some(token),
            None,
            &[("X-Tidegate-Zone-Token", &zone_token)],
        )
    }

    /// As [`Self::raw`], with extra headers.
    pub fn raw_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<u8>, Value) {
        let url = format!("{}{path}", self.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            ("POST", b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/octet-stream");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(b.unwrap_or_default())
            }
            (other, _) => panic!("method {other}"),
        };
        let mut resp = resp.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, bytes, json)
    }

    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.request("GET", path, Some(token), None, &[])
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(token), Some(body), &[])
    }

    pub fn submit(&self, token: &str, manifest: &str, key: Option<&str>) -> Resp {
        let headers: Vec<(&str, &str)> = key
            .map(|k| vec![("Idempotency-Key", k)])
            .unwrap_or_default();
        self.request(
            "POST",
            "/v1/jobs",
            Some(token),
            Some(&serde_json::json!({ "manifest": manifest })),
            &headers,
        )
    }

    /// Polls a job until `pred` holds on its detail, or fails after `secs`.
    pub fn wait_job(&self, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.get(&format!("/v1/jobs/{id}"), &self.admin);
            assert_eq!(r.status, 200, "{}", r.text);
            if pred(&r.body) {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach the expected state: {}",
                r.text
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A job manifest for team `team` on de-identified data, running `command` (shell text).
pub fn manifest(name: &str, team: &str, gpus: u32, command: Option<&str>) -> String {
    let cmd = command
        .map(|c| format!("  command: [sh, -c, '{c}']\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: {team}
  labels:
    burst_eligible: true
spec:
  kind: hpo-sweep
  inputs:
    - dataset: ehr-deid@2026-10
  resources:
    gpus: {gpus}
    gpu_types: [H100, H200]
    expected_hours: 6
  budget_class: research
  justification: test burst
{cmd}"
    )
}

/// A manifest on raw PHI (private only).
pub fn raw_manifest(name: &str, command: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: icu-ml
  labels:
    burst_eligible: true
spec:
  kind: hpo-sweep
  inputs:
    - dataset: ehr-raw@2026-10
  resources:
    gpus: 8
    gpu_types: [H100, H200]
    expected_hours: 6
  budget_class: research
  justification: faster
  command: [sh, -c, '{command}']
"
    )
}
