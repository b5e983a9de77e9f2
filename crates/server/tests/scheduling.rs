//! The scheduler core's decisions carried out for real: a backend with no capacity sends the job
//! to its next allowed option one site at a time (each hop recorded, policy re-checked), and a
//! team reclaiming its quota preempts borrowed work, which runs again later as a fresh run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::TestServer;
use serde_json::Value;
use tidegate_exec::{ExecError, Executor, Launch, LocalExecutor, RunStatus};
use tidegate_identity::Role;

/// A zone backend that reports no capacity for some pools and runs the rest locally.
#[derive(Debug)]
struct NoRoom {
    inner: LocalExecutor,
    full_pools: Vec<&'static str>,
    refused: Mutex<Vec<String>>,
}

impl Executor for NoRoom {
    fn kind(&self) -> &'static str {
        "test"
    }
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
    fn cancel(&self, id: &str) -> Result<bool, ExecError> {
        self.inner.cancel(id)
    }
    fn logs(&self, id: &str, n: u64) -> Result<String, ExecError> {
        self.inner.logs(id, n)
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
    let mut executors: BTreeMap<String, Arc<dyn Executor>> = BTreeMap::new();
    executors.insert("public-us".into(), us.clone());
    executors.insert("public-eu".into(), eu.clone());
    let ts = TestServer::start_with(16, executors);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(&sub, &public_only("hopper"), None);
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&id, 30, |d| d["job"]["state"] == "succeeded");
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
            let reason = events
                .iter()
                .find(|e| e["to_state"] == "preempted")
                .unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned();
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
