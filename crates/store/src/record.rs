//! The records the store keeps and the requests it takes, with their validation (pure).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use tidegate_vocab::canonical::to_text_any_number as canonical_json;

/// Most jobs one [`PageRequest`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
const MAX_NAME: usize = 253;
const MAX_TEAM: usize = 128;
const MAX_KEY: usize = 255;
const MAX_REASON: usize = 4096;
const MAX_ZONE: usize = 128;
const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

pub use tidegate_vocab::Timestamp;

/// A stored time is never before 1970.
fn check_time(t: Timestamp, field: &'static str) -> Result<(), StoreError> {
    if t.0 < 0 {
        return Err(invalid(field, format!("{} is before 1970", t.0)));
    }
    Ok(())
}

/// A job's identifier: 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Checks and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<Self, StoreError> {
        let id = id.into();
        if id.is_empty() || id.len() > 64 {
            return Err(invalid(
                "id",
                format!("must be 1 to 64 characters, got {}", id.len()),
            ));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(invalid(
                "id",
                format!("character {c:?} is not allowed (use A-Z a-z 0-9 . _ -)"),
            ));
        }
        Ok(JobId(id))
    }

    /// A fresh random id, `job-` and 20 hex digits.
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = [0u8; 10];
        getrandom::fill(&mut bytes)
            .map_err(|e| invalid("id", format!("no randomness available: {e}")))?;
        Ok(JobId(format!("job-{}", hex::encode(bytes))))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        JobId::new(s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted and recorded; not yet queued.
    Submitted,
    /// Waiting for capacity in a zone queue (or over budget, with the reason).
    Queued,
    /// Given a place (zone and pool); not yet started.
    Admitted,
    /// Running.
    Running,
    /// Ended successfully.
    Succeeded,
    /// Ended in failure (or refused).
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Stopped to give its capacity back; may be queued again.
    Preempted,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        JobState::Submitted,
        JobState::Queued,
        JobState::Admitted,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Preempted,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Submitted => "submitted",
            JobState::Queued => "queued",
            JobState::Admitted => "admitted",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Preempted => "preempted",
        }
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The lifecycle: submitted → queued → admitted(zone, pool) → running → succeeded / failed /
    /// cancelled / preempted. Any non-terminal job may be cancelled or failed; an admitted job may
    /// go back to the queue (capacity failover) or be preempted; a preempted job may be queued
    /// again. Nothing leaves succeeded, failed or cancelled.
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        if self.is_terminal() {
            return false;
        }
        match to {
            Cancelled | Failed => true,
            Queued => matches!(self, Submitted | Admitted | Preempted),
            Admitted => self == Queued,
            Running => self == Admitted,
            Succeeded => self == Running,
            Preempted => matches!(self, Admitted | Running),
            Submitted => false,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| invalid("state", format!("`{s}` is not a job state (one of submitted, queued, admitted, running, succeeded, failed, cancelled, preempted)")))
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Identifier.
    pub id: JobId,
    /// Job name.
    pub name: String,
    /// Owning team.
    pub team: String,
    /// The job spec as submitted (JSON).
    pub spec: serde_json::Value,
    /// `sha256:<hex>` of the spec's canonical JSON text.
    pub spec_digest: String,
    /// Current state.
    pub state: JobState,
    /// Why it is in this state (the last transition's reason).
    pub reason: Option<String>,
    /// Zone it was admitted to (admitted and later).
    pub zone: Option<String>,
    /// Pool it was admitted to (admitted and later).
    pub pool: Option<String>,
    /// When it was submitted.
    pub submitted_at: Timestamp,
    /// When its state last changed.
    pub updated_at: Timestamp,
    /// Incremented by every transition; [`Transition::expected_version`] compares against it.
    pub version: u64,
    /// The idempotency key it was submitted with.
    pub idempotency_key: Option<String>,
}

/// A request to record a new job.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The id to give it ([`JobId::generate`]).
    pub id: JobId,
    /// Job name.
    pub name: String,
    /// Owning team; idempotency keys are scoped to it.
    pub team: String,
    /// The job spec (a JSON object).
    pub spec: serde_json::Value,
    /// Idempotency key, if the client sent one.
    pub idempotency_key: Option<String>,
    /// Reason recorded with the `submitted` event.
    pub reason: Option<String>,
    /// Submission time.
    pub at: Timestamp,
}

