//! The local executor: each job is a real process, run as an unprivileged user, with its work
//! directory `<root>/<run>/` (owned by the job's user) and the executor's state in
//! `<root>/.state/<run>/` (mode 0700, owned by the control plane's user), so a restarted control
//! plane finds its runs and the job cannot touch what the executor reads.
//!
//! State of a run (`<root>/.state/<run>/`, nothing of it is writable by the job):
//! - `launch.json`: what was asked (written before the process starts);
//! - `run.json`: the run's record, written before its wrapper starts: the boot it runs in, the
//!   run's cgroup, its start and time limit, the job's user, the launch;
//! - `started.<n>.json`: the wrapper the executor started for launch `n` (its pid and start
//!   time), written once when it has started. A file written once, never replaced, so starting
//!   a run deletes no file (on ext4 without a journal, every recently deleted inode slows the
//!   next file's creation). Unreadable (torn by a power loss), it counts as never written, as
//!   when the control plane died before writing it;
//! - `output.log`: standard output and error of the job (the job holds it open, not its path);
//! - `exit`: the job's exit status, written by the wrapper after the job and everything left in
//!   its cgroup have ended;
//! - `stop`: why the executor stopped it (`cancelled` or `time-limit`), when it did;
//! - `wrapper.<n>`, `claim.<n>`: launch `n` of the run claimed by its wrapper (its pid), or by
//!   the executor (a claim without a wrapper name), see below.
//!
//! Each run is a wrapper shell running as the control plane's user (in a process group of its
//! own) that runs the job in a child: the child enters the run's cgroup and switches to the
//! job's user (`setpriv`) before it runs the job's command, so the job can neither signal the
//! wrapper nor leave the cgroup. The wrapper waits for the job, kills whatever the job left in
//! its cgroup, then records the exit status. Stopping a run (cancel, time limit) sends SIGTERM to
//! every process in its cgroup and, after the grace period, SIGKILL to all of them
//! (`cgroup.kill`). Where there is no usable cgroup v2 (no mount, kernel before 5.14, not allowed
//! to create cgroups), the run is its wrapper's process group, signalled only after checking the
//! wrapper is the process recorded (pid and start time on the same boot).
//!
//! Placing the state directory, its launch already in it (a rename), is the start's commit
//! point: it fails when the directory exists, which makes [`Executor::start`] idempotent across
//! threads and processes. A control plane can die after that and before it records the wrapper:
//! the wrapper names itself and claims its launch (creates `claim.<n>`, failing if it exists) before the job runs, and a
//! later executor that finds no wrapper recorded takes the same claim. Whoever takes it first
//! decides: the wrapper's claim means the job ran, and the wrapper is adopted (checked by its
//! user and arguments); the executor's means it never ran and never will, and launch `n + 1`
//! starts. A run is thus never lost to an interrupted start, and never runs twice.

mod cgroup;
mod procfs;
mod spawn;
mod user;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{lchown, PermissionsExt as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{getegid, geteuid, kill_process_group, Pid, Signal};
use serde::{Deserialize, Serialize};

use self::cgroup::Cgroup;
use self::procfs::ProcId;
use self::spawn::NicedSpawner;
use self::user::Identity;
use crate::{check_run_id, ExecError, Executor, Launch, RunStatus};

/// The wrapper, run as the control plane's user with `$1` = the run's state directory, `$2` =
/// its cgroup directory (empty without one), then the job's argv (prefixed with `setpriv` when
/// the job switches user). SIGTERM to its process group (the fallback without a cgroup) is
/// caught, so it keeps waiting for the job and records its status; the job's subshell and
/// command start with default signal handling.
const WRAPPER: &str = r#"trap 'stop=1' TERM
state=$1 cg=$2 n=$3
shift 3
# Before anything of the job runs, the wrapper names itself and claims this launch; a launch the
# executor already claimed (it found it never started, and started it again) never runs.
# The claim is a file created only if none is there (`set -C`: O_EXCL), a shell built-in step.
printf '%s\n' "$$" >"$state/wrapper.$n" || exit 125
set -C
true 2>/dev/null >"$state/claim.$n" || exit 125
set +C
if [ -n "$cg" ]; then
  (echo 0 >"$cg/cgroup.procs" || { echo "tidegate: cannot enter the run's cgroup $cg" >&2; exit 125; }; exec "$@")
else
  (exec "$@")
fi
code=$?
# Shell built-ins where a run's wrapper would otherwise start a program for each step.
populated() {
  p=0
  while read -r k v; do [ "$k" = populated ] && p=$v; done 2>/dev/null <"$cg/cgroup.events"
  [ "$p" = 1 ]
}
if [ -n "$cg" ]; then
  echo 1 >"$cg/cgroup.kill" 2>/dev/null
  n=0
  while [ "$n" -lt 200 ] && populated; do sleep 0.05; n=$((n+1)); done
fi
# The executor removes the emptied cgroup when it sees the run ended (its watcher, or its next
# look at the run).
# The exit code counts once its line is whole (the executor reads a line without its newline as
# not written yet).
printf '%s\n' "$code" >"$state/exit"
[ -n "$cg" ] || kill -KILL 0
exit "$code"
"#;

/// How much lower a local run's CPU priority is than the control plane's (`nice -n`): on a
/// contended host the control plane (its API, its lease, its scheduler) runs first.
pub const JOB_NICENESS: u8 = 10;

/// The search path a job starts with (nothing of the control plane's own environment).
const JOB_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an executor finds of a run whose wrapper was never recorded.
enum Interrupted {
    /// Its wrapper claimed the launch and runs: now recorded.
    Adopted(RunRecord),
    /// The launch never ran and never will: launch `next` may start.
    NeverRan { next: u32, record: RunRecord },
    /// Its wrapper claimed the launch and is gone.
    Ended(RunRecord),
    /// A record of an earlier version, without launches: nothing tells.
    Unknowable,
}

/// How long a stopped job may take to end after SIGTERM before everything left is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often a run's watcher looks at it.
const TICK: Duration = Duration::from_millis(20);

const LAUNCH: &str = "launch.json";
const RECORD: &str = "run.json";
const LOG: &str = "output.log";
const EXIT: &str = "exit";
const STOP: &str = "stop";

/// How a [`LocalExecutor`] runs its jobs.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The user jobs run as (the zone's `run_as`). A control plane running as root runs jobs as
    /// this user, `nobody` when unset, and never as root; one not running as root runs them as
    /// itself and accepts only its own name here.
    pub run_as: Option<String>,
    /// How long a stopped job (cancel, time limit) may take to end after SIGTERM before
    /// everything left of it is killed.
    pub grace: Duration,
    /// Whether each run gets a cgroup of its own where the system allows one (the default).
    /// Off, each run is its wrapper's process group, as where no cgroup v2 can be used.
    pub cgroups: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            run_as: None,
            grace: KILL_GRACE,
            cgroups: true,
        }
    }
}

