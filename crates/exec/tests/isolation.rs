//! The local executor against hostile jobs, with real processes: a job can forge nothing the
//! executor reads (pid and exit files in its work directory mean nothing), cannot write the
//! executor's state or signal its wrapper, runs as the zone's unprivileged user, is stopped past
//! its time limit, and leaves no process behind when it ends or is cancelled (SIGTERM ignored,
//! background, `setsid` and double-forked children included). A restarted executor finds its
//! runs, their exit codes, and goes on enforcing their limits.
//!
//! Tests that need root (switching users) or a cgroup per run fail under `CI` when they cannot
//! run, and skip with a note elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidegate_exec::{Executor, Launch, LocalConfig, LocalExecutor, RunStatus};

const GRACE: Duration = Duration::from_millis(500);

/// Each run a cgroup of its own, or (the fallback) its wrapper's process group.
const MODES: [Mode; 2] = [Mode::Cgroup, Mode::ProcessGroup];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cgroup,
    ProcessGroup,
}

fn config(run_as: Option<&str>, mode: Mode) -> LocalConfig {
    LocalConfig {
        run_as: run_as.map(str::to_owned),
        grace: GRACE,
        cgroups: mode == Mode::Cgroup,
    }
}

fn executor(root: &Path, mode: Mode) -> LocalExecutor {
    let ex = LocalExecutor::with_config(root, config(None, mode)).unwrap();
    assert!(mode == Mode::Cgroup || !ex.uses_cgroups());
    ex
}

fn launch(id: &str, script: &str, time_limit_s: u64) -> Launch {
    Launch {
        job_id: id.into(),
        name: "hostile".into(),
        team: "t".into(),
        zone: "z".into(),
        pool: "p".into(),
        gpus: 1,
        gpu_type: "H100".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        stand_in_seconds: 0.0,
        time_limit_s,
        env: vec![],
        labels: Default::default(),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether a test that needs `what` may run: under `CI` a missing `what` is a failure.
fn may_run(have: bool, test: &str, what: &str) -> bool {
    if have {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs {what}, and CI is set: it does not skip"
    );
    eprintln!("note: skipping {test}: it needs {what}");
    false
}

fn wait_final(ex: &dyn Executor, id: &str, within: Duration) -> RunStatus {
    let deadline = Instant::now() + within;
    loop {
        let s = ex.poll(id).unwrap();
        if s.is_final() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} did not end within {within:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a file the job writes, and returns its trimmed content.
fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is alive (not a zombie) and its command line holds `marker`.
fn alive_with(pid: i32, marker: &str) -> bool {
    let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true);
    !zombie
        && String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(marker)
}

fn pid_in(path: &Path) -> i32 {
    wait_file(path).parse().unwrap()
}

/// Kills a process the test started, if it lives on after a failed assertion.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn forged_pid_and_exit_files_are_ignored_and_cancel_stops_only_the_run() {
    for mode in MODES {
        forged_files(mode);
    }
}

fn forged_files(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path(), mode);
    // An unrelated process group beside the run, whose id the job writes where the old
    // executor read its pid from.
    let mut victim = Reap(
        Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let vpid = victim.0.id();
    let script = format!(
        "for f in pid exit exit.tmp cancelled launch.json output.log; do rm -f $f; done; \
         echo {vpid} > pid; echo 0 > exit; echo 0 > exit.tmp; echo ready > ready; sleep 30"
    );
    assert!(ex.start(&launch("forger", &script, 0)).unwrap());
    wait_file(&ex.job_dir("forger").join("ready"));
    assert_eq!(
        ex.poll("forger").unwrap(),
        RunStatus::Running,
        "an exit file the job wrote is not its exit status"
    );
    assert!(ex.cancel("forger").unwrap());
    let status = wait_final(&ex, "forger", Duration::from_secs(5));
    assert_eq!(status, RunStatus::Cancelled);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        victim.0.try_wait().unwrap().is_none(),
        "the process group the job named in its pid file was signalled"
    );
    assert!(!ex.cancel("forger").unwrap(), "nothing left to cancel");
}

#[test]
fn every_run_has_a_lower_cpu_priority_than_the_control_plane() {
    // A job busy with CPU on the control plane's host must not starve the control plane: the
    // run (its wrapper and whatever the job starts) is niced from its first instruction.
    let own = rustix::process::getpriority_process(None).unwrap();
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path(), mode);
        ex.start(&launch(
            "niced",
            "cut -d' ' -f19 /proc/self/stat > mine; (cut -d' ' -f19 /proc/self/stat > child) &  wait",
            0,
        ))
        .unwrap();
        assert_eq!(
            wait_final(&ex, "niced", Duration::from_secs(5)),
            RunStatus::Exited { code: 0 }
        );
        let expected = own + i32::from(tidegate_exec::JOB_NICENESS);
        for f in ["mine", "child"] {
            let n: i32 = wait_file(&ex.job_dir("niced").join(f))
                .trim()
                .parse()
                .unwrap();
            assert_eq!(n, expected.min(19), "{mode:?} {f}");
        }
    }
}

