//! Jobs through the API: validation errors name the field, idempotency keys replay or conflict,
//! jobs run as real processes and end with their exit code, cancel stops a running job, bursts
//! carry their justification, private-only data never reaches public zones, oversized jobs are
//! refused with the reason, and metrics show it all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{manifest, raw_manifest, TestServer};
use serde_json::{json, Value};
use tidegate_identity::Role;

fn states(detail: &Value) -> Vec<String> {
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bad_requests_get_clear_errors_naming_the_field() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    // Not JSON.
    let r = ts.request("POST", "/v1/jobs", Some(&sub), None, &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid_request");
    assert_eq!(r.body["error"]["field"], "body");
    // Unknown body field.
    let r = ts.post("/v1/jobs", &sub, &json!({"manifest": "x", "extra": 1}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("extra"), "{}", r.text);
    // A manifest naming a dataset the fleet does not know.
    let bad = manifest("bad", "icu-ml", 8, None).replace("ehr-deid@2026-10", "nope@v1");
    let r = ts.submit(&sub, &bad, None);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid_manifest");
    assert!(
        r.body["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("manifest"),
        "{}",
        r.text
    );
    assert!(r.text.contains("nope@v1"), "{}", r.text);
    // A deadline that does not parse, or one already past: refused, naming the field.
    for (deadline, why) in [
        ("next friday", "RFC 3339"),
        ("2001-01-01T00:00:00Z", "already passed"),
    ] {
        let m = manifest("late", "icu-ml", 8, None).replacen(
            "spec:\n",
            &format!("spec:\n  deadline: \"{deadline}\"\n"),
            1,
        );
        assert!(m.contains(deadline), "{m}");
        let r = ts.submit(&sub, &m, None);
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.body["error"]["field"], "manifest.spec.deadline",
            "{}",
            r.text
        );
        assert!(r.text.contains(why), "{}", r.text);
    }
    // YAML syntax: the line is named.
    let r = ts.submit(
        &sub,
        "apiVersion: tidegate.io/v1\nkind: Job\nmetadata: [oops\n",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"]["field"].as_str().unwrap().contains("line"),
        "{}",
        r.text
    );
    // Bad list filters.
    let r = ts.get("/v1/jobs?state=sleeping", &ts.admin);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "state");
    let r = ts.get("/v1/jobs?limit=0", &ts.admin);
    assert_eq!(r.body["error"]["field"], "limit");
    // Unknown job.
    let r = ts.get("/v1/jobs/job-nope", &ts.admin);
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "not_found");
    // Nothing was created by any of this.
    let r = ts.get("/v1/jobs", &ts.admin);
    assert_eq!(r.body["jobs"].as_array().unwrap().len(), 0, "{}", r.text);
}

#[test]
fn idempotency_key_replays_the_same_job_and_refuses_a_different_request() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let m = manifest("idem", "icu-ml", 1, Some("true"));
    let a = ts.submit(&sub, &m, Some("key-1"));
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["replayed"], false);
    let b = ts.submit(&sub, &m, Some("key-1"));
    assert_eq!(b.status, 200, "{}", b.text);
    assert_eq!(b.body["replayed"], true);
    assert_eq!(a.body["job"]["id"], b.body["job"]["id"]);
    let c = ts.submit(
        &sub,
        &manifest("idem-other", "icu-ml", 2, Some("true")),
        Some("key-1"),
    );
    assert_eq!(c.status, 409, "{}", c.text);
    assert_eq!(c.body["error"]["code"], "idempotency_conflict");
    assert_eq!(c.body["error"]["field"], "Idempotency-Key");
    let list = ts.get("/v1/jobs?team=icu-ml", &ts.admin);
    assert_eq!(
        list.body["jobs"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
}

/// A submission the ledger could not record is refused with a 503 (retry); the retry with the
/// same `Idempotency-Key`, once the ledger writes again, creates a job that runs, rather than
/// replaying the refused one.
#[test]
fn an_idempotency_key_refused_for_a_temporary_reason_can_be_retried_and_runs() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let evidence = ts.server.as_ref().unwrap().state.shared.evidence.clone();
    // A closed ledger is reopened by the next append, at most once a second: close it, let one
    // submission reopen it, close it again, and the next submission (within the second) finds
    // it stopped and is refused.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    evidence.close().unwrap();
    let first = ts.submit(&sub, &manifest("reopens", "icu-ml", 1, Some("true")), None);
    assert_eq!(first.status, 201, "{}", first.text);
    evidence.close().unwrap();
    let m = manifest("retried", "icu-ml", 1, Some("true"));
    let refused = ts.submit(&sub, &m, Some("key-retry"));
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(
        refused.body["error"]["code"], "unavailable",
        "{}",
        refused.text
    );
    // The ledger can be reopened a second later: the retry with the same key is a new job.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let retry = ts.submit(&sub, &m, Some("key-retry"));
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.body["replayed"], false, "{}", retry.text);
    let id = retry.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&id, 20, |d| d["job"]["state"] == "succeeded");
    assert!(states(&d).contains(&"running".to_owned()), "{d}");
    // From now on the key replays the job that ran.
    let again = ts.submit(&sub, &m, Some("key-retry"));
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["replayed"], true, "{}", again.text);
    assert_eq!(again.body["job"]["id"], retry.body["job"]["id"]);
}

