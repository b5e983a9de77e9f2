//! The Slurm executor against a real Slurm (scripts/slurm-services.sh, started by
//! scripts/test.sh with CI=true or TIDEGATE_SERVICES=1, which exports TIDEGATE_TEST_SLURM=1):
//! success with output and exit code 0, a failing exit code, cancel, over-asking GPUs and an
//! unknown GPU type (NoCapacity), an unknown partition (Refused), idempotent start across
//! executor instances, and recovery of an interrupted submission through `squeue`.
//!
//! The test cluster: partitions `gpu` (default) and `burst`, one node with `gpu:h100:8`. Without
//! TIDEGATE_TEST_SLURM=1 each test prints how to run it and passes, except under CI=true, where
//! a missing Slurm fails it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidegate_exec::{ExecError, Executor as _, Launch, RunStatus};
use tidegate_slurm::{SlurmConfig, SlurmExecutor};

fn slurm_or_skip(test: &str) -> bool {
    if std::env::var("TIDEGATE_TEST_SLURM").as_deref() == Ok("1") {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: CI=true but TIDEGATE_TEST_SLURM is not 1: Slurm was not started (scripts/test.sh starts it)");
    }
    eprintln!("{test}: skipped; run `bash scripts/slurm-services.sh` as root, then TIDEGATE_TEST_SLURM=1 cargo test -p tidegate-slurm");
    false
}

fn executor(dir: &tempfile::TempDir, partition: &str) -> SlurmExecutor {
    SlurmExecutor::new(
        SlurmConfig::new(dir.path(), partition),
        Arc::new(tidegate_render::slurm::script),
    )
    .unwrap()
}

fn state_dir() -> tempfile::TempDir {
    // Under /tmp so slurmd (same host) can write the job's output there.
    tempfile::Builder::new()
        .prefix("tidegate-slurm-test-")
        .tempdir_in("/tmp")
        .unwrap()
}

fn launch(id: &str, gpus: u32, gpu_type: &str, cmd: &[&str]) -> Launch {
    Launch {
        job_id: id.into(),
        name: format!("t-{id}"),
        team: "icu-ml".into(),
        zone: "hospital-onprem".into(),
        pool: "h100".into(),
        gpus,
        gpu_type: gpu_type.into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        stand_in_seconds: 0.0,
        time_limit_s: 300,
        env: vec![("GREETING".into(), "hello from slurm".into())],
        labels: Default::default(),
    }
}

fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), t % 1_000_000_000)
}

