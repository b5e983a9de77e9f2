//! The safety floor through the binary: `check` refuses a fleet that weakens a built-in level or
//! tag with the file and line, and `explain` and `bench placement` honour a fleet policy that
//! reads the job through an entity literal (the benchmark's naive and fast ways agree).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tidegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .current_dir(root())
        .env_remove("TIDEGATE_FLEET")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A copy of the example fleet in a temp dir.
fn fleet_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet");
    copy_dir(&root().join("examples/fleet"), &fleet);
    (dir, fleet)
}

#[test]
fn check_refuses_a_fleet_that_switches_the_floor_off() {
    let (_dir, fleet) = fleet_copy();
    let f = fleet.join("fleet.yaml");
    let text = fs::read_to_string(&f).unwrap();
    let weakened = text.replacen(
        "    - name: restricted\n      private_only: true\n",
        "    - name: restricted\n",
        1,
    );
    assert_ne!(text, weakened);
    fs::write(&f, &weakened).unwrap();
    let line = weakened
        .lines()
        .position(|l| l.contains("- name: restricted"))
        .unwrap()
        + 1;
    let o = tidegate(&["check", "--fleet", fleet.to_str().unwrap()]);
    assert!(!o.status.success(), "a weakened fleet must not pass check");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("fleet.yaml:{line}")) && err.contains("private_only"),
        "{err}"
    );
}

const GENOMICS: &str = "@id(\"genomics.private\")
@reason(\"genomics work stays in private zones\")
forbid (principal, action, resource) when { Job::\"job\".team == \"genomics\" && !resource.private };
";

const GENOMICS_JOB: &str = "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: variant-calling
  team: genomics
  labels:
    burst_eligible: true
spec:
  kind: train
  inputs:
    - dataset: ehr-deid@2026-10
  resources:
    gpus: 8
    gpu_types: [H100]
    expected_hours: 4
";

#[test]
fn explain_honours_a_policy_reading_the_job_through_an_entity_literal() {
    let (dir, fleet) = fleet_copy();
    fs::write(fleet.join("policies/genomics.cedar"), GENOMICS).unwrap();
    let job = dir.path().join("variant-calling.yaml");
    fs::write(&job, GENOMICS_JOB).unwrap();
    let o = tidegate(&[
        "explain",
        "--fleet",
        fleet.to_str().unwrap(),
        "--job",
        job.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for c in v["candidates"].as_array().unwrap() {
        if c["tier"] == "public" {
            assert_eq!(c["allowed"], false, "{c}");
            assert!(
                c["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["code"] == "genomics.private"
                        && r["text"]
                            .as_str()
                            .unwrap()
                            .starts_with("forbidden by genomics.private")),
                "{c}"
            );
        }
    }
    let zone = v["decision"]["zone"].as_str().unwrap();
    assert!(
        zone == "hospital-onprem" || zone == "private-cloud",
        "{zone}"
    );
}

#[test]
fn bench_placement_agrees_with_a_policy_reading_an_entity_literal() {
    let (_dir, fleet) = fleet_copy();
    fs::write(fleet.join("policies/genomics.cedar"), GENOMICS).unwrap();
    let o = tidegate(&[
        "bench",
        "placement",
        "--fleet",
        fleet.to_str().unwrap(),
        "--jobs",
        "2000",
        "--replicas",
        "1",
        "--output",
        "json",
    ]);
    // The benchmark exits non-zero when the reused and fair ways disagree.
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for c in v["cases"].as_array().unwrap() {
        assert_eq!(c["decisions_agree"], true, "{c}");
    }
}
