//! The local executor runs real processes, records exit codes, cancels, and never starts a job
//! twice — also across executor instances (a restarted control plane).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tidegate_exec::{Executor, Launch, LocalExecutor, RunStatus};

fn launch(id: &str, command: &[&str]) -> Launch {
    Launch {
        job_id: id.into(),
        name: "test".into(),
        team: "t".into(),
        zone: "z".into(),
        pool: "p".into(),
        gpus: 2,
        gpu_type: "H100".into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        stand_in_seconds: 0.05,
        time_limit_s: 60,
        env: vec![("EXTRA".into(), "x".into())],
        labels: Default::default(),
    }
}

fn wait_final(ex: &dyn Executor, id: &str) -> RunStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = ex.poll(id).unwrap();
        if s.is_final() {
            return s;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn runs_a_command_and_captures_output_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(dir.path()).unwrap();
    assert!(ex
        .start(&launch(
            "ok-1",
            &[
                "sh",
                "-c",
                "echo gpus=$TIDEGATE_GPUS extra=$EXTRA; echo oops >&2"
            ]
        ))
        .unwrap());
    assert_eq!(wait_final(&ex, "ok-1"), RunStatus::Exited { code: 0 });
    let logs = ex.logs("ok-1", 1 << 20).unwrap();
    assert!(logs.contains("gpus=2 extra=x"), "{logs}");
    assert!(logs.contains("oops"), "{logs}");
    assert!(ex.start(&launch("bad-1", &["sh", "-c", "exit 3"])).unwrap());
    assert_eq!(wait_final(&ex, "bad-1"), RunStatus::Exited { code: 3 });
    assert_eq!(ex.logs("ok-1", 5).unwrap().len(), 5, "tail is bounded");
}

#[test]
fn a_job_without_command_runs_the_stand_in() {
    let dir = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(dir.path()).unwrap();
    ex.start(&launch("stand-in", &[])).unwrap();
    assert_eq!(wait_final(&ex, "stand-in"), RunStatus::Exited { code: 0 });
    assert!(ex
        .logs("stand-in", 4096)
        .unwrap()
        .contains("stand-in for test: 2 x H100 in z/p"));
}

#[test]
fn start_is_idempotent_even_across_instances() {
    let dir = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(dir.path()).unwrap();
    assert!(ex
        .start(&launch(
            "once",
            &["sh", "-c", "echo ran >> count; sleep 0.2"]
        ))
        .unwrap());
    assert!(!ex
        .start(&launch("once", &["sh", "-c", "echo ran >> count"]))
        .unwrap());
    // A second executor on the same directory (a restarted control plane) sees it running.
    let again = LocalExecutor::new(dir.path()).unwrap();
    assert!(!again
        .start(&launch("once", &["sh", "-c", "echo ran >> count"]))
        .unwrap());
    assert_eq!(again.poll("once").unwrap(), RunStatus::Running);
    assert_eq!(wait_final(&again, "once"), RunStatus::Exited { code: 0 });
    let count = std::fs::read_to_string(dir.path().join("once/count")).unwrap();
    assert_eq!(count.lines().count(), 1, "the job ran exactly once");
}

#[test]
fn cancel_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(dir.path()).unwrap();
    ex.start(&launch("long", &["sh", "-c", "sleep 30 & wait"]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ex.poll("long").unwrap(), RunStatus::Running);
    assert!(ex.cancel("long").unwrap());
    assert_eq!(wait_final(&ex, "long"), RunStatus::Cancelled);
    assert!(
        !ex.cancel("long").unwrap(),
        "a second cancel finds nothing running"
    );
}

#[test]
fn unknown_and_invalid_ids() {
    let dir = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(dir.path()).unwrap();
    assert_eq!(ex.poll("nope").unwrap(), RunStatus::Unknown);
    assert!(ex.logs("nope", 10).is_err());
    let err = ex.start(&launch("../escape", &[])).unwrap_err();
    assert!(err.to_string().contains("job id"), "{err}");
}

#[test]
fn a_job_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(dir.path()).unwrap();
    ex.start(&launch("stubborn", &["sh", "-c", "trap '' TERM; sleep 60"]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert!(ex.cancel("stubborn").unwrap(), "cancel returns at once");
    assert!(started.elapsed() < Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(15);
    // The run's wrapper (from the executor's own record) ends only after the whole run has.
    let started_wrapper: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ex.state_dir("stubborn").join("started.1.json")).unwrap(),
    )
    .unwrap();
    let pid = started_wrapper["pid"].as_i64().unwrap();
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok() {
        assert!(Instant::now() < deadline, "still alive 15 s after cancel");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ex.poll("stubborn").unwrap(), RunStatus::Cancelled);
}

#[test]
fn a_job_gets_none_of_the_control_planes_environment() {
    // Cargo sets these in this test's environment, as a control plane's own variables
    // (a database URL, cloud keys) would be set in its.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let dir = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(dir.path()).unwrap();
    assert!(ex.start(&launch("env-1", &["env"])).unwrap());
    assert_eq!(wait_final(&ex, "env-1"), RunStatus::Exited { code: 0 });
    let logs = ex.logs("env-1", 1 << 20).unwrap();
    assert!(
        !logs.contains("CARGO_"),
        "the parent's environment leaked: {logs}"
    );
    for want in [
        "PATH=/usr/local/sbin",
        "TIDEGATE_JOB_ID=env-1",
        "EXTRA=x",
        "HOME=",
    ] {
        assert!(logs.contains(want), "{want} missing: {logs}");
    }
}
