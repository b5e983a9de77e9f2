//! The statements both backends run, written once with PostgreSQL's `$N` placeholders (the SQLite
//! backend turns them into SQLite's equivalent `?N`), and the decoding of rows into records.

use crate::error::StoreError;
use crate::record::{JobEvent, JobId, JobRecord, JobState, Lease, Timestamp};

pub(crate) const JOB_COLUMNS: &str =
    "id, name, team, spec, spec_digest, state, reason, zone, pool, submitted_at, updated_at, version, idempotency_key, seq";

pub(crate) const INSERT_JOB: &str =
    "INSERT INTO jobs (id, name, team, spec, spec_digest, state, reason, zone, pool, \
     submitted_at, updated_at, version, last_event, idempotency_key) \
     VALUES ($1, $2, $3, $4, $5, 'submitted', $6, NULL, NULL, $7, $7, 1, 1, $8)";
pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO job_events (job_id, seq, kind, from_state, to_state, reason, details, at, reason_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const INSERT_KEY: &str =
    "INSERT INTO idempotency_keys (team, key, request_digest, job_id, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (team, key) DO NOTHING";
pub(crate) const SELECT_KEY: &str =
    "SELECT request_digest, job_id FROM idempotency_keys WHERE team = $1 AND key = $2";
pub(crate) const JOB_EXISTS: &str = "SELECT COUNT(*) FROM jobs WHERE id = $1";
pub(crate) const SELECT_FOR_TRANSITION: &str =
    "SELECT state, version, zone, pool FROM jobs WHERE id = $1";
pub(crate) const UPDATE_STATE: &str = "UPDATE jobs SET state = $1, reason = $2, zone = $3, pool = $4, updated_at = $5, \
     version = version + 1, last_event = last_event + 1 WHERE id = $6 AND version = $7 RETURNING last_event";
pub(crate) const BUMP_EVENT: &str =
    "UPDATE jobs SET last_event = last_event + 1 WHERE id = $1 RETURNING last_event";
pub(crate) const SELECT_EVENTS: &str =
    "SELECT job_id, seq, kind, from_state, to_state, reason, details, at, reason_code FROM job_events WHERE job_id = $1 ORDER BY seq";
pub(crate) const COUNTS: &str =
    "SELECT state, zone, COUNT(*) FROM jobs GROUP BY state, zone ORDER BY state, zone";
pub(crate) const LEASE_ACQUIRE: &str =
    "INSERT INTO leases (name, holder, expires_at, epoch) VALUES ($1, $2, $3, 1) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
     epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END \
     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4 \
     RETURNING name, holder, expires_at, epoch";
pub(crate) const LEASE_RENEW: &str = "UPDATE leases SET expires_at = $1 \
     WHERE name = $2 AND holder = $3 AND epoch = $4 AND expires_at > $5 RETURNING name, holder, expires_at, epoch";
/// Unbinds an idempotency key from the job it created (that job was refused before it could run).
pub(crate) const KEY_RELEASE: &str = "DELETE FROM idempotency_keys WHERE job_id = $1";
pub(crate) const LEASE_RELEASE: &str =
    "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND epoch = $3";
/// Sets a zone's condition (insert or replace).
pub(crate) const ZONE_SET: &str = "INSERT INTO zone_conditions (zone, health, throttled, reason, updated_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (zone) DO UPDATE SET health = excluded.health, throttled = excluded.throttled, reason = excluded.reason, updated_at = excluded.updated_at";
/// Records the fleet in force (one row, replaced).
pub(crate) const FLEET_SET: &str = "INSERT INTO fleet_in_force (id, dir, fleet_hash, policy_hash, updated_at) VALUES (1, $1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET dir = excluded.dir, fleet_hash = excluded.fleet_hash, policy_hash = excluded.policy_hash, updated_at = excluded.updated_at";
/// The fleet in force.
pub(crate) const FLEET_GET: &str =
    "SELECT dir, fleet_hash, policy_hash, updated_at FROM fleet_in_force WHERE id = 1";
/// Every zone condition, by zone.
pub(crate) const ZONE_LIST: &str =
    "SELECT zone, health, throttled, reason, updated_at FROM zone_conditions ORDER BY zone";
/// Hands a run to a zone's agent (once: a run id already there is left alone).
pub(crate) const RUN_ENQUEUE: &str = "INSERT INTO agent_runs (run_id, job_id, zone, launch, cancel, status, exit_code, log_tail, updated_at) \
     VALUES ($1, $2, $3, $4, 0, 'pending', NULL, '', $5) ON CONFLICT (run_id) DO NOTHING";
/// Columns of an agent run.
pub(crate) const RUN_COLUMNS: &str =
    "run_id, job_id, zone, launch, cancel, status, exit_code, log_tail, updated_at";
/// Asks the agent to stop a run.
pub(crate) const RUN_CANCEL: &str = "UPDATE agent_runs SET cancel = 1, updated_at = $2 WHERE run_id = $1 AND status IN ('pending', 'running')";
/// An agent's report on one of its zone's runs; a run that ended stays ended.
pub(crate) const RUN_REPORT: &str =
    "UPDATE agent_runs SET status = $3, exit_code = $4, log_tail = $5, updated_at = $6 \
     WHERE run_id = $1 AND zone = $2 AND status IN ('pending', 'running')";
/// Records a heartbeat.
pub(crate) const HEARTBEAT: &str =
    "INSERT INTO agent_heartbeats (zone, agent, last_seen) VALUES ($1, $2, $3) \
     ON CONFLICT (zone) DO UPDATE SET agent = excluded.agent, last_seen = excluded.last_seen";
/// Every heartbeat, by zone.
pub(crate) const HEARTBEATS: &str =
    "SELECT zone, agent, last_seen FROM agent_heartbeats ORDER BY zone";

/// One run by id.
pub(crate) fn select_run() -> String {
    format!("SELECT {RUN_COLUMNS} FROM agent_runs WHERE run_id = $1")
}

/// What an agent has to act on: runs not yet started, and runs to stop.
pub(crate) fn select_agent_work() -> String {
    format!("SELECT {RUN_COLUMNS} FROM agent_runs WHERE zone = $1 AND (status = 'pending' OR (cancel = 1 AND status = 'running')) ORDER BY updated_at, run_id LIMIT $2")
}

pub(crate) const LEASE_GET: &str =
    "SELECT name, holder, expires_at, epoch FROM leases WHERE name = $1";

/// `SELECT ... FROM jobs WHERE id = $1`.
pub(crate) fn select_job() -> String {
    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")
}

/// One page of a filtered listing: `$1` cursor, `$2` state, `$3` team, `$4` zone, `$5` limit.
pub(crate) fn list_jobs() -> String {
    format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE seq > $1 AND (CAST($2 AS TEXT) IS NULL OR state = $2) AND (CAST($3 AS TEXT) IS NULL OR team = $3) \
         AND (CAST($4 AS TEXT) IS NULL OR zone = $4) ORDER BY seq LIMIT $5"
    )
}

