//! The PostgreSQL backend, for several control-plane replicas sharing one database.
//!
//! It uses the `postgres` crate, the blocking client built on `tokio-postgres`: the [`Store`]
//! interface is synchronous (see the crate documentation), and a blocking client keeps each
//! transaction a plain sequence of calls on one thread, with no runtime of ours to thread through.
//! Connections are pooled (idle ones kept up to a bound; a connection that saw an error or was
//! closed is dropped, so the store recovers by itself once the database is back). Connecting has
//! a bounded timeout (default 5 s), and TCP keepalives and a TCP user timeout bound how long a
//! request waits on a database that vanished, so a down database gives a clear
//! [`StoreError::Unavailable`] naming the URL (password removed), not a hang.
//!
//! Commits are durable when they return (PostgreSQL's default `synchronous_commit = on`).
//! Transactions run at READ COMMITTED; every check-then-write is made safe by the write itself:
//! the state change is `UPDATE ... WHERE version = $expected`, the idempotency key is an
//! `INSERT ... ON CONFLICT DO NOTHING` on its primary key, and a lease changes hands only through
//! a conditional upsert. With `PgOptions::schema`, all tables live in that schema (created if
//! missing), which lets tests and tenants share a database.

use std::sync::Mutex;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls};

use crate::error::StoreError;
use crate::migrate::{self, Migration};
use crate::record::{
    check_lease_args, AgentRun, EventDraft, FleetInForce, Heartbeat, JobEvent, JobFilter, JobId,
    JobPage, JobRecord, JobState, Lease, NewJob, PageRequest, RunReport, StateCount, Submitted,
    Timestamp, Transition, ZoneCondition,
};
use crate::sql::{self, Origin, RawEvent, RawJob};
use crate::sqlite::{check_move, counts_of, next_place, page_of};
use crate::Store;

/// Advisory lock key taken while migrating (the bytes of "tidegate").
const MIGRATION_LOCK: i64 = 0x7469_6465_6761_7465;

/// Tunables for [`PgStore::connect`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Schema holding the tables (created if missing); `None` for the URL's default `search_path`.
    pub schema: Option<String>,
    /// Limit on each connection attempt (used unless the URL sets `connect_timeout`).
    pub connect_timeout: Duration,
    /// Idle connections kept open.
    pub max_idle: usize,
    /// Connections open at once (callers beyond it wait, up to `connect_timeout`, then get
    /// `Unavailable`): several replicas under load stay within the server's `max_connections`.
    pub max_open: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: None,
            connect_timeout: Duration::from_secs(5),
            max_idle: 8,
            max_open: 24,
        }
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    config: Config,
    schema: Option<String>,
    origin: Origin,
    max_idle: usize,
    idle: Mutex<Vec<Client>>,
    max_open: usize,
    wait: Duration,
    /// Connections checked out now, and the signal for a waiter when one comes back.
    in_use: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.origin.location)
            .field("schema", &self.schema)
            .finish()
    }
}

/// The URL without its password, for messages.
pub(crate) use tidegate_vocab::redact_url as redact;

