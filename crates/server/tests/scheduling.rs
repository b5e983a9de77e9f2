//! The scheduler core's decisions carried out for real: a backend with no capacity sends the job
//! to its next allowed option one site at a time (each hop recorded, policy re-checked), as does
//! a started run its backend never admitted (Kueue), every launch carrying the job's effective
//! labels; and a team reclaiming its quota preempts borrowed work, which runs again later as a
//! fresh run. Jobs cancelled while queued leave the core's queue: the queue depth `/metrics` shows agrees with
//! `/v1/zones`, in either exposition format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::TestServer;
use serde_json::Value;
use tidegate_exec::{ExecError, Executor, Launch, LocalExecutor, RunStatus};
use tidegate_identity::Role;

/// What a test backend passes to its local executor (`inner`) unchanged.
macro_rules! local_passthrough {
    () => {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn cancel(&self, id: &str) -> Result<bool, ExecError> {
            self.inner.cancel(id)
        }
        fn logs(&self, id: &str, n: u64) -> Result<String, ExecError> {
            self.inner.logs(id, n)
        }
    };
}

/// A zone backend that reports no capacity for some pools and runs the rest locally.
#[derive(Debug)]
struct NoRoom {
    inner: LocalExecutor,
    full_pools: Vec<&'static str>,
    refused: Mutex<Vec<String>>,
}

impl Executor for NoRoom {
    local_passthrough!();
    fn start(&self, l: &Launch) -> Result<bool, ExecError> {
        if self.full_pools.contains(&l.pool.as_str()) {
            self.refused
                .lock()
                .unwrap()
                .push(format!("{}/{}", l.zone, l.pool));
            return Err(ExecError::NoCapacity {
                job: l.job_id.clone(),
                reason: format!("no {} left in the region", l.gpu_type),
            });
        }
        self.inner.start(l)
    }
    fn poll(&self, id: &str) -> Result<RunStatus, ExecError> {
        self.inner.poll(id)
    }
}

fn public_only(name: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: icu-ml
  labels:
    burst_eligible: true
    allowed_execution_zone: public
spec:
  kind: hpo-sweep
  inputs:
    - dataset: ehr-deid@2026-10
  resources:
    gpus: 8
    gpu_types: [H100, H200]
    expected_hours: 1
  budget_class: research
  justification: public sweep
  command: [sh, -c, 'echo ran in $TIDEGATE_ZONE/$TIDEGATE_POOL']
"
    )
}

/// Starts a server with these backends for public-us and public-eu, submits
/// `public_only(name)` and waits until it has succeeded: the server, the submitter's token, the
/// job's id and its detail.
fn public_job_succeeds(
    us: Arc<dyn Executor>,
    eu: Arc<dyn Executor>,
    name: &str,
) -> (TestServer, String, String, Value) {
    let mut executors: BTreeMap<String, Arc<dyn Executor>> = BTreeMap::new();
    executors.insert("public-us".into(), us);
    executors.insert("public-eu".into(), eu);
    let ts = TestServer::start_with(16, executors);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(&sub, &public_only(name), None);
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&id, 30, |d| d["job"]["state"] == "succeeded");
    (ts, sub, id, d)
}