/// Where rows are decoded: for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub backend: &'static str,
    pub location: String,
}

impl Origin {
    pub(crate) fn corrupt(&self, what: &'static str, reason: String) -> StoreError {
        StoreError::Corrupt {
            backend: self.backend,
            location: self.location.clone(),
            what,
            reason,
        }
    }

    pub(crate) fn state(&self, s: &str) -> Result<JobState, StoreError> {
        s.parse()
            .map_err(|_| self.corrupt("job state", format!("`{s}` is not a state")))
    }

    pub(crate) fn id(&self, s: String) -> Result<JobId, StoreError> {
        JobId::new(s).map_err(|e| self.corrupt("job id", e.to_string()))
    }

    pub(crate) fn json(
        &self,
        what: &'static str,
        s: &str,
    ) -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(s).map_err(|e| self.corrupt(what, e.to_string()))
    }

    pub(crate) fn unsigned(&self, what: &'static str, v: i64) -> Result<u64, StoreError> {
        u64::try_from(v).map_err(|_| self.corrupt(what, format!("{v} is negative")))
    }
}

/// A job row as read, before checking.
#[derive(Debug)]
pub(crate) struct RawJob {
    pub id: String,
    pub name: String,
    pub team: String,
    pub spec: String,
    pub spec_digest: String,
    pub state: String,
    pub reason: Option<String>,
    pub zone: Option<String>,
    pub pool: Option<String>,
    pub submitted_at: i64,
    pub updated_at: i64,
    pub version: i64,
    pub idempotency_key: Option<String>,
    pub seq: i64,
}