#[test]
fn jobs_run_for_real_end_with_their_exit_code_and_can_be_cancelled() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let ok = ts.submit(
        &sub,
        &manifest("ok", "icu-ml", 8, Some("echo hello from $TIDEGATE_ZONE")),
        None,
    );
    let ok_id = ok.body["job"]["id"].as_str().unwrap().to_owned();
    let bad = ts.submit(
        &sub,
        &manifest("bad", "icu-ml", 8, Some("echo failing; exit 3")),
        None,
    );
    let bad_id = bad.body["job"]["id"].as_str().unwrap().to_owned();
    let long = ts.submit(&sub, &manifest("long", "icu-ml", 8, Some("sleep 60")), None);
    let long_id = long.body["job"]["id"].as_str().unwrap().to_owned();

    // The release is recorded just after the end: wait for both (the state alone races it).
    let d = ts.wait_job(&ok_id, 20, |d| {
        d["job"]["state"] == "succeeded" && states(d).last().map(String::as_str) == Some("released")
    });
    assert_eq!(
        states(&d),
        [
            "submitted",
            "queued",
            "admitted",
            "running",
            "succeeded",
            "released"
        ],
        "{d}"
    );
    let logs = ts.get(&format!("/v1/jobs/{ok_id}/logs"), &sub);
    assert!(
        logs.body["logs"].as_str().unwrap().contains("hello from"),
        "{}",
        logs.text
    );
    // The placement explanation travels with the job.
    let queued = &d["events"][1]["details"];
    assert!(
        queued["allowed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("hospital-onprem")),
        "{queued}"
    );
    assert!(
        queued["policy_hash"].as_str().unwrap().len() == 64,
        "{queued}"
    );

    let d = ts.wait_job(&bad_id, 20, |d| d["job"]["state"] == "failed");
    assert_eq!(d["job"]["reason"], "exit code 3", "{d}");

    ts.wait_job(&long_id, 20, |d| d["job"]["state"] == "running");
    let r = ts.post(&format!("/v1/jobs/{long_id}/cancel"), &sub, &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["state"], "cancelled");
    let d = ts.wait_job(&long_id, 20, |d| states(d).contains(&"released".to_owned()));
    assert_eq!(d["job"]["state"], "cancelled");
    // Its process was stopped: the executor recorded the cancellation (in its state directory,
    // apart from the job's work directory).
    let state = ts
        .dir
        .path()
        .join("zones")
        .join(d["job"]["zone"].as_str().unwrap())
        .join(".state")
        .join(&long_id);
    let wrapper: Value =
        serde_json::from_slice(&std::fs::read(state.join("started.1.json")).unwrap()).unwrap();
    let pid = wrapper["pid"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled job's process did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(state.join("stop")).unwrap().trim(),
        "cancelled"
    );
    // Cancelling again is a conflict, named as such.
    let r = ts.post(&format!("/v1/jobs/{long_id}/cancel"), &sub, &json!({}));
    assert_eq!(r.status, 409, "{}", r.text);
}