#[test]
fn no_capacity_fails_over_one_site_at_a_time_until_a_pool_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let us = Arc::new(NoRoom {
        inner: LocalExecutor::new(dir.path().join("us")).unwrap(),
        full_pools: vec!["h100-od", "h100-spot", "h200-od"],
        refused: Mutex::new(vec![]),
    });
    let eu = Arc::new(NoRoom {
        inner: LocalExecutor::new(dir.path().join("eu")).unwrap(),
        full_pools: vec!["h200-spot"],
        refused: Mutex::new(vec![]),
    });
    let (ts, sub, id, d) = public_job_succeeds(us.clone(), eu.clone(), "hopper");
    let events = d["events"].as_array().unwrap();
    let failovers: Vec<&Value> = events.iter().filter(|e| e["kind"] == "failover").collect();
    let refused_sites = us.refused.lock().unwrap().len() + eu.refused.lock().unwrap().len();
    assert!(refused_sites >= 1, "the first choice had no room");
    assert_eq!(
        failovers.len(),
        refused_sites,
        "one recorded hop per site without capacity: {d}"
    );
    for (k, f) in failovers.iter().enumerate() {
        assert_eq!(f["details"]["attempt"], k as u64 + 1, "{f}");
        assert_eq!(f["reason_code"], "failover:no-capacity", "{f}");
    }
    let zone = d["job"]["zone"].as_str().unwrap();
    let pool = d["job"]["pool"].as_str().unwrap();
    assert!(
        zone == "public-eu" && pool != "h200-spot",
        "landed on a pool with room: {zone}/{pool}"
    );
    // Admitted once per attempt, ran exactly once.
    let admitted = events
        .iter()
        .filter(|e| e["to_state"] == "admitted")
        .count();
    assert_eq!(admitted, refused_sites + 1, "{d}");
    assert_eq!(
        events.iter().filter(|e| e["to_state"] == "running").count(),
        1,
        "{d}"
    );
    let logs = ts.get(&format!("/v1/jobs/{id}/logs"), &sub);
    assert_eq!(
        logs.body["logs"].as_str().unwrap().trim(),
        format!("ran in {zone}/{pool}"),
        "{}",
        logs.text
    );
}

/// A zone backend that accepts runs in some pools but never gets them admitted: polled, they
/// answer no capacity, as the Kubernetes executor does for a Job Kueue did not admit within the
/// zone's admission timeout (deleted there first). The rest run locally. Keeps every launch.
#[derive(Debug)]
struct NeverAdmitted {
    inner: LocalExecutor,
    stuck_pools: Vec<&'static str>,
    launches: Mutex<Vec<Launch>>,
    stuck: Mutex<Vec<String>>,
}

impl NeverAdmitted {
    fn new(dir: &std::path::Path, stuck_pools: Vec<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalExecutor::new(dir).unwrap(),
            stuck_pools,
            launches: Mutex::new(vec![]),
            stuck: Mutex::new(vec![]),
        })
    }
}

impl Executor for NeverAdmitted {
    local_passthrough!();
    fn start(&self, l: &Launch) -> Result<bool, ExecError> {
        self.launches.lock().unwrap().push(l.clone());
        if self.stuck_pools.contains(&l.pool.as_str()) {
            self.stuck.lock().unwrap().push(l.job_id.clone());
            return Ok(true);
        }
        self.inner.start(l)
    }
    fn poll(&self, id: &str) -> Result<RunStatus, ExecError> {
        if self.stuck.lock().unwrap().iter().any(|s| s == id) {
            return Err(ExecError::NoCapacity {
                job: id.to_owned(),
                reason: "Kueue did not admit the Job within the zone's admission timeout; the Job was deleted".into(),
            });
        }
        self.inner.poll(id)
    }
}