/// A checked [`NewJob`] with its canonical spec text and digests.
#[derive(Debug)]
pub(crate) struct PreparedJob {
    pub job: NewJob,
    pub spec_text: String,
    pub spec_digest: String,
    /// Digest of name, team and spec: what "the same request" means for an idempotency key.
    pub request_digest: String,
}

impl NewJob {
    pub(crate) fn prepare(self) -> Result<PreparedJob, StoreError> {
        check_text("name", &self.name, MAX_NAME)?;
        check_text("team", &self.team, MAX_TEAM)?;
        if let Some(key) = &self.idempotency_key {
            check_text("idempotency_key", key, MAX_KEY)?;
            if key.chars().any(|c| !c.is_ascii_graphic()) {
                return Err(invalid(
                    "idempotency_key",
                    "must be printable ASCII without spaces".into(),
                ));
            }
        }
        if let Some(r) = &self.reason {
            check_len("reason", r, MAX_REASON)?;
        }
        if !self.spec.is_object() {
            return Err(invalid("spec", "must be a JSON object".into()));
        }
        check_time(self.at, "submitted_at")?;
        let spec_text = canonical_json(&self.spec);
        let spec_digest = tidegate_vocab::Digest::of(spec_text.as_bytes()).to_string();
        let request =
            serde_json::json!({ "name": self.name, "team": self.team, "spec_digest": spec_digest });
        let request_digest =
            tidegate_vocab::Digest::of(canonical_json(&request).as_bytes()).to_string();
        Ok(PreparedJob {
            job: self,
            spec_text,
            spec_digest,
            request_digest,
        })
    }
}

/// The answer to a submit.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job (for a replay, as it is now).
    pub job: JobRecord,
    /// `true` when the idempotency key had already created this job and nothing new was written.
    pub replayed: bool,
}

/// A request to move a job to another state.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The version the caller read; the move fails if the job has moved on since.
    pub expected_version: u64,
    /// The new state.
    pub to: JobState,
    /// Zone: required with `admitted`; with `queued`, the zone whose queue the job waits in
    /// (optional); refused otherwise.
    pub zone: Option<String>,
    /// Pool, required with `admitted` and refused otherwise.
    pub pool: Option<String>,
    /// Why (recorded on the job and in the event).
    pub reason: Option<String>,
    /// The stable code of the reason (`queue:quota-limit`, `failover:no-capacity`, ...), kept in
    /// the event beside its text: rewording a message never changes what evidence matches on.
    pub reason_code: Option<String>,
    /// Event details (JSON; `null` for none).
    pub details: serde_json::Value,
    /// When.
    pub at: Timestamp,
}

impl Transition {
    /// A move to `to` from `expected_version` with no zone, reason or details.
    pub fn to(to: JobState, expected_version: u64, at: Timestamp) -> Self {
        Transition {
            expected_version,
            to,
            zone: None,
            pool: None,
            reason: None,
            reason_code: None,
            details: serde_json::Value::Null,
            at,
        }
    }

    /// A move to `admitted` in `zone` / `pool`.
    pub fn admit(zone: &str, pool: &str, expected_version: u64, at: Timestamp) -> Self {
        Transition {
            zone: Some(zone.to_string()),
            pool: Some(pool.to_string()),
            ..Transition::to(JobState::Admitted, expected_version, at)
        }
    }

    /// A move to `queued`, waiting in `zone`'s queue.
    pub fn queue(zone: &str, expected_version: u64, at: Timestamp) -> Self {
        Transition {
            zone: Some(zone.to_string()),
            ..Transition::to(JobState::Queued, expected_version, at)
        }
    }

