//! `tidegate up --backends fleet`: a zone declared `backend: slurm` runs its jobs through real
//! Slurm (sbatch to the zone's partition), end to end through the API. Runs where Slurm was
//! started by scripts/test.sh (TIDEGATE_TEST_SLURM=1; required under CI=true).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{repo, Proc};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn slurm_ready() -> bool {
    if std::env::var("TIDEGATE_TEST_SLURM").as_deref() == Ok("1") {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but TIDEGATE_TEST_SLURM is not 1: Slurm was not started (scripts/test.sh starts it)");
    }
    eprintln!("skipped: run `bash scripts/slurm-services.sh` as root, then TIDEGATE_TEST_SLURM=1 cargo test -p tidegate --test slurm_zone");
    false
}

/// The example fleet with every zone but the Slurm one run locally (no Kubernetes here).
fn fleet(dir: &Path) -> PathBuf {
    let src = repo().join("examples/fleet");
    let dst = dir.join("fleet");
    for sub in ["", "zones", "policies"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                let mut text = std::fs::read_to_string(&p).unwrap();
                if text.contains("kind: kubernetes") {
                    let start = text.find("backend:").unwrap();
                    let end = text[start..].find("\npools:").map(|i| start + i).unwrap();
                    text.replace_range(start..end, "backend:\n  kind: local");
                }
                std::fs::write(dst.join(sub).join(p.file_name().unwrap()), text).unwrap();
            }
        }
    }
    dst
}

#[test]
fn a_slurm_zone_runs_its_jobs_through_sbatch() {
    if !slurm_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path());
    let data = dir.path().join("cp");
    let _cp = Proc(
        Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args([
                "up",
                "--plain-http",
                "--listen",
                "127.0.0.1:0",
                "--backends",
                "fleet",
                "--data-dir",
            ])
            .arg(&data)
            .arg("--fleet")
            .arg(&fleet)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("server.url").exists() {
        assert!(
            Instant::now() < deadline,
            "tidegate up --backends fleet did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let url = std::fs::read_to_string(data.join("server.url"))
        .unwrap()
        .trim()
        .to_owned();
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let manifest = "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: on-slurm
  team: icu-ml
  labels:
    allowed_execution_zone: hospital-onprem
spec:
  kind: train
  inputs:
    - dataset: ehr-raw@2026-10
  resources:
    gpus: 2
    gpu_types: [H100]
    expected_hours: 0.1
  budget_class: research
  command: [sh, -c, 'echo slurm job $SLURM_JOB_ID on $TIDEGATE_GPUS x $TIDEGATE_GPU_TYPE']
";
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut r = agent
        .post(format!("{url}/v1/jobs"))
        .header("Authorization", format!("Bearer {token}"))
        .send_json(json!({"manifest": manifest}))
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.body_mut().read_json::<Value>().unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    let detail = loop {
        let mut r = agent
            .get(format!("{url}/v1/jobs/{id}"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        let d: Value = r.body_mut().read_json().unwrap();
        if d["job"]["state"] == "succeeded" || d["job"]["state"] == "failed" {
            break d;
        }
        assert!(Instant::now() < deadline, "the Slurm job did not end: {d}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(detail["job"]["state"], "succeeded", "{detail}");
    let running = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to_state"] == "running")
        .unwrap();
    assert!(
        running["reason"]
            .as_str()
            .unwrap()
            .contains("slurm executor in hospital-onprem"),
        "{running}"
    );
    let mut r = agent
        .get(format!("{url}/v1/jobs/{id}/logs"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    let logs: Value = r.body_mut().read_json().unwrap();
    assert!(
        logs["logs"].as_str().unwrap().contains("slurm job")
            && logs["logs"].as_str().unwrap().contains("2 x H100"),
        "{logs}"
    );
}