#[test]
fn pressure_bursts_eligible_work_with_its_justification_and_never_private_only_data() {
    let ts = TestServer::start(2);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let mut ids = Vec::new();
    // 96 private H100 GPUs: 12 sweeps fill them; the rest queue, then burst.
    for i in 0..24 {
        let r = ts.submit(
            &sub,
            &manifest(&format!("sweep-{i}"), "icu-ml", 8, Some("sleep 3")),
            None,
        );
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["job"]["id"].as_str().unwrap().to_owned());
    }
    let mut raw_ids = Vec::new();
    for i in 0..4 {
        let r = ts.submit(&sub, &raw_manifest(&format!("raw-{i}"), "sleep 1"), None);
        raw_ids.push(r.body["job"]["id"].as_str().unwrap().to_owned());
    }
    let giant = manifest("giant", "icu-ml", 1024, None);
    let g = ts.submit(&sub, &giant, None);
    let giant_id = g.body["job"]["id"].as_str().unwrap().to_owned();

    let mut bursts = 0;
    for id in &ids {
        // The release is recorded just after the end: wait for both.
        let d = ts.wait_job(id, 60, |d| {
            d["job"]["state"] == "succeeded"
                && states(d).last().map(String::as_str) == Some("released")
        });
        let zone = d["job"]["zone"].as_str().unwrap();
        if zone.starts_with("public") {
            bursts += 1;
            let adm = d["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["to_state"] == "admitted")
                .unwrap();
            assert_eq!(adm["details"]["burst"], true);
            assert_eq!(adm["details"]["justification"], "test burst");
            assert!(
                adm["reason_code"].as_str().unwrap().starts_with("burst:"),
                "{adm}"
            );
            assert!(
                adm["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("burst to public capacity"),
                "{adm}"
            );
            let rel = d["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == "released")
                .unwrap();
            assert_eq!(
                rel["details"]["public"], true,
                "public capacity is given back: {rel}"
            );
        }
    }
    assert!(
        bursts > 0,
        "queue pressure must burst some sweeps to public capacity"
    );
    for id in &raw_ids {
        let d = ts.wait_job(id, 60, |d| d["job"]["state"] == "succeeded");
        let zone = d["job"]["zone"].as_str().unwrap();
        assert!(
            zone == "hospital-onprem" || zone == "private-cloud",
            "raw PHI ran in {zone}"
        );
    }
    let d = ts.wait_job(&giant_id, 10, |d| d["job"]["state"] == "failed");
    let reason = d["job"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("refused") && reason.contains("job needs 1024 GPUs"),
        "{reason}"
    );

    // Metrics say the same.
    let m = ts.get("/metrics", &ts.token(Role::Auditor, "icu-ml"));
    assert_eq!(m.status, 200);
    assert!(
        m.text
            .contains("tidegate_queue_depth{zone=\"hospital-onprem\"}"),
        "{}",
        m.text
    );
    let bursts_metric = m
        .text
        .lines()
        .find(|l| l.starts_with("tidegate_bursts_total"))
        .unwrap();
    assert_eq!(
        bursts_metric,
        format!("tidegate_bursts_total {bursts}"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .lines()
            .any(|l| l.starts_with("tidegate_refusals_total 1")),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("tidegate_decision_latency_seconds_count"),
        "{}",
        m.text
    );

    // And the evidence ledger holds every decision, each burst with its justification digest.
    let mut ts = ts;
    ts.stop();
    let contents = tidegate_ledger::ledger::read_log(&ts.dir.path().join("ledger"), true).unwrap();
    let kinds: Vec<String> = contents
        .entries
        .iter()
        .map(|bytes| {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            v["action"]["type"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "job.burst").count(),
        bursts,
        "{kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| *k == "job.submitted").count(), 29);
    assert_eq!(kinds.iter().filter(|k| *k == "job.placed").count(), 29);
    assert!(
        kinds.contains(&"fleet.loaded".to_owned()) && kinds.contains(&"policy.loaded".to_owned())
    );
}

/// Where a job ran is evidence: its admission (zone, pool, run, policy hash), start and end are
/// entries, in that order, naming the zone and pool the job actually ran in.
#[test]
fn every_admission_start_and_end_is_ledgered_where_it_happened() {
    let mut ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(
        &sub,
        &manifest("ran-here", "icu-ml", 1, Some("echo ok")),
        None,
    );
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    let d = ts.wait_job(&id, 30, |d| d["job"]["state"] == "succeeded");
    let (zone, pool) = (
        d["job"]["zone"].as_str().unwrap().to_owned(),
        d["job"]["pool"].as_str().unwrap().to_owned(),
    );
    ts.stop();
    let contents = tidegate_ledger::ledger::read_log(&ts.dir.path().join("ledger"), true).unwrap();
    let about: Vec<Value> = contents
        .entries
        .iter()
        .map(|b| serde_json::from_slice::<Value>(b).unwrap())
        .filter(|v| {
            v["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["id"] == id.as_str()))
        })
        .collect();
    let kinds: Vec<String> = about
        .iter()
        .map(|v| {
            let a = &v["action"];
            match a["type"].as_str().unwrap() {
                "job.run" => format!("job.run:{}", a["event"].as_str().unwrap()),
                t => t.to_owned(),
            }
        })
        .collect();
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} missing: {kinds:?}"))
    };
    assert!(pos("job.submitted") < pos("job.admitted"), "{kinds:?}");
    assert!(pos("job.admitted") < pos("job.run:started"), "{kinds:?}");
    assert!(
        pos("job.run:started") < pos("job.run:exited-0"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "job.admitted").count(),
        1,
        "{kinds:?}"
    );
    let admitted = &about[pos("job.admitted")]["action"];
    assert_eq!(admitted["zone"], zone.as_str());
    assert_eq!(admitted["pool"], pool.as_str());
    assert!(admitted["policy_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    for k in ["job.run:started", "job.run:exited-0"] {
        assert_eq!(about[pos(k)]["action"]["zone"], zone.as_str(), "{k}");
    }
}

#[test]
fn sigterm_style_shutdown_drains_and_a_restart_finds_running_jobs() {
    let mut ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(
        &sub,
        &manifest("survivor", "icu-ml", 8, Some("sleep 2; echo survived")),
        None,
    );
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    ts.wait_job(&id, 20, |d| d["job"]["state"] == "running");
    let dir = ts.dir.path().to_owned();
    ts.stop();
    // The job kept running without us; a new control plane on the same data dir picks it up.
    let cfg = tidegate_server::ServerConfig {
        data_dir: dir.clone(),
        fleet_dir: common::example_fleet(),
        database: None,
        store: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        loop_cfg: tidegate_server::control::LoopConfig {
            tick: std::time::Duration::from_millis(50),
            ..Default::default()
        },
        work_root: None,
        keys_dir: None,
        executors: Default::default(),
        admin_token_minutes: 60,
        agent_zones: vec![],
        replica: "test".into(),
        scheduler: true,
        http: Default::default(),
        tls: None,
    };
    let server = ts
        .rt
        .block_on(tidegate_server::start(
            cfg,
            tidegate_server::auth::system_clock(),
        ))
        .unwrap();
    ts.url = server.url.clone();
    ts.server = Some(server);
    let d = ts.wait_job(&id, 20, |d| d["job"]["state"] == "succeeded");
    assert_eq!(
        states(&d).iter().filter(|s| *s == "running").count(),
        1,
        "started once: {d}"
    );
    let logs = ts.get(&format!("/v1/jobs/{id}/logs"), &sub);
    assert_eq!(
        logs.body["logs"]
            .as_str()
            .unwrap()
            .matches("survived")
            .count(),
        1,
        "{}",
        logs.text
    );
}

#[test]
fn approvals_and_issued_tokens_are_recorded_in_the_ledger() {
    let mut ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let r = ts.submit(
        &sub,
        &manifest("needs-approval", "icu-ml", 8, Some("true")),
        None,
    );
    let id = r.body["job"]["id"].as_str().unwrap().to_owned();
    let approver = ts.token(Role::Approver, "icu-ml");
    let r = ts.post(
        &format!("/v1/jobs/{id}/approve"),
        &approver,
        &json!({"scope": "burst"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        states(&r.body).contains(&"approved".to_owned()),
        "{}",
        r.text
    );
    let r = ts.post(
        &format!("/v1/jobs/{id}/approve"),
        &approver,
        &json!({"scope": "everything"}),
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("scope")),
        "{}",
        r.text
    );
    let minted = ts.post(
        "/v1/tokens",
        &ts.admin.clone(),
        &json!({"subject": "dana", "role": "auditor", "team": "icu-ml", "minutes": 30}),
    );
    assert_eq!(minted.status, 201, "{}", minted.text);
    ts.stop();
    let contents = tidegate_ledger::ledger::read_log(&ts.dir.path().join("ledger"), true).unwrap();
    let entries: Vec<Value> = contents
        .entries
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    let of = |t: &str| {
        entries
            .iter()
            .filter(|e| e["action"]["type"] == t)
            .cloned()
            .collect::<Vec<_>>()
    };
    let approvals = of("job.approved");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["action"]["scope"], "burst");
    assert_eq!(approvals[0]["actor"], "tester", "the approver is the actor");
    let tokens = of("token.issued");
    assert_eq!(
        tokens.len(),
        2,
        "the admin token at start and the minted one: {tokens:?}"
    );
    assert!(tokens.iter().any(|t| t["action"]["scope"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "role:auditor")));
    assert!(
        !serde_json::to_string(&entries)
            .unwrap()
            .contains(minted.body["token"].as_str().unwrap()),
        "never the token itself"
    );
}

#[test]
fn a_job_naming_more_inputs_than_its_evidence_can_hold_is_refused_at_submit() {
    let ts = TestServer::start(16);
    let sub = ts.token(Role::Submitter, "icu-ml");
    let many = manifest("many-inputs", "icu-ml", 1, Some("true")).replace(
        "    - dataset: ehr-deid@2026-10\n",
        &"    - dataset: ehr-deid@2026-10\n".repeat(tidegate_model::MAX_INPUTS + 1),
    );
    let r = ts.submit(&sub, &many, None);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"]["field"]
            .as_str()
            .unwrap()
            .contains("spec.inputs"),
        "{}",
        r.text
    );
    let r = ts.get("/v1/jobs", &ts.admin);
    assert_eq!(
        r.body["jobs"].as_array().unwrap().len(),
        0,
        "nothing was created: {}",
        r.text
    );
}
