//! [`SlurmExecutor`]: runs tidegate jobs as Slurm batch jobs.
//!
//! State lives in files under the executor's state dir, one directory per tidegate job:
//! - `lock`: an advisory lock (`flock`) held while starting, so two threads or two control-plane
//!   processes starting the same job serialise;
//! - `launch.json` and `job.sh`: what was asked and the exact script submitted (rendered by the
//!   [`Renderer`] the executor was given);
//! - `submitting`: written before `sbatch` runs and removed once its answer is known. If it is
//!   still there, an earlier start was interrupted mid-submission: Slurm may or may not hold the
//!   job, so the next start (or poll) looks it up by its `--comment=tidegate:<job id>` in
//!   `squeue` before deciding to submit;
//! - `slurm_id`: the Slurm job id, written atomically (temporary file + rename) as soon as
//!   `sbatch --parsable` answers. Its presence makes [`Executor::start`] return `Ok(false)`: a
//!   restarted control plane, or a second executor on the same state dir, never submits twice.
//!   Files are not fsynced (a submission costs a few milliseconds, like sbatch itself); instead,
//!   a start that finds the job's directory already there but no id asks `squeue` for the
//!   comment first, which also covers files lost in a crash. `squeue` knows finished jobs for
//!   `MinJobAge` (300 s by default): that bounds how late a lost id can still be recovered;
//! - `output.log` and `exit`: the job's output and exit code (written by the job itself);
//! - `cancelled`: present when the control plane cancelled the job;
//! - `final.json`: the job's final status once known, so polls of ended jobs cost no Slurm call.
//!
//! Status comes from Slurm: `scontrol show job -o ID` while slurmctld remembers the job
//! (`MinJobAge`), then `sacct -c` (the jobcomp record; no slurmdbd needed), then the job's own
//! `exit` file. How states map is documented in [`crate::status`].
//!
//! sbatch rejections: "Requested node configuration is not available" (more GPUs than any node
//! has, an unknown GPU type), an invalid GRES, a partition unavailable now, a full queue or an
//! unreachable controller become [`ExecError::NoCapacity`], so the scheduler fails over to
//! another option; every other rejection (unknown partition or account, a policy limit) becomes
//! [`ExecError::Refused`] with Slurm's message. A command that could not be run at all, or a
//! `squeue`/`scontrol` that failed for another reason than an unknown job, is [`ExecError::Io`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tidegate_exec::{check_run_id, ExecError, Executor, Launch, RunStatus};
use tidegate_model::{Backend, SlurmPlacement};

use crate::runner::{CmdOutput, Runner, SystemRunner};
use crate::status::{map_state, parse_sacct, parse_sbatch_id, JobRecord};

/// Turns a launch into the sbatch script the executor submits: the launch, where it is
/// submitted (resolved from the executor's configuration) and the job's directory in, the
/// script's text out (`tidegate_render::slurm::script` renders it for `tidegate render` too).
///
/// The executor relies on what the script says: it must carry `#SBATCH --comment=tidegate:<job
/// id>` (the executor finds an interrupted submission by it, and refuses a script without it),
/// name the job with `#SBATCH --job-name=` (the `squeue` lookup filters on it), work in the
/// job's directory with its output in `output.log` there, and leave the exit code in `exit`.
pub type Renderer =
    Arc<dyn Fn(&Launch, &SlurmPlacement, &Path) -> Result<String, ExecError> + Send + Sync>;

/// The comment that marks a Slurm job as tidegate job `job_id`.
pub fn comment(job_id: &str) -> String {
    format!("tidegate:{job_id}")
}

/// The value of a script's `#SBATCH --<key>=` directive, if it has one.
fn directive<'s>(script: &'s str, key: &str) -> Option<&'s str> {
    script.lines().find_map(|l| {
        l.strip_prefix("#SBATCH --")
            .and_then(|d| d.strip_prefix(key))
            .and_then(|d| d.strip_prefix('='))
    })
}

