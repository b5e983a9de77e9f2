//! A zone run by an agent (`tidegate agent`), all as processes: work placed in the zone runs
//! there and reports back; killing the agent leaves its running job alone, the zone turns
//! unreachable after missed heartbeats and new work goes elsewhere; the agent's return
//! reconciles the job's status without running anything twice; restricted work never reaches
//! the public zone's agent. All over HTTPS with mutual TLS: the agents get short-lived workload
//! certificates (renewed every few seconds here) and sync presenting them; an agent presenting
//! another zone's certificate (issued offline with `tidegate cert issue`) is refused and its
//! zone stays silent, while the zone's own agent is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{agent_token, start_agent, start_control_plane, wait_for, zone_job};
use serde_json::{json, Value};

fn job(name: &str, zone: &str, dataset: &str, command: &str) -> String {
    zone_job(name, zone, dataset, "research", command)
}

#[test]
fn an_agent_runs_its_zone_survives_a_cut_link_and_never_runs_a_job_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let work = dir.path().join("agent-work");
    // Workload certificates of 6 s: the agent renews every 3 s, for the whole test.
    let cp = start_control_plane(
        &data,
        "127.0.0.1:0",
        &["public-eu"],
        &["--agent-timeout", "2", "--workload-cert-ttl", "6"],
    );
    let url = cp.url.clone();
    assert!(url.starts_with("https://"), "TLS by default: {url}");
    let call = |m: &str, u: &str, t: &str, b: Option<Value>| cp.call(m, u, t, b);
    let admin = cp.admin.clone();
    let token_file = dir.path().join("agent.token");
    agent_token(&data, "public-eu", &token_file);
    let start_agent = || start_agent(None, "public-eu", &url, Some(&cp.ca), &token_file, &work);
    let mut agent_proc = start_agent();
    let zone_state = || -> Value {
        let (_, zones) = call("GET", &format!("{url}/v1/zones"), &admin, None);
        zones
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["name"] == "public-eu")
            .unwrap()
            .clone()
    };
    let submit = |m: String| -> String {
        let (s, b) = call(
            "POST",
            &format!("{url}/v1/jobs"),
            &admin,
            Some(json!({ "manifest": m })),
        );
        assert_eq!(s, 201, "{b}");
        b["job"]["id"].as_str().unwrap().to_owned()
    };
    let detail =
        |id: &str| -> Value { call("GET", &format!("{url}/v1/jobs/{id}"), &admin, None).1 };

    // (a) Work placed in the agent's zone runs there and reports back.
    let first = submit(job(
        "via-agent",
        "public-eu",
        "ehr-deid@2026-10",
        "echo agent-run in $TIDEGATE_ZONE",
    ));
    wait_for("the first job to succeed", 30, || {
        detail(&first)["job"]["state"] == "succeeded"
    });
    assert_eq!(detail(&first)["job"]["zone"], "public-eu");
    let (_, logs) = call("GET", &format!("{url}/v1/jobs/{first}/logs"), &admin, None);
    assert!(
        logs["logs"]
            .as_str()
            .unwrap()
            .contains("agent-run in public-eu"),
        "{logs}"
    );
    assert!(
        work.join(".state").join(&first).join("exit").exists(),
        "it ran in the agent's work directory"
    );

    // (b) Cut the link while a job runs there: the job is left alone, the zone turns unreachable,
    // and new public work goes elsewhere.
    let long = submit(job(
        "outlives-link",
        "public-eu",
        "ehr-deid@2026-10",
        "sleep 3; echo done",
    ));
    wait_for("the agent to start the long job", 20, || {
        work.join(".state").join(&long).join("run.json").exists()
    });
    agent_proc.0.kill().unwrap();
    agent_proc.0.wait().unwrap();
    wait_for("the zone to turn unreachable", 20, || {
        zone_state()["health"] == "unreachable"
    });
    assert!(
        zone_state()["condition_reason"]
            .as_str()
            .unwrap()
            .contains("no heartbeat"),
        "{}",
        zone_state()
    );
    assert_eq!(
        detail(&long)["job"]["state"],
        "running",
        "a running job is left alone"
    );
    let elsewhere = submit(job(
        "goes-elsewhere",
        "public",
        "ehr-deid@2026-10",
        "echo elsewhere",
    ));
    wait_for("new public work to run elsewhere", 30, || {
        detail(&elsewhere)["job"]["state"] == "succeeded"
    });
    assert_ne!(detail(&elsewhere)["job"]["zone"], "public-eu");

    // (c) Restricted data never reaches the public zone's agent, even now.
    let raw = submit(job(
        "raw-to-public",
        "public-eu",
        "ehr-raw@2026-10",
        "echo leaked",
    ));
    wait_for("the raw job to be refused", 20, || {
        detail(&raw)["job"]["state"] == "failed"
    });
    assert!(!work.join(&raw).exists());

    // The link returns: the zone is healthy again and the job that finished meanwhile reconciles.
    wait_for("the long job to finish on its own", 20, || {
        work.join(".state").join(&long).join("exit").exists()
    });
    let _agent_again = start_agent();
    wait_for("the zone to be healthy again", 20, || {
        zone_state()["health"] == "healthy"
    });
    wait_for("the long job to reconcile", 20, || {
        detail(&long)["job"]["state"] == "succeeded"
    });
    let d = detail(&long);
    let admitted = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["to_state"] == "admitted")
        .count();
    assert_eq!(admitted, 1, "placed once: {d}");
    let out = std::fs::read_to_string(work.join(".state").join(&long).join("output.log")).unwrap();
    assert_eq!(out.matches("done").count(), 1, "ran once");
    let runs: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n != ".state")
        .collect();
    assert!(
        runs.iter().all(|r| r == &first || r == &long),
        "only its zone's jobs ran there: {runs:?}"
    );
}