#[test]
fn a_job_writing_exit_0_keeps_running_and_its_own_status_counts() {
    for mode in MODES {
        forged_exit(mode);
    }
}

fn forged_exit(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path(), mode);
    ex.start(&launch(
        "liar",
        "echo 0 > exit; echo ready > ready; sleep 0.6; exit 3",
        0,
    ))
    .unwrap();
    wait_file(&ex.job_dir("liar").join("ready"));
    for _ in 0..5 {
        assert_eq!(ex.poll("liar").unwrap(), RunStatus::Running);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        wait_final(&ex, "liar", Duration::from_secs(5)),
        RunStatus::Exited { code: 3 }
    );
}

#[test]
fn a_job_ignoring_sigterm_is_dead_with_all_its_processes_after_the_grace_period() {
    for mode in MODES {
        ignoring_sigterm(mode);
    }
}

fn ignoring_sigterm(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path(), mode);
    ex.start(&launch(
        "stubborn",
        "trap '' TERM; sleep 1001 & echo $! > bg; echo $$ > me; wait",
        0,
    ))
    .unwrap();
    let work = ex.job_dir("stubborn");
    let bg = pid_in(&work.join("bg"));
    let me = pid_in(&work.join("me"));
    assert!(alive_with(bg, "sleep 1001") && alive_with(me, "trap"));
    let asked = Instant::now();
    assert!(ex.cancel("stubborn").unwrap());
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "cancel returns at once"
    );
    assert_eq!(
        wait_final(&ex, "stubborn", GRACE + Duration::from_secs(3)),
        RunStatus::Cancelled
    );
    assert!(
        asked.elapsed() >= GRACE,
        "SIGKILL only after the grace period"
    );
    assert!(
        !alive_with(me, "trap"),
        "the job's shell survived its cancel"
    );
    assert!(
        !alive_with(bg, "sleep 1001"),
        "the job's child survived its cancel"
    );
}