    /// The same transition with a reason.
    pub fn because(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    /// The same transition with a reason and its stable code.
    pub fn because_coded(mut self, code: &str, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self.reason_code = Some(code.to_string());
        self
    }

    pub(crate) fn check(&self) -> Result<String, StoreError> {
        check_time(self.at, "at")?;
        check_code(self.reason_code.as_deref())?;
        if let Some(r) = &self.reason {
            check_len("reason", r, MAX_REASON)?;
        }
        if self.to == JobState::Admitted {
            match (&self.zone, &self.pool) {
                (Some(z), Some(p)) => {
                    check_text("zone", z, MAX_ZONE)?;
                    check_text("pool", p, MAX_ZONE)?;
                }
                (None, _) => return Err(invalid("zone", "required when admitting a job".into())),
                (_, None) => return Err(invalid("pool", "required when admitting a job".into())),
            }
        } else if self.to == JobState::Queued && self.pool.is_none() {
            if let Some(z) = &self.zone {
                check_text("zone", z, MAX_ZONE)?;
            }
        } else if self.zone.is_some() {
            return Err(invalid(
                "zone",
                format!("only given when admitting, not when moving to {}", self.to),
            ));
        } else if self.pool.is_some() {
            return Err(invalid(
                "pool",
                format!("only given when admitting, not when moving to {}", self.to),
            ));
        }
        Ok(canonical_json(&self.details))
    }
}

/// An event to append without changing the job's state.
#[derive(Debug, Clone)]
pub struct EventDraft {
    /// What happened (`placement_attempt`, `burst_refused`, `released`, ...): lower-case letters,
    /// digits and `_`.
    pub kind: String,
    /// Why.
    pub reason: Option<String>,
    /// The stable code of the reason, when it has one.
    pub reason_code: Option<String>,
    /// Details (JSON; `null` for none).
    pub details: serde_json::Value,
    /// When.
    pub at: Timestamp,
}

/// A reason code is short, lower-case letters, digits, `-`, `_` and `:` (`queue:quota-limit`).
fn check_code(code: Option<&str>) -> Result<(), StoreError> {
    let Some(c) = code else { return Ok(()) };
    check_text("reason_code", c, 64)?;
    if !c
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '-' | '_' | ':'))
    {
        return Err(invalid(
            "reason_code",
            format!("`{c}` must be lower-case letters, digits, -, _ and :"),
        ));
    }
    Ok(())
}

impl EventDraft {
    pub(crate) fn check(&self) -> Result<String, StoreError> {
        check_text("kind", &self.kind, 64)?;
        if !self
            .kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid(
                "kind",
                format!("`{}` must be lower-case letters, digits and _", self.kind),
            ));
        }
        if JobState::from_str(&self.kind).is_ok() {
            return Err(invalid(
                "kind",
                format!(
                    "`{}` is a state; change states with a transition",
                    self.kind
                ),
            ));
        }
        if let Some(r) = &self.reason {
            check_len("reason", r, MAX_REASON)?;
        }
        check_code(self.reason_code.as_deref())?;
        check_time(self.at, "at")?;
        Ok(canonical_json(&self.details))
    }
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub job_id: JobId,
    /// Position in the job's history, from 1.
    pub seq: u64,
    /// A state name for transitions (`submitted`, `queued`, ...), otherwise the draft's kind.
    pub kind: String,
    /// State before (transitions only).
    pub from_state: Option<JobState>,
    /// State after (transitions and the first event).
    pub to_state: Option<JobState>,
    /// Why.
    pub reason: Option<String>,
    /// The stable code of the reason, when it has one.
    pub reason_code: Option<String>,
    /// Details (JSON).
    pub details: serde_json::Value,
    /// When.
    pub at: Timestamp,
}

/// Which jobs [`crate::Store::list`] returns (all conditions must hold).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only this team's jobs.
    pub team: Option<String>,
    /// Only jobs admitted to this zone.
    pub zone: Option<String>,
}