/// How a zone maps onto a Slurm cluster, and where the executor keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmConfig {
    /// Directory for per-job state, scripts and output (must be visible to compute nodes).
    pub state_dir: PathBuf,
    /// Partition for the zone's jobs.
    pub partition: String,
    /// Per-pool partitions overriding `partition` (pool name → partition).
    pub pool_partitions: BTreeMap<String, String>,
    /// Account to charge.
    pub account: Option<String>,
    /// Without `account`, charge the job's team (`--account=<team>`).
    pub account_from_team: bool,
    /// Cluster name (`--clusters`/`-M`; federated Slurm with slurmdbd).
    pub cluster: Option<String>,
    /// Directory holding `sbatch`, `squeue`, `scontrol`, `sacct`, `scancel` (default: `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// Longest any one Slurm command may take.
    pub command_timeout: Duration,
}

impl SlurmConfig {
    /// Jobs go to `partition`, state under `state_dir`; no account, programs from `PATH`, 30 s
    /// per command.
    pub fn new(state_dir: impl Into<PathBuf>, partition: impl Into<String>) -> Self {
        Self {
            state_dir: state_dir.into(),
            partition: partition.into(),
            pool_partitions: BTreeMap::new(),
            account: None,
            account_from_team: false,
            cluster: None,
            bin_dir: None,
            command_timeout: Duration::from_secs(30),
        }
    }

    /// The configuration a fleet's `backend: {kind: slurm, ...}` declares: its partition,
    /// cluster and account; without an account, the job's team is charged (the model's
    /// documented default). `None` for another backend kind.
    pub fn from_backend(backend: &Backend, state_dir: impl Into<PathBuf>) -> Option<Self> {
        match backend {
            Backend::Slurm {
                partition,
                cluster,
                account,
            } => {
                let mut c = Self::new(state_dir, partition.clone());
                c.cluster = cluster.clone();
                c.account = account.clone();
                c.account_from_team = account.is_none();
                Some(c)
            }
            _ => None,
        }
    }

    /// Where a launch is submitted: partition, account and cluster.
    pub fn placement(&self, launch: &Launch) -> SlurmPlacement {
        let partition = self
            .pool_partitions
            .get(&launch.pool)
            .unwrap_or(&self.partition)
            .clone();
        let account = self.account.clone().or_else(|| {
            (self.account_from_team && !launch.team.is_empty()).then(|| launch.team.clone())
        });
        SlurmPlacement {
            partition,
            account,
            cluster: self.cluster.clone(),
        }
    }

    /// A job's directory.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.state_dir.join(job_id)
    }
}

/// Runs jobs on Slurm (one executor per zone). See the module docs for its state files.
#[derive(Clone)]
pub struct SlurmExecutor {
    config: SlurmConfig,
    render: Renderer,
    runner: Arc<dyn Runner>,
}

impl std::fmt::Debug for SlurmExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmExecutor")
            .field("config", &self.config)
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

fn read_opt(job: &str, path: &Path) -> Result<Option<String>, ExecError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExecError::io(job, "reading", path, e)),
    }
}