/// Why the executor stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    TimeLimit,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Stop::Cancelled => "cancelled",
            Stop::TimeLimit => "time-limit",
        }
    }
}

/// The executor's record of a run (`run.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunRecord {
    /// The boot the run started in: a start time means nothing after a reboot.
    boot_id: String,
    /// When it started, ms since the Unix epoch.
    started_unix_ms: u64,
    /// Its time limit, seconds; 0 is none.
    time_limit_s: u64,
    /// The job's user and group.
    uid: u32,
    gid: u32,
    /// The run's cgroup, when it has one.
    #[serde(default)]
    cgroup: Option<Cgroup>,
    /// The wrapper, once started.
    #[serde(default)]
    wrapper: Option<ProcId>,
    /// Which launch of the run this is: the wrapper claims `claim.<launch>` before the job runs.
    /// Absent in records of an earlier version.
    #[serde(default)]
    launch: Option<u32>,
}

fn this_boot() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(procfs::boot_id)
}

impl RunRecord {
    /// Whether the wrapper recorded is running (not ended, not a zombie).
    fn wrapper_running(&self) -> bool {
        self.boot_id == this_boot() && self.wrapper.is_some_and(|w| w.running())
    }

    /// Whether the wrapper recorded still exists, a zombie too (its pid is then still its own).
    fn wrapper_exists(&self) -> bool {
        self.boot_id == this_boot() && self.wrapper.is_some_and(|w| w.exists())
    }

    fn past_limit(&self) -> bool {
        self.time_limit_s > 0
            && now_ms()
                >= self
                    .started_unix_ms
                    .saturating_add(self.time_limit_s * 1000)
    }
}

fn now_ms() -> u64 {
    tidegate_vocab::Timestamp::now().unix_millis()
}

/// What the executor and a run's watcher share about a run this process watches.
#[derive(Debug, Default)]
struct RunCtl {
    /// The executor was asked to stop it.
    stop: AtomicBool,
}

type Watched = Arc<Mutex<HashMap<String, Arc<RunCtl>>>>;

/// How runs get their lower CPU priority.
#[derive(Debug)]
enum Nice {
    /// Started from a thread of lower priority (Linux): nothing runs in between.
    Thread(NicedSpawner),
    /// Through `nice`, replacing itself with the wrapper.
    Program(PathBuf),
    /// Neither could be had.
    None,
}

/// Runs jobs as processes under one directory (one executor per zone).
#[derive(Debug)]
pub struct LocalExecutor {
    root: PathBuf,
    state_root: PathBuf,
    identity: Identity,
    setpriv: Option<PathBuf>,
    /// How every run (its wrapper and all it starts) gets [`JOB_NICENESS`], so no job on the
    /// control plane's host can starve the control plane of CPU.
    nice: Nice,
    /// The shell that runs the wrapper, by its absolute path: a program named by path (with
    /// `PATH` replaced) lets the standard library start it with `posix_spawn` instead of
    /// forking the whole control plane for every run.
    shell: PathBuf,
    cgroups: Option<Cgroup>,
    grace: Duration,
    watched: Watched,
}

fn setup(reason: impl Into<String>) -> ExecError {
    ExecError::Setup {
        reason: reason.into(),
    }
}

