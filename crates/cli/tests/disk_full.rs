//! The data directory's disk filling up under a running control plane (the process's file size
//! limit lowered with `prlimit` (the soft limit, raised again later), so every write that would grow a file past it fails with
//! EFBIG as on a full disk): submissions are refused with 503 `unavailable`, naming no path,
//! `/healthz` reports the component that cannot write, nothing acknowledged is lost, and once
//! there is room again the same control plane accepts work without a restart and its ledger
//! verifies. Needs `prlimit` (util-linux); skips without it, except under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, wait_for, Proc};
use serde_json::{json, Value};

fn prlimit(pid: u32, fsize: &str) -> bool {
    Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={fsize}")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The largest file under `dir`, in bytes.
fn largest(dir: &std::path::Path) -> u64 {
    let mut max = 0;
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let m = e.metadata().unwrap();
        max = max.max(if m.is_dir() {
            largest(&e.path())
        } else {
            m.len()
        });
    }
    max
}

#[test]
fn a_full_disk_is_503_healthz_names_it_nothing_is_lost_and_room_again_resumes() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but prlimit is missing"
        );
        eprintln!("skipped: needs prlimit (util-linux)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    std::fs::create_dir_all(&data).unwrap();
    // SIGXFSZ ignored (as a server should run under a file size limit), so a write past the
    // limit fails with EFBIG instead of killing the process.
    let proc = Proc(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; exec '{}' up --plain-http --listen 127.0.0.1:0 --data-dir '{}' --fleet '{}'",
                env!("CARGO_BIN_EXE_tidegate"),
                data.display(),
                repo().join("examples/fleet").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the control plane", 60, || data.join("server.url").exists());
    std::thread::sleep(Duration::from_millis(300));
    let url = std::fs::read_to_string(data.join("server.url"))
        .unwrap()
        .trim()
        .to_owned();
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let call = |m: &str, path: &str, body: Option<Value>| {
        common::call(m, &format!("{url}{path}"), &admin, body)
    };
    let submit = |i: usize| {
        call(
            "POST",
            "/v1/jobs",
            Some(json!({"manifest": common::train_job(&format!("fill-{i}"), "sleep 0.1")})),
        )
    };
    let mut acknowledged = Vec::new();
    for i in 0..3 {
        let (s, b) = submit(i);
        assert_eq!(s, 201, "{b}");
        acknowledged.push(b["job"]["id"].as_str().unwrap().to_owned());
    }
    // No room past what the ledger's segment holds now: the next entry cannot be written (the
    // ledger is written first, so a submission is refused before the store is touched).
    let pid = proc.0.id();
    let limit = largest(&data.join("ledger"));
    assert!(
        prlimit(pid, &format!("{limit}:unlimited")),
        "prlimit failed"
    );
    let mut refused = None;
    for i in 3..400 {
        let (s, b) = submit(i);
        match s {
            201 => acknowledged.push(b["job"]["id"].as_str().unwrap().to_owned()),
            503 => {
                refused = Some(b);
                break;
            }
            other => panic!("a full disk answered {other}: {b}"),
        }
    }
    let refused = refused.expect("the disk never filled");
    assert!(
        acknowledged.len() <= 3,
        "submissions were acknowledged with no room for their entry: {acknowledged:?}"
    );
    assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains(&*data.to_string_lossy()) && !message.contains('/'),
        "a path leaked: {message}"
    );
    let (s, health) = common::call("GET", &format!("{url}/healthz"), "", None);
    assert_eq!(s, 503, "{health}");
    assert!(health.to_string().contains("ledger"), "{health}");
    assert!(
        !health.to_string().contains(&*data.to_string_lossy()),
        "{health}"
    );
    // Room again: the same process accepts work, without a restart.
    assert!(prlimit(pid, "unlimited:unlimited"), "prlimit failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, b) = submit(1000);
        if s == 201 {
            acknowledged.push(b["job"]["id"].as_str().unwrap().to_owned());
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {s} {b}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Nothing acknowledged was lost.
    for id in &acknowledged {
        let (s, b) = call("GET", &format!("/v1/jobs/{id}"), None);
        assert_eq!(s, 200, "acknowledged job {id} is missing: {b}");
    }
    drop(proc);
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
