//! The scheduler lease against rounds longer than its time to live: a leader whose round takes
//! several lease lifetimes (slow backends) keeps the lease, never rebuilds, and admits each job
//! once; the lease is renewed by a thread of its own, not between rounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{example_fleet, manifest, TestServer};
use tidegate_exec::{ExecError, Executor, Launch, RunStatus};
use tidegate_identity::Role;

/// A backend that takes its time to start each run, and then reports it finished.
#[derive(Debug)]
struct Slow(Duration);

impl Executor for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    fn start(&self, _: &Launch) -> Result<bool, ExecError> {
        std::thread::sleep(self.0);
        Ok(true)
    }
    fn poll(&self, _: &str) -> Result<RunStatus, ExecError> {
        Ok(RunStatus::Exited { code: 0 })
    }
    fn cancel(&self, _: &str) -> Result<bool, ExecError> {
        Ok(false)
    }
    fn logs(&self, _: &str, _: u64) -> Result<String, ExecError> {
        Ok(String::new())
    }
}

#[test]
fn a_round_longer_than_the_lease_keeps_the_lease_and_admits_each_job_once() {
    let slow: Arc<dyn Executor> = Arc::new(Slow(Duration::from_millis(300)));
    let executors: BTreeMap<String, Arc<dyn Executor>> = [
        "hospital-onprem",
        "private-cloud",
        "public-eu",
        "public-us",
        "edge-clinic",
    ]
    .into_iter()
    .map(|z| (z.to_owned(), Arc::clone(&slow)))
    .collect();
    let ttl = Duration::from_millis(600);
    let ts = TestServer::start_lease(
        &example_fleet(),
        16,
        executors,
        vec![],
        Default::default(),
        None,
        ttl,
    );
    let sub = ts.token(Role::Submitter, "icu-ml");
    let n = 8;
    let mut ids = Vec::new();
    for i in 0..n {
        let r = ts.submit(
            &sub,
            &manifest(&format!("slow-{i}"), "icu-ml", 1, None),
            None,
        );
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["job"]["id"].as_str().unwrap().to_owned());
    }
    // Eight starts of 300 ms each: rounds of several lease lifetimes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = ts.get("/v1/jobs?limit=100", &ts.admin);
        let done = jobs.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["state"] == "succeeded")
            .count();
        if done == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not finish: {}",
            jobs.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = ureq::get(format!("{}/metrics", ts.url))
        .header("Authorization", format!("Bearer {}", ts.admin))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("tidegate_scheduler_leases_taken_total 1\n"),
        "the leader lost and retook its lease: {metrics}"
    );
    // Each job admitted exactly once (no rebuild re-admitted or re-ledgered anything).
    let log = tidegate_ledger::ledger::read_log(&ts.dir.path().join("ledger"), true).unwrap();
    for id in &ids {
        let admitted = log
            .entries
            .iter()
            .filter(|e| {
                let e = String::from_utf8_lossy(e);
                e.contains("\"type\":\"job.admitted\"") && e.contains(&format!("\"id\":\"{id}\""))
            })
            .count();
        assert_eq!(admitted, 1, "{id} admitted {admitted} times");
    }
}