/// Makes sure a directory of the executor's is owned by it and writable by no one else (so no
/// one else can replace what is in it); `private` also closes it to reading.
fn guard_dir(dir: &Path, euid: u32, private: bool) -> Result<(), ExecError> {
    let meta = fs::symlink_metadata(dir).map_err(|e| ExecError::io("-", "checking", dir, e))?;
    if !meta.is_dir() {
        return Err(setup(format!("{} is not a directory", dir.display())));
    }
    let mode = meta.mode() & 0o7777;
    let want = if private { 0o700 } else { mode & !0o022 };
    if mode == want {
        return Ok(());
    }
    if meta.uid() != euid {
        return Err(setup(format!(
            "{} is writable by others (mode {mode:o}) and owned by uid {}, not this process's uid {euid}: jobs could replace the executor's files; make it mode {want:o}",
            dir.display(),
            meta.uid()
        )));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(want))
        .map_err(|e| ExecError::io("-", "restricting", dir, e))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename.
fn write_atomic(job: &str, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ExecError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ExecError::io(job, "writing", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ExecError::io(job, "writing", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| ExecError::io(job, "writing", &path, e))
}

fn write_record(job: &str, state: &Path, r: &RunRecord) -> Result<(), ExecError> {
    let bytes = serde_json::to_vec_pretty(r).map_err(|e| ExecError::Invalid {
        job: job.to_owned(),
        reason: e.to_string(),
    })?;
    write_atomic(job, state, RECORD, &bytes)
}

/// The launch recorded in a run's state; it must name the run.
fn read_launch(job: &str, state: &Path) -> Result<Launch, ExecError> {
    let path = state.join(LAUNCH);
    let bytes = fs::read(&path).map_err(|e| ExecError::io(job, "reading", &path, e))?;
    let launch: Launch = serde_json::from_slice(&bytes).map_err(|e| ExecError::Invalid {
        job: job.to_owned(),
        reason: format!("{} is not a launch: {e}", path.display()),
    })?;
    if launch.job_id != job {
        return Err(ExecError::Invalid {
            job: job.to_owned(),
            reason: format!("{} names run {:?}", path.display(), launch.job_id),
        });
    }
    Ok(launch)
}

/// The name of the file recording the wrapper the executor started for launch `n`.
fn started_name(n: u32) -> String {
    format!("started.{n}.json")
}

/// Writes `dir/name` once: it must not exist. Read back whole or not at all (a reader treats a
/// file that does not parse as never written).
fn write_once(job: &str, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ExecError> {
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ExecError::io(job, "writing", &path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ExecError::io(job, "writing", &path, e))
}

/// The run's record, with the wrapper of its launch when one was recorded started.
fn read_record(job: &str, state: &Path) -> Result<Option<RunRecord>, ExecError> {
    let path = state.join(RECORD);
    let mut record: RunRecord = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ExecError::Invalid {
            job: job.to_owned(),
            reason: format!("{} is not a run record: {e}", path.display()),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ExecError::io(job, "reading", &path, e)),
    };
    if let (None, Some(n)) = (record.wrapper, record.launch) {
        let started = state.join(started_name(n));
        match fs::read(&started) {
            Ok(bytes) => match serde_json::from_slice::<ProcId>(&bytes) {
                Ok(id) => record.wrapper = Some(id),
                Err(e) => {
                    tracing::warn!(job, file = %started.display(), error = %e, "an unreadable record of a started wrapper counts as none");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ExecError::io(job, "reading", &started, e)),
        }
    }
    Ok(Some(record))
}

fn read_exit(job: &str, state: &Path) -> Result<Option<i32>, ExecError> {
    let path = state.join(EXIT);
    match fs::read_to_string(&path) {
        // Being written (the wrapper writes the line in place): not there yet.
        Ok(s) if !s.ends_with('\n') => Ok(None),
        Ok(s) => s
            .trim()
            .parse::<i32>()
            .map(Some)
            .map_err(|_| ExecError::Invalid {
                job: job.to_owned(),
                reason: format!("{} holds {s:?}, not an exit code", path.display()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExecError::io(job, "reading", &path, e)),
    }
}

fn read_stop(state: &Path) -> Option<Stop> {
    match fs::read_to_string(state.join(STOP)).ok()?.trim() {
        "time-limit" => Some(Stop::TimeLimit),
        _ => Some(Stop::Cancelled),
    }
}

/// Records why the run is stopped; the first reason stands. Returns the reason in force.
fn write_stop(state: &Path, why: Stop) -> Stop {
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(state.join(STOP))
        .and_then(|mut f| f.write_all(format!("{}\n", why.as_str()).as_bytes()));
    match created {
        Ok(()) => why,
        Err(_) => read_stop(state).unwrap_or(why),
    }
}

/// The user and group ids jobs configured with `run_as` would run as here (the same decision
/// [`LocalExecutor::with_config`] makes), so a caller can stage files its jobs must reach.
///
/// # Errors
/// [`ExecError::Setup`] when jobs could not run as configured.
pub fn job_ids(run_as: Option<&str>) -> Result<(u32, u32), ExecError> {
    let euid = geteuid().as_raw();
    let (identity, _) = user::decide(
        run_as,
        euid,
        getegid().as_raw(),
        || user::name_of(euid),
        user::lookup,
    )
    .map_err(setup)?;
    Ok((identity.uid, identity.gid))
}

impl LocalExecutor {
    /// An executor keeping its runs under `root` (created if missing), with jobs run as the
    /// default user (see [`LocalConfig::run_as`]) and the default grace period.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ExecError> {
        Self::with_config(root, LocalConfig::default())
    }

    /// An executor keeping its runs under `root` (created if missing), configured by `cfg`.
    /// Fails when jobs could not run as configured: `run_as` is `root` (or has user id 0), names
    /// no user, or names another user while the control plane is not root.
    pub fn with_config(root: impl Into<PathBuf>, cfg: LocalConfig) -> Result<Self, ExecError> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| ExecError::io("-", "creating work directory", &root, e))?;
        let root =
            fs::canonicalize(&root).map_err(|e| ExecError::io("-", "resolving", &root, e))?;
        let euid = geteuid().as_raw();
        let egid = getegid().as_raw();
        let (identity, warning) = user::decide(
            cfg.run_as.as_deref(),
            euid,
            egid,
            || user::name_of(euid),
            user::lookup,
        )
        .map_err(setup)?;
        guard_dir(&root, euid, false)?;
        let state_root = root.join(".state");
        match fs::DirBuilder::new().mode(0o700).create(&state_root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ExecError::io("-", "creating", &state_root, e)),
        }
        guard_dir(&state_root, euid, true)?;
        let owner = fs::symlink_metadata(&state_root)
            .map_err(|e| ExecError::io("-", "checking", &state_root, e))?
            .uid();
        if owner != euid {
            return Err(setup(format!(
                "{} is owned by uid {owner}, not this process's uid {euid}",
                state_root.display()
            )));
        }
        if let Some(w) = warning {
            tracing::warn!(root = %root.display(), "{w}");
        }
        let setpriv = if identity.switch {
            Some(find_program("setpriv").ok_or_else(|| {
                setup(format!(
                    "setpriv (util-linux) is needed to run jobs as {}; install it",
                    identity.name
                ))
            })?)
        } else {
            None
        };
        let nice = match NicedSpawner::new(JOB_NICENESS) {
            Some(t) => Nice::Thread(t),
            None => match find_program("nice") {
                Some(p) => Nice::Program(p),
                None => {
                    tracing::warn!(
                        "no `nice` (coreutils) in /usr/bin, /bin or PATH: runs share the control plane's CPU priority"
                    );
                    Nice::None
                }
            },
        };
        let shell = find_program("sh").ok_or_else(|| {
            setup(
                "no `sh` in /usr/bin, /bin or PATH: the run wrapper needs a POSIX shell"
                    .to_string(),
            )
        })?;
        let cgroups = if cfg.cgroups {
            match cgroup::base() {
                Ok(base) => Some(base),
                Err(why) => {
                    tracing::warn!(
                        root = %root.display(),
                        "no cgroup per run ({why}): each run is its process group, and a job's processes that leave it (setsid) outlive the run"
                    );
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            root,
            state_root,
            identity,
            setpriv,
            nice,
            shell,
            cgroups,
            grace: cfg.grace,
            watched: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Every run this directory holds (started by this process or an earlier one), sorted.
    pub fn runs(&self) -> Result<Vec<String>, ExecError> {
        let mut out = BTreeSet::new();
        for dir in [&self.state_root, &self.root] {
            let entries = fs::read_dir(dir).map_err(|e| ExecError::io("-", "listing", dir, e))?;
            out.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| check_run_id(n).is_ok()),
            );
        }
        Ok(out.into_iter().collect())
    }

    /// The work directory of a run (the job's current directory, owned by its user).
    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.root.join(job)
    }

    /// The executor's state directory of a run (closed to the job).
    pub fn state_dir(&self, job: &str) -> PathBuf {
        self.state_root.join(job)
    }

    /// Whether run `job` of the local executor keeping its runs under `root` (in this process or
    /// another) is still going, from the executor's own record: its wrapper, the process
    /// recorded, has not ended. Reads only; for observers such as demos.
    pub fn run_is_active(root: &Path, job: &str) -> bool {
        check_run_id(job).is_ok()
            && read_record(job, &root.join(".state").join(job))
                .ok()
                .flatten()
                .is_some_and(|r| r.wrapper_running())
    }

    /// The user id jobs run as.
    pub fn job_uid(&self) -> u32 {
        self.identity.uid
    }

    /// Whether each run gets a cgroup of its own (otherwise it is a process group).
    pub fn uses_cgroups(&self) -> bool {
        self.cgroups.is_some()
    }

    fn is_watched(&self, job: &str) -> bool {
        self.watched.lock().is_ok_and(|w| w.contains_key(job))
    }

    fn unwatch(&self, job: &str) {
        if let Ok(mut w) = self.watched.lock() {
            w.remove(job);
        }
    }

    /// Leaves an exit record (127) and a note in the log when a start fails after its commit
    /// point, so the run is final rather than retried.
    fn fail_start(&self, job: &str, state: &Path, err: &ExecError) {
        if let Ok(mut log) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(state.join(LOG))
        {
            let _ = writeln!(log, "tidegate: the run could not start: {err}");
        }
        if let Err(e) = write_atomic(job, state, EXIT, b"127\n") {
            tracing::warn!(job, error = %e, "cannot record a failed start");
        }
        self.unwatch(job);
    }

    /// Starts launch `n` of a run whose state (with its launch) is in place; a launch after the
    /// first follows one that was interrupted before it ran.
    fn launch_run(&self, launch: &Launch, state: &Path, n: u32) -> Result<(), ExecError> {
        let job = launch.job_id.as_str();
        let work = self.job_dir(job);
        match fs::DirBuilder::new().mode(0o700).create(&work) {
            Ok(()) => {}
            // Left by a launch that never ran (the root is writable by no one else).
            Err(e)
                if n > 1
                    && e.kind() == std::io::ErrorKind::AlreadyExists
                    && fs::symlink_metadata(&work).is_ok_and(|m| m.is_dir()) => {}
            Err(e) => return Err(ExecError::io(job, "creating work directory", &work, e)),
        }
        if self.identity.switch {
            // The root is writable by no one else, so `work` is the directory just created.
            lchown(&work, Some(self.identity.uid), Some(self.identity.gid))
                .map_err(|e| ExecError::io(job, "handing over", &work, e))?;
        }
        let log_path = state.join(LOG);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| ExecError::io(job, "opening", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| ExecError::io(job, "opening", &log_path, e))?;
        let cgroup = self.cgroups.as_ref().and_then(|base| {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!("{job}.{}.{}.{seq}", std::process::id(), now_ms());
            match base.create_child(&name) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    tracing::warn!(job, error = %e, base = %base.dir.display(), "no cgroup for the run: it is tracked by its process group");
                    None
                }
            }
        });
        let mut record = RunRecord {
            boot_id: this_boot().to_owned(),
            started_unix_ms: now_ms(),
            time_limit_s: launch.time_limit_s,
            uid: self.identity.uid,
            gid: self.identity.gid,
            cgroup,
            wrapper: None,
            launch: Some(n),
        };
        let drop_cgroup = |r: &RunRecord| {
            if let Some(cg) = &r.cgroup {
                cg.kill_and_remove();
            }
        };
        if let Err(e) = write_record(job, state, &record) {
            drop_cgroup(&record);
            return Err(e);
        }
        let argv = job_argv(launch);
        // `nice` replaces itself with the shell: the wrapper's process (its pid, its arguments
        // from `-c` on) is the same either way.
        let mut cmd = match &self.nice {
            Nice::Program(nice) => {
                let mut c = Command::new(nice);
                c.arg("-n").arg(JOB_NICENESS.to_string()).arg(&self.shell);
                c
            }
            Nice::Thread(_) | Nice::None => Command::new(&self.shell),
        };
        // A job gets none of the control plane's environment (database URLs, cloud keys,
        // tokens): only a fixed search path and locale, its home, and its own variables.
        cmd.env_clear()
            .env("PATH", JOB_PATH)
            .env("HOME", &work)
            .env("LANG", "C.UTF-8");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("tidegate-job")
            .arg(state)
            .arg(record.cgroup.as_ref().map_or(Path::new(""), |c| &c.dir))
            .arg(n.to_string());
        if let Some(setpriv) = &self.setpriv {
            cmd.arg(setpriv)
                .arg(format!("--reuid={}", self.identity.uid))
                .arg(format!("--regid={}", self.identity.gid))
                .arg("--init-groups")
                // No setuid program regains what the switch gave up.
                .arg("--no-new-privs")
                .arg("--")
                .env("USER", &self.identity.name)
                .env("LOGNAME", &self.identity.name);
        }
        cmd.args(&argv)
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env("TIDEGATE_JOB_ID", job)
            .env("TIDEGATE_ZONE", &launch.zone)
            .env("TIDEGATE_POOL", &launch.pool)
            .env("TIDEGATE_GPUS", launch.gpus.to_string())
            .env("TIDEGATE_GPU_TYPE", &launch.gpu_type)
            .env("TIDEGATE_WORKDIR", &work)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            // Its own process group: a Ctrl-C on the control plane does not reach running jobs,
            // and without a cgroup the group is the run.
            .process_group(0);
        let spawned = match &self.nice {
            Nice::Thread(t) => t.spawn(cmd),
            Nice::Program(_) | Nice::None => cmd.spawn(),
        };
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                drop_cgroup(&record);
                return Err(ExecError::io(job, "starting", &work, e));
            }
        };
        let pid = i32::try_from(child.id()).unwrap_or(0);
        let recorded = procfs::identify(pid)
            .ok_or_else(|| {
                ExecError::io(
                    job,
                    "identifying",
                    Path::new(&format!("/proc/{pid}")),
                    std::io::Error::other("the wrapper has no /proc entry"),
                )
            })
            .and_then(|id| {
                record.wrapper = Some(id);
                let bytes = serde_json::to_vec(&id).map_err(|e| ExecError::Invalid {
                    job: job.to_owned(),
                    reason: e.to_string(),
                })?;
                write_once(job, state, &started_name(n), &bytes)
            });
        if let Err(e) = recorded {
            // Untracked, it must not run: end it and everything it started.
            drop_cgroup(&record);
            // The wrapper leads its own group and is not reaped yet, so its pid names that group.
            if let Some(p) = Pid::from_raw(pid).filter(|_| pid > 1) {
                let _ = kill_process_group(p, Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        tracing::info!(
            job,
            zone = %launch.zone,
            pool = %launch.pool,
            pid,
            uid = self.identity.uid,
            cgroup = record.cgroup.is_some(),
            "started local job"
        );
        let ctl = self
            .watched
            .lock()
            .ok()
            .and_then(|w| w.get(job).cloned())
            .unwrap_or_default();
        self.spawn_watch(Watch {
            job: job.to_owned(),
            state: state.to_path_buf(),
            record,
            child: Some(child),
            ctl,
            grace: self.grace,
            watched: self.watched.clone(),
        });
        Ok(())
    }

    /// What became of a run whose wrapper was never recorded (the control plane that started it
    /// died first). The wrapper claims its launch before the job runs; the executor takes the
    /// claim itself when the wrapper has not: whoever takes it first decides, so a launch either
    /// ran (and its wrapper is adopted) or never will (and may be started again).
    fn interrupted(
        &self,
        job: &str,
        state: &Path,
        record: Option<RunRecord>,
    ) -> Result<Interrupted, ExecError> {
        // The record is written before the wrapper starts, so without one no wrapper should
        // exist; but a record lost from a tampered directory must not let launch 1 start
        // twice: it goes through the same claim, as launch 1 with what its launch says.
        let record = match record {
            Some(r) => r,
            None => {
                let time_limit_s = read_launch(job, state).map_or(0, |l| l.time_limit_s);
                RunRecord {
                    boot_id: this_boot().to_owned(),
                    started_unix_ms: now_ms(),
                    time_limit_s,
                    uid: self.identity.uid,
                    gid: self.identity.gid,
                    cgroup: None,
                    wrapper: None,
                    launch: Some(1),
                }
            }
        };
        let Some(n) = record.launch else {
            return Ok(Interrupted::Unknowable);
        };
        let claim = state.join(format!("claim.{n}"));
        // Created only if nothing is there, as the wrapper creates it (a directory left by an
        // earlier version is a claim too).
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&claim)
        {
            Ok(_) => {
                return Ok(Interrupted::NeverRan {
                    next: n.saturating_add(1),
                    record,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ExecError::io(job, "claiming", &claim, e)),
        }
        // The wrapper names itself before it claims: a claim without its name was the
        // executor's (taken by one that died before starting the launch again).
        let named = state.join(format!("wrapper.{n}"));
        let pid = match fs::read_to_string(&named) {
            Ok(s) => s.trim().parse::<i32>().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Interrupted::NeverRan {
                    next: n.saturating_add(1),
                    record,
                })
            }
            Err(e) => return Err(ExecError::io(job, "reading", &named, e)),
        };
        // The process is the wrapper only while it runs as this executor's user with the
        // wrapper's own arguments for this run and launch (a pid alone may have been reused).
        let state_arg = state.to_string_lossy();
        let n_arg = n.to_string();
        let is_wrapper = |pid: i32| {
            procfs::uid_of(pid) == Some(geteuid().as_raw())
                && procfs::cmdline(pid).is_some_and(|a| {
                    a.get(3).map(String::as_str) == Some("tidegate-job")
                        && a.get(4).map(String::as_str) == Some(&*state_arg)
                        && a.get(6).map(String::as_str) == Some(&*n_arg)
                })
        };
        match pid.and_then(|p| procfs::identify(p).filter(|_| is_wrapper(p))) {
            Some(id) if record.boot_id == this_boot() => {
                let mut adopted = record;
                adopted.wrapper = Some(id);
                write_record(job, state, &adopted)?;
                tracing::info!(
                    job,
                    pid = id.pid,
                    "adopted a run whose start was interrupted"
                );
                Ok(Interrupted::Adopted(adopted))
            }
            _ => Ok(Interrupted::Ended(record)),
        }
    }

    /// Starts launch `next` of a run whose earlier launch provably never ran.
    fn relaunch(
        &self,
        job: &str,
        state: &Path,
        next: u32,
        old: &RunRecord,
    ) -> Result<(), ExecError> {
        if let Some(cg) = &old.cgroup {
            cg.kill_and_remove();
        }
        let launch = read_launch(job, state)?;
        if let Ok(mut w) = self.watched.lock() {
            w.insert(job.to_owned(), Arc::new(RunCtl::default()));
        }
        tracing::info!(
            job,
            launch = next,
            "starting again a run whose start was interrupted before it ran"
        );
        self.launch_run(&launch, state, next)
            .inspect_err(|e| self.fail_start(job, state, e))
    }

    /// Starts the watcher thread of a run; where a thread cannot be had, the run stays
    /// unwatched (polls and cancels still work, without the time limit between polls).
    fn spawn_watch(&self, watch: Watch) {
        let job = watch.job.clone();
        if let Err(e) = std::thread::Builder::new()
            .name(format!("run-{job}"))
            .spawn(move || watch.run())
        {
            tracing::warn!(job, error = %e, "cannot watch the run");
            self.unwatch(&job);
        }
    }

    /// The watcher of a run this process did not start (a restarted control plane), started if
    /// there is none yet. A stop recorded before the restart goes on.
    fn ensure_watch(&self, job: &str, state: &Path, record: &RunRecord) -> Option<Arc<RunCtl>> {
        let ctl = {
            let mut w = self.watched.lock().ok()?;
            if let Some(c) = w.get(job) {
                return Some(c.clone());
            }
            let ctl = Arc::new(RunCtl::default());
            if read_stop(state).is_some() {
                ctl.stop.store(true, Ordering::SeqCst);
            }
            w.insert(job.to_owned(), ctl.clone());
            ctl
        };
        self.spawn_watch(Watch {
            job: job.to_owned(),
            state: state.to_path_buf(),
            record: record.clone(),
            child: None,
            ctl: ctl.clone(),
            grace: self.grace,
            watched: self.watched.clone(),
        });
        self.is_watched(job).then_some(ctl)
    }

    fn final_status(job: &str, state: &Path, record: &RunRecord) -> Result<RunStatus, ExecError> {
        Ok(match read_stop(state) {
            Some(Stop::Cancelled) => RunStatus::Cancelled,
            Some(Stop::TimeLimit) => RunStatus::TimedOut {
                limit_s: record.time_limit_s,
            },
            None => match read_exit(job, state)? {
                Some(code) => RunStatus::Exited { code },
                None => RunStatus::Lost {
                    reason: "the run's wrapper ended without recording an exit code (killed from outside, or the machine restarted)".into(),
                },
            },
        })
    }
}