/// A page of a listing: up to `limit` jobs after the cursor `after` (from the previous page's
/// [`JobPage::next`]).
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Cursor; `None` for the first page.
    pub after: Option<u64>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`].
    pub limit: u32,
}

impl PageRequest {
    /// The first page of `limit` jobs.
    pub fn first(limit: u32) -> Self {
        PageRequest { after: None, limit }
    }

    pub(crate) fn check(&self) -> Result<(i64, i64), StoreError> {
        if self.limit == 0 || self.limit > MAX_PAGE_SIZE {
            return Err(invalid(
                "limit",
                format!("must be 1 to {MAX_PAGE_SIZE}, got {}", self.limit),
            ));
        }
        let after = i64::try_from(self.after.unwrap_or(0))
            .map_err(|_| invalid("after", "cursor out of range".into()))?;
        Ok((after, i64::from(self.limit)))
    }
}

/// One page of jobs.
#[derive(Debug, Clone)]
pub struct JobPage {
    /// The jobs, in submission order.
    pub jobs: Vec<JobRecord>,
    /// Cursor for the next page; `None` on the last page.
    pub next: Option<u64>,
}

/// How many jobs are in a state (and zone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// The state.
    pub state: JobState,
    /// The zone (`None` for jobs never admitted).
    pub zone: Option<String>,
    /// The number of jobs.
    pub count: u64,
}

/// A zone's operating condition as an operator (or a drill) set it: the scheduler reads it and
/// applies the fleet's failure hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCondition {
    /// Zone name.
    pub zone: String,
    /// `healthy`, `degraded` or `unreachable`.
    pub health: String,
    /// The zone's provider is throttling new work.
    pub throttled: bool,
    /// Why, for people.
    pub reason: Option<String>,
    /// When it was set.
    pub updated_at: Timestamp,
}

/// The fleet and policy set in force, as the replicas of one store share it: the directory it
/// was read from and the hashes it loaded to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetInForce {
    /// The fleet directory.
    pub dir: String,
    /// SHA-256 of the fleet's files, hex.
    pub fleet_hash: String,
    /// SHA-256 of the policy set, hex.
    pub policy_hash: String,
    /// When it was put in force.
    pub updated_at: Timestamp,
}

/// The health values a zone condition may take.
pub const ZONE_HEALTH: [&str; 3] = ["healthy", "degraded", "unreachable"];

impl ZoneCondition {
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.zone.is_empty() || self.zone.len() > MAX_ZONE {
            return Err(invalid(
                "zone",
                format!("must be 1 to {MAX_ZONE} characters"),
            ));
        }
        if !ZONE_HEALTH.contains(&self.health.as_str()) {
            return Err(invalid(
                "health",
                format!(
                    "`{}` is not one of healthy, degraded, unreachable",
                    self.health
                ),
            ));
        }
        if self.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
            return Err(invalid("reason", format!("longer than {MAX_REASON} bytes")));
        }
        check_time(self.updated_at, "updated_at")
    }
}

/// A run handed to a zone's agent: what to start, whether to stop it, and what the agent last
/// reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRun {
    /// Run id (the job id, or `ID.N` for a later admission).
    pub run_id: String,
    /// The job.
    pub job_id: JobId,
    /// The zone whose agent runs it.
    pub zone: String,
    /// The launch request, as the executor interface describes it (JSON).
    pub launch: serde_json::Value,
    /// The control plane asked for it to stop.
    pub cancel: bool,
    /// `pending` (not started by the agent yet), `running`, `exited`, `cancelled`, `timed_out`
    /// or `lost`.
    pub status: String,
    /// Exit code once `exited`.
    pub exit_code: Option<i32>,
    /// The end of its output, as last reported.
    pub log_tail: String,
    /// Last change.
    pub updated_at: Timestamp,
}

/// An agent's report on one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Run id.
    pub run_id: String,
    /// `running`, `exited`, `cancelled`, `timed_out` or `lost`.
    pub status: String,
    /// Exit code when `exited`.
    pub exit_code: Option<i32>,
    /// The end of its output (at most 64 KiB are kept).
    pub log_tail: String,
}

/// Statuses an agent may report.
pub const RUN_STATUSES: [&str; 5] = ["running", "exited", "cancelled", "timed_out", "lost"];

/// Most bytes of a run's output kept in the store.
pub const MAX_LOG_TAIL: usize = 64 * 1024;

impl RunReport {
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.run_id.is_empty() || self.run_id.len() > 80 {
            return Err(invalid("run_id", "must be 1 to 80 characters".to_string()));
        }
        if !RUN_STATUSES.contains(&self.status.as_str()) {
            return Err(invalid(
                "status",
                format!(
                    "`{}` is not one of running, exited, cancelled, timed_out, lost",
                    self.status
                ),
            ));
        }
        if self.status == "exited" && self.exit_code.is_none() {
            return Err(invalid(
                "exit_code",
                "an exited run needs its exit code".to_string(),
            ));
        }
        Ok(())
    }

    /// The report with its log tail cut to [`MAX_LOG_TAIL`] bytes (on a character boundary).
    pub(crate) fn tail(&self) -> &str {
        let t = self.log_tail.as_str();
        if t.len() <= MAX_LOG_TAIL {
            return t;
        }
        let mut start = t.len() - MAX_LOG_TAIL;
        while !t.is_char_boundary(start) {
            start += 1;
        }
        &t[start..]
    }
}

/// When a zone's agent was last heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Zone.
    pub zone: String,
    /// The agent's name.
    pub agent: String,
    /// Its last sync.
    pub last_seen: Timestamp,
}

/// A named lease (e.g. `scheduler`) and who holds it until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Lease name.
    pub name: String,
    /// Current (or last) holder.
    pub holder: String,
    /// Held until this time (exclusive).
    pub expires_at: Timestamp,
    /// Grows each time the lease changes hands: a fencing token for work done under it.
    pub epoch: u64,
}

impl Lease {
    /// Whether the lease is still in force at `now`.
    pub fn is_held_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

pub(crate) fn check_lease_args(
    name: &str,
    holder: &str,
    ttl: Duration,
    now: Timestamp,
) -> Result<i64, StoreError> {
    check_text("lease name", name, 128)?;
    check_text("holder", holder, 255)?;
    check_time(now, "now")?;
    if ttl.is_zero() || ttl > MAX_LEASE_TTL {
        return Err(invalid(
            "ttl",
            format!("must be more than 0 and at most 24 h, got {ttl:?}"),
        ));
    }
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    Ok(now.0.saturating_add(ttl_ms))
}

pub(crate) fn invalid(field: &'static str, reason: String) -> StoreError {
    StoreError::Invalid { field, reason }
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), StoreError> {
    if s.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes, at most {max} allowed", s.len()),
        ));
    }
    if s.contains('\0') {
        return Err(invalid(field, "contains a NUL character".into()));
    }
    Ok(())
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), StoreError> {
    if s.trim().is_empty() {
        return Err(invalid(field, "must not be empty".into()));
    }
    check_len(field, s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_allows_the_documented_moves_only() {
        use JobState::*;
        assert!(Submitted.can_move_to(Queued));
        assert!(Queued.can_move_to(Admitted));
        assert!(Admitted.can_move_to(Running));
        assert!(Running.can_move_to(Succeeded));
        assert!(Admitted.can_move_to(Queued));
        assert!(Preempted.can_move_to(Queued));
        assert!(!Submitted.can_move_to(Running));
        assert!(!Queued.can_move_to(Succeeded));
        for t in [Succeeded, Failed, Cancelled] {
            for to in JobState::ALL {
                assert!(!t.can_move_to(to), "{t} -> {to}");
            }
        }
        for s in JobState::ALL {
            assert!(!s.can_move_to(Submitted));
            assert_eq!(s.as_str().parse::<JobState>().ok(), Some(s));
        }
    }

    /// Stored digests are made from the canonical text, so a change of encoder must not change
    /// them: an idempotent retry compares its digest with one stored by an earlier version. The
    /// expected values are those the encoder stored before the shared one replaced it.
    #[test]
    fn stored_digests_are_unchanged_by_the_shared_canonical_encoder() {
        let manifest = "kind: Job\nname: caf\u{e9} \u{1}\t\"q\"\\\\ \u{1f600} \u{2028} \u{7f}\n";
        let job = NewJob {
            id: JobId::new("job-1").unwrap(),
            name: "n\u{e9}".into(),
            team: "t".into(),
            spec: serde_json::json!({ "manifest": manifest }),
            idempotency_key: None,
            reason: None,
            at: Timestamp(1_700_000_000_000),
        };
        let p = job.prepare().unwrap();
        assert_eq!(
            p.spec_digest,
            "sha256:93d1b0a4286ea771dfd1164c4ec9d9ec84e89abe8fe6cda3182727c0598632cf"
        );
        assert_eq!(
            p.request_digest,
            "sha256:8fafdd3a5a40b60f44fd7b2974311f9d7e44191b37f53a647ae62e3be94e1365"
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(JobId::new("job-1.a_B").is_ok());
        assert!(matches!(
            JobId::new(""),
            Err(StoreError::Invalid { field: "id", .. })
        ));
        assert!(matches!(
            JobId::new("a b"),
            Err(StoreError::Invalid { field: "id", .. })
        ));
        assert!(matches!(
            JobId::new("x".repeat(65)),
            Err(StoreError::Invalid { field: "id", .. })
        ));
        let g = JobId::generate().map(|id| id.as_str().len());
        assert_eq!(g.ok(), Some(24));
    }
}
