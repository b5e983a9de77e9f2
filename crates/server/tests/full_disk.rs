//! A store that cannot write (a full disk, an I/O error) or that fails on a fault of its own:
//! the API answers 503 `unavailable` (or 500 `internal`) without naming any file, and `/healthz`
//! reports the store unhealthy until a write succeeds again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{manifest, TestServer};
use tidegate_identity::Role;
use tidegate_store::{
    AgentRun, EventDraft, FleetInForce, Heartbeat, JobEvent, JobFilter, JobId, JobPage, JobRecord,
    Lease, NewJob, PageRequest, RunReport, SqliteOptions, SqliteStore, StateCount, Store,
    StoreError, Submitted, Timestamp, Transition, ZoneCondition,
};

const OK: u8 = 0;
/// Every write fails as SQLite's does on a full disk.
const DISK_FULL: u8 = 1;
/// Every write fails with an error of the database itself (a fault, not a temporary state).
const FAULT: u8 = 2;

/// A real SQLite store whose writes can be switched to fail.
#[derive(Debug)]
struct FailingStore {
    inner: SqliteStore,
    mode: AtomicU8,
}

impl FailingStore {
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let location = self.inner.path().display().to_string();
        match self.mode.load(Ordering::SeqCst) {
            DISK_FULL => Err(StoreError::Unavailable {
                backend: "sqlite",
                location,
                op,
                source: Box::new(std::io::Error::from_raw_os_error(28)),
            }),
            FAULT => Err(StoreError::Database {
                backend: "sqlite",
                location,
                op,
                source: "disk I/O error".into(),
            }),
            _ => f(),
        }
    }
}

impl Store for FailingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn submit(&self, job: NewJob) -> Result<Submitted, StoreError> {
        self.write("submit", || self.inner.submit(job))
    }
    fn release_idempotency_key(&self, id: &JobId) -> Result<bool, StoreError> {
        self.write("release idempotency key", || {
            self.inner.release_idempotency_key(id)
        })
    }
    fn idempotency_key_bound(&self, team: &str, key: &str) -> Result<bool, StoreError> {
        self.inner.idempotency_key_bound(team, key)
    }
    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.inner.get(id)
    }
    fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<JobPage, StoreError> {
        self.inner.list(filter, page)
    }
    fn transition(&self, id: &JobId, t: Transition) -> Result<JobRecord, StoreError> {
        self.write("transition", || self.inner.transition(id, t))
    }
    fn append_event(&self, id: &JobId, e: EventDraft) -> Result<JobEvent, StoreError> {
        self.write("append event", || self.inner.append_event(id, e))
    }
    fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError> {
        self.inner.events(id)
    }
    fn counts(&self) -> Result<Vec<StateCount>, StoreError> {
        self.inner.counts()
    }
    fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        self.write("acquire lease", || {
            self.inner.try_acquire_lease(name, holder, ttl, now)
        })
    }
    fn renew_lease(
        &self,
        l: &Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        self.write("renew lease", || self.inner.renew_lease(l, ttl, now))
    }
    fn release_lease(&self, l: &Lease) -> Result<bool, StoreError> {
        self.write("release lease", || self.inner.release_lease(l))
    }
    fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.inner.lease(name)
    }
    fn set_zone_condition(&self, c: &ZoneCondition) -> Result<(), StoreError> {
        self.write("set zone condition", || self.inner.set_zone_condition(c))
    }
    fn zone_conditions(&self) -> Result<Vec<ZoneCondition>, StoreError> {
        self.inner.zone_conditions()
    }
    fn set_fleet_in_force(&self, f: &FleetInForce) -> Result<(), StoreError> {
        self.write("set fleet in force", || self.inner.set_fleet_in_force(f))
    }
    fn fleet_in_force(&self) -> Result<Option<FleetInForce>, StoreError> {
        self.inner.fleet_in_force()
    }
    fn enqueue_run(&self, r: &AgentRun) -> Result<bool, StoreError> {
        self.write("enqueue run", || self.inner.enqueue_run(r))
    }
    fn agent_run(&self, id: &str) -> Result<Option<AgentRun>, StoreError> {
        self.inner.agent_run(id)
    }
    fn cancel_run(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.write("cancel run", || self.inner.cancel_run(id, now))
    }
    fn agent_sync(
        &self,
        zone: &str,
        agent: &str,
        reports: &[RunReport],
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<AgentRun>, StoreError> {
        self.write("agent sync", || {
            self.inner.agent_sync(zone, agent, reports, now, limit)
        })
    }
    fn heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError> {
        self.inner.heartbeats()
    }
}

fn health(s: &TestServer) -> common::Resp {
    s.request("GET", "/healthz", None, None, &[])
}

fn wait_health(s: &TestServer, status: u16) -> common::Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = health(s);
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {}: {}",
            r.status,
            r.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_answers_503_without_paths_and_healthz_names_the_store() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FailingStore {
        inner: SqliteStore::open(store_dir.path(), SqliteOptions::default()).unwrap(),
        mode: AtomicU8::new(OK),
    });
    let s = TestServer::start_on(store.clone());
    let r = health(&s);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "ok", "{}", r.text);
    assert!(r.body.get("problems").is_none(), "{}", r.text);

    let token = s.token(Role::Submitter, "icu-ml");
    store.mode.store(DISK_FULL, Ordering::SeqCst);
    let r = s.submit(&token, &manifest("full-disk", "icu-ml", 1, None), None);
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "unavailable", "{}", r.text);
    let message = r.body["error"]["message"].as_str().unwrap();
    let dir = store_dir.path().display().to_string();
    assert!(
        !message.contains(&dir),
        "the message names the store's path: {message}"
    );
    assert!(
        !message.contains("state.db"),
        "the message names the store's file: {message}"
    );
    assert!(
        !message.contains("/tmp"),
        "the message names a path: {message}"
    );

    let r = wait_health(&s, 503);
    assert_eq!(r.body["status"], "unhealthy", "{}", r.text);
    let problems = r.body["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["component"] == "store"),
        "/healthz does not name the store: {}",
        r.text
    );
    // Nothing in the unauthenticated answer says where the store lives.
    assert!(
        !r.text.contains(&dir) && !r.text.contains("state.db") && !r.text.contains("/tmp"),
        "{}",
        r.text
    );
    assert_eq!(r.body["store"], "sqlite", "{}", r.text);

    // Room again: the next write (the scheduler's lease renewal, a submission) clears it.
    store.mode.store(OK, Ordering::SeqCst);
    let r = s.submit(
        &token,
        &manifest("after-full-disk", "icu-ml", 1, None),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = wait_health(&s, 200);
    assert_eq!(r.body["status"], "ok", "{}", r.text);
}

#[test]
fn a_store_fault_answers_500_without_paths_or_detail() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FailingStore {
        inner: SqliteStore::open(store_dir.path(), SqliteOptions::default()).unwrap(),
        mode: AtomicU8::new(OK),
    });
    let s = TestServer::start_on(store.clone());
    let token = s.token(Role::Submitter, "icu-ml");
    store.mode.store(FAULT, Ordering::SeqCst);
    let r = s.submit(&token, &manifest("store-fault", "icu-ml", 1, None), None);
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "internal", "{}", r.text);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains(&store_dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        !message.contains("state.db"),
        "the message names the store's file: {message}"
    );
    assert!(
        !message.contains("disk I/O error"),
        "the message holds the database's error: {message}"
    );
}
