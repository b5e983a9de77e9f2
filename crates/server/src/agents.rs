//! Zones run by agents: the control plane never reaches into such a zone. An agent inside it
//! opens outbound connections only (`POST /v1/agents/{zone}/sync`), reports on its runs and
//! heartbeats, and takes the zone's new work and stop requests from the answer.
//!
//! [`AgentExecutor`] is the control plane's side: starting a run hands it to the zone's queue in
//! the store (once per run id), polling reads the agent's last report, cancelling marks the run
//! for the agent to stop. The scheduler loop watches heartbeats: an agent silent for longer than
//! the timeout makes its zone `unreachable` (the failure hierarchy then decides what waits and
//! what goes elsewhere; runs already there are left alone), and the zone is `healthy` again once
//! the agent syncs.

use std::sync::Arc;

use tidegate_exec::{ExecError, Executor, Launch, RunStatus};
use tidegate_store::{AgentRun, JobId, Store, Timestamp};

/// The reason text the loop writes when it marks a silent agent's zone unreachable (and
/// recognises when the agent is back).
pub const SILENT: &str = "no heartbeat from the zone's agent";

/// The executor for a zone run by an agent.
#[derive(Debug)]
pub struct AgentExecutor {
    zone: String,
    store: Arc<dyn Store>,
}

impl AgentExecutor {
    /// The executor for `zone`, over the shared store.
    pub fn new(zone: &str, store: Arc<dyn Store>) -> Self {
        Self {
            zone: zone.to_owned(),
            store,
        }
    }
}

fn io(job: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::Refused {
        job: job.to_owned(),
        reason: format!("the zone's run queue is unavailable: {e}"),
    }
}

/// The tidegate job a run id belongs to (`ID` or `ID.N`).
fn job_of(run_id: &str) -> &str {
    match run_id.rsplit_once('.') {
        Some((job, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => job,
        _ => run_id,
    }
}

impl Executor for AgentExecutor {
    fn kind(&self) -> &'static str {
        "agent"
    }

    fn start(&self, launch: &Launch) -> Result<bool, ExecError> {
        let job = launch.job_id.as_str();
        let job_id = JobId::new(job_of(job)).map_err(|e| ExecError::Invalid {
            job: job.to_owned(),
            reason: e.to_string(),
        })?;
        let run = AgentRun {
            run_id: launch.job_id.clone(),
            job_id,
            zone: self.zone.clone(),
            launch: serde_json::to_value(launch).map_err(|e| ExecError::Invalid {
                job: job.to_owned(),
                reason: e.to_string(),
            })?,
            cancel: false,
            status: "pending".into(),
            exit_code: None,
            log_tail: String::new(),
            updated_at: Timestamp::now(),
        };
        self.store.enqueue_run(&run).map_err(|e| io(job, e))
    }

    fn poll(&self, run_id: &str) -> Result<RunStatus, ExecError> {
        let Some(run) = self.store.agent_run(run_id).map_err(|e| io(run_id, e))? else {
            return Ok(RunStatus::Unknown);
        };
        Ok(match run.status.as_str() {
            "exited" => RunStatus::Exited {
                code: run.exit_code.unwrap_or(-1),
            },
            "cancelled" => RunStatus::Cancelled,
            "timed_out" => RunStatus::TimedOut {
                limit_s: run.launch["time_limit_s"].as_u64().unwrap_or(0),
            },
            "lost" => RunStatus::Lost {
                reason: format!("the agent in {} lost the run", self.zone),
            },
            // pending: handed to the zone, which will start it at its next sync.
            _ => RunStatus::Running,
        })
    }

    fn cancel(&self, run_id: &str) -> Result<bool, ExecError> {
        self.store
            .cancel_run(run_id, Timestamp::now())
            .map_err(|e| io(run_id, e))
    }

    fn logs(&self, run_id: &str, max_bytes: u64) -> Result<String, ExecError> {
        let run = self
            .store
            .agent_run(run_id)
            .map_err(|e| io(run_id, e))?
            .ok_or_else(|| ExecError::Unknown(run_id.to_owned()))?;
        let t = run.log_tail;
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        if t.len() <= max {
            return Ok(t);
        }
        let mut start = t.len() - max;
        while !t.is_char_boundary(start) {
            start += 1;
        }
        Ok(t[start..].to_owned())
    }
}
