//! Jobs (`/v1/jobs`): a submission, a job as the API shows it, its events, one page of jobs,
//! its output, an approval.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Most bytes of a job's output one `logs` request returns.
pub const MAX_LOG_TAIL: u64 = 1 << 20;

/// A job submission.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The job manifest, YAML (`apiVersion: tidegate.io/v1`, `kind: Job`), as in `examples/jobs/`.
    #[schema(min_length = 1)]
    pub manifest: String,
}

/// A job as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Job name.
    pub name: String,
    /// Owning team.
    pub team: String,
    /// `submitted`, `queued`, `admitted`, `running`, `succeeded`, `failed`, `cancelled`, `preempted`.
    pub state: String,
    /// Why it is in this state.
    pub reason: Option<String>,
    /// Zone (queue zone while queued; placement once admitted).
    pub zone: Option<String>,
    /// Pool once admitted.
    pub pool: Option<String>,
    /// Submission time, ms since the Unix epoch.
    pub submitted_at: i64,
    /// Last change, ms since the Unix epoch.
    pub updated_at: i64,
    /// Version (grows with every change).
    pub version: u64,
    /// The idempotency key given at submission.
    pub idempotency_key: Option<String>,
}

/// The answer to a submission.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// The job.
    pub job: JobView,
    /// True when the idempotency key had already created this job (nothing new was created).
    pub replayed: bool,
}

/// One event in a job's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// 1, 2, ...
    pub seq: u64,
    /// `submitted`, `queued`, `admitted`, `running`, `released`, ...
    pub kind: String,
    /// State before.
    pub from_state: Option<String>,
    /// State after.
    pub to_state: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// The stable code of the reason (`queue:quota-limit`, `refused:no-allowed-option`, ...)
    /// where it comes from the scheduler; match on this, never on the text.
    pub reason_code: Option<String>,
    /// Details (placement explanation, burst justification, cost...); null when the event has
    /// none.
    #[schema(value_type = Option<Object>)]
    pub details: serde_json::Value,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

/// A job with its events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    pub job: JobView,
    /// Its events, oldest first.
    pub events: Vec<EventView>,
}

/// One page of jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Jobs in submission order.
    pub jobs: Vec<JobView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<u64>,
}

/// Filters for listing jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    #[param(
        pattern = "^(submitted|queued|admitted|running|succeeded|failed|cancelled|preempted)$"
    )]
    pub state: Option<String>,
    /// Only this team's jobs (default: the caller's team; an admin sees every team).
    pub team: Option<String>,
    /// Only jobs in this zone.
    pub zone: Option<String>,
    /// Page size (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub after: Option<u64>,
}

/// A job's output.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogsView {
    /// Job id.
    pub job: String,
    /// The last `tail_bytes` of its combined output.
    pub logs: String,
}

/// How much output to return.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Bytes from the end (default 65536, at most 1 MiB: 1048576).
    #[param(minimum = 0, maximum = 1048576)]
    pub tail_bytes: Option<u64>,
}

/// An approval of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// What is approved: `run`, `burst` or `export`.
    #[schema(pattern = "^(run|burst|export)$")]
    pub scope: String,
}