fn wait_final(ex: &SlurmExecutor, id: &str, limit: Duration) -> RunStatus {
    let t = Instant::now();
    loop {
        let s = ex.poll(id).unwrap();
        if s.is_final() {
            return s;
        }
        assert!(t.elapsed() < limit, "job {id} still {s:?} after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn real_slurm_job_succeeds_with_output_and_exit_code_zero() {
    if !slurm_or_skip("real_slurm_job_succeeds_with_output_and_exit_code_zero") {
        return;
    }
    let dir = state_dir();
    let ex = executor(&dir, "gpu");
    let id = unique("ok");
    let cmd = ["sh", "-c", "echo \"$GREETING: $TIDEGATE_JOB_ID $TIDEGATE_GPUS x $TIDEGATE_GPU_TYPE in $TIDEGATE_ZONE/$TIDEGATE_POOL\""];
    assert!(ex.start(&launch(&id, 2, "H100", &cmd)).unwrap());
    assert_eq!(
        wait_final(&ex, &id, Duration::from_secs(30)),
        RunStatus::Exited { code: 0 }
    );
    let logs = ex.logs(&id, 4096).unwrap();
    assert!(
        logs.contains(&format!(
            "hello from slurm: {id} 2 x H100 in hospital-onprem/h100"
        )),
        "logs: {logs:?}"
    );
}

#[test]
fn real_slurm_failure_keeps_its_exit_code() {
    if !slurm_or_skip("real_slurm_failure_keeps_its_exit_code") {
        return;
    }
    let dir = state_dir();
    let ex = executor(&dir, "burst");
    let id = unique("fail");
    assert!(ex
        .start(&launch(
            &id,
            1,
            "H100",
            &["sh", "-c", "echo failing; exit 7"]
        ))
        .unwrap());
    assert_eq!(
        wait_final(&ex, &id, Duration::from_secs(30)),
        RunStatus::Exited { code: 7 }
    );
    assert!(ex.logs(&id, 100).unwrap().contains("failing"));
}

#[test]
fn real_slurm_cancel_stops_a_running_job() {
    if !slurm_or_skip("real_slurm_cancel_stops_a_running_job") {
        return;
    }
    let dir = state_dir();
    let ex = executor(&dir, "gpu");
    let id = unique("cancel");
    assert!(ex
        .start(&launch(&id, 1, "H100", &["sleep", "120"]))
        .unwrap());
    assert_eq!(ex.poll(&id).unwrap(), RunStatus::Running);
    assert!(ex.cancel(&id).unwrap());
    assert_eq!(
        wait_final(&ex, &id, Duration::from_secs(20)),
        RunStatus::Cancelled
    );
    assert!(
        !ex.cancel(&id).unwrap(),
        "an ended job is not cancelled again"
    );
}

#[test]
fn real_slurm_over_asking_gpus_or_an_unknown_type_is_no_capacity() {
    if !slurm_or_skip("real_slurm_over_asking_gpus_or_an_unknown_type_is_no_capacity") {
        return;
    }
    let dir = state_dir();
    let ex = executor(&dir, "gpu");
    for (gpus, ty) in [(9, "H100"), (1, "A100")] {
        let id = unique("nocap");
        match ex.start(&launch(&id, gpus, ty, &["true"])) {
            Err(ExecError::NoCapacity { reason, .. }) => {
                assert!(
                    reason.contains("Requested node configuration is not available"),
                    "{reason}"
                )
            }
            other => panic!("{gpus} x {ty}: {other:?}"),
        }
        assert_eq!(ex.poll(&id).unwrap(), RunStatus::Unknown);
    }
}

#[test]
fn real_slurm_unknown_partition_is_refused() {
    if !slurm_or_skip("real_slurm_unknown_partition_is_refused") {
        return;
    }
    let dir = state_dir();
    let ex = executor(&dir, "no-such-partition");
    match ex.start(&launch(&unique("refused"), 1, "H100", &["true"])) {
        Err(ExecError::Refused { reason, .. }) => {
            assert!(reason.to_lowercase().contains("partition"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

fn squeue_count(comment: &str) -> usize {
    let out = std::process::Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%k"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == comment)
        .count()
}

#[test]
fn real_slurm_start_is_idempotent_across_executor_instances() {
    if !slurm_or_skip("real_slurm_start_is_idempotent_across_executor_instances") {
        return;
    }
    let dir = state_dir();
    let ex = executor(&dir, "gpu");
    let id = unique("idem");
    let l = launch(&id, 1, "H100", &["sleep", "2"]);
    assert!(ex.start(&l).unwrap());
    assert!(!ex.start(&l).unwrap(), "second start submits nothing");
    let restarted = executor(&dir, "gpu");
    assert!(
        !restarted.start(&l).unwrap(),
        "a new executor on the same state dir finds the job"
    );
    assert_eq!(restarted.poll(&id).unwrap(), RunStatus::Running);
    assert_eq!(
        squeue_count(&format!("tidegate:{id}")),
        1,
        "exactly one Slurm job"
    );
    // Interrupted after sbatch answered, before the id was recorded: found again by comment.
    let job_dir = dir.path().join(&id);
    let sid = std::fs::read_to_string(job_dir.join("slurm_id")).unwrap();
    std::fs::remove_file(job_dir.join("slurm_id")).unwrap();
    std::fs::write(job_dir.join("submitting"), b"").unwrap();
    let again = executor(&dir, "gpu");
    assert!(!again.start(&l).unwrap());
    assert_eq!(again.slurm_id(&id).unwrap().unwrap(), sid.trim());
    assert_eq!(
        squeue_count(&format!("tidegate:{id}")),
        1,
        "still exactly one Slurm job"
    );
    assert_eq!(
        wait_final(&again, &id, Duration::from_secs(30)),
        RunStatus::Exited { code: 0 }
    );
}