/// The job's argv: its command, or a stand-in that sleeps.
fn job_argv(launch: &Launch) -> Vec<String> {
    if !launch.command.is_empty() {
        return launch.command.clone();
    }
    let secs = launch.stand_in_seconds.clamp(0.0, 86_400.0);
    let clean = |s: &str| s.replace(['"', '$', '`', '\\'], "_");
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo \"tidegate stand-in for {name}: {gpus} x {ty} in {zone}/{pool}, {secs:.2} s\"; sleep {secs:.3}; echo done",
            name = clean(&launch.name),
            gpus = launch.gpus,
            ty = clean(&launch.gpu_type),
            zone = clean(&launch.zone),
            pool = clean(&launch.pool),
        ),
    ]
}

/// Watches one run: reaps its wrapper (when this process started it), enforces its time limit,
/// and carries out a stop: SIGTERM to the run, SIGKILL to everything left after the grace
/// period, until the wrapper has ended; then removes the run's cgroup.
struct Watch {
    job: String,
    state: PathBuf,
    record: RunRecord,
    child: Option<Child>,
    ctl: Arc<RunCtl>,
    grace: Duration,
    watched: Watched,
}

impl Watch {
    fn run(mut self) {
        let mut stopping: Option<Instant> = None;
        let mut signalled = HashSet::new();
        while !self.ended() {
            if stopping.is_none() {
                if self.ctl.stop.load(Ordering::SeqCst) {
                    stopping = Some(Instant::now());
                } else if self.record.past_limit() {
                    let why = write_stop(&self.state, Stop::TimeLimit);
                    tracing::info!(job = %self.job, limit_s = self.record.time_limit_s, reason = why.as_str(), "stopping a run past its time limit");
                    stopping = Some(Instant::now());
                }
            }
            if let Some(since) = stopping {
                if since.elapsed() < self.grace {
                    self.term(&mut signalled);
                } else {
                    self.kill();
                }
            }
            std::thread::sleep(TICK);
        }
        if let Some(cg) = &self.record.cgroup {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !cg.kill_and_remove() && Instant::now() < deadline {
                std::thread::sleep(TICK);
            }
        }
        if let Ok(mut w) = self.watched.lock() {
            if w.get(&self.job).is_some_and(|c| Arc::ptr_eq(c, &self.ctl)) {
                w.remove(&self.job);
            }
        }
    }