#[test]
fn a_started_run_never_admitted_fails_over_and_every_launch_carries_the_effective_labels() {
    let dir = tempfile::tempdir().unwrap();
    let us = NeverAdmitted::new(
        &dir.path().join("us"),
        vec!["h100-od", "h100-spot", "h200-od"],
    );
    let eu = NeverAdmitted::new(&dir.path().join("eu"), vec!["h200-spot"]);
    let (ts, sub, id, d) = public_job_succeeds(us.clone(), eu.clone(), "waiter");
    let events = d["events"].as_array().unwrap();
    let stuck = us.stuck.lock().unwrap().len() + eu.stuck.lock().unwrap().len();
    assert!(stuck >= 1, "the first choice never admitted it");
    // Each run that was never admitted was withdrawn (no capacity) and the job moved on.
    let withdrawn: Vec<&Value> = events
        .iter()
        .filter(|e| e["to_state"] == "preempted" && e["details"]["no_capacity"].is_object())
        .collect();
    assert_eq!(withdrawn.len(), stuck, "{d}");
    for w in &withdrawn {
        assert!(
            w["reason"].as_str().unwrap().contains("did not admit"),
            "{w}"
        );
    }
    let failovers = events.iter().filter(|e| e["kind"] == "failover").count();
    assert_eq!(failovers, stuck, "one recorded hop per withdrawn run: {d}");
    let zone = d["job"]["zone"].as_str().unwrap();
    let pool = d["job"]["pool"].as_str().unwrap();
    assert!(
        zone == "public-eu" && pool != "h200-spot",
        "landed where runs are admitted: {zone}/{pool}"
    );
    let logs = ts.get(&format!("/v1/jobs/{id}/logs"), &sub);
    assert_eq!(
        logs.body["logs"].as_str().unwrap().trim(),
        format!("ran in {zone}/{pool}"),
        "ran once, there: {}",
        logs.text
    );
    // Every launch (one per run, each a fresh run id) carried the customer's labels at their
    // effective values: the manifest wrote no data_classification; its input is confidential.
    let mut launches = us.launches.lock().unwrap().clone();
    launches.extend(eu.launches.lock().unwrap().iter().cloned());
    assert_eq!(launches.len(), stuck + 1);
    let mut ids: Vec<&str> = launches.iter().map(|l| l.job_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), launches.len(), "a fresh run id per admission");
    for l in &launches {
        let want = BTreeMap::from([
            ("allowed_execution_zone".to_owned(), "public".to_owned()),
            ("burst_eligible".to_owned(), "true".to_owned()),
            ("data_classification".to_owned(), "confidential".to_owned()),
        ]);
        assert_eq!(l.labels, want, "{}", l.job_id);
    }
}

/// A zone backend whose first run of each job is evicted (as Kueue evicts a Job it admitted);
/// later runs run locally. Keeps every launch.
#[derive(Debug)]
struct EvictsFirst {
    inner: LocalExecutor,
    launches: Mutex<Vec<Launch>>,
    polls: Mutex<BTreeMap<String, u32>>,
}

impl Executor for EvictsFirst {
    local_passthrough!();
    fn start(&self, l: &Launch) -> Result<bool, ExecError> {
        let mut launches = self.launches.lock().unwrap();
        launches.push(l.clone());
        if launches.len() == 1 {
            return Ok(true);
        }
        self.inner.start(l)
    }
    fn poll(&self, id: &str) -> Result<RunStatus, ExecError> {
        let first = self
            .launches
            .lock()
            .unwrap()
            .first()
            .map(|l| l.job_id.clone());
        if first.as_deref() == Some(id) {
            let mut polls = self.polls.lock().unwrap();
            let n = polls.entry(id.to_owned()).or_default();
            *n += 1;
            return Ok(if *n < 3 {
                RunStatus::Running
            } else {
                RunStatus::Preempted {
                    reason: "Kueue evicted the Job; it was deleted".into(),
                }
            });
        }
        self.inner.poll(id)
    }
}

