//! The SQLite backend: one database file, `<data-dir>/state.db`, in WAL mode with
//! `synchronous=FULL` (a commit returns only after the WAL is fsynced, so an acknowledged write
//! survives `kill -9` and power loss), foreign keys on, and a busy timeout so writers wait for
//! each other instead of failing. Connections are pooled (one is opened per concurrent caller,
//! idle ones are kept up to a bound); every write runs in `BEGIN IMMEDIATE`, so concurrent
//! writers queue on SQLite's write lock and a read-then-write never has to be retried.
//!
//! Submissions use group commit: concurrent submitters queue their requests, and whichever takes
//! the write turn commits every queued submission in one transaction (each in its own savepoint,
//! so one refused request does not affect the others) with one fsync. Each caller returns only
//! after the transaction holding its submission committed.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _, TransactionBehavior};

use crate::error::StoreError;
use crate::migrate::{self, Migration};
use crate::record::{
    check_lease_args, AgentRun, EventDraft, FleetInForce, Heartbeat, JobEvent, JobFilter, JobId,
    JobPage, JobRecord, JobState, Lease, NewJob, PageRequest, PreparedJob, RunReport, StateCount,
    Submitted, Timestamp, Transition, ZoneCondition,
};
use crate::sql::{self, Origin, RawEvent, RawJob};
use crate::Store;

/// Tunables for [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a writer waits for the write lock before failing.
    pub busy_timeout: Duration,
    /// Idle connections kept open.
    pub max_idle: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(30),
            max_idle: 16,
        }
    }
}

/// The embedded store.
pub struct SqliteStore {
    path: PathBuf,
    origin: Origin,
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
    /// Writers of this process queue here rather than in SQLite's busy handler, which sleeps
    /// and retries and gives long tail latencies under contention.
    write_lock: Mutex<()>,
    /// Submissions and transitions waiting for the next group commit.
    pending: Mutex<Vec<Pending>>,
}

type SubmitOutcome = Result<Option<JobId>, StoreError>;
type TransitionOutcome = Result<JobRecord, StoreError>;

/// A write waiting for the next group commit, with where its outcome goes.
enum Pending {
    Submit {
        job: PreparedJob,
        reply: mpsc::SyncSender<SubmitOutcome>,
    },
    Transition {
        id: JobId,
        t: Transition,
        details: String,
        reply: mpsc::SyncSender<TransitionOutcome>,
    },
}

/// What one pending write came to inside the batch transaction.
enum Outcome {
    Submit(SubmitOutcome),
    Transition(Result<Box<JobRecord>, StoreError>),
}

