//! Every minted token is a point of action in the evidence ledger, recorded before the token is
//! printed: offline `token mint` records in the data directory's ledger (a job's token in the
//! job's bundle), a ledger that cannot record mints nothing, and while `tidegate up` holds the
//! ledger the token is minted by that control plane through its API, which records it and
//! applies the same holding rule and bounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::start_control_plane;
use serde_json::{json, Value};

fn tg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .env("TIDEGATE_DATA_DIR", dir)
        .env("TIDEGATE_FLEET", common::repo().join("examples/fleet"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    common::succeeded(&tg(dir, args), args)
}

/// Diagnostic text with miette's line wrapping undone.
fn flat(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn ledger_entries(dir: &Path) -> Vec<Value> {
    common::ledger_lines(dir)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

fn issued(dir: &Path) -> Vec<Value> {
    ledger_entries(dir)
        .into_iter()
        .filter(|e| e["action"]["type"] == "token.issued")
        .collect()
}

fn revocation_id(dir: &Path, token: &str) -> String {
    let claims: Value = serde_json::from_str(&ok(dir, &["token", "inspect", token])).unwrap();
    claims["revocation_id"].as_str().unwrap().to_owned()
}

const JOB_TOKEN: [&str; 10] = [
    "token",
    "mint",
    "--job",
    "job-7",
    "--zone",
    "hospital-onprem",
    "--input",
    "dataset:ehr-raw@2026-10",
    "--output-prefix",
    "artifacts/job-7/",
];

#[test]
fn an_offline_mint_is_recorded_before_the_token_is_printed_and_a_job_token_is_in_its_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["token", "keys", "rotate"]);
    let user = ok(
        d,
        &[
            "token",
            "mint",
            "--user",
            "alice",
            "--role",
            "submitter",
            "--team",
            "icu-ml",
        ],
    );
    let user_id = revocation_id(d, user.trim());
    let job = ok(d, &JOB_TOKEN);
    let job_id = revocation_id(d, job.trim());
    let entries = issued(d);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["action"]["token_id"], user_id.as_str());
    let scope = entries[0]["action"]["scope"].to_string();
    assert!(
        scope.contains("role:submitter") && scope.contains("team:icu-ml"),
        "{scope}"
    );
    assert_eq!(entries[0]["actor"], "operator");
    assert_eq!(entries[1]["action"]["token_id"], job_id.as_str());
    let scope = entries[1]["action"]["scope"].to_string();
    for want in [
        "job:job-7",
        "zone:hospital-onprem",
        "read:dataset:ehr-raw@2026-10",
        "write:artifacts/job-7/",
    ] {
        assert!(scope.contains(want), "{want} missing from {scope}");
    }
    // About the job, its zone and its input, so the job's bundle carries the input's
    // provenance too.
    let subjects = entries[1]["subjects"].to_string();
    for want in ["\"job-7\"", "\"hospital-onprem\"", "\"ehr-raw@2026-10\""] {
        assert!(subjects.contains(want), "{want} missing from {subjects}");
    }
    // The job's token issue is about the job: its bundle carries it and verifies.
    let bundle = d.join("job-7.json");
    ok(
        d,
        &[
            "evidence",
            "job",
            "job-7",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.contains(&job_id), "the job's bundle lacks its token");
    assert!(
        !text.contains(&user_id),
        "the job's bundle holds another token"
    );
    let key = d.join("keys/ledger.pub");
    let summary = ok(
        d,
        &[
            "evidence",
            "verify",
            bundle.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(summary.contains("VERIFIED"), "{summary}");
}

#[test]
fn a_mint_the_ledger_cannot_record_prints_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["token", "keys", "rotate"]);
    ok(d, &JOB_TOKEN);
    let before = issued(d).len();
    // The ledger's directory replaced by a file: it cannot be opened, so nothing is minted.
    let ledger = tidegate_ledger::ledger::ledger_dir(d);
    let aside = d.join("ledger-aside");
    std::fs::rename(&ledger, &aside).unwrap();
    std::fs::write(&ledger, b"not a ledger").unwrap();
    let out = tg(d, &JOB_TOKEN);
    assert!(!out.status.success(), "minted with no ledger");
    assert!(out.stdout.is_empty(), "a token was printed: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("evidence ledger"), "{err}");
    std::fs::remove_file(&ledger).unwrap();
    std::fs::rename(&aside, &ledger).unwrap();
    assert_eq!(issued(d).len(), before);
    // Inputs the holding rule refuses mint nothing and record nothing.
    let out = tg(
        d,
        &[
            "token",
            "mint",
            "--job",
            "job-8",
            "--zone",
            "public-eu",
            "--input",
            "dataset:ehr-raw@2026-10",
            "--output-prefix",
            "artifacts/job-8/",
        ],
    );
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert_eq!(issued(d).len(), before);
}

#[test]
fn while_the_control_plane_holds_the_ledger_it_mints_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cp = start_control_plane(d, "127.0.0.1:0", &[], &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(JOB_TOKEN)
        .arg("--data-dir")
        .arg(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("minted by the control plane"),
        "{out:?}"
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // Raw PHI for a public zone: the control plane refuses it as the offline rule does.
    let url = format!("{}/v1/tokens/job", cp.url);
    let (s, b) = cp.call(
        "POST",
        &url,
        &cp.admin,
        Some(
            json!({"job": "job-8", "zone": "public-eu", "inputs": ["dataset:ehr-raw@2026-10"], "output_prefix": "artifacts/job-8/"}),
        ),
    );
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["field"], "inputs", "{b}");
    // More inputs than an entry records: refused, naming the field, never cut.
    let many: Vec<String> = (0..30).map(|i| format!("dataset:d{i}@v1")).collect();
    let (s, b) = cp.call(
        "POST",
        &url,
        &cp.admin,
        Some(
            json!({"job": "job-9", "zone": "hospital-onprem", "inputs": many, "output_prefix": "artifacts/job-9/"}),
        ),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "inputs", "{b}");
    // An output prefix that climbs out, or that no ledger entry can name, is refused (400),
    // never minted, never a failure to record.
    for prefix in [
        "../../",
        "a/../b/",
        "/abs/",
        "x\u{19}y/",
        "a//b/",
        ".hidden/",
    ] {
        let (s, b) = cp.call(
            "POST",
            &url,
            &cp.admin,
            Some(json!({"job": "job-9", "zone": "hospital-onprem", "inputs": [], "output_prefix": prefix})),
        );
        assert_eq!(s, 400, "{prefix:?}: {b}");
        assert_eq!(b["error"]["field"], "output_prefix", "{prefix:?}: {b}");
    }
    // Only an admin mints job tokens.
    let (s, _) = cp.call(
        "POST",
        &url,
        &token,
        Some(
            json!({"job": "job-9", "zone": "hospital-onprem", "inputs": [], "output_prefix": "artifacts/job-9/"}),
        ),
    );
    assert_eq!(s, 401, "a job token minted a token");
    // A revocation while it runs is made by it, in force at once, and recorded.
    let user = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "token", "mint", "--user", "bob", "--role", "auditor", "--team", "icu-ml",
        ])
        .arg("--data-dir")
        .arg(d)
        .output()
        .unwrap();
    assert!(
        user.status.success(),
        "{}",
        String::from_utf8_lossy(&user.stderr)
    );
    let user = String::from_utf8(user.stdout).unwrap().trim().to_owned();
    let zones = format!("{}/v1/zones", cp.url);
    assert_eq!(cp.call("GET", &zones, &user, None).0, 200);
    let user_id = revocation_id(d, &user);
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["token", "keys", "revoke-token", &user_id])
        .arg("--data-dir")
        .arg(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, b) = cp.call("GET", &zones, &user, None);
    assert_eq!(s, 401, "a revoked token still works: {b}");
    drop(cp);
    let revoked = ledger_entries(d)
        .into_iter()
        .filter(|e| {
            e["action"]["change"] == "token-revoked" && e["action"]["key_id"] == user_id.as_str()
        })
        .count();
    assert_eq!(revoked, 1);
    let entries = issued(d);
    let recorded: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"]["scope"].to_string().contains("job:"))
        .collect();
    assert_eq!(recorded.len(), 1, "{entries:?}");
    let scope = recorded[0]["action"]["scope"].to_string();
    assert!(
        scope.contains("job:job-7") && scope.contains("write:artifacts/job-7/"),
        "{scope}"
    );
    let subjects = recorded[0]["subjects"].to_string();
    assert!(subjects.contains("job-7"), "{subjects}");
}