#[test]
fn a_run_its_backend_evicts_is_preempted_and_the_job_runs_again_with_every_option() {
    let dir = tempfile::tempdir().unwrap();
    // public-us/h100-spot is the job's cheapest option.
    let us = Arc::new(EvictsFirst {
        inner: LocalExecutor::new(dir.path().join("us")).unwrap(),
        launches: Mutex::new(vec![]),
        polls: Mutex::new(BTreeMap::new()),
    });
    let (ts, sub, id, d) = public_job_succeeds(
        us.clone(),
        Arc::new(LocalExecutor::new(dir.path().join("eu")).unwrap()),
        "evicted",
    );
    let events = d["events"].as_array().unwrap();
    let launches = us.launches.lock().unwrap().clone();
    let preempted: Vec<&Value> = events
        .iter()
        .filter(|e| e["to_state"] == "preempted")
        .collect();
    assert_eq!(preempted.len(), 1, "{d}");
    assert!(
        preempted[0]["reason"].as_str().unwrap().contains("evicted"),
        "{}",
        preempted[0]
    );
    assert_eq!(
        preempted[0]["reason_code"], "preempted:evicted",
        "{}",
        preempted[0]
    );
    // Not a failover: nothing was struck off, and the job ran again as a new run.
    assert_eq!(
        events.iter().filter(|e| e["kind"] == "failover").count(),
        0,
        "{d}"
    );
    let zone = d["job"]["zone"].as_str().unwrap();
    let pool = d["job"]["pool"].as_str().unwrap();
    // Admitted again to the option it was evicted from (still its cheapest), as a new run.
    assert_eq!((zone, pool), ("public-us", "h100-spot"), "{d}");
    assert_eq!(launches.len(), 2, "{launches:?}");
    assert_ne!(launches[0].job_id, launches[1].job_id, "a fresh run id");
    assert_eq!(launches[0].pool, launches[1].pool);
    let logs = ts.get(&format!("/v1/jobs/{id}/logs"), &sub);
    assert_eq!(
        logs.body["logs"].as_str().unwrap().trim(),
        format!("ran in {zone}/{pool}"),
        "{}",
        logs.text
    );
}

fn raw_icu(i: usize) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: icu-{i}
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
  command: [sh, -c, 'echo run; sleep 4']
"
    )
}

const RADIOLOGY: &str = "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: ct-urgent
  team: radiology-ai
spec:
  kind: finetune
  inputs:
    - dataset: ct-imaging@v4
  resources:
    gpus: 8
    gpu_types: [H100]
    expected_hours: 1
  budget_class: production
  command: [sh, -c, 'echo radiology']
";

