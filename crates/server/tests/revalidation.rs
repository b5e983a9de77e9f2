//! Runs placed under yesterday's rules are judged again under today's: data reclassified
//! restricted while its run held public capacity (or waited for a public zone's agent) is never
//! started there after a restart, is stopped if it runs, is ledgered as `job.revoked` naming the
//! rule, and the job is placed again under the rules in force.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{json, Value};
use tidegate_identity::Role;

/// A job on `ehr-deid` pinned to public-us (so restricted data can never be placed anywhere).
fn pinned(name: &str, command: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: icu-ml
  labels:
    burst_eligible: true
    allowed_execution_zone: public-us
spec:
  kind: hpo-sweep
  inputs:
    - dataset: ehr-deid@2026-10
  resources:
    gpus: 8
    gpu_types: [H100]
    expected_hours: 6
  budget_class: research
  justification: test burst
  command: [sh, -c, '{command}']
"
    )
}

const RESTRICTED: &str = "level: restricted\ntags: [phi]\nresidency: [US]";

fn ledger(ts: &TestServer) -> Vec<Value> {
    let contents = tidegate_ledger::ledger::read_log(&ts.dir.path().join("ledger"), true).unwrap();
    contents
        .entries
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

fn kinds(detail: &Value) -> Vec<(String, String)> {
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_running_public_run_on_reclassified_data_is_stopped_at_restart_and_ledgered() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = common::copy_fleet(tmp.path());
    let mut ts = TestServer::start_fleet(&fleet, 16, Default::default(), vec![]);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(
        &sub,
        &pinned(
            "reclassified",
            "while true; do date +%s%N > alive; sleep 0.1; done",
        ),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&id, 20, |d| d["job"]["state"] == "running");
    assert_eq!(d["job"]["zone"], "public-us", "{d}");
    let alive = ts
        .dir
        .path()
        .join("zones/public-us")
        .join(&id)
        .join("alive");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !alive.exists() {
        assert!(
            Instant::now() < deadline,
            "the run never started writing {}",
            alive.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The data owner reclassifies the data while the control plane is down; the run goes on.
    common::reclassify(&fleet, "ehr-deid", RESTRICTED);
    ts.restart_with_fleet(&fleet, vec![]);

    let d = ts.wait_job(&id, 20, |d| d["job"]["state"] == "failed");
    let ev = kinds(&d);
    let withdrawn = ev
        .iter()
        .find(|(k, r)| k == "preempted" && r.contains("placement withdrawn"))
        .unwrap_or_else(|| panic!("no withdrawal event: {ev:?}"));
    assert!(withdrawn.1.contains("public-us"), "{withdrawn:?}");
    assert!(
        ev.last().unwrap().1.starts_with("refused"),
        "placed again and refused: {ev:?}"
    );
    // The process was stopped: its heartbeat file no longer changes.
    std::thread::sleep(Duration::from_millis(800));
    let a = std::fs::read_to_string(&alive).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        a,
        std::fs::read_to_string(&alive).unwrap(),
        "the withdrawn run is still running"
    );
    ts.stop();
    let revoked: Vec<Value> = ledger(&ts)
        .into_iter()
        .filter(|e| e["action"]["type"] == "job.revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["action"]["zone"], "public-us");
    assert_eq!(revoked[0]["action"]["run"], id.as_str());
    let reasons = revoked[0]["action"]["reasons"].to_string();
    assert!(
        reasons.contains("constraint:private-only-data"),
        "{reasons}"
    );
    assert!(
        revoked[0]["subjects"].to_string().contains(&id),
        "{revoked:?}"
    );
}

#[test]
fn an_agent_syncing_right_after_a_restart_is_never_handed_runs_the_rules_now_forbid() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = common::copy_fleet(tmp.path());
    let zones = vec!["public-us".to_owned()];
    let mut ts = TestServer::start_fleet(&fleet, 16, Default::default(), zones.clone());
    let sub = ts.token(Role::Submitter, "icu-ml");
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = ts.submit(&sub, &pinned(&format!("waiting-{i}"), "true"), None);
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["job"]["id"].as_str().unwrap().to_owned());
    }
    // Handed to the zone's queue, waiting for its agent.
    for id in &ids {
        ts.wait_job(id, 20, |d| d["job"]["state"] == "running");
    }
    common::reclassify(&fleet, "ehr-deid", RESTRICTED);
    // First an API-only replica: no leader ever re-checks the runs, and the agent's sync alone
    // must withhold them.
    ts.restart_replica(&fleet, zones.clone(), false);
    let agent = ts.token(Role::Agent, "public-us");
    for _ in 0..3 {
        let r = ts.post(
            "/v1/agents/public-us/sync",
            &agent,
            &json!({"agent": "agent-us", "runs": []}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.body["start"],
            json!([]),
            "a run on reclassified data was handed out: {}",
            r.text
        );
    }
    // Then a replica that schedules: the agent syncs at once, before or while the leader
    // rebuilds: still nothing to start, and the leader withdraws every run.
    ts.restart_with_fleet(&fleet, zones);
    let agent = ts.token(Role::Agent, "public-us");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut syncs = 0;
    while Instant::now() < deadline {
        let r = ts.post(
            "/v1/agents/public-us/sync",
            &agent,
            &json!({"agent": "agent-us", "runs": []}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.body["start"],
            json!([]),
            "a run on reclassified data was handed out: {}",
            r.text
        );
        syncs += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(syncs > 10);
    for id in &ids {
        let d = ts.wait_job(id, 20, |d| d["job"]["state"] == "failed");
        assert!(
            kinds(&d)
                .iter()
                .any(|(k, r)| k == "preempted" && r.contains("placement withdrawn")),
            "{d}"
        );
    }
    ts.stop();
    let revoked = ledger(&ts)
        .into_iter()
        .filter(|e| e["action"]["type"] == "job.revoked")
        .count();
    assert_eq!(revoked, ids.len());
}

#[test]
fn nothing_is_admitted_to_a_zone_after_it_was_set_unreachable() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    // Warm the loop up so its periodic checks are mid-period when the condition changes.
    let r = ts.submit(
        &sub,
        &common::manifest("warm", "icu-ml", 1, Some("true")),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = ts.post(
        "/v1/zones/private-cloud/condition",
        &ts.admin,
        &json!({"health": "unreachable", "reason": "link down drill"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mut ids = Vec::new();
    for i in 0..6 {
        let m = pinned(&format!("pc-{i}"), "true").replace(
            "allowed_execution_zone: public-us",
            "allowed_execution_zone: private-cloud",
        );
        let r = ts.submit(&sub, &m, None);
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["job"]["id"].as_str().unwrap().to_owned());
    }
    std::thread::sleep(Duration::from_millis(1500));
    for id in &ids {
        let d = ts.get(&format!("/v1/jobs/{id}"), &ts.admin).body;
        let ev = kinds(&d);
        assert!(
            !ev.iter().any(|(k, _)| k == "admitted" || k == "running"),
            "admitted to an unreachable zone: {ev:?}"
        );
    }
    let r = ts.post(
        "/v1/zones/private-cloud/condition",
        &ts.admin,
        &json!({"health": "healthy"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for id in &ids {
        let d = ts.wait_job(id, 20, |d| d["job"]["state"] == "succeeded");
        assert_eq!(d["job"]["zone"], "private-cloud", "{d}");
    }
}

#[test]
fn a_new_fleet_is_put_in_force_live_and_running_work_is_re_checked_against_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = common::copy_fleet(tmp.path());
    let mut ts = TestServer::start_fleet(&fleet, 16, Default::default(), vec![]);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(&sub, &pinned("live", "sleep 30"), None);
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    ts.wait_job(&id, 20, |d| d["job"]["state"] == "running");
    let before = ts.post("/v1/fleet", &ts.admin, &json!({})).body;

    // A fleet that does not load changes nothing: the error names the file, the set in force stays.
    std::fs::write(
        fleet.join("policies/broken.cedar"),
        "permit (principal, action, resource) when { resource.nope };\n",
    )
    .unwrap();
    let r = ts.post("/v1/fleet", &ts.admin, &json!({}));
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("fleet_invalid")),
        "{}",
        r.text
    );
    assert!(r.text.contains("broken.cedar"), "{}", r.text);
    std::fs::remove_file(fleet.join("policies/broken.cedar")).unwrap();
    let d = ts.get(&format!("/v1/jobs/{id}"), &ts.admin).body;
    assert_eq!(
        d["job"]["state"], "running",
        "a set that does not load touches nothing: {d}"
    );
    // Only an administrator may change the rules.
    let r = ts.post("/v1/fleet", &sub, &json!({}));
    assert_eq!(r.status, 403, "{}", r.text);
    // A zone's tier does not change under running work: that needs a restart.
    let zone_file = fleet.join("zones/public-us.yaml");
    let original = std::fs::read_to_string(&zone_file).unwrap();
    std::fs::write(
        &zone_file,
        original.replace("tier: public", "tier: private-cloud"),
    )
    .unwrap();
    let r = ts.post("/v1/fleet", &ts.admin, &json!({}));
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (409, Some("dir")),
        "{}",
        r.text
    );
    std::fs::write(&zone_file, original).unwrap();

    // The data is reclassified and the fleet applied live: the run in public-us is withdrawn.
    common::reclassify(&fleet, "ehr-deid", RESTRICTED);
    let r = ts.post(
        "/v1/fleet",
        &ts.admin,
        &json!({"dir": fleet.to_str().unwrap()}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.body["fleet_hash"], before["fleet_hash"], "{}", r.text);
    assert!(r.body["generation"].as_u64().unwrap() > before["generation"].as_u64().unwrap());
    let d = ts.wait_job(&id, 20, |d| d["job"]["state"] == "failed");
    assert!(
        kinds(&d)
            .iter()
            .any(|(k, r)| k == "preempted" && r.contains("placement withdrawn")),
        "{d}"
    );
    // New work meets the new rules at once.
    let r = ts.submit(&sub, &pinned("after", "true"), None);
    let after = r.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&after, 20, |d| d["job"]["state"] == "failed");
    assert!(
        d["job"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("refused")
            || kinds(&d).last().unwrap().1.contains("refused"),
        "{d}"
    );
    ts.stop();
    let entries = ledger(&ts);
    let loaded: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"]["type"] == "policy.loaded")
        .collect();
    assert!(
        loaded.len() >= 2,
        "the new policy set is ledgered: {loaded:?}"
    );
    assert_eq!(
        loaded.last().unwrap()["action"]["policy_hash"],
        format!("sha256:{}", r_hash(&entries))
    );
    assert!(entries.iter().any(|e| e["action"]["type"] == "job.revoked"));
}

/// The policy hash of the last `job.placed` entry (made under the rules in force).
fn r_hash(entries: &[Value]) -> String {
    let placed = entries
        .iter()
        .rev()
        .find(|e| e["action"]["type"] == "job.placed")
        .unwrap();
    placed["action"]["policy_hash"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned()
}

#[test]
fn a_cancel_acknowledged_before_a_crash_stops_the_run_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = common::copy_fleet(tmp.path());
    let mut ts = TestServer::start_fleet(&fleet, 16, Default::default(), vec![]);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(
        &sub,
        &common::manifest(
            "orphan",
            "icu-ml",
            8,
            Some("while true; do date +%s%N > alive; sleep 0.1; done"),
        ),
        None,
    );
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&id, 20, |d| d["job"]["state"] == "running");
    let zone = d["job"]["zone"].as_str().unwrap().to_owned();
    let alive = ts
        .dir
        .path()
        .join("zones")
        .join(&zone)
        .join(&id)
        .join("alive");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !alive.exists() {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The control plane goes down with the run going on; the cancel lands in the store (as
    // an acknowledged cancel does) and nothing stops the run before the next start.
    ts.stop();
    {
        use tidegate_store::Store as _;
        let store = tidegate_store::SqliteStore::open(
            ts.dir.path(),
            tidegate_store::SqliteOptions::default(),
        )
        .unwrap();
        let job = tidegate_store::JobId::new(&id).unwrap();
        let rec = store.get(&job).unwrap().unwrap();
        store
            .transition(
                &job,
                tidegate_store::Transition::to(
                    tidegate_store::JobState::Cancelled,
                    rec.version,
                    tidegate_store::Timestamp::now(),
                )
                .because("cancelled by tester"),
            )
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let a = std::fs::read_to_string(&alive).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(
        a,
        std::fs::read_to_string(&alive).unwrap(),
        "the run goes on while the control plane is down"
    );
    ts.restart_with_fleet(&fleet, vec![]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = std::fs::read_to_string(&alive).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        if a == std::fs::read_to_string(&alive).unwrap() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled job's run was never stopped"
        );
    }
    assert_eq!(
        ts.get(&format!("/v1/jobs/{id}"), &ts.admin).body["job"]["state"],
        "cancelled"
    );
}

/// A leader that rebuilds (here: the same fleet applied again, twice) decides a waiting job's
/// placement again, but records the same decision only once.
#[test]
fn rebuilding_never_records_the_same_placement_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = common::copy_fleet(tmp.path());
    let mut ts = TestServer::start_fleet(&fleet, 16, Default::default(), vec![]);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.post(
        "/v1/zones/private-cloud/condition",
        &ts.admin,
        &json!({"health": "unreachable", "reason": "link down drill"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let m = pinned("waits", "true").replace(
        "allowed_execution_zone: public-us",
        "allowed_execution_zone: private-cloud",
    );
    let r = ts.submit(&sub, &m, None);
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    ts.wait_job(&id, 20, |d| d["job"]["state"] == "queued");
    for _ in 0..2 {
        let r = ts.post("/v1/fleet", &ts.admin, &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
        std::thread::sleep(Duration::from_millis(700));
    }
    ts.stop();
    let placed = ledger(&ts)
        .iter()
        .filter(|e| e["action"]["type"] == "job.placed")
        .filter(|e| {
            e["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["id"] == id.as_str()))
        })
        .count();
    assert_eq!(placed, 1, "the same placement was recorded {placed} times");
}
