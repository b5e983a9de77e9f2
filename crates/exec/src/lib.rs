//! tidegate executors: the one interface every zone backend implements ([`Executor`]), and the
//! embedded default, [`LocalExecutor`], which runs each job as a real process in a per-zone
//! work directory.
//!
//! An executor is an I/O shell driven by the control plane's scheduler loop: it is told to start
//! a job that the scheduler admitted, is polled for the job's status, may be asked to cancel it,
//! and returns its logs. GPUs are never touched here: pools are counted slots in the scheduler,
//! and the executor passes the count to the job in its environment.
//!
//! Invariant: starting a job is idempotent per job id — a job whose launch record already exists
//! is never started a second time, so a restarted or new leader cannot run a job twice.

#![warn(missing_docs, unreachable_pub)]

mod error;
mod local;

pub use error::{check_run_id, ExecError};
pub use local::{job_ids, LocalConfig, LocalExecutor, JOB_NICENESS};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the control plane asks an executor to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// tidegate job id (also the name of the job's work directory).
    pub job_id: String,
    /// Job name, for the backend's display.
    pub name: String,
    /// Owning team (the account to charge).
    pub team: String,
    /// Zone the job was admitted to.
    pub zone: String,
    /// Pool the job was admitted to.
    pub pool: String,
    /// GPUs granted (counted slots).
    pub gpus: u32,
    /// GPU type of the pool.
    pub gpu_type: String,
    /// Program and arguments; empty runs a stand-in that sleeps `stand_in_seconds`.
    pub command: Vec<String>,
    /// Seconds the stand-in sleeps when the job has no command.
    pub stand_in_seconds: f64,
    /// Time limit, seconds; 0 is none. Past it the backend stops the job
    /// ([`RunStatus::TimedOut`] where the backend tells).
    pub time_limit_s: u64,
    /// Extra environment for the job.
    pub env: Vec<(String, String)>,
    /// The customer's job labels with their effective values (`data_classification`,
    /// `allowed_execution_zone`, `burst_eligible`; see `tidegate_model::JobProfile::
    /// effective_labels`), for backends that label what they create.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What an executor says about a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    /// The executor has no record of the job.
    Unknown,
    /// Accepted by the backend and waiting for it to admit the run (a Kubernetes Job that
    /// Kueue has not admitted yet): not running, and not ended.
    Queued,
    /// Started and not yet ended.
    Running,
    /// Ended with this exit code (0 is success).
    Exited {
        /// Exit code; negative when killed by a signal.
        code: i32,
    },
    /// Ended because it was cancelled.
    Cancelled,
    /// Stopped by the executor because it ran past its time limit.
    TimedOut {
        /// The limit it ran past, seconds.
        limit_s: u64,
    },
    /// The executor lost track of it (process gone without an exit record).
    Lost {
        /// Why.
        reason: String,
    },
    /// The backend stopped it to give its capacity to other work (Kueue evicted the Job), and
    /// nothing of it runs any more: the job may be placed again, under a new run.
    Preempted {
        /// Why.
        reason: String,
    },
}

impl RunStatus {
    /// Whether the job has ended (for any reason).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RunStatus::Exited { .. }
                | RunStatus::Cancelled
                | RunStatus::TimedOut { .. }
                | RunStatus::Lost { .. }
                | RunStatus::Preempted { .. }
        )
    }
}

/// A zone backend: local processes, Slurm, Kubernetes. Implementations are shared between
/// threads; every call is short (no call waits for a job to finish).
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// The backend kind (`local`, `slurm`, `kubernetes`).
    fn kind(&self) -> &'static str;

    /// Starts the job. Idempotent: if the job was already started (by this process or an
    /// earlier one), nothing new is started and `Ok(false)` is returned.
    fn start(&self, launch: &Launch) -> Result<bool, ExecError>;

    /// The job's status now.
    fn poll(&self, job_id: &str) -> Result<RunStatus, ExecError>;

    /// Stops the job if it is running. Returns whether it was running.
    fn cancel(&self, job_id: &str) -> Result<bool, ExecError>;

    /// The last `max_bytes` of the job's combined output.
    fn logs(&self, job_id: &str, max_bytes: u64) -> Result<String, ExecError>;
}
