//! A dataset version is decided on only as the evidence ledger recorded its registration: a
//! registry row edited in the data directory (classification, owner, residency), a row the
//! ledger never recorded, or a recorded version whose row was removed is refused, naming the
//! version and the field, by `transfer`, offline `token mint` and the control plane's
//! `POST /v1/tokens/job`; the `dataset.registered` entry records every attribute the row carries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{repo, start_control_plane};
use serde_json::json;

/// The commands' clock: now (a control plane started beside them runs on the system clock, and
/// the token root key must be valid for it).
fn t0() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fleet() -> PathBuf {
    repo().join("examples/fleet")
}

fn tg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("TIDEGATE_DATA_DIR", dir)
        .env("TIDEGATE_NOW", t0().to_string())
        .env("TIDEGATE_FLEET", fleet())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    common::succeeded(&tg(dir, args), args)
}

/// The command is refused; its output with the lines joined (the error box wraps them).
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = tg(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "{args:?} should have been refused: {text}"
    );
    text.lines()
        .map(|l| l.trim_start_matches([' ', '│', '×', '╰', '─', '▶']))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ledger_text(dir: &Path) -> String {
    common::ledger_lines(dir)
        .iter()
        .map(|e| format!("{e}\n"))
        .collect()
}

fn registry(dir: &Path) -> PathBuf {
    dir.join("datasets/registry.jsonl")
}

const RECORDED: &str =
    r#""classification":{"level":"restricted","tags":["phi"],"residency":["US"]}"#;

/// Registers the table at `csv` as raw PHI in the hospital, `phi-y@v1`.
fn register_phi(dir: &Path, csv: &Path) {
    let fleet = fleet();
    ok(
        dir,
        &[
            "dataset",
            "register",
            "phi-y@v1",
            "--in",
            csv.to_str().unwrap(),
            "--zone",
            "hospital-onprem",
            "--owner",
            "clinical-data",
            "--level",
            "restricted",
            "--tag",
            "phi",
            "--residency",
            "US",
            "--fleet",
            fleet.to_str().unwrap(),
        ],
    );
}

/// A data directory with raw PHI registered in the hospital as `phi-y@v1`.
fn registered(dir: &Path) -> String {
    ok(dir, &["token", "keys", "rotate"]);
    let csv = dir.join("phi.csv");
    std::fs::write(&csv, "mrn,dx\n123,sepsis\n").unwrap();
    register_phi(dir, &csv);
    let row = std::fs::read_to_string(registry(dir)).unwrap();
    assert!(row.contains(RECORDED), "{row}");
    row
}

fn transfer(dir: &Path, dataset: &str) -> Output {
    let fleet = fleet();
    tg(
        dir,
        &[
            "transfer",
            dataset,
            "--to",
            "public-eu",
            "--fleet",
            fleet.to_str().unwrap(),
        ],
    )
}

fn mint_args<'a>(zone: &'a str, input: &'a str, fleet: &'a str) -> Vec<&'a str> {
    vec![
        "token",
        "mint",
        "--job",
        "job-y",
        "--zone",
        zone,
        "--input",
        input,
        "--output-prefix",
        "artifacts/job-y/",
        "--fleet",
        fleet,
    ]
}