#[test]
fn no_process_of_an_ended_run_survives_background_setsid_or_double_fork() {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path(), Mode::Cgroup);
    if !may_run(
        ex.uses_cgroups(),
        "no_process_of_an_ended_run_survives",
        "a cgroup per run (cgroup v2 with cgroup.kill, as root)",
    ) {
        return;
    }
    ex.start(&launch(
        "escaper",
        "sleep 1011 & echo $! > a; setsid sleep 1012 & echo $! > b; \
         (setsid sleep 1013 & echo $! > c); echo done > ready; exit 0",
        0,
    ))
    .unwrap();
    assert_eq!(
        wait_final(&ex, "escaper", Duration::from_secs(5)),
        RunStatus::Exited { code: 0 }
    );
    let work = ex.job_dir("escaper");
    assert_eq!(wait_file(&work.join("ready")), "done");
    for (file, marker) in [
        ("a", "sleep 1011"),
        ("b", "sleep 1012"),
        ("c", "sleep 1013"),
    ] {
        let pid = pid_in(&work.join(file));
        assert!(
            !alive_with(pid, marker),
            "{marker} (pid {pid}) outlived its run"
        );
    }
    // The same after a cancel.
    ex.start(&launch(
        "escaper-2",
        "(setsid sleep 1014 & echo $! > d); echo ready > ready; sleep 30",
        0,
    ))
    .unwrap();
    let work = ex.job_dir("escaper-2");
    wait_file(&work.join("ready"));
    let d = pid_in(&work.join("d"));
    assert!(alive_with(d, "sleep 1014"));
    assert!(ex.cancel("escaper-2").unwrap());
    assert_eq!(
        wait_final(&ex, "escaper-2", Duration::from_secs(5)),
        RunStatus::Cancelled
    );
    assert!(
        !alive_with(d, "sleep 1014"),
        "a setsid child outlived the cancel"
    );
}

#[test]
fn a_run_past_its_time_limit_gets_sigterm_then_sigkill_and_ends_by_the_limit() {
    for mode in MODES {
        past_the_limit(mode);
    }
}

fn past_the_limit(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path(), mode);
    let started = Instant::now();
    ex.start(&launch(
        "polite",
        "trap 'echo got-term; exit 0' TERM; sleep 100 & wait",
        1,
    ))
    .unwrap();
    ex.start(&launch("stubborn", "trap '' TERM; sleep 100", 1))
        .unwrap();
    ex.start(&launch("quick", "sleep 0.1; exit 4", 1)).unwrap();
    let bound = Duration::from_secs(1) + GRACE + Duration::from_secs(3);
    assert_eq!(
        wait_final(&ex, "polite", bound),
        RunStatus::TimedOut { limit_s: 1 }
    );
    assert!(ex.logs("polite", 4096).unwrap().contains("got-term"));
    assert_eq!(
        wait_final(&ex, "stubborn", bound),
        RunStatus::TimedOut { limit_s: 1 }
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "stopped before its limit");
    assert!(took < bound, "took {took:?}");
    assert_eq!(
        wait_final(&ex, "quick", bound),
        RunStatus::Exited { code: 4 },
        "a run within its limit keeps its own status"
    );
}