impl RawJob {
    pub(crate) fn decode(self, o: &Origin) -> Result<(JobRecord, i64), StoreError> {
        Ok((
            JobRecord {
                id: o.id(self.id)?,
                name: self.name,
                team: self.team,
                spec: o.json("job spec", &self.spec)?,
                spec_digest: self.spec_digest,
                state: o.state(&self.state)?,
                reason: self.reason,
                zone: self.zone,
                pool: self.pool,
                submitted_at: Timestamp(self.submitted_at),
                updated_at: Timestamp(self.updated_at),
                version: o.unsigned("job version", self.version)?,
                idempotency_key: self.idempotency_key,
            },
            self.seq,
        ))
    }
}

/// An event row as read.
#[derive(Debug)]
pub(crate) struct RawEvent {
    pub job_id: String,
    pub seq: i64,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub reason: Option<String>,
    pub details: String,
    pub at: i64,
    pub reason_code: Option<String>,
}

impl RawEvent {
    pub(crate) fn decode(self, o: &Origin) -> Result<JobEvent, StoreError> {
        Ok(JobEvent {
            job_id: o.id(self.job_id)?,
            seq: o.unsigned("event seq", self.seq)?,
            kind: self.kind,
            from_state: self.from_state.as_deref().map(|s| o.state(s)).transpose()?,
            to_state: self.to_state.as_deref().map(|s| o.state(s)).transpose()?,
            reason: self.reason,
            reason_code: self.reason_code,
            details: o.json("event details", &self.details)?,
            at: Timestamp(self.at),
        })
    }
}

/// A lease row as read.
pub(crate) fn lease(
    o: &Origin,
    name: String,
    holder: String,
    expires_at: i64,
    epoch: i64,
) -> Result<Lease, StoreError> {
    Ok(Lease {
        name,
        holder,
        expires_at: Timestamp(expires_at),
        epoch: o.unsigned("lease epoch", epoch)?,
    })
}

/// An agent run as stored, before checking.
pub(crate) struct RawRun {
    pub run_id: String,
    pub job_id: String,
    pub zone: String,
    pub launch: String,
    pub cancel: i64,
    pub status: String,
    pub exit_code: Option<i64>,
    pub log_tail: String,
    pub updated_at: i64,
}

impl RawRun {
    pub(crate) fn decode(self, origin: &Origin) -> Result<crate::AgentRun, StoreError> {
        let launch = serde_json::from_str(&self.launch)
            .map_err(|e| origin.corrupt("agent run launch", e.to_string()))?;
        let exit_code = self
            .exit_code
            .map(i32::try_from)
            .transpose()
            .map_err(|e| origin.corrupt("agent run exit code", e.to_string()))?;
        Ok(crate::AgentRun {
            run_id: self.run_id,
            job_id: origin.id(self.job_id)?,
            zone: self.zone,
            launch,
            cancel: self.cancel != 0,
            status: self.status,
            exit_code,
            log_tail: self.log_tail,
            updated_at: crate::Timestamp(self.updated_at),
        })
    }
}