fn write_atomic(job: &str, path: &Path, text: &str) -> Result<(), ExecError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).map_err(|e| ExecError::io(job, "writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ExecError::io(job, "renaming", path, e))
}

/// Whether an sbatch message means "no capacity for this now" (fail over) rather than a refusal.
pub fn is_capacity_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "requested node configuration is not available",
        "invalid generic resource",
        "invalid gres",
        "requested partition configuration not available now",
        "resource temporarily unavailable",
        "unable to contact slurm controller",
        "socket timed out",
        "timed out",
        "slurmctld not responding",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Whether a Slurm message says the job id is unknown.
fn is_unknown_job(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("invalid job id") || m.contains("unknown job")
}

impl SlurmExecutor {
    /// An executor running the real Slurm commands (from `config.bin_dir`, else `PATH`),
    /// submitting the scripts `render` renders. Creates the state dir; runs no Slurm command.
    pub fn new(config: SlurmConfig, render: Renderer) -> Result<Self, ExecError> {
        let runner = Arc::new(SystemRunner::new(
            config.bin_dir.clone(),
            config.command_timeout,
        ));
        Self::with_runner(config, render, runner)
    }

    /// An executor running Slurm commands through `runner` (tests, wrappers such as `ssh`).
    pub fn with_runner(
        config: SlurmConfig,
        render: Renderer,
        runner: Arc<dyn Runner>,
    ) -> Result<Self, ExecError> {
        if config.partition.trim().is_empty() {
            return Err(ExecError::Invalid {
                job: "-".into(),
                reason: "the Slurm partition is empty".into(),
            });
        }
        fs::create_dir_all(&config.state_dir)
            .map_err(|e| ExecError::io("-", "creating state directory", &config.state_dir, e))?;
        Ok(Self {
            config,
            render,
            runner,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SlurmConfig {
        &self.config
    }

    /// The batch script the executor would submit for `launch`: rendered at the placement its
    /// configuration gives the launch, in the launch's job directory.
    ///
    /// # Errors
    /// The renderer's, and [`ExecError::Invalid`] for a script without the launch's
    /// `#SBATCH --comment=tidegate:<job id>`.
    pub fn batch_script(&self, launch: &Launch) -> Result<String, ExecError> {
        let job = launch.job_id.as_str();
        let script = (self.render)(
            launch,
            &self.config.placement(launch),
            &self.config.job_dir(job),
        )?;
        if directive(&script, "comment") != Some(comment(job).as_str()) {
            return Err(ExecError::Invalid {
                job: job.to_owned(),
                reason: format!(
                    "the rendered script does not carry `#SBATCH --comment={}`, by which the executor finds the job again",
                    comment(job)
                ),
            });
        }
        Ok(script)
    }

    /// A job's directory.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.config.job_dir(job_id)
    }

    /// The Slurm job id recorded for a tidegate job, if it was submitted.
    pub fn slurm_id(&self, job_id: &str) -> Result<Option<String>, ExecError> {
        check_run_id(job_id)?;
        read_opt(job_id, &self.job_dir(job_id).join("slurm_id"))
    }

    fn cluster_args(&self) -> Vec<String> {
        match &self.config.cluster {
            Some(c) => vec!["-M".into(), c.clone()],
            None => Vec::new(),
        }
    }

    fn run(
        &self,
        job: &str,
        program: &'static str,
        args: Vec<String>,
    ) -> Result<CmdOutput, ExecError> {
        self.runner
            .run(program, &args)
            .map_err(|e| ExecError::io(job, "running", Path::new(program), e))
    }

    /// Looks a job up in `squeue` by its tidegate comment (and, when known, the name its script
    /// gave it).
    fn find_by_comment(&self, job: &str, name: Option<&str>) -> Result<Option<String>, ExecError> {
        let mut args = self.cluster_args();
        args.extend([
            "-h".into(),
            "-t".into(),
            "all".into(),
            "-o".into(),
            "%i|%k".into(),
        ]);
        if let Some(n) = name {
            args.push(format!("--name={n}"));
        }
        let out = self.run(job, "squeue", args)?;
        if !out.success() {
            return Err(ExecError::io(
                job,
                "listing jobs with",
                Path::new("squeue"),
                std::io::Error::other(out.message()),
            ));
        }
        let want = comment(job);
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.trim().split_once('|'))
            .find(|(_, c)| c.trim() == want)
            .map(|(id, _)| id.trim().to_owned()))
    }

    fn record_id(&self, job: &str, dir: &Path, id: &str) -> Result<(), ExecError> {
        write_atomic(job, &dir.join("slurm_id"), &format!("{id}\n"))?;
        let _ = fs::remove_file(dir.join("submitting"));
        Ok(())
    }

    /// The job name the submitted script gave the job (`#SBATCH --job-name=`).
    fn script_name(&self, job: &str) -> Option<String> {
        let text = fs::read_to_string(self.job_dir(job).join("job.sh")).ok()?;
        directive(&text, "job-name").map(str::to_owned)
    }

    /// The Slurm id of a job, resolving an interrupted submission through `squeue`.
    fn resolve_id(&self, job: &str) -> Result<Option<String>, ExecError> {
        let dir = self.job_dir(job);
        if let Some(id) = read_opt(job, &dir.join("slurm_id"))? {
            return Ok(Some(id));
        }
        if dir.join("submitting").exists() {
            if let Some(id) = self.find_by_comment(job, self.script_name(job).as_deref())? {
                self.record_id(job, &dir, &id)?;
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn slurm_status(&self, job: &str, id: &str) -> Result<RunStatus, ExecError> {
        let mut args = self.cluster_args();
        args.extend(["show".into(), "job".into(), "-o".into(), id.to_owned()]);
        let out = self.run(job, "scontrol", args)?;
        if out.success() {
            let line = out
                .stdout
                .lines()
                .find(|l| l.contains("JobId="))
                .unwrap_or("");
            let rec = JobRecord::parse(line);
            if let Some(state) = rec.state() {
                return Ok(map_state(id, state, rec.get("ExitCode"), rec.get("Reason")));
            }
        } else if !is_unknown_job(&out.message()) {
            return Err(ExecError::io(
                job,
                "asking Slurm about",
                Path::new("scontrol"),
                std::io::Error::other(out.message()),
            ));
        }
        // Slurm has forgotten the job: its completion record, then the job's own exit file.
        let mut args = self.cluster_args();
        args.extend([
            "-c".into(),
            "-j".into(),
            id.to_owned(),
            "-n".into(),
            "-P".into(),
            "-o".into(),
            "JobID,State,ExitCode".into(),
        ]);
        if let Ok(out) = self.run(job, "sacct", args) {
            if out.success() {
                if let Some((state, exit)) = parse_sacct(&out.stdout, id) {
                    return Ok(map_state(id, &state, Some(&exit), None));
                }
            }
        }
        let dir = self.job_dir(job);
        if let Some(code) = read_opt(job, &dir.join("exit"))?.and_then(|s| s.parse::<i32>().ok()) {
            return Ok(if dir.join("cancelled").exists() {
                RunStatus::Cancelled
            } else {
                RunStatus::Exited { code }
            });
        }
        if dir.join("cancelled").exists() {
            return Ok(RunStatus::Cancelled);
        }
        Ok(RunStatus::Lost {
            reason: format!("Slurm no longer knows job {id} and it left no exit record"),
        })
    }
}

impl Executor for SlurmExecutor {
    fn kind(&self) -> &'static str {
        "slurm"
    }

    fn start(&self, launch: &Launch) -> Result<bool, ExecError> {
        let job = launch.job_id.as_str();
        check_run_id(job)?;
        let dir = self.job_dir(job);
        let script = self.batch_script(launch)?;
        let existed = dir.exists();
        fs::create_dir_all(&dir)
            .map_err(|e| ExecError::io(job, "creating job directory", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ExecError::io(job, "opening", &lock_path, e))?;
        lock.lock()
            .map_err(|e| ExecError::io(job, "locking", &lock_path, e))?;
        if self.resolve_id(job)?.is_some() {
            return Ok(false);
        }
        // The directory was there but holds no id: an earlier start was refused, or a crash lost
        // files that were not yet on disk. Ask Slurm before submitting again.
        if existed {
            if let Some(id) = self.find_by_comment(job, directive(&script, "job-name"))? {
                self.record_id(job, &dir, &id)?;
                return Ok(false);
            }
        }
        let launch_path = dir.join("launch.json");
        let text = serde_json::to_string_pretty(launch).map_err(|e| ExecError::Invalid {
            job: job.to_owned(),
            reason: e.to_string(),
        })?;
        write_atomic(job, &launch_path, &text)?;
        let script_path = dir.join("job.sh");
        write_atomic(job, &script_path, &script)?;
        let marker = dir.join("submitting");
        fs::write(&marker, b"").map_err(|e| ExecError::io(job, "writing", &marker, e))?;
        let mut args = vec!["--parsable".to_owned()];
        args.push(script_path.display().to_string());
        let out = match self.runner.run("sbatch", &args) {
            Ok(o) => o,
            Err(e) => {
                let _ = fs::remove_file(&marker);
                return Err(ExecError::io(job, "running", Path::new("sbatch"), e));
            }
        };
        if out.timed_out {
            // Slurm may have accepted it: keep `submitting`, the next start looks it up.
            return Err(ExecError::NoCapacity {
                job: job.to_owned(),
                reason: format!("sbatch did not answer: {}", out.message()),
            });
        }
        if !out.success() {
            let _ = fs::remove_file(&marker);
            let reason = out.message();
            tracing::info!(job, %reason, "sbatch refused the job");
            return Err(if is_capacity_error(&reason) {
                ExecError::NoCapacity {
                    job: job.to_owned(),
                    reason,
                }
            } else {
                ExecError::Refused {
                    job: job.to_owned(),
                    reason,
                }
            });
        }
        let Some(id) = parse_sbatch_id(&out.stdout) else {
            // Submitted, but the answer is unreadable: keep `submitting` so it is looked up.
            return Err(ExecError::Refused {
                job: job.to_owned(),
                reason: format!("unreadable sbatch answer {:?}", out.stdout),
            });
        };
        self.record_id(job, &dir, &id)?;
        tracing::info!(job, slurm_id = %id, zone = %launch.zone, pool = %launch.pool, "submitted Slurm job");
        drop(lock);
        Ok(true)
    }

    fn poll(&self, job: &str) -> Result<RunStatus, ExecError> {
        check_run_id(job)?;
        let dir = self.job_dir(job);
        if !dir.exists() {
            return Ok(RunStatus::Unknown);
        }
        let final_path = dir.join("final.json");
        if let Some(text) = read_opt(job, &final_path)? {
            if let Ok(s) = serde_json::from_str::<RunStatus>(&text) {
                return Ok(s);
            }
        }
        let Some(id) = self.resolve_id(job)? else {
            if dir.join("submitting").exists() {
                return Ok(RunStatus::Lost {
                    reason: "the submission was interrupted and Slurm holds no such job".into(),
                });
            }
            return Ok(RunStatus::Unknown);
        };
        let status = self.slurm_status(job, &id)?;
        if status.is_final() {
            if let Ok(text) = serde_json::to_string(&status) {
                write_atomic(job, &final_path, &text)?;
            }
        }
        Ok(status)
    }

    fn cancel(&self, job: &str) -> Result<bool, ExecError> {
        check_run_id(job)?;
        let dir = self.job_dir(job);
        if !dir.exists() {
            return Ok(false);
        }
        let Some(id) = self.resolve_id(job)? else {
            return Ok(false);
        };
        if self.poll(job)?.is_final() {
            return Ok(false);
        }
        let marker = dir.join("cancelled");
        fs::write(&marker, b"").map_err(|e| ExecError::io(job, "writing", &marker, e))?;
        let mut args = self.cluster_args();
        args.push(id.clone());
        let out = self.run(job, "scancel", args)?;
        if out.success() {
            tracing::info!(job, slurm_id = %id, "cancelled Slurm job");
            return Ok(true);
        }
        let msg = out.message();
        if is_unknown_job(&msg)
            || msg
                .to_ascii_lowercase()
                .contains("already completing or completed")
        {
            return Ok(false);
        }
        Err(ExecError::io(
            job,
            "cancelling with",
            Path::new("scancel"),
            std::io::Error::other(msg),
        ))
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
        f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))
            .map_err(|e| ExecError::io(job, "reading", &path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| ExecError::io(job, "reading", &path, e))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}
