//! Versioned schema migrations, as data: one SQL script per version and backend. A database
//! records what it has applied in `schema_migrations (version, name, applied_at)`; opening a store
//! applies what is missing, in order, each script and its row in one transaction. Applying is
//! idempotent and safe when several processes open the same database at once (SQLite: the write
//! lock of `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock). A database whose
//! schema is newer than this build knows is refused rather than used.
//!
//! Never edit a released migration; add a new version.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, from 1, without gaps.
    pub version: i64,
    /// Short name.
    pub name: &'static str,
    /// The SQL script.
    pub sql: &'static str,
}

/// The table that records applied migrations (same text on both backends).
pub const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Migrations of the SQLite backend.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "jobs, events, idempotency keys, leases",
        sql: "
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    team TEXT NOT NULL,
    spec TEXT NOT NULL,
    spec_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    zone TEXT,
    pool TEXT,
    submitted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    last_event INTEGER NOT NULL,
    idempotency_key TEXT
) STRICT;
CREATE INDEX jobs_state ON jobs (state, seq);
CREATE INDEX jobs_team ON jobs (team, seq);
CREATE INDEX jobs_zone ON jobs (zone, seq);
CREATE TABLE job_events (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    reason TEXT,
    details TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT;
CREATE TABLE idempotency_keys (
    team TEXT NOT NULL,
    key TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (team, key)
) STRICT;
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    epoch INTEGER NOT NULL
) STRICT;
",
    },
    Migration {
        version: 2,
        name: "zone conditions",
        sql: "
CREATE TABLE zone_conditions (
    zone TEXT PRIMARY KEY,
    health TEXT NOT NULL,
    throttled INTEGER NOT NULL,
    reason TEXT,
    updated_at INTEGER NOT NULL
) STRICT;
",
    },
    Migration {
        version: 3,
        name: "zone agents: runs handed to agents, heartbeats",
        sql: "
CREATE TABLE agent_runs (
    run_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    zone TEXT NOT NULL,
    launch TEXT NOT NULL,
    cancel INTEGER NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    log_tail TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX agent_runs_zone ON agent_runs (zone, status);
CREATE TABLE agent_heartbeats (
    zone TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    last_seen INTEGER NOT NULL
) STRICT;
",
    },
    Migration {
        version: 4,
        name: "the fleet in force, shared by replicas",
        sql: "
CREATE TABLE fleet_in_force (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    dir TEXT NOT NULL,
    fleet_hash TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
",
    },
    Migration {
        version: 5,
        name: "reason codes on job events",
        sql: "ALTER TABLE job_events ADD COLUMN reason_code TEXT;",
    },
];

/// Migrations of the PostgreSQL backend (the same schema in PostgreSQL's dialect).
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "jobs, events, idempotency keys, leases",
        sql: "
CREATE TABLE jobs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    team TEXT NOT NULL,
    spec TEXT NOT NULL,
    spec_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    zone TEXT,
    pool TEXT,
    submitted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    last_event BIGINT NOT NULL,
    idempotency_key TEXT
);
CREATE INDEX jobs_state ON jobs (state, seq);
CREATE INDEX jobs_team ON jobs (team, seq);
CREATE INDEX jobs_zone ON jobs (zone, seq);
CREATE TABLE job_events (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    reason TEXT,
    details TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE idempotency_keys (
    team TEXT NOT NULL,
    key TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team, key)
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    epoch BIGINT NOT NULL
);
",
    },
    Migration {
        version: 2,
        name: "zone conditions",
        sql: "
CREATE TABLE zone_conditions (
    zone TEXT PRIMARY KEY,
    health TEXT NOT NULL,
    throttled BIGINT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL
);
",
    },
    Migration {
        version: 3,
        name: "zone agents: runs handed to agents, heartbeats",
        sql: "
CREATE TABLE agent_runs (
    run_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    zone TEXT NOT NULL,
    launch TEXT NOT NULL,
    cancel BIGINT NOT NULL,
    status TEXT NOT NULL,
    exit_code BIGINT,
    log_tail TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX agent_runs_zone ON agent_runs (zone, status);
CREATE TABLE agent_heartbeats (
    zone TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    last_seen BIGINT NOT NULL
);
",
    },
    Migration {
        version: 4,
        name: "the fleet in force, shared by replicas",
        sql: "
CREATE TABLE fleet_in_force (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    dir TEXT NOT NULL,
    fleet_hash TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
",
    },
    Migration {
        version: 5,
        name: "reason codes on job events",
        sql: "ALTER TABLE job_events ADD COLUMN reason_code TEXT;",
    },
];

/// The newest version a migration list reaches.
pub fn latest(list: &[Migration]) -> i64 {
    list.iter().map(|m| m.version).max().unwrap_or(0)
}

pub(crate) fn wall_millis() -> i64 {
    crate::record::Timestamp::now().millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_without_gaps() {
        for list in [SQLITE, POSTGRES] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i64::try_from(i).unwrap_or(-1) + 1);
            }
        }
        assert_eq!(SQLITE.len(), POSTGRES.len());
    }
}