#[test]
fn a_registry_row_the_ledger_does_not_vouch_for_moves_and_grants_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let row = registered(dir);
    let fleet = fleet();
    let fleet = fleet.to_str().unwrap();
    // As registered: raw PHI does not move to a public zone; a token for the hospital mints.
    assert!(!transfer(dir, "phi-y@v1").status.success());
    ok(
        dir,
        &mint_args("hospital-onprem", "dataset:phi-y@v1", fleet),
    );

    // Each attribute edited in the file: refused, naming the version and the field, and
    // nothing moves or is granted.
    let edits = [
        (
            row.replace(RECORDED, r#""classification":{"level":"public"}"#),
            "classification.level",
        ),
        (
            row.replace(
                RECORDED,
                r#""classification":{"level":"restricted","tags":["phi"]}"#,
            ),
            "classification.residency",
        ),
        (
            row.replace(
                RECORDED,
                r#""classification":{"level":"restricted","residency":["US"]}"#,
            ),
            "classification.tags",
        ),
        (
            row.replace("\"owner\":\"clinical-data\"", "\"owner\":\"public-web\""),
            "owner",
        ),
        (
            row.replace(
                "\"home_zone\":\"hospital-onprem\"",
                "\"home_zone\":\"public-eu\"",
            ),
            "zone",
        ),
    ];
    for (edited, field) in &edits {
        assert_ne!(edited, &row, "{field}");
        std::fs::write(registry(dir), edited).unwrap();
        let what = format!("dataset phi-y@v1: {field}:");
        let out = transfer(dir, "phi-y@v1");
        let text = String::from_utf8_lossy(&out.stderr).replace('\n', " ");
        assert!(!out.status.success(), "{field}: transfer allowed");
        assert!(
            text.contains("phi-y@v1") && text.contains(field),
            "{field}: {text}"
        );
        let out = refused(dir, &mint_args("public-eu", "dataset:phi-y@v1", fleet));
        assert!(out.contains(&what), "{field}: {out}");
    }

    // A row the ledger never recorded (a version added by hand) is refused, naming it.
    let forged = row.replace("\"version\":\"v1\"", "\"version\":\"v2\"");
    std::fs::write(
        registry(dir),
        format!(
            "{row}{}",
            forged.replace(RECORDED, r#""classification":{"level":"public"}"#)
        ),
    )
    .unwrap();
    let out = refused(dir, &mint_args("public-eu", "dataset:phi-y@v2", fleet));
    assert!(
        out.contains("dataset phi-y@v2: registration:")
            && out.contains("no dataset.registered entry"),
        "{out}"
    );
    assert!(!transfer(dir, "phi-y@v2").status.success());

    // A recorded version whose row was removed is refused too (its content's classification
    // would otherwise be forgotten).
    std::fs::write(registry(dir), "").unwrap();
    let out = refused(
        dir,
        &mint_args("hospital-onprem", "dataset:phi-y@v1", fleet),
    );
    assert!(
        out.contains("dataset phi-y@v1: registration:") && out.contains("has no row"),
        "{out}"
    );

    // Nothing was copied, and no token was recorded for the public zone.
    let ledger = ledger_text(dir);
    assert!(!ledger.contains("\"type\":\"dataset.copied\""), "{ledger}");
    assert!(!ledger.contains("zone:public-eu"), "{ledger}");
    assert!(!dir.join("zone-stores/public-eu").join("artifacts").exists());

    // Registering the same data again restores the row exactly as recorded, and it decides
    // again as registered.
    register_phi(dir, &dir.join("phi.csv"));
    // The entry records every attribute the row carries.
    let ledger = ledger_text(dir);
    let entry = ledger
        .lines()
        .find(|l| l.contains("\"type\":\"dataset.registered\""))
        .unwrap();
    for field in [
        "\"owner\":\"clinical-data\"",
        "\"tags\":[\"phi\"]",
        "\"residency\":[\"US\"]",
        "\"level\":\"restricted\"",
        "\"zone\":\"hospital-onprem\"",
    ] {
        assert!(entry.contains(field), "{field} not in {entry}");
    }
    let show = ok(dir, &["dataset", "show", "phi-y@v1"]);
    assert!(show.contains("restricted/phi, residency US"), "{show}");
    assert!(!transfer(dir, "phi-y@v1").status.success());
}

/// Waits for `child` to end within `secs` and returns its output; kills it and fails when it
/// does not end.
fn ends_within(mut child: std::process::Child, secs: u64) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_control_plane_grants_nothing_on_a_registry_row_the_ledger_does_not_vouch_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let row = registered(dir);
    let cp = start_control_plane(dir, "127.0.0.1:0", &[], &[]);
    let url = format!("{}/v1/tokens/job", cp.url);
    let body = |zone: &str| json!({"job": "job-y", "zone": zone, "inputs": ["dataset:phi-y@v1"], "output_prefix": "artifacts/job-y/"});
    let (s, b) = cp.call("POST", &url, &cp.admin, Some(body("hospital-onprem")));
    assert_eq!(s, 201, "{b}");
    // The row relabelled public while the control plane runs.
    std::fs::write(
        registry(dir),
        row.replace(RECORDED, r#""classification":{"level":"public"}"#),
    )
    .unwrap();
    let (s, b) = cp.call("POST", &url, &cp.admin, Some(body("public-eu")));
    assert_eq!(s, 403, "{b}");
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("dataset phi-y@v1: classification.level:"),
        "{b}"
    );
    drop(cp);
    let ledger = ledger_text(dir);
    assert!(!ledger.contains("zone:public-eu"), "{ledger}");

    // And a control plane does not start on it.
    std::fs::remove_file(dir.join("server.url")).ok();
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .arg("--fleet")
        .arg(fleet())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = ends_within(child, 60);
    let text = String::from_utf8_lossy(&out.stderr).replace('\n', " ");
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("phi-y@v1") && text.contains("classification.level"),
        "{text}"
    );
    assert!(!dir.join("server.url").exists());
}
