//! Several control-plane replicas on one PostgreSQL database: any replica serves the API, one
//! holds the scheduler lease; `kill -9` of the leader hands scheduling to another within
//! seconds and no job is admitted or run twice. And PostgreSQL crashing under load: requests fail
//! with a clear `unavailable` error, nothing acknowledged is lost, service resumes by itself.
//! Each test runs its own PostgreSQL instance (skips outside CI without the server binaries).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidegate_testkit::PgInstance;

/// `tidegate up --lease-seconds` by default.
const DEFAULT_LEASE_S: u64 = 5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::new_with_config(config)
}

struct Replica {
    child: Child,
    url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(db: &str, data: &Path, keys: &Path, work: &Path, name: &str) -> Replica {
    replica_on(db, data, keys, work, name, &repo().join("examples/fleet"))
}

fn replica_on(
    db: &str,
    data: &Path,
    keys: &Path,
    work: &Path,
    name: &str,
    fleet: &Path,
) -> Replica {
    replica_with(db, data, keys, work, name, fleet, &[])
}

/// A replica with the lease `tidegate up` defaults to.
fn default_lease(db: &str, data: &Path, keys: &Path, work: &Path, name: &str) -> Replica {
    let fleet = repo().join("examples/fleet");
    replica_with(
        db,
        data,
        keys,
        work,
        name,
        &fleet,
        &["--lease-seconds", "default"],
    )
}

fn replica_with(
    db: &str,
    data: &Path,
    keys: &Path,
    work: &Path,
    name: &str,
    fleet: &Path,
    extra: &[&str],
) -> Replica {
    std::fs::create_dir_all(data).unwrap();
    let _ = std::fs::remove_file(data.join("server.url"));
    // A short lease keeps these tests quick, except where `extra` sets one (or asks for the
    // default with `--lease-seconds default`).
    let mut extra: Vec<&str> = extra.to_vec();
    match extra.iter().position(|a| *a == "--lease-seconds") {
        None => extra.extend(["--lease-seconds", "2"]),
        Some(i) if extra.get(i + 1) == Some(&"default") => {
            extra.drain(i..i + 2);
        }
        Some(_) => {}
    }
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "up",
            "--plain-http",
            "--listen",
            "127.0.0.1:0",
            "--replica",
            name,
            "--database",
            db,
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--keys-dir")
        .arg(keys)
        .arg("--work-root")
        .arg(work)
        .arg("--fleet")
        .arg(fleet)
        .args(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut started = Replica {
        child,
        url: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(url) = std::fs::read_to_string(data.join("server.url")) {
            let url = url.trim().to_owned();
            if agent()
                .get(format!("{url}/healthz"))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                started.url = url;
                return started;
            }
        }
        assert!(Instant::now() < deadline, "replica {name} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A link between a zone's agent and the control plane, on loopback, that the test can cut:
/// while cut, every connection through it is closed and new ones are dropped at once. It leads
/// to whichever replica `target` names.
struct Link {
    addr: String,
    cut: Arc<AtomicBool>,
    target: Arc<Mutex<String>>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Link {
    fn new(target: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let link = Link {
            addr,
            cut: Arc::new(AtomicBool::new(false)),
            target: Arc::new(Mutex::new(target.to_owned())),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (cut, to, open) = (link.cut.clone(), link.target.clone(), link.open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                let dest = to.lock().unwrap().clone();
                let Ok(server) = std::net::TcpStream::connect(dest) else {
                    continue;
                };
                let mut held = open.lock().unwrap();
                held.retain(|c| c.peer_addr().is_ok());
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        link
    }

    /// Cuts the link (`true`) or restores it.
    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for c in self.open.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Leads the link to the replica at `url` from now on.
    fn lead_to(&self, url: &str) {
        *self.target.lock().unwrap() = url.trim_start_matches("http://").to_owned();
    }
}

fn health(url: &str) -> Option<Value> {
    let mut r = agent().get(format!("{url}/healthz")).call().ok()?;
    r.body_mut().read_json().ok()
}

fn call(
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let a = agent();
    let resp = if method == "GET" {
        a.get(url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
    } else {
        let mut req = a
            .post(url)
            .header("Authorization", format!("Bearer {token}"));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send_json(body.unwrap_or(json!({})))
    };
    match resp {
        Ok(mut r) => {
            let status = r.status().as_u16();
            (status, r.body_mut().read_json().unwrap_or(Value::Null))
        }
        Err(e) => (0, json!({ "transport": e.to_string() })),
    }
}

/// A file every job can append to (jobs run as an unprivileged user when the tests run as
/// root), in a directory of its own that the job's user can reach; removed with the guard.
fn shared_log(name: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("tidegate-runs")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    (dir, path)
}

fn manifest(name: &str, runs_log: &Path) -> String {
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
    gpus: 16
    gpu_types: [H100]
    expected_hours: 1
  budget_class: research
  command: [sh, -c, 'echo $TIDEGATE_JOB_ID >> {}; sleep 1.5']
",
        runs_log.display()
    )
}

/// A job confined to the agent's zone (de-identified data, burst-eligible), logging its id.
fn agent_manifest(name: &str, runs_log: &Path) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}-agent
  team: icu-ml
  labels:
    burst_eligible: true
    allowed_execution_zone: public-eu
spec:
  kind: hpo-sweep
  inputs:
    - dataset: ehr-deid@2026-10
  resources:
    gpus: 8
    gpu_types: [H100, H200]
    expected_hours: 1
  budget_class: research
  justification: soak in the agent's zone
  command: [sh, -c, 'echo $TIDEGATE_JOB_ID >> {}; sleep 0.3']
",
        runs_log.display()
    )
}

fn all_jobs(url: &str, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or_else(
            || "limit=1000".to_string(),
            |a| format!("limit=1000&after={a}"),
        );
        let (s, page) = call("GET", &format!("{url}/v1/jobs?{q}"), token, None, None);
        assert_eq!(s, 200, "{page}");
        out.extend(page["jobs"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[test]
fn killing_the_leader_hands_scheduling_over_without_double_admission() {
    let help = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["up", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let lease_help = help.split("--lease-seconds").nth(1).unwrap_or_default();
    assert!(
        lease_help
            .split("\n      --")
            .next()
            .unwrap_or_default()
            .contains(&format!("[default: {DEFAULT_LEASE_S}]")),
        "the default lease is not {DEFAULT_LEASE_S} s: {lease_help}"
    );
    let Some(pg) = PgInstance::start_private("replicas") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (keys, work) = (root.path().join("keys"), root.path().join("work"));
    let (_runs_dir, runs) = shared_log("runs.log");
    // The first replica creates the shared token keys; the others start once it is up.
    let mut replicas = vec![default_lease(
        &pg.url(),
        &root.path().join("r1"),
        &keys,
        &work,
        "r1",
    )];
    replicas.push(default_lease(
        &pg.url(),
        &root.path().join("r2"),
        &keys,
        &work,
        "r2",
    ));
    replicas.push(default_lease(
        &pg.url(),
        &root.path().join("r3"),
        &keys,
        &work,
        "r3",
    ));
    let token = std::fs::read_to_string(root.path().join("r3/admin.token"))
        .unwrap()
        .trim()
        .to_owned();

    let leader_index = |replicas: &[Replica]| -> Vec<usize> {
        replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| health(&r.url).is_some_and(|h| h["leader"] == true))
            .map(|(i, _)| i)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let l = leader_index(&replicas);
        if l.len() == 1 {
            break l[0];
        }
        assert!(Instant::now() < deadline, "no single leader: {l:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Any replica serves the API: submit through a follower.
    let follower = (leader + 1) % replicas.len();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, b) = call(
            "POST",
            &format!("{}/v1/jobs", replicas[follower].url),
            &token,
            Some(json!({"manifest": manifest(&format!("fo-{i}"), &runs)})),
            None,
        );
        assert_eq!(s, 201, "{b}");
        ids.push(b["job"]["id"].as_str().unwrap().to_owned());
    }
    // Let the leader admit some, then kill it hard.
    let deadline = Instant::now() + Duration::from_secs(20);
    while all_jobs(&replicas[follower].url, &token)
        .iter()
        .filter(|j| j["state"] == "running")
        .count()
        == 0
    {
        assert!(Instant::now() < deadline, "the leader admitted nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dead = replicas.remove(leader);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    drop(dead);
    let killed_at = Instant::now();
    let new_leader = loop {
        let l = leader_index(&replicas);
        if l.len() == 1 {
            break l[0];
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no replica took over: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let takeover = killed_at.elapsed();
    eprintln!(
        "replica {} took over {takeover:?} after the leader was killed (default lease, {} s)",
        new_leader, DEFAULT_LEASE_S
    );
    // The lease runs out, and a follower sees it within its poll (a sixth of the lease, at most
    // half a second).
    assert!(
        takeover < Duration::from_secs(DEFAULT_LEASE_S + 2),
        "takeover took {takeover:?} with a {DEFAULT_LEASE_S} s lease"
    );
    for i in 20..30 {
        let (s, b) = call(
            "POST",
            &format!("{}/v1/jobs", replicas[0].url),
            &token,
            Some(json!({"manifest": manifest(&format!("fo-{i}"), &runs)})),
            None,
        );
        assert_eq!(s, 201, "{b}");
        ids.push(b["job"]["id"].as_str().unwrap().to_owned());
    }
    // Every job ends, each admitted once and run once.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = all_jobs(&replicas[0].url, &token);
        if jobs.iter().filter(|j| j["state"] == "succeeded").count() == ids.len() {
            break;
        }
        let stuck: Vec<String> = jobs
            .iter()
            .filter(|j| j["state"] != "succeeded")
            .map(|j| format!("{} {} ({})", j["name"], j["state"], j["reason"]))
            .collect();
        assert!(Instant::now() < deadline, "not all jobs ended: {stuck:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for id in &ids {
        let (_, d) = call(
            "GET",
            &format!("{}/v1/jobs/{id}", replicas[0].url),
            &token,
            None,
            None,
        );
        let admitted = d["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to_state"] == "admitted")
            .count();
        assert_eq!(admitted, 1, "job {id} admitted {admitted} times: {d}");
    }
    let log = std::fs::read_to_string(&runs).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in log.lines() {
        *counts.entry(line.trim()).or_default() += 1;
    }
    assert_eq!(counts.len(), ids.len(), "every job ran");
    assert!(
        counts.values().all(|c| *c == 1),
        "a job ran twice: {counts:?}"
    );
    drop(replicas);
    // Each replica's evidence ledger lives in PostgreSQL (a log per replica) and verifies.
    for r in ["r1", "r2", "r3"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args([
                "audit",
                "verify",
                "--database",
                &pg.url(),
                "--schema",
                &format!("tidegate_ledger_{r}"),
                "--data-dir",
            ])
            .arg(root.path().join(r))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "ledger of {r}: {text}");
    }
    // Evidence bundles come out of the PostgreSQL ledgers too, and verify offline: every job
    // has a bundle from some replica's log.
    let tg = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let id = &ids[25];
    let mut found = 0;
    for r in ["r1", "r2", "r3"] {
        let dir = root.path().join(r);
        let file = root.path().join(format!("{r}-evidence.json"));
        let (ok, text) = tg(&[
            "evidence",
            "job",
            id,
            "--out",
            file.to_str().unwrap(),
            "--database",
            &pg.url(),
            "--schema",
            &format!("tidegate_ledger_{r}"),
            "--data-dir",
            dir.to_str().unwrap(),
        ]);
        if !ok {
            assert!(text.contains("no ledger entry mentions"), "{r}: {text}");
            continue;
        }
        found += 1;
        let key = dir.join("keys/ledger.pub");
        let (ok, text) = tg(&[
            "evidence",
            "verify",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        assert!(
            ok && text.contains("VERIFIED") && text.contains(id.as_str()),
            "{r}: {text}"
        );
    }
    assert!(found >= 1, "no replica's ledger holds job {id}");
}

#[test]
fn postgres_crash_under_load_gives_clear_errors_and_recovers() {
    let Some(pg) = PgInstance::start_private("api-restart") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (keys, work) = (root.path().join("keys"), root.path().join("work"));
    let r = replica(&pg.url(), &root.path().join("r1"), &keys, &work, "solo");
    let token = std::fs::read_to_string(root.path().join("r1/admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let failures: Arc<Mutex<Vec<(u16, Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let (_runs_dir, runs) = shared_log("runs.log");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, acked, failures, counter, url, token, runs) = (
                stop.clone(),
                acked.clone(),
                failures.clone(),
                counter.clone(),
                r.url.clone(),
                token.clone(),
                runs.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let i = counter.fetch_add(1, Ordering::SeqCst);
                    let key = format!("pg-{i}");
                    let m = manifest(&format!("pg-{i}"), &runs).replace("sleep 1.5", "true");
                    let (s, b) = call(
                        "POST",
                        &format!("{url}/v1/jobs"),
                        &token,
                        Some(json!({"manifest": m})),
                        Some(&key),
                    );
                    if s == 201 || s == 200 {
                        acked
                            .lock()
                            .unwrap()
                            .insert(key, b["job"]["id"].as_str().unwrap().to_owned());
                    } else {
                        failures.lock().unwrap().push((s, b));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    assert!(pg.crash(), "pg_ctl stop failed");
    std::thread::sleep(Duration::from_millis(1500));
    // Health does not depend on the database: the replica is alive and says so.
    assert!(
        health(&r.url).is_some(),
        "the replica stays up while its database is down"
    );
    let during = failures.lock().unwrap().len();
    assert!(pg.start(), "pg_ctl start failed");
    let back = Instant::now();
    loop {
        let before = acked.lock().unwrap().len();
        std::thread::sleep(Duration::from_millis(300));
        if acked.lock().unwrap().len() > before + 3 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "submissions did not resume after PostgreSQL came back"
        );
    }
    eprintln!(
        "submissions resumed {:?} after PostgreSQL restarted",
        back.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(during > 0, "the outage was noticed by clients");
    for (s, b) in &failures {
        assert_eq!(*s, 503, "outage errors are 503 unavailable: {b}");
        assert_eq!(b["error"]["code"], "unavailable", "{b}");
        let message = b["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(
            message.contains("postgres") || message.contains("database"),
            "the message names the store: {b}"
        );
    }
    // Every acknowledged submission is there exactly once.
    let jobs = all_jobs(&r.url, &token);
    let by_key: HashMap<String, String> = jobs
        .iter()
        .map(|j| {
            (
                j["idempotency_key"].as_str().unwrap().to_owned(),
                j["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(by_key.len(), jobs.len(), "no key has two jobs");
    for (key, id) in acked.lock().unwrap().iter() {
        assert_eq!(
            by_key.get(key),
            Some(id),
            "acknowledged {key} is stored with its id"
        );
    }
    drop(r);
}

#[test]
fn replicas_converge_on_the_fleet_put_in_force_on_one_of_them() {
    let Some(pg) = tidegate_testkit::PgInstance::start_private("converge") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let fleet = tmp.path().join("fleet");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(repo().join("examples/fleet"))
        .arg(&fleet)
        .status()
        .unwrap()
        .success());
    let (keys, work) = (tmp.path().join("keys"), tmp.path().join("work"));
    let a = replica_on(&pg.url(), &tmp.path().join("a"), &keys, &work, "a", &fleet);
    let b = replica_on(&pg.url(), &tmp.path().join("b"), &keys, &work, "b", &fleet);
    let token = std::fs::read_to_string(tmp.path().join("a/admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let fleet_hash = |url: &str| {
        call("GET", &format!("{url}/v1/fleet"), &token, None, None).1["fleet_hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(fleet_hash(&a.url), fleet_hash(&b.url));
    // The data owner reclassifies a dataset; the fleet is applied on replica a only.
    let ds = fleet.join("datasets.yaml");
    let text = std::fs::read_to_string(&ds).unwrap();
    std::fs::write(
        &ds,
        text.replacen(
            "level: confidential\n      tags: [deidentified]",
            "level: restricted\n      tags: [deidentified, phi]",
            1,
        ),
    )
    .unwrap();
    let (status, applied) = call(
        "POST",
        &format!("{}/v1/fleet", a.url),
        &token,
        Some(json!({"dir": fleet.to_str().unwrap()})),
        None,
    );
    assert_eq!(status, 200, "{applied}");
    let new_hash = applied["fleet_hash"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while fleet_hash(&b.url) != new_hash {
        assert!(
            Instant::now() < deadline,
            "replica b never converged on {new_hash}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((a, b));
}

/// The soak: submissions, cancels and zone condition changes keep coming while the leader is
/// killed with `kill -9` (a replacement replica starts) and PostgreSQL crashes and comes back.
/// Afterwards every job is in exactly one terminal state, nothing ran twice, every acknowledged
/// cancel stands, no process of a finished job is alive, the queue and running counts agree with
/// the store, and every stored job has exactly one `job.submitted` entry.
#[test]
fn soak_everything_at_once_leaves_every_job_in_one_state_and_nothing_run_twice() {
    let Some(pg) = PgInstance::start_private("soak") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (keys, work) = (root.path().join("keys"), root.path().join("work"));
    let (_runs_dir, runs) = shared_log("soak-runs.log");
    // Every replica runs public-eu through that zone's agent (any replica serves its syncs).
    let fleet = repo().join("examples/fleet");
    let agent_zone = ["--agent-zone", "public-eu", "--agent-timeout", "2"];
    let soak_replica = |name: &str| {
        replica_with(
            &pg.url(),
            &root.path().join(name),
            &keys,
            &work,
            name,
            &fleet,
            &agent_zone,
        )
    };
    let mut replicas = vec![soak_replica("r1")];
    replicas.push(soak_replica("r2"));
    let token = std::fs::read_to_string(root.path().join("r2/admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    // The agent reaches the control plane through a link the soak cuts now and then.
    let link = Link::new(&replicas[0].url);
    link.lead_to(&replicas[0].url);
    let agent_token = root.path().join("agent.token");
    let (st, minted) = call(
        "POST",
        &format!("{}/v1/tokens", replicas[0].url),
        &token,
        Some(json!({"subject": "agent-eu", "role": "agent", "team": "public-eu", "minutes": 60})),
        None,
    );
    assert_eq!(st, 201, "{minted}");
    std::fs::write(&agent_token, minted["token"].as_str().unwrap()).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "agent",
            "--zone",
            "public-eu",
            "--interval-ms",
            "200",
            "--control-plane",
            &link.addr,
            "--token",
        ])
        .arg(&agent_token)
        .arg("--work-dir")
        .arg(root.path().join("agent-work"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let urls = Arc::new(Mutex::new(
        replicas.iter().map(|r| r.url.clone()).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(Mutex::new(Vec::<String>::new()));
    let cancelled = Arc::new(Mutex::new(Vec::<String>::new()));
    let pick = |urls: &Mutex<Vec<String>>, n: usize| {
        let u = urls.lock().unwrap();
        u[n % u.len()].clone()
    };
    std::thread::scope(|s| {
        // Submissions, through any replica.
        s.spawn(|| {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let url = pick(&urls, i);
                // Every third job is confined to the agent's zone.
                let m = if i % 3 == 2 {
                    agent_manifest(&format!("soak-{i}"), &runs)
                } else {
                    manifest(&format!("soak-{i}"), &runs).replace("sleep 1.5", "sleep 0.3")
                };
                let (st, b) = call(
                    "POST",
                    &format!("{url}/v1/jobs"),
                    &token,
                    Some(json!({"manifest": m})),
                    None,
                );
                if st == 201 {
                    submitted
                        .lock()
                        .unwrap()
                        .push(b["job"]["id"].as_str().unwrap().to_owned());
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        // Cancels of recent jobs.
        s.spawn(|| {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(600));
                let victim = submitted.lock().unwrap().iter().rev().nth(2).cloned();
                if let Some(id) = victim {
                    let url = pick(&urls, n);
                    let (st, _) = call(
                        "POST",
                        &format!("{url}/v1/jobs/{id}/cancel"),
                        &token,
                        None,
                        None,
                    );
                    if st == 200 {
                        cancelled.lock().unwrap().push(id);
                    }
                }
                n += 1;
            }
        });
        // A zone's condition flapping.
        s.spawn(|| {
            let mut degraded = false;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(900));
                degraded = !degraded;
                let health = if degraded { "degraded" } else { "healthy" };
                let url = pick(&urls, usize::from(degraded));
                let _ = call(
                    "POST",
                    &format!("{url}/v1/zones/private-cloud/condition"),
                    &token,
                    Some(json!({"health": health, "reason": "soak"})),
                    None,
                );
            }
        });
        // The agent's link cut for a few seconds, again and again.
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2500));
                link.set_cut(true);
                std::thread::sleep(Duration::from_millis(2500));
                link.set_cut(false);
            }
            link.set_cut(false);
        });
        // The leader killed hard, a replacement started; then the database crashes and returns.
        std::thread::sleep(Duration::from_secs(6));
        let leader = replicas
            .iter()
            .position(|r| health(&r.url).is_some_and(|h| h["leader"] == true));
        if let Some(l) = leader {
            let mut dead = replicas.remove(l);
            dead.child.kill().unwrap();
            dead.child.wait().unwrap();
            let survivor = replicas[0].url.clone();
            link.lead_to(&survivor);
            *urls.lock().unwrap() = vec![survivor];
        }
        replicas.push(soak_replica("r3"));
        *urls.lock().unwrap() = replicas.iter().map(|r| r.url.clone()).collect();
        std::thread::sleep(Duration::from_secs(4));
        assert!(pg.crash(), "pg_ctl stop failed");
        std::thread::sleep(Duration::from_secs(2));
        assert!(pg.start(), "pg_ctl start failed");
        std::thread::sleep(Duration::from_secs(6));
        stop.store(true, Ordering::SeqCst);
    });
    link.set_cut(false);
    let submitted = submitted.lock().unwrap().clone();
    let cancelled = cancelled.lock().unwrap().clone();
    assert!(
        submitted.len() > 20,
        "too few submissions acknowledged: {}",
        submitted.len()
    );
    let url = replicas[0].url.clone();
    // Every job reaches one terminal state.
    let terminal = ["succeeded", "failed", "cancelled", "refused"];
    let deadline = Instant::now() + Duration::from_secs(180);
    let jobs = loop {
        let jobs = all_jobs(&url, &token);
        if jobs
            .iter()
            .all(|j| terminal.contains(&j["state"].as_str().unwrap_or("")))
        {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "not all jobs ended: {:?}",
            jobs.iter()
                .filter(|j| !terminal.contains(&j["state"].as_str().unwrap_or("")))
                .map(|j| format!("{} {}", j["id"], j["state"]))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let state: HashMap<String, String> = jobs
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().to_owned(),
                j["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(state.len(), jobs.len(), "a job is listed twice");
    for id in &submitted {
        assert!(state.contains_key(id), "acknowledged job {id} is missing");
    }
    for id in &cancelled {
        assert_eq!(
            state[id], "cancelled",
            "acknowledged cancel of {id} did not stand"
        );
    }
    // Work in the agent's zone ran there, through the cuts.
    let in_zone = jobs
        .iter()
        .filter(|j| {
            j["name"].as_str().is_some_and(|n| n.ends_with("-agent")) && j["state"] == "succeeded"
        })
        .count();
    assert!(
        in_zone > 0,
        "no job succeeded in the agent's zone: {:?}",
        jobs.iter()
            .filter(|j| j["name"].as_str().is_some_and(|n| n.ends_with("-agent")))
            .map(|j| format!("{} {} {}", j["name"], j["state"], j["reason"]))
            .collect::<Vec<_>>()
    );
    let _ = agent.kill();
    let _ = agent.wait();
    // Nothing ran twice, and no process of a finished job is left.
    let log = std::fs::read_to_string(&runs).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in log.lines() {
        *counts.entry(line.trim()).or_default() += 1;
    }
    assert!(
        counts.values().all(|c| *c == 1),
        "a job ran twice: {counts:?}"
    );
    let left = Command::new("pgrep")
        .args(["-f", runs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes of finished jobs are alive: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    // The counts agree with the store: nothing queued or running anywhere.
    let (s, zones) = call("GET", &format!("{url}/v1/zones"), &token, None, None);
    assert_eq!(s, 200, "{zones}");
    for z in zones.as_array().unwrap() {
        assert_eq!(z["queued"].as_u64(), Some(0), "{z}");
        assert_eq!(z["running"].as_u64(), Some(0), "{z}");
    }
    // Every stored job has exactly one submission entry, across the replicas' ledgers.
    drop(replicas);
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for r in ["r1", "r2", "r3"] {
        let opts = tidegate_ledger::pg::PgLedgerOptions {
            schema: Some(format!("tidegate_ledger_{r}")),
            ..Default::default()
        };
        let mut log = tidegate_ledger::pg::PgLog::connect(&pg.url(), &opts).unwrap();
        entries.extend(log.read().unwrap().entries);
    }
    for id in state.keys() {
        let submitted_entries = entries
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .filter(|e| {
                e.contains("\"type\":\"job.submitted\"") && e.contains(&format!("\"id\":\"{id}\""))
            })
            .count();
        assert_eq!(
            submitted_entries, 1,
            "job {id} has {submitted_entries} job.submitted entries"
        );
    }
}