fn uid_of(name: &str) -> u32 {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn jobs_run_as_the_zone_user_and_never_as_root() {
    if !may_run(is_root(), "jobs_run_as_the_zone_user", "root") {
        return;
    }
    let nobody = uid_of("nobody");
    let dir = tempfile::tempdir().unwrap();
    for (sub, run_as, mode) in [
        ("named", Some("nobody"), Mode::Cgroup),
        ("default", None, Mode::Cgroup),
        ("group", Some("nobody"), Mode::ProcessGroup),
    ] {
        let ex = LocalExecutor::with_config(dir.path().join(sub), config(run_as, mode)).unwrap();
        assert_eq!(ex.job_uid(), nobody);
        ex.start(&launch("who", "echo uid=$(id -u) euid=$(id -ur)", 0))
            .unwrap();
        assert_eq!(
            wait_final(&ex, "who", Duration::from_secs(5)),
            RunStatus::Exited { code: 0 }
        );
        let logs = ex.logs("who", 4096).unwrap();
        assert!(
            logs.contains(&format!("uid={nobody} euid={nobody}")),
            "{sub}: {logs}"
        );
        let work = fs::metadata(ex.job_dir("who")).unwrap();
        assert_eq!(work.uid(), nobody, "the work directory is the job's");
        let state = fs::metadata(ex.state_dir("who")).unwrap();
        assert_eq!((state.uid(), state.mode() & 0o777), (0, 0o700));
    }
    let err = LocalExecutor::with_config(dir.path().join("r"), config(Some("root"), Mode::Cgroup))
        .unwrap_err();
    assert!(err.to_string().contains("never run as root"), "{err}");
    let err = LocalExecutor::with_config(
        dir.path().join("g"),
        config(Some("no-such-user-x"), Mode::Cgroup),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no such user"), "{err}");
}

#[test]
fn the_job_cannot_write_the_executor_state_nor_signal_its_wrapper() {
    if !may_run(is_root(), "the_job_cannot_write_the_executor_state", "root") {
        return;
    }
    for mode in MODES {
        intruder(mode);
    }
}

fn intruder(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path(), mode);
    let state = ex.state_dir("intruder");
    let s = state.display();
    let script = format!(
        "echo 0 > {s}/exit; echo w=$?; echo cancelled > {s}/stop; echo x > {s}/x; \
         ls {s} >/dev/null; echo ls=$?; kill -KILL $PPID; echo kill=$?; \
         kill -STOP $PPID; echo stop=$?; exit 7"
    );
    ex.start(&launch("intruder", &script, 0)).unwrap();
    assert_eq!(
        wait_final(&ex, "intruder", Duration::from_secs(5)),
        RunStatus::Exited { code: 7 }
    );
    let logs = ex.logs("intruder", 8192).unwrap();
    for what in ["w", "ls", "kill", "stop"] {
        assert!(
            logs.contains(&format!("{what}=")),
            "{what} did not run: {logs}"
        );
        assert!(
            !logs.contains(&format!("{what}=0")),
            "{what} succeeded: {logs}"
        );
    }
    assert!(!state.join("x").exists() && !state.join("stop").exists());
    assert_eq!(fs::read_to_string(state.join("exit")).unwrap().trim(), "7");
}

/// Run by `a_restarted_executor_*` in a process of its own (the control plane before its
/// restart): starts runs and exits at once. Does nothing in a normal test run.
#[test]
fn restart_helper_process() {
    let Some(root) = std::env::var_os("TIDEGATE_EXEC_TEST_RESTART_ROOT") else {
        return;
    };
    let mode = if std::env::var_os("TIDEGATE_EXEC_TEST_RESTART_GROUP").is_some() {
        Mode::ProcessGroup
    } else {
        Mode::Cgroup
    };
    let ex = executor(Path::new(&root), mode);
    assert!(ex
        .start(&launch("survivor", "sleep 1; echo finished; exit 5", 0))
        .unwrap());
    assert!(ex
        .start(&launch("limited", "trap '' TERM; sleep 100", 1))
        .unwrap());
    assert!(ex
        .start(&launch(
            "to-cancel",
            "trap '' TERM; sleep 1021 & echo $! > bg; wait",
            0
        ))
        .unwrap());
}

#[test]
fn a_restarted_executor_finds_its_runs_their_exit_codes_and_limits() {
    for mode in MODES {
        restarted(mode);
    }
}

fn restarted(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Command::new(std::env::current_exe().unwrap());
    first
        .args(["--exact", "restart_helper_process", "--nocapture"])
        .env("TIDEGATE_EXEC_TEST_RESTART_ROOT", dir.path())
        .stdout(Stdio::null());
    if mode == Mode::ProcessGroup {
        first.env("TIDEGATE_EXEC_TEST_RESTART_GROUP", "1");
    }
    assert!(
        first.status().unwrap().success(),
        "the first control plane failed"
    );
    let started = Instant::now();
    let ex = executor(dir.path(), mode);
    assert_eq!(ex.runs().unwrap(), vec!["limited", "survivor", "to-cancel"]);
    assert!(
        !ex.start(&launch("survivor", "echo again", 0)).unwrap(),
        "a run is never started twice"
    );
    assert_eq!(ex.poll("survivor").unwrap(), RunStatus::Running);
    let bg = pid_in(&ex.job_dir("to-cancel").join("bg"));
    assert!(ex.cancel("to-cancel").unwrap());
    assert_eq!(
        wait_final(&ex, "survivor", Duration::from_secs(5)),
        RunStatus::Exited { code: 5 }
    );
    assert!(ex.logs("survivor", 4096).unwrap().contains("finished"));
    assert_eq!(
        wait_final(&ex, "to-cancel", GRACE + Duration::from_secs(3)),
        RunStatus::Cancelled
    );
    assert!(
        !alive_with(bg, "sleep 1021"),
        "the cancelled run left a process"
    );
    assert_eq!(
        wait_final(&ex, "limited", Duration::from_secs(5)),
        RunStatus::TimedOut { limit_s: 1 }
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    // A third instance reads the same final statuses from the state alone.
    let again = executor(dir.path(), mode);
    assert_eq!(
        again.poll("survivor").unwrap(),
        RunStatus::Exited { code: 5 }
    );
    assert_eq!(again.poll("to-cancel").unwrap(), RunStatus::Cancelled);
}

/// A control plane that dies between starting a run's wrapper and recording it: a new executor
/// finds the wrapper by the claim it made, adopts it, reports it running, and cancel reaches all
/// of it — with a cgroup per run and without.
#[test]
fn a_run_whose_wrapper_was_never_recorded_is_adopted_and_cancel_reaches_it() {
    for mode in MODES {
        if mode == Mode::Cgroup
            && !may_run(
                is_root(),
                "a_run_whose_wrapper_was_never_recorded (cgroup)",
                "root (cgroups)",
            )
        {
            continue;
        }
        // The record of its start missing (the crash came first), or torn (a power loss).
        never_recorded(mode, None);
        never_recorded(mode, Some(b"{\"pid\": 12".as_slice()));
    }
}

fn never_recorded(mode: Mode, torn: Option<&[u8]>) {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("orphan/orphan.pid");
    {
        let ex = executor(dir.path(), mode);
        if mode == Mode::Cgroup && !ex.uses_cgroups() {
            assert!(
                std::env::var_os("CI").is_none(),
                "no usable cgroup v2 under CI"
            );
            return;
        }
        let script = "sh -c 'echo $$ > orphan.pid; exec sleep 100' orphan-marker";
        assert!(ex.start(&launch("orphan", script, 0)).unwrap());
    }
    let job = pid_in(&pid_file);
    // Forget the wrapper, as a crash before its start was recorded would leave it.
    let record = dir.path().join(".state/orphan/run.json");
    let started = dir.path().join(".state/orphan/started.1.json");
    assert!(started.is_file(), "{mode:?}: the start was not recorded");
    match torn {
        Some(bytes) => fs::write(&started, bytes).unwrap(),
        None => fs::remove_file(&started).unwrap(),
    }
    let ex = executor(dir.path(), mode);
    assert_eq!(ex.poll("orphan").unwrap(), RunStatus::Running, "{mode:?}");
    let adopted: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&record).unwrap()).unwrap();
    assert!(adopted["wrapper"]["pid"].is_i64(), "{mode:?}: {adopted}");
    assert!(
        alive_with(job, "sleep 100"),
        "{mode:?}: the job was started again or killed"
    );
    assert!(ex.cancel("orphan").unwrap(), "{mode:?}");
    assert_eq!(
        wait_final(&ex, "orphan", Duration::from_secs(10)),
        RunStatus::Cancelled,
        "{mode:?}"
    );
    assert!(
        !alive_with(job, "sleep 100"),
        "{mode:?}: the job outlived its cancel"
    );
}