#[test]
fn a_team_reclaiming_its_quota_preempts_borrowed_work_which_runs_again() {
    let ts = TestServer::start(1000);
    let icu = ts.token(Role::Submitter, "icu-ml");
    // icu-ml's nominal private share is 48 GPUs; it borrows the rest of the 96 private H100s.
    let ids: Vec<String> = (0..12)
        .map(|i| {
            let r = ts.submit(&icu, &raw_icu(i), None);
            assert_eq!(r.status, 201, "{}", r.text);
            r.body["job"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    for id in &ids {
        ts.wait_job(id, 30, |d| d["job"]["state"] == "running");
    }
    let rad = ts.token(Role::Submitter, "radiology-ai");
    let r = ts.submit(&rad, RADIOLOGY, None);
    let rid = r.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&rid, 30, |d| d["job"]["state"] == "succeeded");
    let zone = d["job"]["zone"].as_str().unwrap();
    assert!(
        zone == "hospital-onprem" || zone == "private-cloud",
        "restricted PHI stays private: {d}"
    );
    // Someone was preempted for it, and ran again afterwards as a fresh run.
    let mut preempted = Vec::new();
    for id in &ids {
        let d = ts.wait_job(id, 60, |d| d["job"]["state"] == "succeeded");
        let events = d["events"].as_array().unwrap();
        if events.iter().any(|e| e["to_state"] == "preempted") {
            let admitted = events
                .iter()
                .filter(|e| e["to_state"] == "admitted")
                .count();
            assert_eq!(admitted, 2, "preempted, then admitted again: {d}");
            let ev = events
                .iter()
                .find(|e| e["to_state"] == "preempted")
                .unwrap();
            assert_eq!(ev["reason_code"], "preempted:reclaimed", "{ev}");
            let reason = ev["reason"].as_str().unwrap().to_owned();
            assert!(reason.contains("reclaims"), "{reason}");
            preempted.push(id.clone());
        }
    }
    assert!(
        !preempted.is_empty(),
        "radiology's quota was reclaimed from borrowed work"
    );
    for id in &preempted {
        // The executors' state directories, apart from the jobs' work directories.
        let state_dirs = ["hospital-onprem", "private-cloud"]
            .map(|z| ts.dir.path().join("zones").join(z).join(".state"));
        assert!(
            state_dirs
                .iter()
                .any(|z| z.join(format!("{id}.2")).join("exit").exists()),
            "second run of {id} recorded"
        );
        assert!(
            state_dirs.iter().any(|z| z.join(id).join("stop").exists()),
            "first run of {id} was stopped"
        );
    }
}

fn classed(name: &str, class: &str, dataset: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: icu-ml
  labels:
    burst_eligible: true
spec:
  kind: train
  inputs:
    - dataset: {dataset}
  resources:
    gpus: 8
    gpu_types: [H100, H200]
    expected_hours: 1
  budget_class: {class}
  justification: sepsis alerting model refresh
  command: [sh, -c, 'echo ran in $TIDEGATE_ZONE']
"
    )
}

#[test]
fn a_degraded_private_side_applies_the_failure_hierarchy_and_recovers() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let admin = ts.admin.clone();
    for zone in ["hospital-onprem", "private-cloud"] {
        let r = ts.post(
            &format!("/v1/zones/{zone}/condition"),
            &admin,
            &serde_json::json!({"health": "degraded", "reason": "cooling failure drill"}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["health"], "degraded");
    }
    // A bad value names the field; an unknown zone is 404.
    let r = ts.post(
        "/v1/zones/hospital-onprem/condition",
        &admin,
        &serde_json::json!({"health": "sleepy"}),
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("health")),
        "{}",
        r.text
    );
    assert_eq!(
        ts.post(
            "/v1/zones/atlantis/condition",
            &admin,
            &serde_json::json!({"health": "healthy"})
        )
        .status,
        404
    );
    std::thread::sleep(std::time::Duration::from_millis(700)); // the leader applies conditions twice a second

    let prod = ts
        .submit(
            &sub,
            &classed("prod-deid", "production", "ehr-deid@2026-10"),
            None,
        )
        .body["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw = ts
        .submit(
            &sub,
            &classed("waits-raw", "default", "ehr-raw@2026-10"),
            None,
        )
        .body["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let batch = ts
        .submit(
            &sub,
            &classed("shed-batch", "batch", "ehr-deid@2026-10"),
            None,
        )
        .body["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Production work on de-identified data fails over to public capacity.
    let d = ts.wait_job(&prod, 20, |d| d["job"]["state"] == "succeeded");
    assert!(
        d["job"]["zone"].as_str().unwrap().starts_with("public-"),
        "{d}"
    );
    // Batch work is shed, with the reason.
    let d = ts.wait_job(&batch, 20, |d| d["job"]["state"] == "failed");
    assert!(
        d["job"]["reason"].as_str().unwrap().starts_with("refused"),
        "{d}"
    );
    let failed = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["to_state"] == "failed")
        .unwrap();
    assert_eq!(failed["reason_code"], "refused:degraded-shed", "{d}");
    // Raw PHI waits: never public, whatever the outage.
    let d = ts.wait_job(&raw, 20, |d| d["job"]["state"] == "queued");
    assert!(
        d["job"]["reason"].as_str().unwrap().contains("degraded")
            || d["job"]["reason"].as_str().unwrap().contains("wait"),
        "{d}"
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(
        ts.get(&format!("/v1/jobs/{raw}"), &admin).body["job"]["state"],
        "queued"
    );

    // Recovery: the waiting job runs in private capacity.
    for zone in ["hospital-onprem", "private-cloud"] {
        assert_eq!(
            ts.post(
                &format!("/v1/zones/{zone}/condition"),
                &admin,
                &serde_json::json!({"health": "healthy"})
            )
            .status,
            200
        );
    }
    let d = ts.wait_job(&raw, 20, |d| d["job"]["state"] == "succeeded");
    let zone = d["job"]["zone"].as_str().unwrap();
    assert!(zone == "hospital-onprem" || zone == "private-cloud", "{d}");
    let zones = ts.get("/v1/zones", &ts.token(Role::Auditor, "icu-ml"));
    assert!(
        zones
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|z| z["health"] == "healthy"),
        "{}",
        zones.text
    );
}

/// `/metrics` with an `Accept` header: the content type and the body.
fn metrics_as(ts: &TestServer, accept: Option<&str>) -> (String, String) {
    let mut req = ureq::get(format!("{}/metrics", ts.url))
        .header("Authorization", format!("Bearer {}", ts.admin));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let mut resp = req.call().unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (ct, resp.body_mut().read_to_string().unwrap())
}

/// `tidegate_queue_depth` per zone, read from an exposition.
fn queue_depths(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("tidegate_queue_depth{zone=\""))
        .filter_map(|rest| {
            let (zone, value) = rest.split_once("\"} ")?;
            Some((zone.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// `queued` per zone from `/v1/zones`.
fn zone_queues(ts: &TestServer) -> BTreeMap<String, u64> {
    let r = ts.get("/v1/zones", &ts.admin);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            (
                z["name"].as_str().unwrap().to_owned(),
                z["queued"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn jobs_cancelled_while_queued_leave_the_queue_and_metrics_agree_with_zones() {
    let ts = TestServer::start(10_000);
    let sub = ts.token(Role::Submitter, "icu-ml");
    // Raw PHI stays private: 16 jobs of 8 GPUs more than fill the private H100s, so some queue.
    let ids: Vec<String> = (0..16)
        .map(|i| {
            let r = ts.submit(
                &sub,
                &common::raw_manifest(&format!("queue-{i}"), "sleep 120"),
                None,
            );
            assert_eq!(r.status, 201, "{}", r.text);
            r.body["job"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // Every job placed: running, or queued.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let queued = loop {
        let states: Vec<String> = ids
            .iter()
            .map(|id| {
                ts.get(&format!("/v1/jobs/{id}"), &ts.admin).body["job"]["state"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        if states.iter().all(|s| s == "queued" || s == "running") {
            break ids
                .iter()
                .zip(&states)
                .filter(|(_, s)| *s == "queued")
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>();
        }
        assert!(std::time::Instant::now() < deadline, "{states:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(queued.len() >= 4, "only {} queued", queued.len());
    let agree = |want_total: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (_, text) = metrics_as(&ts, None);
            let (metrics, zones) = (queue_depths(&text), zone_queues(&ts));
            let nonzero = |m: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
                m.iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            };
            if nonzero(&metrics) == nonzero(&zones) && zones.values().sum::<u64>() == want_total {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "queue depth in /metrics {metrics:?}, in /v1/zones {zones:?}, want {want_total} queued"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    agree(queued.len() as u64);
    // Cancel three queued jobs: they leave the queue, in both views.
    for id in &queued[..3] {
        let r = ts.post(
            &format!("/v1/jobs/{id}/cancel"),
            &sub,
            &serde_json::json!({}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["state"], "cancelled", "{}", r.text);
    }
    agree(queued.len() as u64 - 3);
    for id in &ids {
        let _ = ts.post(
            &format!("/v1/jobs/{id}/cancel"),
            &ts.admin,
            &serde_json::json!({}),
        );
    }
}

#[test]
fn metrics_are_openmetrics_when_asked_and_prometheus_text_otherwise() {
    let ts = TestServer::start(16);
    let (ct, om) = metrics_as(
        &ts,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    );
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE tidegate_bursts counter\n"), "{om}");
    for accept in [None, Some("text/plain"), Some("*/*")] {
        let (ct, text) = metrics_as(&ts, accept);
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
        // Every family's TYPE line names its samples: counters as `x_total`.
        assert!(
            text.contains("# TYPE tidegate_bursts_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP tidegate_bursts_total "), "{text}");
        assert!(text.contains("\ntidegate_bursts_total 0\n"), "{text}");
        let typed: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .collect();
        for sample in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = sample.split(['{', ' ']).next().unwrap();
            let ok = typed.iter().any(|(family, kind)| match *kind {
                "histogram" => [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_owned()),
                _ => *family == name,
            });
            assert!(
                ok,
                "sample {sample:?} has no TYPE line of its own name: {typed:?}"
            );
        }
    }
}