fn check_schema(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            field: "schema",
            reason: format!("`{schema}` must be 1 to 63 characters of a-z, 0-9 and _, not starting with a digit"),
        })
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?options]`), brings the
    /// schema up to date and returns the store.
    pub fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let location = redact(url);
        let mut config: Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Invalid {
                field: "database",
                reason: format!("`{location}` is not a valid PostgreSQL URL: {e}"),
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(20));
        config.application_name("tidegate");
        if let Some(s) = &options.schema {
            check_schema(s)?;
        }
        let store = PgStore {
            config,
            schema: options.schema,
            origin: Origin {
                backend: "postgres",
                location,
            },
            max_idle: options.max_idle,
            idle: Mutex::new(Vec::new()),
            max_open: options.max_open.max(1),
            wait: options.connect_timeout,
            in_use: Mutex::new(0),
            freed: std::sync::Condvar::new(),
        };
        let mut client = store.open_client()?;
        store.migrate(&mut client, migrate::POSTGRES)?;
        store.put_back(client);
        tracing::info!(url = %store.origin.location, schema = ?store.schema, "postgres store open");
        Ok(store)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.with_client(|c| {
            let row = c
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )
                .map_err(self.err("read schema version"))?;
            Ok(row.get::<_, i64>(0))
        })
    }

    /// Drops the store's schema and everything in it (tests and teardown). Refused without a
    /// schema, so that the default schema is never dropped.
    pub fn drop_schema(&self) -> Result<(), StoreError> {
        let Some(s) = &self.schema else {
            return Err(StoreError::Invalid {
                field: "schema",
                reason: "no schema set; refusing to drop the default one".into(),
            });
        };
        let stmt = format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE");
        self.with_client(|c| c.batch_execute(&stmt).map_err(self.err("drop schema")))
    }

    fn open_client(&self) -> Result<Client, StoreError> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|e| StoreError::Unavailable {
                backend: "postgres",
                location: self.origin.location.clone(),
                op: "connect",
                source: Box::new(e),
            })?;
        if let Some(s) = &self.schema {
            client
                .batch_execute(&format!("SET search_path TO \"{s}\""))
                .map_err(self.err("set search_path"))?;
        }
        Ok(client)
    }

    fn put_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(client);
        }
    }

    fn take(&self) -> Result<Client, StoreError> {
        loop {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            match pooled {
                Some(c) if c.is_closed() => continue,
                Some(c) => return Ok(c),
                None => return self.open_client(),
            }
        }
    }

    /// Maps a driver error: connection-level failures are [`StoreError::Unavailable`].
    fn err(&self, op: &'static str) -> impl Fn(postgres::Error) -> StoreError + '_ {
        move |e| {
            let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
            let down = e.is_closed()
                || io
                || e.code().is_some_and(|c| {
                    c == &SqlState::ADMIN_SHUTDOWN
                        || c == &SqlState::CANNOT_CONNECT_NOW
                        || c == &SqlState::CRASH_SHUTDOWN
                        // Out of disk, memory or connections, or an I/O error on the server:
                        // temporary, a retry may succeed.
                        || c == &SqlState::DISK_FULL
                        || c == &SqlState::INSUFFICIENT_RESOURCES
                        || c == &SqlState::OUT_OF_MEMORY
                        || c == &SqlState::TOO_MANY_CONNECTIONS
                        || c == &SqlState::IO_ERROR
                });
            let (backend, location, source) =
                ("postgres", self.origin.location.clone(), Box::new(e));
            if down {
                StoreError::Unavailable {
                    backend,
                    location,
                    op,
                    source,
                }
            } else {
                StoreError::Database {
                    backend,
                    location,
                    op,
                    source,
                }
            }
        }
    }

    /// Runs `f` on a pooled connection, dropping the connection if anything failed.
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.acquire()?;
        let out = self.take().and_then(|mut client| {
            let out = f(&mut client);
            if matches!(out, Err(StoreError::Unavailable { .. } | StoreError::Database { .. })) {
                tracing::debug!(url = %self.origin.location, "dropping a connection after an error");
            } else {
                self.put_back(client);
            }
            out
        });
        self.release();
        out
    }

    /// Waits for one of the `max_open` connection slots.
    fn acquire(&self) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + self.wait;
        let mut n = self
            .in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n >= self.max_open {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable {
                    backend: "postgres",
                    location: self.origin.location.clone(),
                    op: "wait for a connection",
                    source: format!(
                        "all {} connections stayed busy for {:?}",
                        self.max_open, self.wait
                    )
                    .into(),
                });
            }
            n = self
                .freed
                .wait_timeout(n, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *n += 1;
        Ok(())
    }

    fn release(&self) {
        let mut n = self
            .in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n = n.saturating_sub(1);
        self.freed.notify_one();
    }

    fn migrate(&self, client: &mut Client, list: &[Migration]) -> Result<(), StoreError> {
        let mig = |version: i64| {
            let location = self.origin.location.clone();
            move |e: postgres::Error| StoreError::Migration {
                backend: "postgres",
                location,
                version,
                reason: e.to_string(),
            }
        };
        let mut tx = client.transaction().map_err(mig(0))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(mig(0))?;
        if let Some(s) = &self.schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""))
                .map_err(mig(0))?;
        }
        tx.batch_execute(migrate::MIGRATIONS_TABLE)
            .map_err(mig(0))?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .map_err(mig(0))?
            .get(0);
        let latest = migrate::latest(list);
        if current > latest {
            return Err(StoreError::Migration {
                backend: "postgres",
                location: self.origin.location.clone(),
                version: current,
                reason: format!(
                    "the database is at schema version {current}, newer than this build's {latest}"
                ),
            });
        }
        for m in list.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql).map_err(mig(m.version))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &migrate::wall_millis()],
            )
            .map_err(mig(m.version))?;
            tracing::info!(version = m.version, name = m.name, url = %self.origin.location, "applied migration");
        }
        tx.commit().map_err(mig(latest))
    }

    fn load_job(
        &self,
        c: &mut impl GenericClient,
        id: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        let row = c
            .query_opt(&sql::select_job(), &[&id])
            .map_err(self.err("read job"))?;
        row.map(|r| raw_job(&r).decode(&self.origin).map(|(j, _)| j))
            .transpose()
    }

    fn lease_row(
        &self,
        op: &'static str,
        stmt: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Lease>, StoreError> {
        let row = self.with_client(|c| c.query_opt(stmt, params).map_err(self.err(op)))?;
        row.map(|r| sql::lease(&self.origin, r.get(0), r.get(1), r.get(2), r.get(3)))
            .transpose()
    }
}

fn raw_run(r: &postgres::Row) -> sql::RawRun {
    sql::RawRun {
        run_id: r.get(0),
        job_id: r.get(1),
        zone: r.get(2),
        launch: r.get(3),
        cancel: r.get(4),
        status: r.get(5),
        exit_code: r.get(6),
        log_tail: r.get(7),
        updated_at: r.get(8),
    }
}

fn raw_job(r: &postgres::Row) -> RawJob {
    RawJob {
        id: r.get(0),
        name: r.get(1),
        team: r.get(2),
        spec: r.get(3),
        spec_digest: r.get(4),
        state: r.get(5),
        reason: r.get(6),
        zone: r.get(7),
        pool: r.get(8),
        submitted_at: r.get(9),
        updated_at: r.get(10),
        version: r.get(11),
        idempotency_key: r.get(12),
        seq: r.get(13),
    }
}

fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What one submit attempt found.
enum Attempt {
    Created,
    Replay(JobId),
    /// Another transaction inserted the same key first; read it on the next attempt.
    KeyRaced,
}

impl Store for PgStore {
    fn describe(&self) -> String {
        match &self.schema {
            Some(s) => format!("postgres {} (schema {s})", self.origin.location),
            None => format!("postgres {}", self.origin.location),
        }
    }

    fn submit(&self, job: NewJob) -> Result<Submitted, StoreError> {
        let p = job.prepare()?;
        let j = &p.job;
        for _ in 0..3 {
            let attempt = self.with_client(|client| {
                let mut tx = client.transaction().map_err(self.err("begin submit"))?;
                if let Some(key) = &j.idempotency_key {
                    let prior = tx
                        .query_opt(sql::SELECT_KEY, &[&j.team, key])
                        .map_err(self.err("read idempotency key"))?;
                    if let Some(row) = prior {
                        let digest: String = row.get(0);
                        let existing = self.origin.id(row.get(1))?;
                        if digest != p.request_digest {
                            return Err(StoreError::IdempotencyConflict {
                                team: j.team.clone(),
                                key: key.clone(),
                                existing,
                            });
                        }
                        return Ok(Attempt::Replay(existing));
                    }
                }
                let inserted = tx.execute(
                    sql::INSERT_JOB,
                    &[
                        &j.id.as_str(),
                        &j.name,
                        &j.team,
                        &p.spec_text,
                        &p.spec_digest,
                        &j.reason,
                        &j.at.0,
                        &j.idempotency_key,
                    ],
                );
                match inserted {
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                        return Err(StoreError::AlreadyExists { id: j.id.clone() })
                    }
                    other => other.map_err(self.err("insert job"))?,
                };
                tx.execute(
                    sql::INSERT_EVENT,
                    &[
                        &j.id.as_str(),
                        &1i64,
                        &"submitted",
                        &None::<String>,
                        &"submitted",
                        &j.reason,
                        &"null",
                        &j.at.0,
                        &None::<String>,
                    ],
                )
                .map_err(self.err("insert submitted event"))?;
                if let Some(key) = &j.idempotency_key {
                    let n = tx
                        .execute(
                            sql::INSERT_KEY,
                            &[&j.team, key, &p.request_digest, &j.id.as_str(), &j.at.0],
                        )
                        .map_err(self.err("insert idempotency key"))?;
                    if n == 0 {
                        return Ok(Attempt::KeyRaced);
                    }
                }
                tx.commit().map_err(self.err("commit submit"))?;
                Ok(Attempt::Created)
            })?;
            let (id, replayed) = match attempt {
                Attempt::Created => (j.id.clone(), false),
                Attempt::Replay(id) => (id, true),
                Attempt::KeyRaced => continue,
            };
            let job = self
                .get(&id)?
                .ok_or_else(|| StoreError::NotFound { id: id.clone() })?;
            return Ok(Submitted { job, replayed });
        }
        Err(StoreError::Database {
            backend: "postgres",
            location: self.origin.location.clone(),
            op: "submit",
            source: "the idempotency key kept changing under concurrent submits".into(),
        })
    }

    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.with_client(|c| self.load_job(c, id.as_str()))
    }

    fn idempotency_key_bound(&self, team: &str, key: &str) -> Result<bool, StoreError> {
        self.with_client(|c| {
            c.query_opt(sql::SELECT_KEY, &[&team, &key])
                .map(|r| r.is_some())
                .map_err(self.err("look up idempotency key"))
        })
    }

    fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<JobPage, StoreError> {
        let (after, limit) = page.check()?;
        let state = filter.state.map(JobState::as_str);
        let rows = self.with_client(|c| {
            c.query(
                &sql::list_jobs(),
                &[&after, &state, &filter.team, &filter.zone, &(limit + 1)],
            )
            .map_err(self.err("list jobs"))
        })?;
        page_of(rows.iter().map(raw_job).collect(), limit, &self.origin)
    }

    fn transition(&self, id: &JobId, t: Transition) -> Result<JobRecord, StoreError> {
        let details = t.check()?;
        self.with_client(|client| {
            let mut tx = client.transaction().map_err(self.err("begin transition"))?;
            let Some(row) = tx
                .query_opt(sql::SELECT_FOR_TRANSITION, &[&id.as_str()])
                .map_err(self.err("read job state"))?
            else {
                return Err(StoreError::NotFound { id: id.clone() });
            };
            let from = self.origin.state(row.get(0))?;
            let version = self.origin.unsigned("job version", row.get(1))?;
            let (zone, pool) = next_place(&t, row.get(2), row.get(3));
            check_move(id, from, version, &t)?;
            let updated = tx
                .query_opt(
                    sql::UPDATE_STATE,
                    &[
                        &t.to.as_str(),
                        &t.reason,
                        &zone,
                        &pool,
                        &t.at.0,
                        &id.as_str(),
                        &version_i64(t.expected_version),
                    ],
                )
                .map_err(self.err("update job state"))?;
            let Some(updated) = updated else {
                // Another transaction moved the job between our read and our write.
                drop(tx);
                let now = self
                    .load_job(client, id.as_str())?
                    .ok_or_else(|| StoreError::NotFound { id: id.clone() })?;
                return Err(StoreError::VersionConflict {
                    id: id.clone(),
                    expected: t.expected_version,
                    actual: now.version,
                    state: now.state,
                });
            };
            let seq: i64 = updated.get(0);
            tx.execute(
                sql::INSERT_EVENT,
                &[
                    &id.as_str(),
                    &seq,
                    &t.to.as_str(),
                    &from.as_str(),
                    &t.to.as_str(),
                    &t.reason,
                    &details,
                    &t.at.0,
                    &t.reason_code,
                ],
            )
            .map_err(self.err("insert transition event"))?;
            let job = self.load_job(&mut tx, id.as_str())?;
            tx.commit().map_err(self.err("commit transition"))?;
            job.ok_or_else(|| StoreError::NotFound { id: id.clone() })
        })
    }

    fn append_event(&self, id: &JobId, ev: EventDraft) -> Result<JobEvent, StoreError> {
        let details = ev.check()?;
        self.with_client(|client| {
            let mut tx = client
                .transaction()
                .map_err(self.err("begin append event"))?;
            let Some(row) = tx
                .query_opt(sql::BUMP_EVENT, &[&id.as_str()])
                .map_err(self.err("number event"))?
            else {
                return Err(StoreError::NotFound { id: id.clone() });
            };
            let seq: i64 = row.get(0);
            tx.execute(
                sql::INSERT_EVENT,
                &[
                    &id.as_str(),
                    &seq,
                    &ev.kind,
                    &None::<String>,
                    &None::<String>,
                    &ev.reason,
                    &details,
                    &ev.at.0,
                    &ev.reason_code,
                ],
            )
            .map_err(self.err("insert event"))?;
            tx.commit().map_err(self.err("commit event"))?;
            Ok(JobEvent {
                job_id: id.clone(),
                seq: self.origin.unsigned("event seq", seq)?,
                kind: ev.kind.clone(),
                from_state: None,
                to_state: None,
                reason: ev.reason.clone(),
                reason_code: ev.reason_code.clone(),
                details: self.origin.json("event details", &details)?,
                at: ev.at,
            })
        })
    }

    fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(sql::SELECT_EVENTS, &[&id.as_str()])
                .map_err(self.err("read events"))
        })?;
        rows.iter()
            .map(|r| {
                RawEvent {
                    job_id: r.get(0),
                    seq: r.get(1),
                    kind: r.get(2),
                    from_state: r.get(3),
                    to_state: r.get(4),
                    reason: r.get(5),
                    details: r.get(6),
                    at: r.get(7),
                    reason_code: r.get(8),
                }
                .decode(&self.origin)
            })
            .collect()
    }

    fn counts(&self) -> Result<Vec<StateCount>, StoreError> {
        let rows =
            self.with_client(|c| c.query(sql::COUNTS, &[]).map_err(self.err("count jobs")))?;
        counts_of(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            &self.origin,
        )
    }

    fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        let expires = check_lease_args(name, holder, ttl, now)?;
        self.lease_row(
            "acquire lease",
            sql::LEASE_ACQUIRE,
            &[&name, &holder, &expires, &now.0],
        )
    }

    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        let expires = check_lease_args(&lease.name, &lease.holder, ttl, now)?;
        self.lease_row(
            "renew lease",
            sql::LEASE_RENEW,
            &[
                &expires,
                &lease.name,
                &lease.holder,
                &version_i64(lease.epoch),
                &now.0,
            ],
        )
    }

    fn release_idempotency_key(&self, id: &JobId) -> Result<bool, StoreError> {
        let n = self.with_client(|c| {
            c.execute(sql::KEY_RELEASE, &[&id.as_str()])
                .map_err(self.err("release idempotency key"))
        })?;
        Ok(n > 0)
    }

    fn release_lease(&self, lease: &Lease) -> Result<bool, StoreError> {
        let n = self.with_client(|c| {
            c.execute(
                sql::LEASE_RELEASE,
                &[&lease.name, &lease.holder, &version_i64(lease.epoch)],
            )
            .map_err(self.err("release lease"))
        })?;
        Ok(n > 0)
    }

    fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.lease_row("read lease", sql::LEASE_GET, &[&name])
    }

    fn set_zone_condition(&self, cond: &ZoneCondition) -> Result<(), StoreError> {
        cond.check()?;
        let throttled = i64::from(cond.throttled);
        self.with_client(|c| {
            c.execute(
                sql::ZONE_SET,
                &[
                    &cond.zone,
                    &cond.health,
                    &throttled,
                    &cond.reason,
                    &cond.updated_at.0,
                ],
            )
            .map_err(self.err("set zone condition"))
        })?;
        Ok(())
    }

    fn enqueue_run(&self, run: &AgentRun) -> Result<bool, StoreError> {
        let launch = run.launch.to_string();
        let n = self.with_client(|c| {
            c.execute(
                sql::RUN_ENQUEUE,
                &[
                    &run.run_id,
                    &run.job_id.as_str(),
                    &run.zone,
                    &launch,
                    &run.updated_at.0,
                ],
            )
            .map_err(self.err("hand a run to an agent"))
        })?;
        Ok(n > 0)
    }

    fn agent_run(&self, run_id: &str) -> Result<Option<AgentRun>, StoreError> {
        let row = self.with_client(|c| {
            c.query_opt(&sql::select_run(), &[&run_id])
                .map_err(self.err("read agent run"))
        })?;
        row.map(|r| raw_run(&r).decode(&self.origin)).transpose()
    }

    fn cancel_run(&self, run_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let n = self.with_client(|c| {
            c.execute(sql::RUN_CANCEL, &[&run_id, &now.0])
                .map_err(self.err("cancel agent run"))
        })?;
        Ok(n > 0)
    }

    fn agent_sync(
        &self,
        zone: &str,
        agent: &str,
        reports: &[RunReport],
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<AgentRun>, StoreError> {
        for r in reports {
            r.check()?;
        }
        let rows = self.with_client(|client| {
            let mut tx = client.transaction().map_err(self.err("begin agent sync"))?;
            tx.execute(sql::HEARTBEAT, &[&zone, &agent, &now.0])
                .map_err(self.err("record heartbeat"))?;
            for r in reports {
                let code = r.exit_code.map(i64::from);
                tx.execute(
                    sql::RUN_REPORT,
                    &[&r.run_id, &zone, &r.status, &code, &r.tail(), &now.0],
                )
                .map_err(self.err("record run report"))?;
            }
            let rows = tx
                .query(&sql::select_agent_work(), &[&zone, &i64::from(limit)])
                .map_err(self.err("read agent work"))?;
            tx.commit().map_err(self.err("commit agent sync"))?;
            Ok(rows)
        })?;
        rows.iter()
            .map(|r| raw_run(r).decode(&self.origin))
            .collect()
    }

    fn heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(sql::HEARTBEATS, &[])
                .map_err(self.err("read heartbeats"))
        })?;
        Ok(rows
            .iter()
            .map(|r| Heartbeat {
                zone: r.get(0),
                agent: r.get(1),
                last_seen: Timestamp(r.get(2)),
            })
            .collect())
    }

    fn set_fleet_in_force(&self, f: &FleetInForce) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                sql::FLEET_SET,
                &[&f.dir, &f.fleet_hash, &f.policy_hash, &f.updated_at.0],
            )
            .map_err(self.err("record the fleet in force"))
        })?;
        Ok(())
    }

    fn fleet_in_force(&self) -> Result<Option<FleetInForce>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(sql::FLEET_GET, &[])
                .map_err(self.err("read the fleet in force"))
        })?;
        Ok(rows.first().map(|r| FleetInForce {
            dir: r.get(0),
            fleet_hash: r.get(1),
            policy_hash: r.get(2),
            updated_at: Timestamp(r.get(3)),
        }))
    }

    fn zone_conditions(&self) -> Result<Vec<ZoneCondition>, StoreError> {
        let rows = self.with_client(|c| {
            c.query(sql::ZONE_LIST, &[])
                .map_err(self.err("read zone conditions"))
        })?;
        Ok(rows
            .iter()
            .map(|r| ZoneCondition {
                zone: r.get(0),
                health: r.get(1),
                throttled: r.get::<_, i64>(2) != 0,
                reason: r.get(3),
                updated_at: Timestamp(r.get(4)),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_removed_from_urls() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(check_schema("t_abc_1").is_ok());
        assert!(check_schema("1abc").is_err());
        assert!(check_schema("a\"b").is_err());
    }
}