impl Outcome {
    fn is_err(&self) -> bool {
        match self {
            Self::Submit(r) => r.is_err(),
            Self::Transition(r) => r.is_err(),
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/state.db` and brings its schema up to date.
    pub fn open(data_dir: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = tidegate_vocab::DataDir::new(data_dir).state_db();
        let origin = Origin {
            backend: "sqlite",
            location: path.display().to_string(),
        };
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Unavailable {
            backend: "sqlite",
            location: data_dir.display().to_string(),
            op: "create data directory",
            source: Box::new(e),
        })?;
        let store = SqliteStore {
            path,
            origin,
            options,
            idle: Mutex::new(Vec::new()),
            write_lock: Mutex::new(()),
            pending: Mutex::new(Vec::new()),
        };
        let mut conn = store.connect()?;
        store.migrate(&mut conn, migrate::SQLITE)?;
        store.put_back(conn);
        tracing::info!(path = %store.path.display(), "sqlite store open");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.with_conn("read schema version", |c| {
            c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
        })
    }

    /// `PRAGMA synchronous` as the store's connections run it (2 = FULL).
    pub fn synchronous_level(&self) -> Result<i64, StoreError> {
        self.with_conn("read synchronous level", |c| {
            c.query_row("PRAGMA synchronous", [], |r| r.get(0))
        })
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let unavailable = |op: &'static str| {
            let location = self.origin.location.clone();
            move |e: rusqlite::Error| StoreError::Unavailable {
                backend: "sqlite",
                location,
                op,
                source: Box::new(e),
            }
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&self.path, flags).map_err(unavailable("open database"))?;
        conn.busy_timeout(self.options.busy_timeout)
            .map_err(unavailable("set busy timeout"))?;
        // Switching a fresh database to WAL needs it alone for a moment; another connection
        // opening it at once can answer "busy" without the busy handler, so retry within the
        // busy timeout.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < self.options.busy_timeout =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.map_err(unavailable("enable WAL"))?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable {
                backend: "sqlite",
                location: self.origin.location.clone(),
                op: "enable WAL",
                source: format!("journal mode stayed `{mode}` (is the file on a file system without shared memory?)").into(),
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(unavailable("set synchronous=FULL"))?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.options.max_idle {
            idle.push(conn);
        }
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    /// Queues a write for the next group commit and takes the write turn: if an earlier
    /// committer already took it, the batch drained here may be empty (or hold later arrivals,
    /// which are committed for them). The outcome comes on the write's own channel.
    fn group_commit(&self, write: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(write);
        let _turn = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let batch = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !batch.is_empty() {
            self.commit_batch(batch);
        }
    }

    /// Commits a batch of writes (submissions, transitions) in one transaction, one savepoint
    /// each, and answers every writer: its own outcome if the transaction committed, the
    /// commit's error otherwise. One fsync for all of them.
    fn commit_batch(&self, batch: Vec<Pending>) {
        let outcome = self.with_conn_store(|conn| {
            let e = |op| move |err| self.db_err(op, err);
            let mut tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(e("begin write"))?;
            let mut results = Vec::with_capacity(batch.len());
            for item in &batch {
                let mut sp = tx.savepoint().map_err(e("savepoint"))?;
                let r = match item {
                    Pending::Submit { job, .. } => Outcome::Submit(self.submit_one(&sp, job)),
                    Pending::Transition { id, t, details, .. } => {
                        Outcome::Transition(self.transition_one(&sp, id, t, details).map(Box::new))
                    }
                };
                if r.is_err() {
                    sp.rollback().map_err(e("rollback to savepoint"))?;
                }
                sp.commit().map_err(e("release savepoint"))?;
                results.push(r);
            }
            tx.commit().map_err(e("commit write"))?;
            Ok(results)
        });
        match outcome {
            Ok(results) => {
                for (item, r) in batch.into_iter().zip(results) {
                    match (item, r) {
                        (Pending::Submit { reply, .. }, Outcome::Submit(r)) => {
                            let _ = reply.send(r);
                        }
                        (Pending::Transition { reply, .. }, Outcome::Transition(r)) => {
                            let _ = reply.send(r.map(|job| *job));
                        }
                        // Each outcome is made from its own write, in order.
                        _ => debug_assert!(false, "a write's outcome is of its own kind"),
                    }
                }
            }
            Err(err) => {
                let text = err.to_string();
                let unavailable = matches!(err, StoreError::Unavailable { .. });
                let failed = || {
                    let source: Box<dyn std::error::Error + Send + Sync> = text.clone().into();
                    let (backend, location) = ("sqlite", self.origin.location.clone());
                    if unavailable {
                        StoreError::Unavailable {
                            backend,
                            location,
                            op: "commit write",
                            source,
                        }
                    } else {
                        StoreError::Database {
                            backend,
                            location,
                            op: "commit write",
                            source,
                        }
                    }
                };
                for item in batch {
                    match item {
                        Pending::Submit { reply, .. } => {
                            let _ = reply.send(Err(failed()));
                        }
                        Pending::Transition { reply, .. } => {
                            let _ = reply.send(Err(failed()));
                        }
                    }
                }
            }
        }
    }

    /// One transition inside a batch transaction: the job's state moves only from the state and
    /// version the transition expects.
    fn transition_one(
        &self,
        tx: &Connection,
        id: &JobId,
        t: &Transition,
        details: &str,
    ) -> TransitionOutcome {
        let e = |op| move |err| self.db_err(op, err);
        let cur: Option<(String, i64, Option<String>, Option<String>)> = tx
            .prepare_cached(&q(sql::SELECT_FOR_TRANSITION))
            .and_then(|mut st| {
                st.query_row([id.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
            })
            .optional()
            .map_err(e("read job state"))?;
        let Some((state, version, zone, pool)) = cur else {
            return Err(StoreError::NotFound { id: id.clone() });
        };
        let from = self.origin.state(&state)?;
        let (zone, pool) = next_place(t, zone, pool);
        check_move(id, from, self.origin.unsigned("job version", version)?, t)?;
        let seq: i64 = tx
            .prepare_cached(&q(sql::UPDATE_STATE))
            .and_then(|mut st| {
                st.query_row(
                    params![
                        t.to.as_str(),
                        t.reason,
                        zone,
                        pool,
                        t.at.0,
                        id.as_str(),
                        version_i64(t.expected_version)
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(e("update job state"))?;
        tx.prepare_cached(&q(sql::INSERT_EVENT))
            .and_then(|mut st| {
                st.execute(params![
                    id.as_str(),
                    seq,
                    t.to.as_str(),
                    from.as_str(),
                    t.to.as_str(),
                    t.reason,
                    details,
                    t.at.0,
                    t.reason_code
                ])
            })
            .map_err(e("insert transition event"))?;
        let job = self.load_job(tx, id.as_str())?;
        job.ok_or_else(|| StoreError::NotFound { id: id.clone() })
    }

    fn went_away(&self, op: &'static str) -> StoreError {
        StoreError::Unavailable {
            backend: "sqlite",
            location: self.origin.location.clone(),
            op,
            source: "the committing thread went away".into(),
        }
    }

    /// One submission inside a batch transaction.
    fn submit_one(&self, tx: &Connection, p: &PreparedJob) -> SubmitOutcome {
        let j = &p.job;
        let e = |op| move |err| self.db_err(op, err);
        if let Some(key) = &j.idempotency_key {
            let prior: Option<(String, String)> = tx
                .prepare_cached(&q(sql::SELECT_KEY))
                .and_then(|mut st| {
                    st.query_row(params![j.team, key], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .optional()
                .map_err(e("read idempotency key"))?;
            if let Some((digest, job_id)) = prior {
                let existing = self.origin.id(job_id)?;
                if digest != p.request_digest {
                    return Err(StoreError::IdempotencyConflict {
                        team: j.team.clone(),
                        key: key.clone(),
                        existing,
                    });
                }
                return Ok(Some(existing));
            }
        }
        let n: i64 = tx
            .prepare_cached(&q(sql::JOB_EXISTS))
            .and_then(|mut st| st.query_row([j.id.as_str()], |r| r.get(0)))
            .map_err(e("check job id"))?;
        if n > 0 {
            return Err(StoreError::AlreadyExists { id: j.id.clone() });
        }
        tx.prepare_cached(&q(sql::INSERT_JOB))
            .and_then(|mut st| {
                st.execute(params![
                    j.id.as_str(),
                    j.name,
                    j.team,
                    p.spec_text,
                    p.spec_digest,
                    j.reason,
                    j.at.0,
                    j.idempotency_key
                ])
            })
            .map_err(e("insert job"))?;
        tx.prepare_cached(&q(sql::INSERT_EVENT))
            .and_then(|mut st| {
                st.execute(params![
                    j.id.as_str(),
                    1i64,
                    "submitted",
                    None::<String>,
                    "submitted",
                    j.reason,
                    "null",
                    j.at.0,
                    None::<String>
                ])
            })
            .map_err(e("insert submitted event"))?;
        if let Some(key) = &j.idempotency_key {
            tx.prepare_cached(&q(sql::INSERT_KEY))
                .and_then(|mut st| {
                    st.execute(params![
                        j.team,
                        key,
                        p.request_digest,
                        j.id.as_str(),
                        j.at.0
                    ])
                })
                .map_err(e("insert idempotency key"))?;
        }
        Ok(None)
    }

    fn db_err(&self, op: &'static str, e: rusqlite::Error) -> StoreError {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    // A full disk or an I/O error: the database is fine, the write may succeed
                    // once there is room (or the device is back).
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
            )
        );
        let (backend, location, source) = ("sqlite", self.origin.location.clone(), Box::new(e));
        if busy {
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

    /// Runs `f` on a pooled connection; plain database errors become [`StoreError::Database`].
    fn with_conn<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_conn_store(|c| f(c).map_err(|e| self.db_err(op, e)))
    }

    /// Runs the write transaction `f` on a pooled connection, one writer of this process at a time.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _turn = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.with_conn_store(f)
    }

    /// Runs `f` on a pooled connection; `f` maps its own errors.
    fn with_conn_store<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.take()?;
        let out = f(&mut conn);
        // A connection stays usable after a failed statement; an open transaction is rolled back
        // when the `Transaction` is dropped.
        self.put_back(conn);
        out
    }

    fn migrate(&self, conn: &mut Connection, list: &[Migration]) -> Result<(), StoreError> {
        let mig = |version: i64| {
            let location = self.origin.location.clone();
            move |e: rusqlite::Error| StoreError::Migration {
                backend: "sqlite",
                location,
                version,
                reason: e.to_string(),
            }
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(mig(0))?;
        tx.execute_batch(migrate::MIGRATIONS_TABLE)
            .map_err(mig(0))?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(mig(0))?;
        let latest = migrate::latest(list);
        if current > latest {
            return Err(StoreError::Migration {
                backend: "sqlite",
                location: self.origin.location.clone(),
                version: current,
                reason: format!(
                    "the database is at schema version {current}, newer than this build's {latest}"
                ),
            });
        }
        for m in list.iter().filter(|m| m.version > current) {
            tx.execute_batch(m.sql).map_err(mig(m.version))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, migrate::wall_millis()],
            )
            .map_err(mig(m.version))?;
            tracing::info!(version = m.version, name = m.name, path = %self.path.display(), "applied migration");
        }
        tx.commit().map_err(mig(latest))
    }

    fn load_job(&self, conn: &Connection, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let raw = conn
            .prepare_cached(&q(&sql::select_job()))
            .and_then(|mut st| st.query_row([id], raw_job).optional())
            .map_err(|e| self.db_err("read job", e))?;
        raw.map(|r| r.decode(&self.origin).map(|(j, _)| j))
            .transpose()
    }
}

/// The `$N` statement in SQLite's `?N` form.
fn q(s: &str) -> String {
    s.replace('$', "?")
}

fn raw_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<sql::RawRun> {
    Ok(sql::RawRun {
        run_id: r.get(0)?,
        job_id: r.get(1)?,
        zone: r.get(2)?,
        launch: r.get(3)?,
        cancel: r.get(4)?,
        status: r.get(5)?,
        exit_code: r.get(6)?,
        log_tail: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn raw_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        id: r.get(0)?,
        name: r.get(1)?,
        team: r.get(2)?,
        spec: r.get(3)?,
        spec_digest: r.get(4)?,
        state: r.get(5)?,
        reason: r.get(6)?,
        zone: r.get(7)?,
        pool: r.get(8)?,
        submitted_at: r.get(9)?,
        updated_at: r.get(10)?,
        version: r.get(11)?,
        idempotency_key: r.get(12)?,
        seq: r.get(13)?,
    })
}

fn raw_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        job_id: r.get(0)?,
        seq: r.get(1)?,
        kind: r.get(2)?,
        from_state: r.get(3)?,
        to_state: r.get(4)?,
        reason: r.get(5)?,
        details: r.get(6)?,
        at: r.get(7)?,
        reason_code: r.get(8)?,
    })
}

fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    fn submit(&self, job: NewJob) -> Result<Submitted, StoreError> {
        let p = job.prepare()?;
        let new_id = p.job.id.clone();
        // What a fresh submission stores, so a new job is returned without reading it back.
        let fresh = JobRecord {
            id: p.job.id.clone(),
            name: p.job.name.clone(),
            team: p.job.team.clone(),
            spec: p.job.spec.clone(),
            spec_digest: p.spec_digest.clone(),
            state: JobState::Submitted,
            reason: p.job.reason.clone(),
            zone: None,
            pool: None,
            submitted_at: p.job.at,
            updated_at: p.job.at,
            version: 1,
            idempotency_key: p.job.idempotency_key.clone(),
        };
        let (tx, rx) = mpsc::sync_channel(1);
        self.group_commit(Pending::Submit { job: p, reply: tx });
        let replay_of = rx.recv().map_err(|_| self.went_away("submit"))??;
        match replay_of {
            Some(id) => {
                let job = self
                    .get(&id)?
                    .ok_or_else(|| StoreError::NotFound { id: id.clone() })?;
                Ok(Submitted {
                    job,
                    replayed: true,
                })
            }
            None => {
                debug_assert_eq!(fresh.id, new_id);
                Ok(Submitted {
                    job: fresh,
                    replayed: false,
                })
            }
        }
    }

    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.with_conn_store(|c| self.load_job(c, id.as_str()))
    }

    fn idempotency_key_bound(&self, team: &str, key: &str) -> Result<bool, StoreError> {
        self.with_conn("look up idempotency key", |c| {
            c.prepare_cached(&q(sql::SELECT_KEY))?
                .query_row(params![team, key], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }

    fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<JobPage, StoreError> {
        let (after, limit) = page.check()?;
        let raws = self.with_conn("list jobs", |c| {
            let mut st = c.prepare_cached(&q(&sql::list_jobs()))?;
            let rows = st.query_map(
                params![
                    after,
                    filter.state.map(JobState::as_str),
                    filter.team,
                    filter.zone,
                    limit + 1
                ],
                raw_job,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        page_of(raws, limit, &self.origin)
    }

    fn transition(&self, id: &JobId, t: Transition) -> Result<JobRecord, StoreError> {
        let details = t.check()?;
        // Committed with whatever else is waiting to be written (submissions arriving while the
        // scheduler moves jobs share one fsync with its transitions).
        let (tx, rx) = mpsc::sync_channel(1);
        self.group_commit(Pending::Transition {
            id: id.clone(),
            t,
            details,
            reply: tx,
        });
        rx.recv().map_err(|_| self.went_away("transition"))?
    }

    fn append_event(&self, id: &JobId, ev: EventDraft) -> Result<JobEvent, StoreError> {
        let details = ev.check()?;
        self.write(|conn| {
            let e = |op| move |err| self.db_err(op, err);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(e("begin append event"))?;
            let seq: Option<i64> = tx
                .query_row(&q(sql::BUMP_EVENT), [id.as_str()], |r| r.get(0))
                .optional()
                .map_err(e("number event"))?;
            let Some(seq) = seq else {
                return Err(StoreError::NotFound { id: id.clone() });
            };
            tx.execute(
                &q(sql::INSERT_EVENT),
                params![
                    id.as_str(),
                    seq,
                    ev.kind,
                    None::<String>,
                    None::<String>,
                    ev.reason,
                    details,
                    ev.at.0,
                    ev.reason_code
                ],
            )
            .map_err(e("insert event"))?;
            tx.commit().map_err(e("commit event"))?;
            Ok(JobEvent {
                job_id: id.clone(),
                seq: self.origin.unsigned("event seq", seq)?,
                kind: ev.kind,
                from_state: None,
                to_state: None,
                reason: ev.reason,
                reason_code: ev.reason_code,
                details: self.origin.json("event details", &details)?,
                at: ev.at,
            })
        })
    }

    fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError> {
        let raws = self.with_conn("read events", |c| {
            let mut st = c.prepare_cached(&q(sql::SELECT_EVENTS))?;
            let rows = st.query_map([id.as_str()], raw_event)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raws.into_iter().map(|r| r.decode(&self.origin)).collect()
    }

    fn counts(&self) -> Result<Vec<StateCount>, StoreError> {
        let rows: Vec<(String, Option<String>, i64)> = self.with_conn("count jobs", |c| {
            let mut st = c.prepare_cached(sql::COUNTS)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        counts_of(rows, &self.origin)
    }

    fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        let expires = check_lease_args(name, holder, ttl, now)?;
        let row: Option<(String, String, i64, i64)> = self.with_conn("acquire lease", |c| {
            c.query_row(
                &q(sql::LEASE_ACQUIRE),
                params![name, holder, expires, now.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })?;
        row.map(|(n, h, x, e)| sql::lease(&self.origin, n, h, x, e))
            .transpose()
    }

    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        let expires = check_lease_args(&lease.name, &lease.holder, ttl, now)?;
        let row: Option<(String, String, i64, i64)> = self.with_conn("renew lease", |c| {
            c.query_row(
                &q(sql::LEASE_RENEW),
                params![
                    expires,
                    lease.name,
                    lease.holder,
                    version_i64(lease.epoch),
                    now.0
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })?;
        row.map(|(n, h, x, e)| sql::lease(&self.origin, n, h, x, e))
            .transpose()
    }

    fn release_idempotency_key(&self, id: &JobId) -> Result<bool, StoreError> {
        let n = self.write(|c| {
            c.execute(&q(sql::KEY_RELEASE), [id.as_str()])
                .map_err(|e| self.db_err("release idempotency key", e))
        })?;
        Ok(n > 0)
    }

    fn release_lease(&self, lease: &Lease) -> Result<bool, StoreError> {
        let n = self.with_conn("release lease", |c| {
            c.execute(
                &q(sql::LEASE_RELEASE),
                params![lease.name, lease.holder, version_i64(lease.epoch)],
            )
        })?;
        Ok(n > 0)
    }

    fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let row: Option<(String, String, i64, i64)> = self.with_conn("read lease", |c| {
            c.query_row(&q(sql::LEASE_GET), [name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })?;
        row.map(|(n, h, x, e)| sql::lease(&self.origin, n, h, x, e))
            .transpose()
    }

    fn set_zone_condition(&self, cond: &ZoneCondition) -> Result<(), StoreError> {
        cond.check()?;
        self.write(|c| {
            c.execute(
                &q(sql::ZONE_SET),
                params![
                    cond.zone,
                    cond.health,
                    i64::from(cond.throttled),
                    cond.reason,
                    cond.updated_at.0
                ],
            )
            .map_err(|e| self.db_err("set zone condition", e))
        })?;
        Ok(())
    }

    fn enqueue_run(&self, run: &AgentRun) -> Result<bool, StoreError> {
        let launch = run.launch.to_string();
        let n = self.write(|c| {
            c.execute(
                &q(sql::RUN_ENQUEUE),
                params![
                    run.run_id,
                    run.job_id.as_str(),
                    run.zone,
                    launch,
                    run.updated_at.0
                ],
            )
            .map_err(|e| self.db_err("hand a run to an agent", e))
        })?;
        Ok(n > 0)
    }

    fn agent_run(&self, run_id: &str) -> Result<Option<AgentRun>, StoreError> {
        let raw = self.with_conn("read agent run", |c| {
            c.query_row(&q(&sql::select_run()), [run_id], raw_run)
                .optional()
        })?;
        raw.map(|r| r.decode(&self.origin)).transpose()
    }

    fn cancel_run(&self, run_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let n = self.write(|c| {
            c.execute(&q(sql::RUN_CANCEL), params![run_id, now.0])
                .map_err(|e| self.db_err("cancel agent run", e))
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
        let raws = self.write(|conn| {
            let e = |op| move |err| self.db_err(op, err);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(e("begin agent sync"))?;
            tx.execute(&q(sql::HEARTBEAT), params![zone, agent, now.0])
                .map_err(e("record heartbeat"))?;
            for r in reports {
                tx.execute(
                    &q(sql::RUN_REPORT),
                    params![r.run_id, zone, r.status, r.exit_code, r.tail(), now.0],
                )
                .map_err(e("record run report"))?;
            }
            let raws = {
                let mut st = tx
                    .prepare_cached(&q(&sql::select_agent_work()))
                    .map_err(e("read agent work"))?;
                let rows = st
                    .query_map(params![zone, i64::from(limit)], raw_run)
                    .map_err(e("read agent work"))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(e("read agent work"))?
            };
            tx.commit().map_err(e("commit agent sync"))?;
            Ok(raws)
        })?;
        raws.into_iter().map(|r| r.decode(&self.origin)).collect()
    }

    fn heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError> {
        self.with_conn("read heartbeats", |c| {
            let mut st = c.prepare_cached(&q(sql::HEARTBEATS))?;
            let rows = st.query_map([], |r| {
                Ok(Heartbeat {
                    zone: r.get(0)?,
                    agent: r.get(1)?,
                    last_seen: Timestamp(r.get(2)?),
                })
            })?;
            rows.collect()
        })
    }

    fn set_fleet_in_force(&self, f: &FleetInForce) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                &q(sql::FLEET_SET),
                params![f.dir, f.fleet_hash, f.policy_hash, f.updated_at.0],
            )
            .map_err(|e| self.db_err("record the fleet in force", e))
        })?;
        Ok(())
    }

    fn fleet_in_force(&self) -> Result<Option<FleetInForce>, StoreError> {
        self.with_conn("read the fleet in force", |c| {
            let mut st = c.prepare_cached(&q(sql::FLEET_GET))?;
            let mut rows = st.query_map([], |r| {
                Ok(FleetInForce {
                    dir: r.get(0)?,
                    fleet_hash: r.get(1)?,
                    policy_hash: r.get(2)?,
                    updated_at: Timestamp(r.get(3)?),
                })
            })?;
            rows.next().transpose()
        })
    }

    fn zone_conditions(&self) -> Result<Vec<ZoneCondition>, StoreError> {
        self.with_conn("read zone conditions", |c| {
            let mut st = c.prepare_cached(&q(sql::ZONE_LIST))?;
            let rows = st.query_map([], |r| {
                Ok(ZoneCondition {
                    zone: r.get(0)?,
                    health: r.get(1)?,
                    throttled: r.get::<_, i64>(2)? != 0,
                    reason: r.get(3)?,
                    updated_at: Timestamp(r.get(4)?),
                })
            })?;
            rows.collect()
        })
    }
}

/// Zone and pool after a transition: set on admission, cleared when the job goes back to the
/// queue, kept otherwise.
pub(crate) fn next_place(
    t: &Transition,
    zone: Option<String>,
    pool: Option<String>,
) -> (Option<String>, Option<String>) {
    match t.to {
        JobState::Admitted => (t.zone.clone(), t.pool.clone()),
        JobState::Queued => (t.zone.clone(), None),
        _ => (zone, pool),
    }
}

/// The compare-and-set and lifecycle checks of a transition.
pub(crate) fn check_move(
    id: &JobId,
    from: JobState,
    version: u64,
    t: &Transition,
) -> Result<(), StoreError> {
    if version != t.expected_version {
        return Err(StoreError::VersionConflict {
            id: id.clone(),
            expected: t.expected_version,
            actual: version,
            state: from,
        });
    }
    if !from.can_move_to(t.to) {
        return Err(StoreError::IllegalTransition {
            id: id.clone(),
            from,
            to: t.to,
        });
    }
    Ok(())
}

pub(crate) fn page_of(
    raws: Vec<RawJob>,
    limit: i64,
    origin: &Origin,
) -> Result<JobPage, StoreError> {
    let more = i64::try_from(raws.len()).unwrap_or(i64::MAX) > limit;
    let mut jobs = Vec::with_capacity(raws.len());
    let mut last = 0i64;
    for raw in raws
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
    {
        let (job, seq) = raw.decode(origin)?;
        last = seq;
        jobs.push(job);
    }
    let next = if more {
        Some(origin.unsigned("job seq", last)?)
    } else {
        None
    };
    Ok(JobPage { jobs, next })
}

pub(crate) fn counts_of(
    rows: Vec<(String, Option<String>, i64)>,
    origin: &Origin,
) -> Result<Vec<StateCount>, StoreError> {
    rows.into_iter()
        .map(|(s, zone, n)| {
            Ok(StateCount {
                state: origin.state(&s)?,
                zone,
                count: origin.unsigned("count", n)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_full_disk_or_an_io_error_is_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_IOERR_WRITE,
            rusqlite::ffi::SQLITE_BUSY,
        ] {
            let e = store.db_err("submit", failure(code));
            assert!(e.is_unavailable(), "code {code}: {e:?}");
        }
        let e = store.db_err("submit", failure(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert!(matches!(e, StoreError::Database { .. }), "{e:?}");
    }
}