    /// Whether the wrapper has ended (reaped here when this process is its parent).
    fn ended(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) => true,
            Some(Ok(None)) => false,
            Some(Err(_)) | None => !self.record.wrapper_running(),
        }
    }

    /// SIGTERM to the run: each process in its cgroup not signalled yet, or once to the
    /// wrapper's process group.
    fn term(&self, signalled: &mut HashSet<i32>) {
        match &self.record.cgroup {
            Some(cg) => cg.term_members(signalled),
            None => {
                if signalled.is_empty() && self.signal_group(Signal::TERM) {
                    signalled.insert(0);
                }
            }
        }
    }

    /// SIGKILL to everything in the run.
    fn kill(&self) {
        match &self.record.cgroup {
            Some(cg) => {
                let _ = cg.kill();
            }
            None => {
                self.signal_group(Signal::KILL);
            }
        }
    }

    /// Signals the wrapper's process group, only while the wrapper is the process recorded
    /// (while it exists, even as a zombie, its pid names its group and no other).
    fn signal_group(&self, sig: Signal) -> bool {
        let Some(pid) = self.record.wrapper.and_then(|w| Pid::from_raw(w.pid)) else {
            return false;
        };
        self.record.wrapper_exists() && kill_process_group(pid, sig).is_ok()
    }
}