/// A run whose control plane died before its wrapper started (no record yet, or a record whose
/// launch nobody claimed) never ran: a new executor starts it, exactly once, and the launch that
/// never ran can never run later.
#[test]
fn a_launch_that_never_ran_is_started_once() {
    let dir = tempfile::tempdir().unwrap();
    let mode = Mode::ProcessGroup;
    {
        let ex = executor(dir.path(), mode);
        assert!(ex.start(&launch("seed", "exit 0", 0)).unwrap());
        assert_eq!(
            wait_final(&ex, "seed", Duration::from_secs(10)),
            RunStatus::Exited { code: 0 }
        );
    }
    let seed: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join(".state/seed/run.json")).unwrap())
            .unwrap();
    for (id, with_record) in [("no-record", false), ("unclaimed", true)] {
        let state = dir.path().join(".state").join(id);
        fs::create_dir(&state).unwrap();
        // The interrupted start had made the run's work directory too.
        fs::create_dir(dir.path().join(id)).unwrap();
        fs::write(
            state.join("launch.json"),
            serde_json::to_vec(&launch(id, "echo ran >> ran; exit 3", 0)).unwrap(),
        )
        .unwrap();
        if with_record {
            let mut r = seed.clone();
            r["wrapper"] = serde_json::Value::Null;
            r["cgroup"] = serde_json::Value::Null;
            r["launch"] = 1.into();
            fs::write(state.join("run.json"), serde_json::to_vec(&r).unwrap()).unwrap();
        }
    }
    let ex = executor(dir.path(), mode);
    for id in ["no-record", "unclaimed"] {
        assert_eq!(ex.poll(id).unwrap(), RunStatus::Running, "{id}");
        assert_eq!(
            wait_final(&ex, id, Duration::from_secs(10)),
            RunStatus::Exited { code: 3 },
            "{id}"
        );
    }
    // The unclaimed launch 1 is the executor's now: its wrapper, however late, refuses it.
    assert!(dir.path().join(".state/unclaimed/claim.1").exists());
    let ran = |id: &str| fs::read_to_string(ex.job_dir(id).join("ran")).unwrap();
    for id in ["no-record", "unclaimed"] {
        assert_eq!(ran(id), "ran\n", "{id} ran other than once");
    }
    // A third executor reads the same ends and starts nothing again.
    let again = executor(dir.path(), mode);
    assert_eq!(
        again.poll("unclaimed").unwrap(),
        RunStatus::Exited { code: 3 }
    );
    assert_eq!(ran("unclaimed"), "ran\n");
}

