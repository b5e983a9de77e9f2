//! The control plane as a process under fire: 10,000 concurrent submissions with idempotency
//! keys, `kill -9` midway, restart; every acknowledged job exists exactly once, nothing is
//! half-written, retries replay instead of duplicating. And SIGTERM drains: the process exits 0
//! and gives the scheduler lease back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Up {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn up(dir: &Path, extra: &[&str]) -> Up {
    let _ = std::fs::remove_file(dir.join("server.url"));
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "up",
            "--plain-http",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .arg("--fleet")
        .arg(repo().join("examples/fleet"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut started = Up {
        child,
        url: String::new(),
        token: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(url) = std::fs::read_to_string(dir.join("server.url")) {
            let url = url.trim().to_owned();
            if agent()
                .get(format!("{url}/healthz"))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                started.token = std::fs::read_to_string(dir.join("admin.token"))
                    .unwrap()
                    .trim()
                    .to_owned();
                started.url = url;
                return started;
            }
        }
        assert!(Instant::now() < deadline, "tidegate up did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build();
    ureq::Agent::new_with_config(config)
}

fn manifest(i: usize) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: rel-{i}
  team: icu-ml
spec:
  kind: train
  inputs:
    - dataset: ehr-raw@2026-10
  resources:
    gpus: 8
    gpu_types: [H100]
    expected_hours: 1
  budget_class: research
  command: [sleep, '0.05']
"
    )
}

/// Submits `i` with key `k-i`: `Some((status, id))` when the server answered.
fn submit(agent: &ureq::Agent, url: &str, token: &str, i: usize) -> Option<(u16, String)> {
    let mut resp = agent
        .post(format!("{url}/v1/jobs"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Idempotency-Key", format!("k-{i}"))
        .send_json(json!({ "manifest": manifest(i) }))
        .ok()?;
    let status = resp.status().as_u16();
    let body: Value = resp.body_mut().read_json().ok()?;
    Some((
        status,
        body["job"]["id"].as_str().unwrap_or_default().to_owned(),
    ))
}

const N: usize = 10_000;
const CLIENTS: usize = 32;

#[test]
fn kill_9_under_10k_concurrent_submissions_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = up(dir.path(), &[]);
    let acked: Arc<Mutex<HashMap<usize, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (acked, next, url, token) = (
                acked.clone(),
                next.clone(),
                first.url.clone(),
                first.token.clone(),
            );
            std::thread::spawn(move || {
                let agent = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= N {
                        break;
                    }
                    if let Some((status, id)) = submit(&agent, &url, &token, i) {
                        if status == 201 || status == 200 {
                            acked.lock().unwrap().insert(i, id);
                        }
                    }
                }
            })
        })
        .collect();
    // Kill it midway, hard.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < N / 3 {
        assert!(
            Instant::now() < deadline,
            "submissions too slow: {}",
            acked.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= N / 3 && acked.len() < N,
        "kill landed midway: {} acknowledged",
        acked.len()
    );
    eprintln!(
        "{} of {N} submissions acknowledged before kill -9",
        acked.len()
    );

    // Restart on the same data directory and retry every submission with its key.
    let second = up(dir.path(), &[]);
    let results: Arc<Mutex<HashMap<usize, (u16, String)>>> = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (results, next, url, token) = (
                results.clone(),
                next.clone(),
                second.url.clone(),
                second.token.clone(),
            );
            std::thread::spawn(move || {
                let agent = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= N {
                        break;
                    }
                    let r = submit(&agent, &url, &token, i).expect("the restarted server answers");
                    results.lock().unwrap().insert(i, r);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    for (i, id) in &acked {
        let (status, again) = &results[i];
        assert_eq!(
            *status, 200,
            "acknowledged submission {i} must replay after the crash"
        );
        assert_eq!(again, id, "acknowledged submission {i} kept its id");
    }
    assert!(results.values().all(|(s, _)| *s == 200 || *s == 201));

    // Exactly one job per key, N in all.
    let agent = agent();
    let mut seen: HashSet<String> = HashSet::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or_else(
            || "limit=1000".to_string(),
            |a| format!("limit=1000&after={a}"),
        );
        let mut r = agent
            .get(format!("{}/v1/jobs?{q}", second.url))
            .header("Authorization", format!("Bearer {}", second.token))
            .call()
            .unwrap();
        let page: Value = r.body_mut().read_json().unwrap();
        for j in page["jobs"].as_array().unwrap() {
            let key = j["idempotency_key"].as_str().unwrap().to_owned();
            assert!(seen.insert(key.clone()), "key {key} has two jobs");
            ids.insert(j["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), N, "every submission exists exactly once");
    assert_eq!(ids.len(), N);

    // SIGTERM drains: exit status 0, lease given back. First the restarted server must lead (it
    // takes the lease once the killed one's expires), or there is nothing to give back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut r = agent
            .get(format!("{}/metrics", second.url))
            .header("Authorization", format!("Bearer {}", second.token))
            .call()
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        if text.lines().any(|l| l.trim() == "tidegate_leader 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted server never took the scheduler lease"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut second = second;
    let pid = second.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = second.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "drained shutdown exits 0: {status:?}");

    // Nothing half-written: the database is intact and every job's history is whole.
    let store =
        tidegate_store::SqliteStore::open(dir.path(), tidegate_store::SqliteOptions::default())
            .unwrap();
    use tidegate_store::Store as _;
    let lease = store
        .lease(tidegate_server::control::LEASE)
        .unwrap()
        .unwrap();
    assert!(
        lease.expires_at <= tidegate_store::Timestamp::now(),
        "the lease was given back: {lease:?}"
    );
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut after = None;
    let mut checked = 0;
    loop {
        let page = store
            .list(
                &tidegate_store::JobFilter::default(),
                tidegate_store::PageRequest { after, limit: 1000 },
            )
            .unwrap();
        for job in &page.jobs {
            let events = store.events(&job.id).unwrap();
            assert!(!events.is_empty(), "job {} has no events", job.id);
            assert_eq!(events[0].kind, "submitted");
            for (k, e) in events.iter().enumerate() {
                assert_eq!(e.seq, k as u64 + 1, "job {} events are contiguous", job.id);
            }
            let last_state = events.iter().rev().find_map(|e| e.to_state).unwrap();
            assert_eq!(
                last_state, job.state,
                "job {}: state matches its last transition",
                job.id
            );
            checked += 1;
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(checked, N);
    // The evidence ledger recovered too: it verifies end to end.
    let verify = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // And it is complete, job by job: every job in the store has exactly one `job.submitted`
    // entry (written ahead of the job), and no job was admitted twice across the restart.
    let log = tidegate_ledger::ledger::read_log(&dir.path().join("ledger"), true).unwrap();
    let mut submitted: HashMap<String, usize> = HashMap::new();
    let mut admitted: HashMap<String, usize> = HashMap::new();
    for bytes in &log.entries {
        let e: Value = serde_json::from_slice(bytes).unwrap();
        let Some(job) = e["subjects"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["kind"] == "job"))
            .and_then(|s| s["id"].as_str())
        else {
            continue;
        };
        match e["action"]["type"].as_str() {
            Some("job.submitted") => *submitted.entry(job.to_owned()).or_default() += 1,
            Some("job.admitted") => *admitted.entry(job.to_owned()).or_default() += 1,
            _ => {}
        }
    }
    for id in &ids {
        assert_eq!(
            submitted.get(id),
            Some(&1),
            "job {id}: job.submitted entries"
        );
        assert!(
            admitted.get(id).copied().unwrap_or(0) <= 1,
            "job {id} admitted twice"
        );
    }
}