#[test]
fn an_agent_with_another_zones_certificate_is_refused_and_its_zone_stays_silent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let cp = start_control_plane(
        &data,
        "127.0.0.1:0",
        &["public-eu", "public-us"],
        &["--agent-timeout", "2"],
    );
    let url = cp.url.clone();
    let call = |m: &str, u: &str, t: &str, b: Option<Value>| cp.call(m, u, t, b);
    let health = || -> String {
        let (_, zones) = call("GET", &format!("{url}/v1/zones"), &cp.admin, None);
        zones
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["name"] == "public-eu")
            .unwrap()["health"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // public-us's certificate, issued offline from the control plane's authority.
    let certs = dir.path().join("certs");
    let issued = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["cert", "issue", "--zone", "public-us", "--out"])
        .arg(&certs)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    assert!(
        String::from_utf8_lossy(&issued.stdout).contains("spiffe://tidegate.local/zone/public-us")
    );
    // An agent for public-eu, with public-eu's token but public-us's certificate.
    let token_file = dir.path().join("eu.token");
    agent_token(&data, "public-eu", &token_file);
    let rogue_work = dir.path().join("rogue-work");
    let mut rogue = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "agent",
            "--zone",
            "public-eu",
            "--interval-ms",
            "200",
            "--for-seconds",
            "60",
            "--control-plane",
            &url,
            "--ca",
        ])
        .arg(&cp.ca)
        .arg("--token")
        .arg(&token_file)
        .arg("--work-dir")
        .arg(&rogue_work)
        .arg("--cert")
        .arg(certs.join("public-us.pem"))
        .arg("--key")
        .arg(certs.join("public-us.key"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (s, b) = call(
        "POST",
        &format!("{url}/v1/jobs"),
        &cp.admin,
        Some(json!({ "manifest": job("eu-only", "public-eu", "ehr-deid@2026-10", "echo ran") })),
    );
    assert_eq!(s, 201, "{b}");
    let id = b["job"]["id"].as_str().unwrap().to_owned();
    wait_for("public-eu to turn unreachable", 20, || {
        health() == "unreachable"
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        health(),
        "unreachable",
        "the rogue agent's syncs count for nothing"
    );
    let ran: Vec<_> = std::fs::read_dir(rogue_work.join(".state"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        ran.is_empty(),
        "work reached an agent proving another zone: {ran:?}"
    );
    rogue.kill().unwrap();
    let out = rogue.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zone_identity"),
        "the refusal names the reason: {err}"
    );

    // The zone's own agent (a certificate from the control plane) is served and runs the job.
    let work = dir.path().join("eu-work");
    let _agent = start_agent(None, "public-eu", &url, Some(&cp.ca), &token_file, &work);
    wait_for("public-eu to be healthy", 20, || health() == "healthy");
    wait_for("the job to run in public-eu", 30, || {
        call("GET", &format!("{url}/v1/jobs/{id}"), &cp.admin, None).1["job"]["state"]
            == "succeeded"
    });
}

#[test]
fn an_agent_renews_its_short_lived_certificate_and_keeps_its_zone_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    // 2 s certificates: without renewal the agent's syncs fail within seconds and the zone
    // (2 s agent timeout) turns unreachable.
    let cp = start_control_plane(
        &data,
        "127.0.0.1:0",
        &["public-eu"],
        &["--agent-timeout", "2", "--workload-cert-ttl", "2"],
    );
    let url = cp.url.clone();
    let token_file = dir.path().join("eu.token");
    agent_token(&data, "public-eu", &token_file);
    let agent = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "agent",
            "--zone",
            "public-eu",
            "--interval-ms",
            "200",
            "--for-seconds",
            "8",
            "--control-plane",
            &url,
            "--ca",
        ])
        .arg(&cp.ca)
        .arg("--token")
        .arg(&token_file)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let health = || -> String {
        let (_, zones) = cp.call("GET", &format!("{url}/v1/zones"), &cp.admin, None);
        zones
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["name"] == "public-eu")
            .unwrap()["health"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut seen = Vec::new();
    for _ in 0..12 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        seen.push(health());
    }
    let out = agent.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let renewals = err
        .matches("workload certificate for zone public-eu valid until")
        .count();
    assert!(renewals >= 3, "renewed only {renewals} times: {err}");
    assert!(
        seen[4..].iter().all(|h| h == "healthy"),
        "the zone stayed healthy across renewals: {seen:?}\n{err}"
    );
}