/// A run cancelled while nobody knows whether it started (its start interrupted, no wrapper
/// claimed it) never runs.
#[test]
fn a_launch_that_never_ran_stays_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path(), Mode::ProcessGroup);
    let state = dir.path().join(".state/late");
    fs::create_dir(&state).unwrap();
    fs::write(
        state.join("launch.json"),
        serde_json::to_vec(&launch("late", "echo ran >> ran", 0)).unwrap(),
    )
    .unwrap();
    assert!(ex.cancel("late").unwrap());
    assert_eq!(ex.poll("late").unwrap(), RunStatus::Cancelled);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !ex.job_dir("late").join("ran").exists(),
        "a cancelled launch ran"
    );
}

/// A run whose record is gone while its wrapper runs (a tampered state directory) is still
/// found through its claim and adopted: not reported lost, not started a second time, and
/// cancel reaches it.
#[test]
fn a_running_run_whose_record_is_gone_is_adopted_not_started_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ex = executor(dir.path(), Mode::ProcessGroup);
        let script = "echo $$ >> ran; exec sleep 100";
        assert!(ex.start(&launch("recordless", script, 0)).unwrap());
    }
    let work = dir.path().join("recordless");
    let job = pid_in(&work.join("ran"));
    fs::remove_file(dir.path().join(".state/recordless/run.json")).unwrap();
    let ex = executor(dir.path(), Mode::ProcessGroup);
    assert_eq!(ex.poll("recordless").unwrap(), RunStatus::Running);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ex.poll("recordless").unwrap(), RunStatus::Running);
    assert_eq!(
        fs::read_to_string(work.join("ran"))
            .unwrap()
            .lines()
            .count(),
        1,
        "started a second time"
    );
    assert!(alive_with(job, "sleep 100"));
    assert!(ex.cancel("recordless").unwrap());
    assert_eq!(
        wait_final(&ex, "recordless", Duration::from_secs(10)),
        RunStatus::Cancelled
    );
    assert!(!alive_with(job, "sleep 100"), "the job outlived its cancel");
}
