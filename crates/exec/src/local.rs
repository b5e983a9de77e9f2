//! The local executor: each job is a real process in `<root>/<job-id>/`, whose state lives in
//! files so a restarted control plane finds its jobs again.
//!
//! Layout of a job directory:
//! - `launch.json`: what was asked (written before the process starts);
//! - `pid`: the process id of the job's shell (its process group id too);
//! - `output.log`: standard output and error of the job;
//! - `exit`: the exit code, written by the job's shell when the command ends;
//! - `cancelled`: present when the control plane cancelled the job.
//!
//! Creating the job directory is the start's commit point: `create_dir` fails when it exists,
//! which makes [`Executor::start`] idempotent across threads and processes.

use std::collections::HashMap;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crate::{check_run_id, ExecError, Executor, Launch, RunStatus};

/// The shell wrapper: runs the job's argv, then records its exit code atomically.
const WRAPPER: &str =
    r#""$@" >>output.log 2>&1; code=$?; printf '%s\n' "$code" >exit.tmp && mv exit.tmp exit"#;

/// Runs jobs as processes under one directory (one executor per zone).
#[derive(Debug)]
pub struct LocalExecutor {
    root: PathBuf,
    children: Mutex<HashMap<String, Child>>,
}

impl LocalExecutor {
    /// An executor keeping its jobs under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ExecError> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| ExecError::io("-", "creating work directory", &root, e))?;
        Ok(Self {
            root,
            children: Mutex::new(HashMap::new()),
        })
    }

    /// Every run this directory holds (started by this process or an earlier one), sorted.
    pub fn runs(&self) -> Result<Vec<String>, ExecError> {
        let entries =
            fs::read_dir(&self.root).map_err(|e| ExecError::io("-", "listing", &self.root, e))?;
        let mut out: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_run_id(n).is_ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// The work directory of a job.
    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.root.join(job)
    }

    fn read_exit(&self, job: &str) -> Result<Option<i32>, ExecError> {
        let path = self.job_dir(job).join("exit");
        match fs::read_to_string(&path) {
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

    fn pid(&self, job: &str) -> Result<Option<u32>, ExecError> {
        let path = self.job_dir(job).join("pid");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse::<u32>().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ExecError::io(job, "reading", &path, e)),
        }
    }

    fn cancelled(&self, job: &str) -> bool {
        self.job_dir(job).join("cancelled").exists()
    }

    /// Reaps a child this process started, if it has ended. `Some(code)` when it has.
    fn reap(&self, job: &str) -> Option<i32> {
        let mut children = self.children.lock().ok()?;
        let child = children.get_mut(job)?;
        match child.try_wait() {
            Ok(Some(status)) => {
                children.remove(job);
                Some(status.code().unwrap_or(-1))
            }
            _ => None,
        }
    }
}