#[test]
fn a_revocation_is_what_the_ledger_recorded_not_what_the_keyring_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["token", "keys", "rotate"]);
    let token = ok(
        d,
        &[
            "token",
            "mint",
            "--user",
            "eve",
            "--role",
            "admin",
            "--team",
            "admin",
            "--minutes",
            "60",
        ],
    )
    .trim()
    .to_owned();
    let id = revocation_id(d, &token);
    let check = [
        "token",
        "check",
        &token,
        "--action",
        "administer",
        "--team",
        "admin",
    ];
    ok(d, &check);
    ok(d, &["token", "keys", "revoke-token", &id]);
    let revoked = tg(d, &check);
    assert!(!revoked.status.success(), "a revoked token was allowed");
    let entries = ledger_entries(d);
    let change = entries
        .iter()
        .rev()
        .find(|e| e["action"]["type"] == "key.changed")
        .unwrap();
    assert_eq!(change["action"]["change"], "token-revoked");
    assert!(change["action"]["keyring"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // The revocation removed from the keyring file: nothing uses that keyring.
    let ring_path = d.join("keys/token/keyring.json");
    let original = std::fs::read_to_string(&ring_path).unwrap();
    let mut ring: Value = serde_json::from_str(&original).unwrap();
    ring["revoked_tokens"] = json!([]);
    std::fs::write(&ring_path, serde_json::to_string_pretty(&ring).unwrap()).unwrap();
    for args in [
        &check[..],
        &["token", "inspect", &token],
        &["token", "keys", "rotate"],
        &[
            "token", "mint", "--user", "x", "--role", "admin", "--team", "admin",
        ],
    ] {
        let out = tg(d, args);
        assert!(!out.status.success(), "{args:?} used an edited keyring");
        assert!(
            flat(&out.stderr).contains("not the one the evidence ledger recorded"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nor does a control plane start on it.
    let up = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d)
        .arg("--fleet")
        .arg(common::repo().join("examples/fleet"))
        .output()
        .unwrap();
    assert!(!up.status.success(), "up started on an edited keyring");
    assert!(
        flat(&up.stderr).contains("not the one the evidence ledger recorded"),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // Restored, the revocation holds again.
    std::fs::write(&ring_path, &original).unwrap();
    assert!(!tg(d, &check).status.success());
    ok(d, &["token", "keys", "rotate"]);
}

#[test]
fn a_running_control_plane_refuses_tokens_once_its_keyring_is_changed_outside_tidegate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cp = start_control_plane(d, "127.0.0.1:0", &[], &[]);
    let url = format!("{}/v1/zones", cp.url);
    let (s, _) = cp.call("GET", &url, &cp.admin, None);
    assert_eq!(s, 200);
    // Its first keyring was recorded at start.
    let ring_path = d.join("keys/token/keyring.json");
    let mut ring: Value =
        serde_json::from_str(&std::fs::read_to_string(&ring_path).unwrap()).unwrap();
    ring["revoked_tokens"] = json!(["00ff"]);
    std::fs::write(&ring_path, serde_json::to_string(&ring).unwrap()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (s, b) = cp.call("GET", &url, &cp.admin, None);
        if s == 503 {
            assert!(
                b["error"]["message"].as_str().unwrap().contains("keyring"),
                "{b}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edited keyring was adopted: {s} {b}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    drop(cp);
    let recorded = ledger_entries(d)
        .into_iter()
        .filter(|e| e["action"]["change"] == "token-keyring-in-force")
        .count();
    assert_eq!(recorded, 1);
}
