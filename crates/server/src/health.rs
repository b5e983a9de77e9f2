//! Health of what a replica depends on, as `/healthz` reports it: the job store and the evidence
//! ledger. Each [`Component`] remembers the outcome of its latest operations; a temporary failure
//! (a full disk, an I/O error, a database that cannot be reached) makes it unhealthy until an
//! operation of the same weight succeeds: a failed write is cleared only by a successful write,
//! because reads often still work on a full disk.
//!
//! [`WatchedStore`] wraps the store every handler and the scheduler loop use, so each store call
//! reports to the store's component without the callers having to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidegate_store::{
    AgentRun, EventDraft, FleetInForce, Heartbeat, JobEvent, JobFilter, JobId, JobPage, JobRecord,
    Lease, NewJob, PageRequest, RunReport, StateCount, Store, StoreError, Submitted, Timestamp,
    Transition, ZoneCondition,
};

#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    write: bool,
}

/// One component's health.
#[derive(Debug)]
pub struct Component {
    name: &'static str,
    failure: Mutex<Option<Failure>>,
}

impl Component {
    /// A healthy component named `name` (`store`, `ledger`).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            failure: Mutex::new(None),
        }
    }

    /// Its name, as `/healthz` shows it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A temporary failure: the component is unhealthy, for the reason given (a message without
    /// paths or other internals).
    pub fn failed(&self, reason: impl Into<String>, write: bool) {
        let mut f = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A read failing does not hide a write failure.
        let write = write || f.as_ref().is_some_and(|old| old.write);
        *f = Some(Failure {
            reason: reason.into(),
            write,
        });
    }

    /// An operation succeeded: a read clears a read failure, a write clears any failure.
    pub fn succeeded(&self, write: bool) {
        let mut f = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.as_ref().is_some_and(|old| write || !old.write) {
            *f = None;
        }
    }

    /// Why the component is unhealthy, or `None` when it is healthy.
    pub fn problem(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|f| f.reason.clone())
    }
}

/// The store, reporting the outcome of every call to its [`Component`].
#[derive(Debug)]
pub struct WatchedStore {
    inner: Arc<dyn Store>,
    health: Arc<Component>,
}

impl WatchedStore {
    /// Wraps `inner`; its outcomes go to `health`.
    pub fn new(inner: Arc<dyn Store>, health: Arc<Component>) -> Self {
        Self { inner, health }
    }

    fn watch<T>(&self, write: bool, out: Result<T, StoreError>) -> Result<T, StoreError> {
        match &out {
            Ok(_) => self.health.succeeded(write),
            Err(StoreError::Unavailable { op, .. }) => {
                let what = if write { "write" } else { "read" };
                self.health.failed(
                    format!("a {what} ({op}) failed: the store is unreachable, out of space or has an I/O error"),
                    write,
                );
            }
            // A refusal about the request itself (invalid, conflict, not found) says nothing
            // about the store's health; neither does a fault of the server.
            Err(_) => {}
        }
        out
    }
}

impl Store for WatchedStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn submit(&self, job: NewJob) -> Result<Submitted, StoreError> {
        self.watch(true, self.inner.submit(job))
    }

    fn release_idempotency_key(&self, id: &JobId) -> Result<bool, StoreError> {
        self.watch(true, self.inner.release_idempotency_key(id))
    }

    fn idempotency_key_bound(&self, team: &str, key: &str) -> Result<bool, StoreError> {
        self.watch(false, self.inner.idempotency_key_bound(team, key))
    }

    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.watch(false, self.inner.get(id))
    }

    fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<JobPage, StoreError> {
        self.watch(false, self.inner.list(filter, page))
    }

    fn transition(&self, id: &JobId, transition: Transition) -> Result<JobRecord, StoreError> {
        self.watch(true, self.inner.transition(id, transition))
    }

    fn append_event(&self, id: &JobId, event: EventDraft) -> Result<JobEvent, StoreError> {
        self.watch(true, self.inner.append_event(id, event))
    }

    fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError> {
        self.watch(false, self.inner.events(id))
    }

    fn counts(&self) -> Result<Vec<StateCount>, StoreError> {
        self.watch(false, self.inner.counts())
    }

    fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        self.watch(true, self.inner.try_acquire_lease(name, holder, ttl, now))
    }

    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        self.watch(true, self.inner.renew_lease(lease, ttl, now))
    }

    fn release_lease(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.watch(true, self.inner.release_lease(lease))
    }

    fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.watch(false, self.inner.lease(name))
    }

    fn set_zone_condition(&self, cond: &ZoneCondition) -> Result<(), StoreError> {
        self.watch(true, self.inner.set_zone_condition(cond))
    }

    fn zone_conditions(&self) -> Result<Vec<ZoneCondition>, StoreError> {
        self.watch(false, self.inner.zone_conditions())
    }

    fn set_fleet_in_force(&self, f: &FleetInForce) -> Result<(), StoreError> {
        self.watch(true, self.inner.set_fleet_in_force(f))
    }

    fn fleet_in_force(&self) -> Result<Option<FleetInForce>, StoreError> {
        self.watch(false, self.inner.fleet_in_force())
    }

    fn enqueue_run(&self, run: &AgentRun) -> Result<bool, StoreError> {
        self.watch(true, self.inner.enqueue_run(run))
    }

    fn agent_run(&self, run_id: &str) -> Result<Option<AgentRun>, StoreError> {
        self.watch(false, self.inner.agent_run(run_id))
    }

    fn cancel_run(&self, run_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.watch(true, self.inner.cancel_run(run_id, now))
    }

    fn agent_sync(
        &self,
        zone: &str,
        agent: &str,
        reports: &[RunReport],
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<AgentRun>, StoreError> {
        self.watch(
            true,
            self.inner.agent_sync(zone, agent, reports, now, limit),
        )
    }

    fn heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError> {
        self.watch(false, self.inner.heartbeats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_is_cleared_only_by_a_write() {
        let c = Component::new("store");
        assert_eq!(c.problem(), None);
        c.failed("disk full", true);
        c.succeeded(false);
        assert_eq!(c.problem().as_deref(), Some("disk full"));
        c.succeeded(true);
        assert_eq!(c.problem(), None);
        c.failed("unreachable", false);
        c.succeeded(false);
        assert_eq!(c.problem(), None);
    }
}
