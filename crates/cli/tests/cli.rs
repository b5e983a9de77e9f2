//! The `tidegate` binary end to end: check, explain (snapshots on the example fleet), plan,
//! bad input, and the placement benchmark's agreement check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_passes_on_the_example_fleet() {
    let o = tidegate(&["check", "--fleet", "examples/fleet", "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["zones"], 5);
    assert!(v["jobs"].as_u64().unwrap() >= 6);
}

#[test]
fn check_fails_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(fleet.join("zones")).unwrap();
    std::fs::create_dir_all(fleet.join("policies")).unwrap();
    std::fs::write(fleet.join("fleet.yaml"), "name: broken\n").unwrap();
    std::fs::write(
        fleet.join("zones/a.yaml"),
        "name: a\ntier: private-onprem\nprovider: x\nregion: y\njurisdiction: US\nmax_classification: restricted\nbackend: {kind: local}\n",
    )
    .unwrap();
    std::fs::write(
        fleet.join("policies/bad.cedar"),
        "permit (principal, action, resource)\nwhen { principal.nope };\n",
    )
    .unwrap();
    let o = tidegate(&["check", "--fleet", fleet.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("bad.cedar:2:"), "{err}");
}

fn explain_json(job: &str) -> serde_json::Value {
    let o = tidegate(&[
        "explain",
        "--fleet",
        "examples/fleet",
        "--job",
        &format!("examples/jobs/{job}.yaml"),
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn explain_json_shape_and_decisions() {
    let v = explain_json("sepsis-hpo-sweep");
    assert_eq!(v["job"], "sepsis-hpo-sweep");
    assert!(v["policy_hash"].as_str().unwrap().len() == 64);
    let cands = v["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 5);
    for c in cands {
        assert!(
            c["zone"].is_string()
                && c["tier"].is_string()
                && c["allowed"].is_boolean()
                && c["reasons"].is_array()
        );
    }
    let allowed: Vec<&str> = cands
        .iter()
        .filter(|c| c["allowed"] == true)
        .map(|c| c["zone"].as_str().unwrap())
        .collect();
    assert!(
        allowed.contains(&"public-eu") && allowed.contains(&"hospital-onprem"),
        "{allowed:?}"
    );

    // Raw PHI with burst_eligible=true: still refused public, with the reason.
    let v = explain_json("sepsis-hpo-raw");
    let pub_us = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["zone"] == "public-us")
        .unwrap();
    assert_eq!(pub_us["allowed"], false);
    let codes = |c: &serde_json::Value| -> Vec<String> {
        c["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        codes(pub_us).contains(&"baseline.sensitive-stays-private".to_owned()),
        "{pub_us}"
    );
    assert_eq!(v["decision"]["zone"], "hospital-onprem");

    // Export-controlled: only US zones.
    let v = explain_json("scanner-anomaly");
    for c in v["candidates"].as_array().unwrap() {
        if c["zone"] == "public-eu" {
            assert_eq!(c["allowed"], false);
            assert!(
                codes(c).contains(&"constraint:export-control".to_owned()),
                "{c}"
            );
        }
    }
}

#[test]
fn explain_snapshots_on_the_example_fleet() {
    for job in [
        "sepsis-train",
        "sepsis-hpo-sweep",
        "sepsis-hpo-raw",
        "mislabeled-ct",
        "triage-edge",
        "literature-finetune",
        "scanner-anomaly",
        "eu-trial-eval",
    ] {
        let o = tidegate(&[
            "explain",
            "--fleet",
            "examples/fleet",
            "--job",
            &format!("examples/jobs/{job}.yaml"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        insta::assert_snapshot!(format!("explain_{job}"), stdout(&o));
    }
}

#[test]
fn plan_lists_every_job_and_data_moves() {
    let o = tidegate(&[
        "plan",
        "--fleet",
        "examples/fleet",
        "--jobs",
        "examples/jobs",
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 8);
    let lit = jobs
        .iter()
        .find(|j| j["job"] == "literature-finetune")
        .unwrap();
    // Placed on-prem, its input moves there from the private cloud; public zones have no route.
    assert_eq!(lit["decision"], "hospital-onprem/h100", "{lit}");
    assert_eq!(
        lit["data_moves"],
        serde_json::json!(["pubmed-abstracts@2026-06 (95 GB) private-cloud -> hospital-onprem"]),
        "{lit}"
    );
    assert!(lit["refused_zones"]["public-us"]
        .as_str()
        .unwrap()
        .starts_with("constraint egress route"));
    let text = stdout(&tidegate(&[
        "plan",
        "--fleet",
        "examples/fleet",
        "--jobs",
        "examples/jobs",
    ]));
    // Every job has its row, and the raw-PHI sweep's refusal of public zones is explained.
    for job in jobs {
        let name = job["job"].as_str().unwrap();
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "no row for {name}:\n{text}"
        );
    }
    let raw = text
        .split("  sepsis-hpo-raw:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no reasons for sepsis-hpo-raw:\n{text}"));
    let public_us = raw
        .lines()
        .find(|l| l.trim_start().starts_with("public-us:"))
        .unwrap();
    assert!(
        public_us.contains("baseline.sensitive-stays-private"),
        "{public_us}"
    );
}

#[test]
fn explain_bad_job_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(root().join("examples/jobs/sepsis-train.yaml")).unwrap();
    std::fs::write(
        &job,
        text.replace(
            "allowed_execution_zone: private",
            "allowed_execution_zone: atlantis",
        ),
    )
    .unwrap();
    let o = tidegate(&[
        "explain",
        "--fleet",
        "examples/fleet",
        "--job",
        job.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bad.yaml:") && err.contains("atlantis"),
        "{err}"
    );
}

#[test]
fn bench_placement_small_run_agrees_on_both_backlogs() {
    let o = tidegate(&[
        "bench",
        "placement",
        "--jobs",
        "2000",
        "--replicas",
        "2",
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["zones"], 10);
    assert!(v["threads"].as_u64().unwrap() >= 1);
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2, "{v}");
    for c in cases {
        assert_eq!(c["decisions_agree"], true, "{c}");
        // Small enough for the fair way to place the whole backlog.
        assert_eq!(c["fair_whole_backlog"], true, "{c}");
        assert_eq!(c["fair_jobs"], 2000, "{c}");
        assert!(c["decisions_per_sec"].as_f64().unwrap() > 0.0);
        assert!(c["fair_decisions_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(cases[0]["backlog"], "default");
    assert_eq!(cases[1]["backlog"], "distinct");
    // No two jobs of the distinct backlog share what the policies read.
    assert_eq!(cases[1]["distinct_attribute_sets"], 2000, "{v}");
    assert!(cases[0]["distinct_attribute_sets"].as_u64().unwrap() < 2000);
}

#[test]
fn bench_submit_refuses_a_filesystem_where_fsync_does_nothing() {
    if !std::path::Path::new("/dev/shm").is_dir() {
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let o = tidegate(&[
        "bench",
        "submit",
        "--jobs",
        "10",
        "--no-sbatch",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("tmpfs") && err.contains("--dir"), "{err}");
}

#[test]
fn bench_submit_reports_both_rounds_and_what_the_scheduler_did() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let o = tidegate(&[
        "bench",
        "submit",
        "--jobs",
        "40",
        "--clients",
        "4",
        "--no-sbatch",
        "--dir",
        dir.path().to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_ne!(v["filesystem"], "tmpfs");
    let rounds = v["rounds"].as_array().unwrap();
    assert_eq!(rounds[0]["round"], "accept");
    assert_eq!(
        rounds[0]["tidegate"]["states_at_last_ack"]["submitted"], 40,
        "{v}"
    );
    assert_eq!(rounds[1]["round"], "scheduled");
    // The scheduler placed, admitted and ran every job.
    assert_eq!(
        rounds[1]["tidegate"]["states_after"]["succeeded"], 40,
        "{v}"
    );
}

#[test]
fn sim_replays_a_trace_and_reports_the_json_keys() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let mut text = String::from("timestamp,duration,num_gpus,gpu_time,cluster\n");
    for i in 0..400 {
        text.push_str(&format!(
            "2017-10-09 07:{:02}:{:02},{}.0,{},0.0,c\n",
            i / 60,
            i % 60,
            600 + (i * 37) % 5000,
            1 << (i % 5)
        ));
    }
    text.push('\n');
    std::fs::write(&trace, text).unwrap();
    let o = tidegate(&[
        "sim",
        "--trace",
        trace.to_str().unwrap(),
        "--gpus",
        "60",
        "--compare",
        "private-only",
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for key in ["jobs_completed", "mean_wait_s", "mean_jct_s", "public_cost"] {
        assert!(v[key].is_number(), "missing {key}: {v}");
        assert!(
            v["private_only"][key].is_number(),
            "private_only lacks {key}"
        );
    }
    assert_eq!(v["jobs"], 400);
    let done = v["jobs_completed"].as_u64().unwrap() + v["refused"].as_u64().unwrap();
    assert_eq!(done, 400);
    assert_eq!(v["private_only"]["public_cost"], 0.0);
    // A malformed trace names its line.
    std::fs::write(
        &trace,
        "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:00:00,x,1,0,c\n",
    )
    .unwrap();
    let o = tidegate(&["sim", "--trace", trace.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("trace.csv:2: duration"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plan_record_then_evidence_bundle_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let o = tidegate(&[
        "plan",
        "--fleet",
        "examples/fleet",
        "--jobs",
        "examples/jobs",
        "--record",
        "--data-dir",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("recorded 18 entries"), "{}", stderr(&o));
    let o = tidegate(&["audit", "verify", "--data-dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bundle = dir.path().join("b.json");
    let o = tidegate(&[
        "evidence",
        "job",
        "sepsis-hpo-raw",
        "--out",
        bundle.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = data.join("keys/ledger.pub");
    let o = tidegate(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = stdout(&o);
    assert!(
        summary.contains("VERIFIED") && summary.contains("zone hospital-onprem"),
        "{summary}"
    );
    // The bundle carries the policy document whose digest is the policy hash.
    let hash = stdout(&tidegate(&["policy", "hash", "--fleet", "examples/fleet"]));
    let hash = hash.split_whitespace().next().unwrap().to_string();
    assert!(
        summary.contains(&hash) && summary.contains("digest checked"),
        "{summary}"
    );
    // Changing the recorded decision breaks verification.
    let text = std::fs::read_to_string(&bundle).unwrap();
    std::fs::write(
        &bundle,
        text.replacen("hospital-onprem", "hospital-onpren", 1),
    )
    .unwrap();
    let o = tidegate(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}

#[test]
fn sim_replays_a_pollux_workload_on_the_papers_cluster_with_measured_run_times() {
    let trace = root().join("../shared/data/traces/pollux-workload-1.csv");
    if !trace.exists() {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "CI=true but {} is missing",
            trace.display()
        );
        return;
    }
    let o = tidegate(&[
        "sim",
        "--fleet",
        "examples/pollux-64",
        "--gpus",
        "64",
        "--trace",
        trace.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["fleet_gpus"], 64, "{v}");
    assert_eq!(v["jobs_completed"], 160, "{v}");
    assert_eq!(v["refused"], 0, "{v}");
    assert!(v["run_times"].as_str().unwrap().contains("measured"), "{v}");
    assert_eq!(v["published_mean_jct_s"][1][0], "Tiresias", "{v}");
    assert!(v["mean_jct_s"].as_f64().unwrap() > 0.0);
}
