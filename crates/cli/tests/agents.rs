//! A zone run by an agent (`tidegate agent`), all as processes: work placed in the zone runs
//! there and reports back; killing the agent leaves its running job alone, the zone turns
//! unreachable after missed heartbeats and new work goes elsewhere; the agent's return
//! reconciles the job's status without running anything twice; restricted work never reaches
//! the public zone's agent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{call, repo, wait_for, zone_job, Proc};
use serde_json::{json, Value};





fn job(name: &str, zone: &str, dataset: &str, command: &str) -> String {
    zone_job(name, zone, dataset, "research", command)
}


#[test]
fn an_agent_runs_its_zone_survives_a_cut_link_and_never_runs_a_job_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let work = dir.path().join("agent-work");
    let tg = env!("CARGO_BIN_EXE_tidegate");
    let _cp = Proc(
        Command::new(tg)
            .args(["up", "--listen", "127.0.0.1:0", "--agent-zone", "public-eu", "--agent-timeout", "2", "--data-dir"])
            .arg(&data)
            .arg("--fleet")
            .arg(repo().join("examples/fleet"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the control plane", 60, || data.join("server.url").exists());
    std::thread::sleep(Duration::from_millis(300));
    let url = std::fs::read_to_string(data.join("server.url")).unwrap().trim().to_owned();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let minted = Command::new(tg)
        .args(["token", "mint", "--user", "agent-eu", "--role", "agent", "--team", "public-eu", "--minutes", "60", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, &minted.stdout).unwrap();
    let start_agent = || {
        Proc(
            Command::new(tg)
                .args(["agent", "--zone", "public-eu", "--interval-ms", "200", "--control-plane", &url, "--token"])
                .arg(&token_file)
                .arg("--work-dir")
                .arg(&work)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut agent_proc = start_agent();
    let zone_state = || -> Value {
        let (_, zones) = call("GET", &format!("{url}/v1/zones"), &admin, None);
        zones.as_array().unwrap().iter().find(|z| z["name"] == "public-eu").unwrap().clone()
    };
    let submit = |m: String| -> String {
        let (s, b) = call("POST", &format!("{url}/v1/jobs"), &admin, Some(json!({ "manifest": m })));
        assert_eq!(s, 201, "{b}");
        b["job"]["id"].as_str().unwrap().to_owned()
    };
    let detail = |id: &str| -> Value { call("GET", &format!("{url}/v1/jobs/{id}"), &admin, None).1 };

    // (a) Work placed in the agent's zone runs there and reports back.
    let first = submit(job("via-agent", "public-eu", "ehr-deid@2026-10", "echo agent-run in $TIDEGATE_ZONE"));
    wait_for("the first job to succeed", 30, || detail(&first)["job"]["state"] == "succeeded");
    assert_eq!(detail(&first)["job"]["zone"], "public-eu");
    let (_, logs) = call("GET", &format!("{url}/v1/jobs/{first}/logs"), &admin, None);
    assert!(logs["logs"].as_str().unwrap().contains("agent-run in public-eu"), "{logs}");
    assert!(work.join(&first).join("exit").exists(), "it ran in the agent's work directory");

    // (b) Cut the link while a job runs there: the job is left alone, the zone turns unreachable,
    // and new public work goes elsewhere.
    let long = submit(job("outlives-link", "public-eu", "ehr-deid@2026-10", "sleep 3; echo done"));
    wait_for("the agent to start the long job", 20, || work.join(&long).join("pid").exists());
    agent_proc.0.kill().unwrap();
    agent_proc.0.wait().unwrap();
    wait_for("the zone to turn unreachable", 20, || zone_state()["health"] == "unreachable");
    assert!(zone_state()["condition_reason"].as_str().unwrap().contains("no heartbeat"), "{}", zone_state());
    assert_eq!(detail(&long)["job"]["state"], "running", "a running job is left alone");
    let elsewhere = submit(job("goes-elsewhere", "public", "ehr-deid@2026-10", "echo elsewhere"));
    wait_for("new public work to run elsewhere", 30, || detail(&elsewhere)["job"]["state"] == "succeeded");
    assert_ne!(detail(&elsewhere)["job"]["zone"], "public-eu");

    // (c) Restricted data never reaches the public zone's agent, even now.
    let raw = submit(job("raw-to-public", "public-eu", "ehr-raw@2026-10", "echo leaked"));
    wait_for("the raw job to be refused", 20, || detail(&raw)["job"]["state"] == "failed");
    assert!(!work.join(&raw).exists());

    // The link returns: the zone is healthy again and the job that finished meanwhile reconciles.
    wait_for("the long job to finish on its own", 20, || work.join(&long).join("exit").exists());
    let _agent_again = start_agent();
    wait_for("the zone to be healthy again", 20, || zone_state()["health"] == "healthy");
    wait_for("the long job to reconcile", 20, || detail(&long)["job"]["state"] == "succeeded");
    let d = detail(&long);
    let admitted = d["events"].as_array().unwrap().iter().filter(|e| e["to_state"] == "admitted").count();
    assert_eq!(admitted, 1, "placed once: {d}");
    let out = std::fs::read_to_string(work.join(&long).join("output.log")).unwrap();
    assert_eq!(out.matches("done").count(), 1, "ran once");
    let runs: Vec<_> = std::fs::read_dir(&work).unwrap().filter_map(Result::ok).map(|e| e.file_name().into_string().unwrap()).collect();
    assert!(runs.iter().all(|r| r == &first || r == &long), "only its zone's jobs ran there: {runs:?}");
}