/// How long a cancelled job may take to stop after SIGTERM before it is killed.
const KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn signal_group(pid: u32, signal: &str) -> std::io::Result<bool> {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is `Z`.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

impl Executor for LocalExecutor {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn start(&self, launch: &Launch) -> Result<bool, ExecError> {
        let job = launch.job_id.as_str();
        check_run_id(job)?;
        let dir = self.job_dir(job);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(ExecError::io(job, "creating job directory", &dir, e)),
        }
        let launch_path = dir.join("launch.json");
        let text = serde_json::to_vec_pretty(launch).map_err(|e| ExecError::Invalid {
            job: job.to_owned(),
            reason: e.to_string(),
        })?;
        fs::write(&launch_path, text)
            .map_err(|e| ExecError::io(job, "writing", &launch_path, e))?;
        let argv: Vec<String> = if launch.command.is_empty() {
            let secs = launch.stand_in_seconds.clamp(0.0, 86_400.0);
            vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo \"tidegate stand-in for {name}: {gpus} x {ty} in {zone}/{pool}, {secs:.2} s\"; sleep {secs:.3}; echo done",
                    name = launch.name.replace(['"', '$', '`', '\\'], "_"),
                    gpus = launch.gpus,
                    ty = launch.gpu_type.replace(['"', '$', '`', '\\'], "_"),
                    zone = launch.zone.replace(['"', '$', '`', '\\'], "_"),
                    pool = launch.pool.replace(['"', '$', '`', '\\'], "_"),
                ),
            ]
        } else {
            launch.command.clone()
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("tidegate-job")
            .args(&argv)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("TIDEGATE_JOB_ID", job)
            .env("TIDEGATE_ZONE", &launch.zone)
            .env("TIDEGATE_POOL", &launch.pool)
            .env("TIDEGATE_GPUS", launch.gpus.to_string())
            .env("TIDEGATE_GPU_TYPE", &launch.gpu_type)
            .env("TIDEGATE_WORKDIR", &dir)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            // Its own process group: cancel stops the whole job, and a Ctrl-C on the control
            // plane does not reach running jobs.
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            // Leave a record so the job is not silently retried as "never started".
            let _ = fs::write(dir.join("exit"), "127\n");
            ExecError::io(job, "starting", &dir, e)
        })?;
        let pid_path = dir.join("pid");
        fs::write(&pid_path, format!("{}\n", child.id()))
            .map_err(|e| ExecError::io(job, "writing", &pid_path, e))?;
        tracing::info!(job, zone = %launch.zone, pool = %launch.pool, pid = child.id(), "started local job");
        if let Ok(mut children) = self.children.lock() {
            children.insert(job.to_owned(), child);
        }
        Ok(true)
    }

    fn poll(&self, job: &str) -> Result<RunStatus, ExecError> {
        check_run_id(job)?;
        if !self.job_dir(job).exists() {
            return Ok(RunStatus::Unknown);
        }
        let reaped = self.reap(job);
        if let Some(code) = self.read_exit(job)? {
            return Ok(if self.cancelled(job) {
                RunStatus::Cancelled
            } else {
                RunStatus::Exited { code }
            });
        }
        if self.cancelled(job) && reaped.is_some() {
            return Ok(RunStatus::Cancelled);
        }
        if let Some(code) = reaped {
            // The shell ended without writing its record: killed from outside.
            return Ok(RunStatus::Exited { code });
        }
        match self.pid(job)? {
            Some(pid) if alive(pid) => Ok(RunStatus::Running),
            Some(_) => {
                // The exit record may have landed between the two reads.
                if let Some(code) = self.read_exit(job)? {
                    return Ok(RunStatus::Exited { code });
                }
                if self.cancelled(job) {
                    return Ok(RunStatus::Cancelled);
                }
                Ok(RunStatus::Lost {
                    reason: "the job's process ended without recording an exit code".into(),
                })
            }
            None => Ok(RunStatus::Lost {
                reason: "the job directory has no process id (start was interrupted)".into(),
            }),
        }
    }

    fn cancel(&self, job: &str) -> Result<bool, ExecError> {
        check_run_id(job)?;
        let dir = self.job_dir(job);
        if !dir.exists() {
            return Ok(false);
        }
        let marker = dir.join("cancelled");
        fs::write(&marker, b"").map_err(|e| ExecError::io(job, "writing", &marker, e))?;
        let Some(pid) = self.pid(job)? else {
            return Ok(false);
        };
        if !alive(pid) {
            return Ok(false);
        }
        // The job's shell leads its process group: signal the whole group, then give it a grace
        // period before killing whatever is left (in the background: cancel never blocks).
        let ok =
            signal_group(pid, "TERM").map_err(|e| ExecError::io(job, "signalling", &dir, e))?;
        tracing::info!(job, pid, ok, "cancelled local job");
        let child = self.children.lock().ok().and_then(|mut c| c.remove(job));
        let spawned = std::thread::Builder::new()
            .name(format!("cancel-{job}"))
            .spawn(move || {
                let deadline = std::time::Instant::now() + KILL_GRACE;
                let mut child = child;
                loop {
                    let ended = match child.as_mut() {
                        Some(c) => c.try_wait().ok().flatten().is_some(),
                        None => !alive(pid),
                    };
                    if ended {
                        return;
                    }
                    if std::time::Instant::now() >= deadline {
                        let _ = signal_group(pid, "KILL");
                        if let Some(c) = child.as_mut() {
                            let _ = c.wait();
                        }
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(job, error = %e, "cannot watch the cancelled job; it may linger");
        }
        Ok(ok)
    }

    fn logs(&self, job: &str, max_bytes: u64) -> Result<String, ExecError> {
        check_run_id(job)?;
        let path = self.job_dir(job).join("output.log");
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if self.job_dir(job).exists() {
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
