//! tidegate durable state: jobs, their append-only events, idempotency keys and leader leases,
//! behind one [`Store`] interface with two backends.
//!
//! - [`SqliteStore`]: the embedded default, one file under the data directory, WAL journal with
//!   `synchronous=FULL` so that every acknowledged write survives a `kill -9` or a power cut.
//! - [`PgStore`]: PostgreSQL for several replicas; a `postgres://` URL selects it.
//!
//! Both apply the same versioned migrations ([`migrate`]) and pass the same test-suite
//! (`tests/suite/mod.rs`).
//!
//! ## Why a synchronous interface
//! Every operation is one short transaction against a local file or a nearby database. A blocking
//! interface keeps the backends simple (rusqlite is blocking; the `postgres` crate is the blocking
//! face of `tokio-postgres`), keeps transactions on one thread, and the HTTP server calls it from
//! its blocking pool (`tokio::task::spawn_blocking`). The scheduler is sans-IO and calls the store
//! between rounds, never from inside its core.
//!
//! ## Time
//! The store never reads the clock for data it records: every timestamp is passed in by the
//! caller ([`Timestamp`]), so a simulated clock drives it the same way a real one does.

#![warn(missing_docs, unreachable_pub)]

pub mod bench;
mod error;
pub mod migrate;
mod postgres;
mod record;
mod sql;
mod sqlite;

pub use crate::postgres::{PgOptions, PgStore};
pub use error::StoreError;
pub use record::{
    AgentRun, EventDraft, FleetInForce, Heartbeat, JobEvent, JobFilter, JobId, JobPage, JobRecord,
    JobState, Lease, NewJob, PageRequest, RunReport, StateCount, Submitted, Timestamp, Transition,
    ZoneCondition, MAX_LOG_TAIL, MAX_PAGE_SIZE, RUN_STATUSES, ZONE_HEALTH,
};
pub use sqlite::{SqliteOptions, SqliteStore};

use std::path::Path;
use std::time::Duration;

/// The durable state of the control plane. Implementations are safe to share between threads;
/// each method is one transaction: it either happened entirely (and is durable when it returned
/// `Ok`) or not at all.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which backend and where, for logs and errors (a PostgreSQL URL without its password).
    fn describe(&self) -> String;

    /// Records a new job in state `submitted`, its first event and its idempotency key, in one
    /// transaction. A key already used by the same team with the same request (name, team, spec)
    /// returns the job it created (`replayed: true`) and creates nothing; with a different request
    /// it is refused with [`StoreError::IdempotencyConflict`].
    fn submit(&self, job: NewJob) -> Result<Submitted, StoreError>;

    /// Unbinds the idempotency key that created job `id` (if any), so the next submission with
    /// that key creates a new job instead of returning this one. For a submission refused for a
    /// temporary reason after it was recorded (the evidence ledger could not record it): the
    /// refused job stays, in its final state, but a retry with the same key runs. `false` when no
    /// key was bound to the job.
    fn release_idempotency_key(&self, id: &JobId) -> Result<bool, StoreError>;

    /// Whether `team` has already used idempotency `key` (a submission with it would replay or
    /// conflict rather than create a job).
    fn idempotency_key_bound(&self, team: &str, key: &str) -> Result<bool, StoreError>;

    /// The job with this id, if any.
    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError>;

    /// Jobs matching `filter`, in submission order, one page at a time.
    fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<JobPage, StoreError>;

    /// Moves a job to another state if it is still at `transition.expected_version` and the move
    /// is legal ([`JobState::can_move_to`]); appends the matching event in the same transaction.
    /// Returns the job as it is after the move.
    fn transition(&self, id: &JobId, transition: Transition) -> Result<JobRecord, StoreError>;

    /// Appends an event that does not change the job's state (a placement attempt, a refusal, a
    /// release of public capacity).
    fn append_event(&self, id: &JobId, event: EventDraft) -> Result<JobEvent, StoreError>;

    /// The job's events, oldest first (`seq` 1, 2, ...).
    fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError>;

    /// Number of jobs per (state, zone), for metrics.
    fn counts(&self) -> Result<Vec<StateCount>, StoreError>;

    /// Takes the lease `name` for `holder` until `now + ttl` if it is free, expired, or already
    /// held by `holder` (then it is extended). `None` when someone else holds it. The lease's
    /// `epoch` grows each time the lease changes hands: a fencing token.
    fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError>;

    /// Extends a lease still held (same holder and epoch, not expired at `now`). `None` when the
    /// lease was lost: the caller must stop acting as the holder.
    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError>;

    /// Gives a lease up so another holder can take it at once. `false` when it was no longer held.
    fn release_lease(&self, lease: &Lease) -> Result<bool, StoreError>;

    /// The lease's current row, held or expired, if it was ever taken.
    fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;

    /// Sets (or replaces) a zone's condition.
    fn set_zone_condition(&self, cond: &ZoneCondition) -> Result<(), StoreError>;

    /// Every zone condition ever set, by zone name.
    fn zone_conditions(&self) -> Result<Vec<ZoneCondition>, StoreError>;

    /// Records the fleet and policy set put in force (replicas converge on it).
    fn set_fleet_in_force(&self, f: &FleetInForce) -> Result<(), StoreError>;

    /// The fleet and policy set last put in force, if any was recorded.
    fn fleet_in_force(&self) -> Result<Option<FleetInForce>, StoreError>;

    /// Hands a run to its zone's agent. `false` when the run id was already handed over (a
    /// run is never handed out twice).
    fn enqueue_run(&self, run: &AgentRun) -> Result<bool, StoreError>;

    /// A run handed to an agent, by id.
    fn agent_run(&self, run_id: &str) -> Result<Option<AgentRun>, StoreError>;

    /// Asks the agent to stop a run that has not ended. `false` when there was none.
    fn cancel_run(&self, run_id: &str, now: Timestamp) -> Result<bool, StoreError>;

    /// One agent sync, in one transaction: records its heartbeat and its reports (a run that
    /// ended stays ended; reports about other zones' runs change nothing), then returns its
    /// zone's work: runs to start and runs to stop, at most `limit`.
    fn agent_sync(
        &self,
        zone: &str,
        agent: &str,
        reports: &[RunReport],
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<AgentRun>, StoreError>;

    /// When each zone's agent was last heard from.
    fn heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError>;
}

/// Opens the store a `--database` option names: a `postgres://` or `postgresql://` URL selects
/// PostgreSQL; anything else (or nothing) the SQLite file under `data_dir`.
pub fn open(database: Option<&str>, data_dir: &Path) -> Result<Box<dyn Store>, StoreError> {
    match database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Box::new(PgStore::connect(url, PgOptions::default())?))
        }
        Some(other) => Err(StoreError::Invalid {
            field: "database",
            reason: format!(
                "`{}` is not a postgres:// URL (leave it out for SQLite under the data directory)",
                crate::postgres::redact(other)
            ),
        }),
        None => Ok(Box::new(SqliteStore::open(
            data_dir,
            SqliteOptions::default(),
        )?)),
    }
}