impl Executor for LocalExecutor {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn start(&self, launch: &Launch) -> Result<bool, ExecError> {
        let job = launch.job_id.as_str();
        check_run_id(job)?;
        // A work directory without state is a run of an earlier layout: never started again.
        if fs::symlink_metadata(self.job_dir(job)).is_ok() {
            return Ok(false);
        }
        let state = self.state_dir(job);
        if fs::symlink_metadata(&state).is_ok() {
            return Ok(false);
        }
        // The run's state appears whole, its launch in it: a start interrupted at any point
        // leaves either nothing or a launch that can be started again.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = self.state_root.join(format!(
            ".{job}.{}.{}.new",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| ExecError::io(job, "creating run state", &tmp, e))?;
        let placed = serde_json::to_vec_pretty(launch)
            .map_err(|e| ExecError::Invalid {
                job: job.to_owned(),
                reason: e.to_string(),
            })
            .and_then(|text| write_atomic(job, &tmp, LAUNCH, &text))
            .and_then(|()| match fs::rename(&tmp, &state) {
                Ok(()) => Ok(true),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        || e.kind() == std::io::ErrorKind::DirectoryNotEmpty =>
                {
                    Ok(false)
                }
                Err(e) => Err(ExecError::io(job, "creating run state", &state, e)),
            });
        if !matches!(placed, Ok(true)) {
            let _ = fs::remove_dir_all(&tmp);
            return placed;
        }
        if let Ok(mut w) = self.watched.lock() {
            w.insert(job.to_owned(), Arc::new(RunCtl::default()));
        }
        match self.launch_run(launch, &state, 1) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.fail_start(job, &state, &e);
                Err(e)
            }
        }
    }

    fn poll(&self, job: &str) -> Result<RunStatus, ExecError> {
        check_run_id(job)?;
        let state = self.state_dir(job);
        if !state.is_dir() {
            return Ok(if fs::symlink_metadata(self.job_dir(job)).is_ok() {
                RunStatus::Lost {
                    reason: "the run has no executor record (started by an earlier version)".into(),
                }
            } else {
                RunStatus::Unknown
            });
        }
        let record = read_record(job, &state)?;
        let Some(record) = record.filter(|r| r.wrapper.is_some()) else {
            if let Some(code) = read_exit(job, &state)? {
                return Ok(match read_stop(&state) {
                    Some(Stop::Cancelled) => RunStatus::Cancelled,
                    _ => RunStatus::Exited { code },
                });
            }
            if self.is_watched(job) {
                return Ok(RunStatus::Running); // being started by this process
            }
            return match self.interrupted(job, &state, read_record(job, &state)?)? {
                Interrupted::Adopted(r) => {
                    self.ensure_watch(job, &state, &r);
                    Ok(RunStatus::Running)
                }
                Interrupted::NeverRan { next, record } => {
                    if read_stop(&state).is_some() {
                        // Stopped before it ran: it never will.
                        write_atomic(job, &state, EXIT, b"125\n")?;
                        return Ok(RunStatus::Cancelled);
                    }
                    self.relaunch(job, &state, next, &record)?;
                    Ok(RunStatus::Running)
                }
                Interrupted::Ended(r) => {
                    if let Some(cg) = &r.cgroup {
                        cg.kill_and_remove();
                    }
                    Self::final_status(job, &state, &r)
                }
                Interrupted::Unknowable => Ok(RunStatus::Lost {
                    reason: "the run's start was interrupted before its process was recorded"
                        .into(),
                }),
            };
        };
        if record.wrapper_running() {
            self.ensure_watch(job, &state, &record);
            return Ok(RunStatus::Running);
        }
        if let Some(cg) = &record.cgroup {
            cg.kill_and_remove();
        }
        Self::final_status(job, &state, &record)
    }

    fn cancel(&self, job: &str) -> Result<bool, ExecError> {
        check_run_id(job)?;
        let state = self.state_dir(job);
        if !state.is_dir() {
            return Ok(false);
        }
        let record = read_record(job, &state)?;
        let record = match record.filter(|r| r.wrapper.is_some()) {
            Some(r) => r,
            None => {
                if read_exit(job, &state)?.is_some() {
                    return Ok(false);
                }
                if self.is_watched(job) {
                    // Being started by this process: its watcher stops it as soon as it runs.
                    write_stop(&state, Stop::Cancelled);
                    if let Some(ctl) = self.watched.lock().ok().and_then(|w| w.get(job).cloned()) {
                        ctl.stop.store(true, Ordering::SeqCst);
                    }
                    return Ok(true);
                }
                // The control plane died starting it: adopted if it runs, or kept from ever
                // running.
                match self.interrupted(job, &state, read_record(job, &state)?)? {
                    Interrupted::Adopted(r) => r,
                    Interrupted::NeverRan { record, .. } => {
                        write_stop(&state, Stop::Cancelled);
                        if let Some(cg) = &record.cgroup {
                            cg.kill_and_remove();
                        }
                        write_atomic(job, &state, EXIT, b"125\n")?;
                        return Ok(true);
                    }
                    Interrupted::Ended(_) | Interrupted::Unknowable => return Ok(false),
                }
            }
        };
        if !record.wrapper_running() {
            return Ok(false);
        }
        let why = write_stop(&state, Stop::Cancelled);
        match self.ensure_watch(job, &state, &record) {
            Some(ctl) => ctl.stop.store(true, Ordering::SeqCst),
            None => {
                // No watcher thread: stop it here, waiting out the grace period.
                let ctl = Arc::new(RunCtl::default());
                ctl.stop.store(true, Ordering::SeqCst);
                Watch {
                    job: job.to_owned(),
                    state: state.clone(),
                    record: record.clone(),
                    child: None,
                    ctl,
                    grace: self.grace,
                    watched: self.watched.clone(),
                }
                .run();
            }
        }
        tracing::info!(
            job,
            reason = why.as_str(),
            cgroup = record.cgroup.is_some(),
            "cancelled local job"
        );
        Ok(true)
    }

    fn logs(&self, job: &str, max_bytes: u64) -> Result<String, ExecError> {
        check_run_id(job)?;
        let state = self.state_dir(job);
        let path = state.join(LOG);
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if state.is_dir() || fs::symlink_metadata(self.job_dir(job)).is_ok() {
                    Ok(String::new())
                } else {
                    Err(ExecError::Unknown(job.to_owned()))
                };
            }
            Err(e) => return Err(ExecError::io(job, "opening", &path, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| ExecError::io(job, "reading", &path, e))?
            .len();
        let from = len.saturating_sub(max_bytes);
        f.seek(SeekFrom::Start(from))
            .map_err(|e| ExecError::io(job, "reading", &path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| ExecError::io(job, "reading", &path, e))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Runs the wrapper for launch `n` of a run whose state is `state`, with `script` as the job;
    /// its exit code (`None`: it ended its process group, itself included, as it does after a run).
    fn wrapper(state: &Path, n: u32, script: &str) -> Option<i32> {
        Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("tidegate-job")
            .arg(state)
            .arg("")
            .arg(n.to_string())
            .args(["sh", "-c", script])
            .process_group(0)
            .status()
            .unwrap()
            .code()
    }

    #[test]
    fn a_wrapper_runs_only_the_launch_it_claims() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let script = format!("echo ran >> {}", marker.display());
        // The executor took launch 1 (it found it never started): its wrapper refuses it.
        fs::write(dir.path().join("claim.1"), "").unwrap();
        assert_eq!(wrapper(dir.path(), 1, &script), Some(125));
        assert!(!marker.exists(), "a claimed launch ran");
        assert!(
            !dir.path().join(EXIT).exists(),
            "a refused launch recorded an exit"
        );
        // Launch 2 is unclaimed: its wrapper names itself, claims it, runs it once.
        assert_eq!(wrapper(dir.path(), 2, &script), None);
        assert_eq!(fs::read_to_string(&marker).unwrap(), "ran\n");
        assert!(dir.path().join("claim.2").is_file());
        assert!(dir.path().join("wrapper.2").is_file());
        assert_eq!(fs::read_to_string(dir.path().join(EXIT)).unwrap(), "0\n");
        // And never twice.
        assert_eq!(wrapper(dir.path(), 2, &script), Some(125));
        assert_eq!(fs::read_to_string(&marker).unwrap(), "ran\n");
    }

    #[test]
    fn an_exit_code_counts_only_once_its_line_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit("j", dir.path()).unwrap(), None);
        for partial in ["", "1", "12"] {
            fs::write(dir.path().join(EXIT), partial).unwrap();
            assert_eq!(read_exit("j", dir.path()).unwrap(), None, "{partial:?}");
        }
        fs::write(dir.path().join(EXIT), "127\n").unwrap();
        assert_eq!(read_exit("j", dir.path()).unwrap(), Some(127));
        fs::write(dir.path().join(EXIT), "x\n").unwrap();
        assert!(read_exit("j", dir.path()).is_err());
    }
}
