//! The scheduler loop: the one replica holding the `scheduler` lease turns submitted jobs into
//! placements (policy), admissions (the sans-IO scheduler core), launches (executors) and
//! outcomes, writing every step to the store as a versioned transition.
//!
//! The store is the source of truth. A replica that becomes leader rebuilds its scheduler from
//! the store ([`Leader::recover`]); a leader that loses its lease, or meets a store error, drops
//! everything it held in memory and starts over from the store once it leads again. Executors
//! start a job at most once per job id, and every store write names the version it expects, so
//! two replicas that both believe they lead for a moment still cannot admit a job twice.
//!
//! Invariant: a job is admitted only to a (zone, pool) its placement allowed under the loaded
//! policy set, and only after the decision (and, for a burst, its justification) is in the
//! evidence ledger; a ledger that cannot record refuses the admission.
//!
//! Invariant: a run restored from the store, and a run an agent is about to start, is judged
//! again (a plain Cedar evaluation and every hard constraint) under the fleet, datasets and
//! policy in force; one that no longer holds is never started, or is stopped, with a
//! `job.revoked` entry naming the rules, and the job is placed again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tidegate_exec::{ExecError, Executor, Launch, RunStatus};
use tidegate_model::{parse_job, Fleet, JobSpec, Tier};
use tidegate_placement::{FleetState, Placement, PlacementEngine, Reason, Withdrawn};
use tidegate_policy::PolicyEngine;
use tidegate_sched::{Candidate, Effect, Health, SchedConfig, Scheduler, Shape};
use tidegate_store::{
    EventDraft, JobFilter, JobId, JobRecord, JobState, Lease, PageRequest, Store, StoreError,
    Timestamp, Transition,
};

use crate::evidence::Evidence;
use crate::metrics::{label, Metrics};

/// Exit code of `tidegate checkpoint push` when it could not reach its destination (EX_TEMPFAIL).
pub const CHECKPOINT_SYNC_BLOCKED: i32 = 75;

/// The lease only one replica holds while it runs the scheduler loop.
pub const LEASE: &str = "scheduler";

/// A wake-up signal for the loop (a submission arrived, a cancel was asked).
#[derive(Debug, Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    /// Wakes the loop.
    pub fn notify(&self) {
        if let Ok(mut f) = self.flag.lock() {
            *f = true;
            self.cv.notify_one();
        }
    }

    fn wait(&self, timeout: Duration) {
        if let Ok(mut f) = self.flag.lock() {
            if !*f {
                if let Ok((g, _)) = self.cv.wait_timeout(f, timeout) {
                    f = g;
                } else {
                    return;
                }
            }
            *f = false;
        }
    }
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// This replica's name in the lease.
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Longest sleep between rounds.
    pub tick: Duration,
    /// Scheduler thresholds.
    pub sched: SchedConfig,
    /// Expected hours are divided by this to get the stand-in run time of a job without a
    /// command (3600: one expected hour runs for one second).
    pub time_scale: f64,
    /// An agent silent this long makes its zone unreachable.
    pub agent_timeout: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            holder: "tidegate".into(),
            lease_ttl: Duration::from_secs(5),
            tick: Duration::from_millis(200),
            sched: SchedConfig::default(),
            time_scale: 3600.0,
            agent_timeout: Duration::from_secs(10),
        }
    }
}

/// What the loop shares with the API.
#[derive(Debug)]
pub struct Shared {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// The store's health, as its calls report it ([`crate::health::WatchedStore`]).
    pub store_health: Arc<crate::health::Component>,
    /// The fleet, its policy set and scheduling rules in force (swapped whole by
    /// [`Shared::reload`]).
    pub rules: std::sync::RwLock<Arc<Rules>>,
    /// The fleet directory the rules in force were read from.
    pub fleet_dir: std::sync::RwLock<std::path::PathBuf>,
    /// One executor per zone, by zone name.
    pub executors: BTreeMap<String, Arc<dyn Executor>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The evidence ledger.
    pub evidence: Arc<Evidence>,
    /// Wakes the loop.
    pub wake: Arc<Wake>,
    /// Set to stop the loop.
    pub shutdown: Arc<AtomicBool>,
    /// Zones run by agents (their heartbeats are watched).
    pub agent_zones: Vec<String>,
    /// True while this replica leads.
    pub leading: Arc<AtomicBool>,
}

/// The fleet, the policy set loaded for it and its scheduling rules: what placement, every
/// re-check and the scheduler use, in force together.
#[derive(Debug)]
pub struct Rules {
    /// The fleet (datasets registered in the data directory merged in).
    pub fleet: Arc<Fleet>,
    /// Its policy set.
    pub policy: Arc<PolicyEngine>,
    /// Its scheduling rules (team quotas, job classes, failure hierarchy).
    pub scheduling: Arc<tidegate_model::Scheduling>,
    /// Counts swaps: the leader rebuilds when it changes.
    pub generation: u64,
}

/// Why a new fleet was not put in force (the rules in force stay).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The fleet, its datasets or its policy set do not load.
    #[error("{0}")]
    Invalid(String),
    /// The change needs a restart (executors are set up per zone at start).
    #[error("{0}")]
    NeedsRestart(String),
    /// The store cannot record or tell the fleet in force.
    #[error("the store cannot record the fleet in force for the other replicas, so it is not in force: {0}")]
    Store(String),
    /// The evidence ledger cannot record the new hashes, so they are not put in force.
    #[error("the evidence ledger cannot record the new fleet and policy set, so they are not in force: {0}")]
    Ledger(String),
}

/// Loads the fleet in `dir` with its scheduling rules and the datasets registered in the data
/// directory (as `evidence` recorded them), and its policy set: every problem at once, nothing allowed without a set that loads.
///
/// # Errors
/// [`ReloadError::Invalid`] with the loader's or the policy engine's errors.
pub fn load_rules(dir: &Path, evidence: &Evidence, generation: u64) -> Result<Rules, ReloadError> {
    let (mut fleet, scheduling) = tidegate_model::load_fleet_with_scheduling(dir).map_err(|e| {
        ReloadError::Invalid(format!(
            "the fleet in {} does not load:\n{e}",
            dir.display()
        ))
    })?;
    evidence
        .merge_registered(&mut fleet)
        .map_err(|e| ReloadError::Invalid(format!("dataset registry: {e}")))?;
    let policy = PolicyEngine::load(&fleet).map_err(|e| {
        ReloadError::Invalid(format!(
            "the policy set does not load, so nothing could be placed:\n{e}"
        ))
    })?;
    Ok(Rules {
        fleet: Arc::new(fleet),
        policy: Arc::new(policy),
        scheduling: Arc::new(scheduling),
        generation,
    })
}

impl Shared {
    /// The rules in force.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Validates the fleet in `dir` (else the directory in force) with its datasets and policy
    /// set and, only if everything loads, ledgers its hashes and swaps it in whole; the leader
    /// then rebuilds and re-checks every queued and running job against it (a run no longer
    /// allowed is withdrawn, `job.revoked`). A set that does not load leaves the rules in force
    /// as they are, never an empty or allow-all set.
    ///
    /// # Errors
    /// Why nothing changed.
    pub fn reload(&self, dir: Option<&Path>) -> Result<Arc<Rules>, ReloadError> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => self
                .fleet_dir
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        };
        let current = self.rules();
        let next = load_rules(&dir, &self.evidence, current.generation + 1)?;
        self.put_in_force(&current, next, dir, true)
    }

    /// Converges on the fleet another replica of this store put in force (`fleet apply`,
    /// SIGHUP, a start): loaded from the directory it names, and put in force here only if it
    /// loads to the same hashes. `Ok(None)` when this replica already runs it.
    ///
    /// # Errors
    /// Why it was not put in force here (the rules in force stay).
    pub fn converge(&self) -> Result<Option<Arc<Rules>>, ReloadError> {
        let Some(f) = self
            .store
            .fleet_in_force()
            .map_err(|e| ReloadError::Store(e.to_string()))?
        else {
            return Ok(None);
        };
        let current = self.rules();
        if f.fleet_hash == current.fleet.fleet_hash && f.policy_hash == current.policy.hash() {
            return Ok(None);
        }
        let dir = std::path::PathBuf::from(&f.dir);
        let next = load_rules(&dir, &self.evidence, current.generation + 1)?;
        if next.fleet.fleet_hash != f.fleet_hash || next.policy.hash() != f.policy_hash {
            return Err(ReloadError::Invalid(format!(
                "the fleet in force on another replica ({}, fleet {}) loads here to fleet {} and policy {}: not the same set",
                f.dir,
                f.fleet_hash,
                next.fleet.fleet_hash,
                next.policy.hash()
            )));
        }
        self.put_in_force(&current, next, dir, false).map(Some)
    }

    /// Records the fleet in force for the other replicas (at start).
    ///
    /// # Errors
    /// A store error.
    pub fn record_in_force(&self) -> Result<(), tidegate_store::StoreError> {
        let dir = self
            .fleet_dir
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.store
            .set_fleet_in_force(&in_force(&dir, &self.rules()))
    }

    /// Swaps `next` in: the zones must be the same (executors are per zone, and a zone's tier
    /// decides what it may already hold), its hashes are ledgered first, and, when `share`, it is
    /// recorded in the store for the other replicas before it is in force here.
    fn put_in_force(
        &self,
        current: &Rules,
        next: Rules,
        dir: std::path::PathBuf,
        share: bool,
    ) -> Result<Arc<Rules>, ReloadError> {
        let zones = |f: &Fleet| {
            f.zones
                .iter()
                .map(|z| (z.name.clone(), z.backend.kind(), z.tier))
                .collect::<Vec<_>>()
        };
        if zones(&next.fleet) != zones(&current.fleet) {
            return Err(ReloadError::NeedsRestart(
                "the new fleet adds, removes, re-backs or re-tiers zones: executors are set up per zone at start and a zone's tier decides what it may already hold, so restart the control plane with it".into(),
            ));
        }
        self.evidence
            .rules_loaded(&next.fleet, &next.policy)
            .map_err(ReloadError::Ledger)?;
        if share {
            self.store
                .set_fleet_in_force(&in_force(&dir, &next))
                .map_err(|e| ReloadError::Store(e.to_string()))?;
        }
        let next = Arc::new(next);
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
        *self
            .fleet_dir
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = dir;
        tracing::info!(generation = next.generation, fleet = %next.fleet.fleet_hash, policy = %next.policy.hash(), "new fleet and policy set in force");
        self.wake.notify();
        Ok(next)
    }
}

/// The store's record of `rules`, read from `dir`.
fn in_force(dir: &Path, rules: &Rules) -> tidegate_store::FleetInForce {
    tidegate_store::FleetInForce {
        dir: dir.display().to_string(),
        fleet_hash: rules.fleet.fleet_hash.clone(),
        policy_hash: rules.policy.hash().to_owned(),
        updated_at: now_ts(),
    }
}

/// The job spec of a stored job: its manifest parsed again against `fleet` (the rules in force).
///
/// # Errors
/// A record without a manifest, or one that no longer loads, with the loader's errors.
pub fn stored_spec(rec: &JobRecord, fleet: &Fleet) -> Result<JobSpec, String> {
    let text = rec
        .spec
        .get("manifest")
        .and_then(|m| m.as_str())
        .ok_or("the stored job has no manifest")?;
    parse_job(Path::new(&format!("job {}", rec.id)), text, fleet).map_err(|e| e.to_string())
}

/// Whether the run `run_id` of a job may be started now in `zone`/`pool` (an agent is about to
/// start it): the job must still be admitted or running there, and a plain re-check of its
/// placement under the fleet, datasets and policy in force must allow it.
///
/// # Errors
/// [`Withdrawn`] naming why not.
pub fn may_start(
    shared: &Shared,
    rec: &JobRecord,
    zone: &str,
    pool: &str,
) -> Result<(), Withdrawn> {
    if !matches!(rec.state, JobState::Admitted | JobState::Running)
        || rec.zone.as_deref() != Some(zone)
        || rec.pool.as_deref() != Some(pool)
    {
        return Err(Withdrawn::because(Reason::JobNotPlacedHere {
            job: rec.id.to_string(),
            state: rec.state.as_str().to_string(),
            zone: zone.to_string(),
            pool: pool.to_string(),
        }));
    }
    let rules = shared.rules();
    let fleet: &Fleet = &rules.fleet;
    let spec = stored_spec(rec, fleet)
        .map_err(|error| Withdrawn::because(Reason::JobUnresolvable { error }))?;
    let zi = fleet
        .zones
        .iter()
        .position(|z| z.name == zone)
        .ok_or_else(|| {
            Withdrawn::because(Reason::UnknownZone {
                zone: zone.to_string(),
            })
        })?;
    let pi = fleet
        .zones
        .get(zi)
        .and_then(|z| z.pools.iter().position(|p| p.name == pool))
        .ok_or_else(|| {
            Withdrawn::because(Reason::UnknownPool {
                pool: pool.to_string(),
                zone: zone.to_string(),
            })
        })?;
    PlacementEngine::with_policy(fleet, rules.policy.clone()).recheck_plain(&spec, zi, pi)
}

/// Event details with the scheduler reason's code added as `reason_code` (null becomes an object
/// of that alone; other fields are kept; details of any other shape are left as they are).
fn with_reason_code(details: serde_json::Value, code: &str) -> serde_json::Value {
    match details {
        serde_json::Value::Null => json!({ "reason_code": code }),
        serde_json::Value::Object(mut obj) => {
            obj.insert("reason_code".into(), json!(code));
            serde_json::Value::Object(obj)
        }
        other => other,
    }
}

fn now_ts() -> Timestamp {
    Timestamp::now()
}

fn secs(t: Timestamp) -> f64 {
    t.millis() as f64 / 1000.0
}

/// The scheduler lease, kept by a thread of its own: renewed every third of its time to live
/// however long a round takes, and considered lost (by [`LeaseKeeper::epoch`]) as soon as it
/// might have expired, so a round that outlives it applies nothing more.
#[derive(Debug, Default)]
struct LeaseKeeper {
    held: Mutex<Option<(Lease, Instant)>>,
}

impl LeaseKeeper {
    /// The epoch of the lease while it is surely still held (renewed less than its time to live,
    /// less a margin, ago); `None` otherwise.
    fn epoch(&self, ttl: Duration) -> Option<u64> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.as_ref()
            .filter(|(_, at)| at.elapsed() < ttl.saturating_sub(ttl / 6))
            .map(|(l, _)| l.epoch)
    }

    /// Take, keep or notice the loss of the lease until `shared.shutdown`; give it back then.
    fn run(&self, shared: &Shared, cfg: &LoopConfig) {
        let poll = (cfg.lease_ttl / 6).clamp(Duration::from_millis(20), Duration::from_millis(500));
        while !shared.shutdown.load(Ordering::SeqCst) {
            let current = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let next = match current {
                Some((l, at)) if at.elapsed() < cfg.lease_ttl / 3 => Some((l, at)),
                Some((l, _)) => {
                    let asked = Instant::now();
                    match shared.store.renew_lease(&l, cfg.lease_ttl, now_ts()) {
                        Ok(Some(l)) => Some((l, asked)),
                        Ok(None) => {
                            tracing::warn!(holder = %cfg.holder, "scheduler lease lost; stepping down");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot renew the scheduler lease; stepping down");
                            None
                        }
                    }
                }
                None => {
                    let asked = Instant::now();
                    match shared.store.try_acquire_lease(
                        LEASE,
                        &cfg.holder,
                        cfg.lease_ttl,
                        now_ts(),
                    ) {
                        Ok(Some(l)) => {
                            tracing::info!(holder = %cfg.holder, epoch = l.epoch, "took the scheduler lease");
                            shared.metrics.lease_taken.inc();
                            shared.wake.notify();
                            Some((l, asked))
                        }
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot reach the store for the scheduler lease");
                            None
                        }
                    }
                }
            };
            let lost = next.is_none();
            *self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
            if lost {
                shared.wake.notify();
                std::thread::sleep(cfg.tick.max(Duration::from_millis(250)).min(poll * 3));
            } else {
                std::thread::sleep(poll);
            }
        }
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((l, _)) = held {
            let _ = shared.store.release_lease(&l);
        }
    }
}

/// Runs the loop until `shared.shutdown` is set; the lease is kept by a thread of its own and
/// given back on the way out. When the rules in force change, the leader is rebuilt under the
/// new ones.
pub fn run(shared: &Shared, cfg: &LoopConfig) {
    let keeper = LeaseKeeper::default();
    std::thread::scope(|scope| {
        scope.spawn(|| keeper.run(shared, cfg));
        while !shared.shutdown.load(Ordering::SeqCst) {
            let rules = shared.rules();
            lead(shared, cfg, &rules, &keeper);
        }
        shared.wake.notify();
    });
    shared.leading.store(false, Ordering::SeqCst);
    shared.metrics.leader.set(0);
}

/// The error a round stops with when the lease may have passed to another replica.
fn lease_lost() -> StoreError {
    StoreError::Unavailable {
        backend: "scheduler",
        location: LEASE.to_owned(),
        op: "scheduling",
        source: "the scheduler lease may have passed to another replica".into(),
    }
}

/// The loop under one set of rules: returns at shutdown or when other rules are put in force.
fn lead(shared: &Shared, cfg: &LoopConfig, rules: &Rules, keeper: &LeaseKeeper) {
    let mut leader: Option<Leader<'_>> = None;
    while !shared.shutdown.load(Ordering::SeqCst) {
        if shared.rules().generation != rules.generation {
            return;
        }
        let epoch = keeper.epoch(cfg.lease_ttl);
        if leader.as_ref().is_some_and(|l| Some(l.epoch) != epoch) {
            leader = None;
        }
        let Some(epoch) = epoch else {
            shared.leading.store(false, Ordering::SeqCst);
            shared.metrics.leader.set(0);
            shared.wake.wait(cfg.tick.max(Duration::from_millis(250)));
            continue;
        };
        if leader.is_none() {
            let mut l = Leader::new(shared, cfg, rules, keeper, epoch);
            match l.recover() {
                Ok(n) => {
                    tracing::info!(
                        jobs = n,
                        generation = rules.generation,
                        "scheduler state rebuilt from the store"
                    );
                    leader = Some(l);
                }
                Err(e) => tracing::warn!(error = %e, "cannot rebuild scheduler state; will retry"),
            }
        }
        if let Some(l) = leader.as_mut() {
            shared.leading.store(true, Ordering::SeqCst);
            shared.metrics.leader.set(1);
            if let Err(e) = l.round() {
                tracing::warn!(error = %e, "scheduler round failed; rebuilding from the store");
                leader = None;
            }
        }
        shared.wake.wait(cfg.tick);
    }
}

#[derive(Debug)]
struct Tracked {
    sid: u64,
    version: u64,
    state: JobState,
    spec: Arc<JobSpec>,
    zone: Option<usize>,
    pool: Option<usize>,
    gpus: u32,
    /// Admissions so far (1 for the first run; a re-run after preemption or failover is 2, ...).
    attempt: u32,
}

/// The executor-side id of one run of a job: the job id for its first admission, `ID.N` for the
/// N-th, so a job preempted and admitted again starts a fresh run (executors start each id once).
pub fn launch_id(job: &str, attempt: u32) -> String {
    if attempt <= 1 {
        job.to_owned()
    } else {
        format!("{job}.{attempt}")
    }
}

/// How many times a job was admitted, from its events.
pub fn admissions(events: &[tidegate_store::JobEvent]) -> u32 {
    u32::try_from(
        events
            .iter()
            .filter(|e| e.to_state == Some(JobState::Admitted))
            .count(),
    )
    .unwrap_or(u32::MAX)
}

struct Leader<'f> {
    sh: &'f Shared,
    cfg: &'f LoopConfig,
    engine: PlacementEngine<'f>,
    idle: FleetState,
    sched: Scheduler,
    next_sid: u64,
    by_sid: HashMap<u64, JobId>,
    jobs: HashMap<JobId, Tracked>,
    explain: HashMap<u64, serde_json::Value>,
    last_cancel_check: Instant,
    /// Zone conditions as last applied to the core: (health, throttled) by zone index.
    conditions: HashMap<usize, (Health, bool)>,
    /// When this replica started leading (agents never heard from count from here).
    since: Timestamp,
    /// The lease this leader works under, and its epoch: every effect is fenced by it.
    keeper: &'f LeaseKeeper,
    epoch: u64,
}

type Step<T> = Result<T, StoreError>;

/// What the scheduler core needs of a job.
fn shape_of(spec: &JobSpec, level: u8) -> Shape {
    Shape {
        gpus: spec.resources.gpus,
        expected_s: spec.resources.expected_hours * 3600.0,
        max_wait_s: spec
            .sla
            .as_ref()
            .map(|s| f64::from(s.max_wait_minutes) * 60.0),
        deadline_s: spec.deadline.as_deref().and_then(deadline_secs),
        class: spec.budget_class.clone(),
        team: spec.team.clone(),
        justification: spec.justification.clone(),
        data_level: level,
        min_gpus: None,
    }
}

/// An RFC 3339 deadline as Unix seconds.
fn deadline_secs(text: &str) -> Option<f64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp() as f64)
}

impl<'f> Leader<'f> {
    fn new(
        sh: &'f Shared,
        cfg: &'f LoopConfig,
        rules: &'f Rules,
        keeper: &'f LeaseKeeper,
        epoch: u64,
    ) -> Self {
        let fleet: &'f Fleet = &rules.fleet;
        Self {
            sh,
            cfg,
            engine: PlacementEngine::with_policy(fleet, rules.policy.clone()),
            idle: FleetState::idle(fleet),
            sched: Scheduler::with_rules(fleet, &rules.scheduling, cfg.sched.clone()),
            next_sid: 1,
            by_sid: HashMap::new(),
            jobs: HashMap::new(),
            explain: HashMap::new(),
            last_cancel_check: Instant::now(),
            conditions: HashMap::new(),
            since: now_ts(),
            keeper,
            epoch,
        }
    }

    /// Refuses to go on once the lease may have passed to another replica: a leader that lost it
    /// mid-round applies nothing more.
    fn fenced(&self) -> Step<()> {
        if self.keeper.epoch(self.cfg.lease_ttl) == Some(self.epoch) {
            Ok(())
        } else {
            Err(lease_lost())
        }
    }

    fn fleet(&self) -> &'f Fleet {
        self.engine.fleet()
    }

    /// Rebuilds the scheduler from the store: running work first (it holds capacity), then the
    /// queues in submission order.
    fn recover(&mut self) -> Step<usize> {
        let mut active = Vec::new();
        for state in [
            JobState::Running,
            JobState::Admitted,
            JobState::Queued,
            JobState::Preempted,
        ] {
            self.each_job_in(state, |rec| {
                active.push(rec);
                Ok(())
            })?;
        }
        let n = active.len();
        let now = now_ts();
        // Conditions first, so recovered queues meet the zones as they are.
        self.apply_conditions()?;
        for rec in active {
            match rec.state {
                JobState::Running | JobState::Admitted => self.restore_running(&rec, now)?,
                _ => self.intake(rec, now)?,
            }
        }
        self.stop_orphans()?;
        Ok(n)
    }

    /// A cancel (or a failure) is durable intent: a run whose job is cancelled or failed but
    /// whose executor still reports it running (a crash between the acknowledgement and the
    /// stop) is stopped now.
    fn stop_orphans(&self) -> Step<()> {
        for state in [JobState::Cancelled, JobState::Failed] {
            self.each_job_in(state, |rec| {
                let Some(exec) = rec.zone.as_deref().and_then(|z| self.sh.executors.get(z)) else {
                    return Ok(());
                };
                let run = launch_id(
                    rec.id.as_str(),
                    admissions(&self.sh.store.events(&rec.id)?).max(1),
                );
                if matches!(exec.poll(&run), Ok(RunStatus::Running | RunStatus::Queued)) {
                    tracing::warn!(job = %rec.id, run, state = rec.state.as_str(), "stopping a run whose job already ended");
                    if let Err(e) = exec.cancel(&run) {
                        tracing::warn!(job = %rec.id, run, error = %e, "cannot stop the run of an ended job");
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Calls `f` with every job the store holds in `state`, a page at a time.
    fn each_job_in(&self, state: JobState, mut f: impl FnMut(JobRecord) -> Step<()>) -> Step<()> {
        let mut after = None;
        loop {
            let page = self.sh.store.list(
                &JobFilter {
                    state: Some(state),
                    ..JobFilter::default()
                },
                PageRequest { after, limit: 500 },
            )?;
            for rec in page.jobs {
                f(rec)?;
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }

    fn zone_index(&self, name: Option<&str>) -> Option<usize> {
        let name = name?;
        self.fleet().zones.iter().position(|z| z.name == name)
    }

    fn pool_index(&self, zone: usize, name: Option<&str>) -> Option<usize> {
        let name = name?;
        self.fleet()
            .zones
            .get(zone)?
            .pools
            .iter()
            .position(|p| p.name == name)
    }

    fn restore_running(&mut self, rec: &JobRecord, now: Timestamp) -> Step<()> {
        let spec = match self.parse(rec) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail(
                        rec.id.clone(),
                        rec.version,
                        &format!("its manifest no longer loads: {e}"),
                    )
                    .map(|_| ())
            }
        };
        let zone = self.zone_index(rec.zone.as_deref());
        let pool = zone.and_then(|z| self.pool_index(z, rec.pool.as_deref()));
        let (Some(zone), Some(pool)) = (zone, pool) else {
            return self
                .fail(
                    rec.id.clone(),
                    rec.version,
                    "its zone or pool is no longer in the fleet",
                )
                .map(|_| ());
        };
        // The run was placed under the fleet, datasets and policy of its day: judge it again
        // under today's before it holds capacity or is started (data may have been reclassified,
        // a policy changed). One that no longer holds is withdrawn and placed afresh.
        if let Err(w) = self.engine.recheck_plain(&spec, zone, pool) {
            return self.withdraw(rec, zone, pool, &w, now);
        }
        let (cands, level) = match self.engine.place(&spec, &self.idle) {
            Ok(p) => (self.candidates(&p), p.profile.attrs.level),
            Err(_) => (Vec::new(), 0),
        };
        let public = self
            .fleet()
            .zones
            .get(zone)
            .is_some_and(|z| z.tier == Tier::Public);
        let at = cands
            .iter()
            .find(|c| c.zone == zone && c.pool == pool)
            .copied()
            .unwrap_or_else(|| Candidate::new(zone, pool, public, 0.0));
        let attempt = admissions(&self.sh.store.events(&rec.id)?).max(1);
        let sid = self.alloc(&rec.id);
        let shape = shape_of(&spec, level);
        let gpus = shape.gpus;
        self.sched.restore_running(sid, shape, cands, at, secs(now));
        self.jobs.insert(
            rec.id.clone(),
            Tracked {
                sid,
                version: rec.version,
                state: rec.state,
                spec: Arc::new(spec),
                zone: Some(zone),
                pool: Some(pool),
                gpus,
                attempt,
            },
        );
        if rec.state == JobState::Admitted {
            let fx = self.launch(&rec.id)?;
            self.apply(fx)?;
        }
        Ok(())
    }

    /// A run whose placement no longer holds: the withdrawal is ledgered (`job.revoked`, naming
    /// the rules), the run is stopped — an agent's pending run is then never handed out — and
    /// the job is placed again under the rules in force (or refused with every reason).
    fn withdraw(
        &mut self,
        rec: &JobRecord,
        zone: usize,
        pool: usize,
        w: &Withdrawn,
        now: Timestamp,
    ) -> Step<()> {
        let attempt = admissions(&self.sh.store.events(&rec.id)?).max(1);
        let run = launch_id(rec.id.as_str(), attempt);
        let (zname, pname) = self.names(zone, pool);
        tracing::warn!(job = %rec.id, run, zone = %zname, pool = %pname, reason = %w, "placement withdrawn at restore");
        let recorded = self
            .sh
            .evidence
            .revoked(&rec.id, &zname, &pname, &run, &w.codes());
        // Stopping is the safe direction: it happens whatever the ledger says.
        if let Some(exec) = self.executor_for(Some(zone)) {
            if let Err(e) = exec.cancel(&run) {
                tracing::warn!(job = %rec.id, run, error = %e, "cannot stop the withdrawn run");
            }
        }
        if let Err(e) = recorded {
            let reason = format!("placement withdrawn ({}), and the evidence ledger cannot record it, so the job is stopped: {e}", w.message);
            return self.fail(rec.id.clone(), rec.version, &reason).map(|_| ());
        }
        let mut tr = Transition::to(JobState::Preempted, rec.version, now)
            .because(&format!("placement withdrawn: {}", w.message));
        tr.details = json!({"zone": zname, "pool": pname, "run": run, "reasons": w.reasons, "withdrawn": true});
        match self.transition(&rec.id, tr)? {
            Some(after) => self.intake(after, now),
            None => Ok(()),
        }
    }

    fn alloc(&mut self, id: &JobId) -> u64 {
        let sid = self.next_sid;
        self.next_sid += 1;
        self.by_sid.insert(sid, id.clone());
        sid
    }

    fn parse(&self, rec: &JobRecord) -> Result<JobSpec, String> {
        stored_spec(rec, self.fleet())
    }

    /// One round: take new submissions, notice ended and cancelled jobs, re-examine queues.
    fn round(&mut self) -> Step<()> {
        let round_started = Instant::now();
        let mut taken_in = 0usize;
        let now = now_ts();
        // Zone conditions first, every round: nothing this round admits may precede a condition
        // (an outage, a drill) stored before it began.
        self.apply_conditions()?;
        loop {
            let page = self.sh.store.list(
                &JobFilter {
                    state: Some(JobState::Submitted),
                    ..JobFilter::default()
                },
                PageRequest {
                    after: None,
                    limit: 256,
                },
            )?;
            let fresh: Vec<JobRecord> = page
                .jobs
                .into_iter()
                .filter(|r| !self.jobs.contains_key(&r.id))
                .collect();
            if fresh.is_empty() {
                break;
            }
            // Read after the page: a condition stored before any of these jobs was submitted
            // is in force before they are placed.
            self.apply_conditions()?;
            for rec in fresh {
                self.fenced()?;
                self.intake(rec, now)?;
                taken_in += 1;
            }
        }
        let intake_s = round_started.elapsed().as_secs_f64();
        self.poll()?;
        let poll_s = round_started.elapsed().as_secs_f64() - intake_s;
        if self.last_cancel_check.elapsed() >= Duration::from_millis(500) {
            self.check_cancelled()?;
            self.watch_agents()?;
            self.last_cancel_check = Instant::now();
        }
        let effects = self.sched.tick(secs(now_ts()));
        self.apply(effects)?;
        self.update_gauges();
        tracing::debug!(
            taken_in,
            intake_s,
            poll_s,
            round_s = round_started.elapsed().as_secs_f64(),
            "scheduling round"
        );
        Ok(())
    }

    fn update_gauges(&self) {
        let mut running: HashMap<usize, i64> = HashMap::new();
        for t in self.jobs.values() {
            if matches!(t.state, JobState::Running | JobState::Admitted) {
                if let Some(z) = t.zone {
                    *running.entry(z).or_default() += 1;
                }
            }
        }
        for (i, z) in self.fleet().zones.iter().enumerate() {
            let depth = i64::try_from(self.sched.queue_depth(i)).unwrap_or(i64::MAX);
            self.sh
                .metrics
                .queue_depth
                .get_or_create(&label("zone", z.name.clone()))
                .set(depth);
            self.sh
                .metrics
                .running
                .get_or_create(&label("zone", z.name.clone()))
                .set(running.get(&i).copied().unwrap_or(0));
        }
    }

    /// Places one job and hands it to the scheduler core.
    fn intake(&mut self, rec: JobRecord, now: Timestamp) -> Step<()> {
        let started = Instant::now();
        let spec = match self.parse(&rec) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail(
                        rec.id,
                        rec.version,
                        &format!("the manifest does not load: {e}"),
                    )
                    .map(|_| ())
            }
        };
        let placement = match self.engine.place(&spec, &self.idle) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .fail(rec.id, rec.version, &format!("cannot place: {e}"))
                    .map(|_| ())
            }
        };
        let cands = self.candidates(&placement);
        let ex = tidegate_placement::Explanation::new(&placement, &spec, self.fleet());
        let explanation = summarize(&ex);
        if let Err(e) = self
            .sh
            .evidence
            .placed(&rec.id, &spec, &placement, self.fleet())
        {
            return self
                .fail(
                    rec.id,
                    rec.version,
                    &format!(
                        "the evidence ledger cannot record the placement, so it is refused: {e}"
                    ),
                )
                .map(|_| ());
        }
        if cands.is_empty() {
            self.sh.metrics.refusals.inc();
            let mut tr = Transition::to(JobState::Failed, rec.version, now)
                .because(&format!("refused: {}", why_nowhere(&ex)));
            tr.details = explanation;
            self.transition(&rec.id, tr)?;
            return Ok(());
        }
        let sid = self.alloc(&rec.id);
        let shape = shape_of(&spec, placement.profile.attrs.level);
        let attempt = if rec.state == JobState::Submitted {
            0
        } else {
            admissions(&self.sh.store.events(&rec.id)?)
        };
        self.explain.insert(sid, explanation);
        self.jobs.insert(
            rec.id.clone(),
            Tracked {
                sid,
                version: rec.version,
                state: rec.state,
                spec: Arc::new(spec),
                zone: None,
                pool: None,
                gpus: shape.gpus,
                attempt,
            },
        );
        let effects = self.sched.submit(sid, shape, cands, secs(now));
        self.sh
            .metrics
            .decision_latency
            .observe(started.elapsed().as_secs_f64());
        self.apply(effects)
    }

    fn candidates(&self, p: &Placement) -> Vec<Candidate> {
        tidegate_placement::candidates(p, self.fleet())
    }

    /// Whether policy still allows the job at (zone, pool): placement is evaluated again (from
    /// its caches) before every admission, so a hop never lands where the rules say no.
    fn recheck(&mut self, spec: &JobSpec, zone: usize, pool: usize) -> Result<(), String> {
        // Public and edge capacity is judged by a plain Cedar evaluation, never a reused verdict.
        if self
            .fleet()
            .zones
            .get(zone)
            .is_none_or(|z| !z.tier.is_private())
        {
            return self
                .engine
                .recheck_plain(spec, zone, pool)
                .map_err(|w| w.message);
        }
        match self.engine.place(spec, &self.idle) {
            Ok(p)
                if p.pools
                    .iter()
                    .any(|pc| pc.allowed && pc.zone == zone && pc.pool == pool) =>
            {
                Ok(())
            }
            Ok(p) => {
                let ex = tidegate_placement::Explanation::new(&p, spec, self.fleet());
                let why = ex
                    .candidates
                    .get(zone)
                    .and_then(|c| c.reasons.iter().find(|r| r.is_refusal()))
                    .map_or_else(
                        || "the pool is no longer allowed".to_string(),
                        ToString::to_string,
                    );
                Err(why)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn fail(&mut self, id: JobId, version: u64, reason: &str) -> Step<Option<JobRecord>> {
        tracing::info!(job = %id, reason, "job failed");
        let out = self.transition(
            &id,
            Transition::to(JobState::Failed, version, now_ts()).because(reason),
        );
        self.forget(&id);
        out
    }

    fn forget(&mut self, id: &JobId) {
        if let Some(t) = self.jobs.remove(id) {
            self.by_sid.remove(&t.sid);
            self.explain.remove(&t.sid);
        }
    }

    /// A store transition that tolerates losing a race with a user (cancel): `Ok(None)` when the
    /// job moved on without us; other store errors end the round.
    fn transition(&mut self, id: &JobId, t: Transition) -> Step<Option<JobRecord>> {
        match self.sh.store.transition(id, t) {
            Ok(rec) => {
                if let Some(tr) = self.jobs.get_mut(id) {
                    tr.version = rec.version;
                    tr.state = rec.state;
                }
                Ok(Some(rec))
            }
            Err(StoreError::VersionConflict { .. } | StoreError::IllegalTransition { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves a tracked job to `to` from its current state and version.
    fn move_to(
        &mut self,
        id: &JobId,
        to: JobState,
        reason: &str,
        details: serde_json::Value,
    ) -> Step<Option<JobRecord>> {
        let Some(t) = self.jobs.get(id) else {
            return Ok(None);
        };
        let mut tr = Transition::to(to, t.version, now_ts()).because(reason);
        tr.details = details;
        self.transition(id, tr)
    }

    /// Moves a job to `queued` in `zone`'s queue (the store shows the zone, as `/v1/zones`
    /// counts it).
    fn queue_in(
        &mut self,
        id: &JobId,
        zone: &str,
        reason: &str,
        details: serde_json::Value,
    ) -> Step<Option<JobRecord>> {
        let Some(t) = self.jobs.get(id) else {
            return Ok(None);
        };
        let mut tr = Transition::queue(zone, t.version, now_ts()).because(reason);
        if zone.is_empty() {
            tr.zone = None;
        }
        tr.details = details;
        self.transition(id, tr)
    }

    fn apply(&mut self, effects: Vec<Effect>) -> Step<()> {
        let mut work: VecDeque<Effect> = effects.into();
        while let Some(e) = work.pop_front() {
            let more = self.apply_one(e)?;
            work.extend(more);
        }
        Ok(())
    }

    fn job_of(&self, sid: u64) -> Option<JobId> {
        self.by_sid.get(&sid).cloned()
    }

    /// The job moved on without us (cancelled): give its capacity back.
    fn lost_race(&mut self, id: &JobId, sid: u64) -> Vec<Effect> {
        self.forget(id);
        self.sched.cancel(sid, secs(now_ts()))
    }

    fn names(&self, zone: usize, pool: usize) -> (String, String) {
        let z = self.fleet().zones.get(zone);
        (
            z.map_or_else(String::new, |z| z.name.clone()),
            z.and_then(|z| z.pools.get(pool))
                .map_or_else(String::new, |p| p.name.clone()),
        )
    }

    fn apply_one(&mut self, effect: Effect) -> Step<Vec<Effect>> {
        self.fenced()?;
        match effect {
            Effect::Queued { job, zone, reason } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let Some(state) = self.jobs.get(&id).map(|t| t.state) else {
                    return Ok(vec![]);
                };
                if matches!(
                    state,
                    JobState::Submitted | JobState::Preempted | JobState::Admitted
                ) {
                    let mut details = self.explain.remove(&job).unwrap_or_else(|| json!({}));
                    let queue_zone = self.names(zone, 0).0;
                    if let Some(obj) = details.as_object_mut() {
                        obj.insert("queue_zone".into(), json!(queue_zone));
                    }
                    let details = with_reason_code(details, reason.code());
                    if self
                        .queue_in(&id, &queue_zone, &reason.to_string(), details)?
                        .is_none()
                    {
                        return Ok(self.lost_race(&id, job));
                    }
                }
                Ok(vec![])
            }
            Effect::Admitted {
                job,
                zone,
                pool,
                burst,
                reason,
                cost,
                gpus,
                justification,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(self.sched.cancel(job, secs(now_ts())));
                };
                let Some(t) = self.jobs.get(&id) else {
                    return Ok(vec![]);
                };
                let spec = t.spec.clone();
                let state = t.state;
                if matches!(state, JobState::Running | JobState::Admitted) {
                    return Ok(vec![]); // restored at recovery: already in place
                }
                if let Err(why) = self.recheck(&spec, zone, pool) {
                    tracing::warn!(job = %id, zone, pool, %why, "policy re-check refused an admission");
                    return Ok(self
                        .sched
                        .reject_candidate(job, zone, pool, &why, secs(now_ts())));
                }
                let (zname, pname) = self.names(zone, pool);
                let gpu_type = self
                    .fleet()
                    .zones
                    .get(zone)
                    .and_then(|z| z.pools.get(pool))
                    .map_or_else(String::new, |p| p.gpu_type.clone());
                if matches!(state, JobState::Submitted | JobState::Preempted) {
                    let details = self.explain.remove(&job).unwrap_or(serde_json::Value::Null);
                    if self
                        .move_to(&id, JobState::Queued, "placed; capacity is free", details)?
                        .is_none()
                    {
                        return Ok(self.lost_race(&id, job));
                    }
                }
                let Some(t) = self.jobs.get(&id) else {
                    return Ok(vec![]);
                };
                let mut tr = Transition::admit(&zname, &pname, t.version, now_ts());
                tr.reason = Some(match (&reason, burst) {
                    (Some(r), true) => format!("burst to public capacity: {r}"),
                    (None, true) => "burst to public capacity: ".into(),
                    (None, false) => "admitted to private capacity".into(),
                    (Some(r), false) => r.to_string(),
                });
                tr.details = json!({
                    "burst": burst,
                    "estimated_cost": cost,
                    "justification": justification,
                    "gpus": gpus,
                    "gpu_type": gpu_type,
                });
                if let Some(r) = &reason {
                    tr.details = with_reason_code(tr.details, r.code());
                }
                if self.transition(&id, tr)?.is_none() {
                    return Ok(self.lost_race(&id, job));
                }
                let run = if let Some(t) = self.jobs.get_mut(&id) {
                    t.zone = Some(zone);
                    t.pool = Some(pool);
                    t.gpus = gpus;
                    t.attempt += 1;
                    launch_id(id.as_str(), t.attempt)
                } else {
                    return Ok(vec![]);
                };
                // The admission won in the store: only now is it evidence, and before the run is
                // launched. A burst's entry is written only for the admission that happens.
                let recorded = self
                    .sh
                    .evidence
                    .admitted(&id, &zname, &pname, &run)
                    .and_then(|()| {
                        if burst {
                            let just = justification.clone().unwrap_or_default();
                            self.sh.evidence.burst(&id, &zname, &pname, &just)
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = recorded {
                    let reason = format!(
                        "the evidence ledger cannot record the admission, so it is refused: {e}"
                    );
                    let version = self.jobs.get(&id).map_or(0, |t| t.version);
                    self.fail(id.clone(), version, &reason)?;
                    return Ok(self.sched.cancel(job, secs(now_ts())));
                }
                if burst {
                    self.sh.metrics.bursts.inc();
                    self.sh.metrics.public_spend.inc_by(cost);
                }
                self.sh
                    .metrics
                    .admissions
                    .get_or_create(&vec![("zone", zname), ("burst", burst.to_string())])
                    .inc();
                self.launch(&id)
            }
            Effect::Refused { job, reason } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                if !self.jobs.contains_key(&id) {
                    return Ok(vec![]);
                }
                self.sh.metrics.refusals.inc();
                let details = self.explain.remove(&job).unwrap_or(serde_json::Value::Null);
                self.move_to(
                    &id,
                    JobState::Failed,
                    &format!("refused: {reason}"),
                    with_reason_code(details, reason.code()),
                )?;
                self.forget(&id);
                Ok(vec![])
            }
            Effect::Released {
                job,
                zone,
                pool,
                gpus,
                public,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let (zname, pname) = self.names(zone, pool);
                self.record_run(&id, &zname, &pname, "released");
                let reason = if public {
                    "public capacity released to the provider"
                } else {
                    "private capacity freed"
                };
                self.sh.store.append_event(
                    &id,
                    EventDraft {
                        kind: "released".into(),
                        reason: Some(reason.into()),
                        details: json!({"zone": zname, "pool": pname, "gpus": gpus, "public": public}),
                        at: now_ts(),
                    },
                )?;
                if !self.jobs.contains_key(&id) {
                    self.by_sid.remove(&job);
                }
                Ok(vec![])
            }
            Effect::Preempted {
                job,
                zone,
                pool,
                reason,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let (zname, pname) = self.names(zone, pool);
                self.record_run(&id, &zname, &pname, "preempted");
                self.stop_run(&id);
                self.move_to(
                    &id,
                    JobState::Preempted,
                    &format!("preempted: {reason}"),
                    json!({"zone": zname, "pool": pname, "reason_code": reason.code()}),
                )?;
                if let Some(t) = self.jobs.get_mut(&id) {
                    t.zone = None;
                    t.pool = None;
                }
                Ok(vec![])
            }
            Effect::Failover {
                job,
                from_zone,
                from_pool,
                attempt,
                reason,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let (zname, pname) = self.names(from_zone, from_pool);
                self.record_run(&id, &zname, &pname, "failed-over");
                self.sh.store.append_event(
                    &id,
                    EventDraft {
                        kind: "failover".into(),
                        reason: Some(reason.to_string()),
                        details: json!({"from_zone": zname, "from_pool": pname, "attempt": attempt, "reason_code": reason.code()}),
                        at: now_ts(),
                    },
                )?;
                Ok(vec![])
            }
            Effect::Cancelled { job, .. } => {
                if let Some(id) = self.job_of(job) {
                    self.forget(&id);
                }
                self.by_sid.remove(&job);
                Ok(vec![])
            }
        }
    }

    fn executor_for(&self, zone: Option<usize>) -> Option<Arc<dyn Executor>> {
        let z = self.fleet().zones.get(zone?)?;
        self.sh.executors.get(&z.name).cloned()
    }

    /// Records an event of the job's current run. Used where the effect is a stop or a release
    /// (the safe direction), which goes ahead even when the ledger cannot record it.
    fn record_run(&self, id: &JobId, zone: &str, pool: &str, event: &str) {
        let attempt = self.jobs.get(id).map_or(0, |t| t.attempt);
        if let Err(e) =
            self.sh
                .evidence
                .run_event(id, zone, pool, &launch_id(id.as_str(), attempt), event)
        {
            tracing::error!(job = %id, event, error = %e, "the evidence ledger cannot record the run event");
        }
    }

    /// Stops the current run of a job (preemption, cancellation).
    fn stop_run(&self, id: &JobId) {
        let Some(t) = self.jobs.get(id) else { return };
        if let Some(exec) = self.executor_for(t.zone) {
            if let Err(e) = exec.cancel(&launch_id(id.as_str(), t.attempt)) {
                tracing::warn!(job = %id, error = %e, "cannot stop the job's run");
            }
        }
    }

    /// Starts an admitted job on its zone's executor and records it running. A backend with no
    /// capacity sends the job on to its next allowed option.
    fn launch(&mut self, id: &JobId) -> Step<Vec<Effect>> {
        let Some(t) = self.jobs.get(id) else {
            return Ok(vec![]);
        };
        let fleet = self.fleet();
        let (Some(zi), Some(pi)) = (t.zone, t.pool) else {
            return Ok(vec![]);
        };
        let (Some(zone), Some(pool)) = (
            fleet.zones.get(zi),
            fleet.zones.get(zi).and_then(|z| z.pools.get(pi)),
        ) else {
            return Ok(vec![]);
        };
        let (version, sid, state) = (t.version, t.sid, t.state);
        let Some(exec) = self.sh.executors.get(&zone.name).cloned() else {
            self.fail(
                id.clone(),
                version,
                &format!("zone {} has no executor", zone.name),
            )?;
            return Ok(self.sched.cancel(sid, secs(now_ts())));
        };
        let run_id = launch_id(id.as_str(), t.attempt);
        // The customer's labels at their effective values go with every launch (a Kubernetes
        // zone puts them on the Job for the cluster's admission controllers).
        let labels = match tidegate_model::JobProfile::resolve(&t.spec, fleet) {
            Ok(p) => p.effective_labels(&fleet.scheme),
            Err(e) => {
                self.fail(
                    id.clone(),
                    version,
                    &format!("its inputs no longer resolve, so it is not started: {e}"),
                )?;
                return Ok(self.sched.cancel(sid, secs(now_ts())));
            }
        };
        let launch = Launch {
            job_id: run_id.clone(),
            name: t.spec.name.clone(),
            team: t.spec.team.clone(),
            zone: zone.name.clone(),
            pool: pool.name.clone(),
            gpus: t.gpus,
            gpu_type: pool.gpu_type.clone(),
            command: t.spec.command.clone(),
            stand_in_seconds: t.spec.resources.expected_hours * 3600.0
                / self.cfg.time_scale.max(1e-9),
            time_limit_s: (t.spec.resources.expected_hours * 3600.0 * 2.0)
                .ceil()
                .max(60.0) as u64,
            env: vec![],
            labels,
        };
        if state == JobState::Admitted {
            if let Err(e) = self
                .sh
                .evidence
                .run_event(id, &zone.name, &pool.name, &run_id, "started")
            {
                self.fail(
                    id.clone(),
                    version,
                    &format!("the evidence ledger cannot record the start, so the run is not started: {e}"),
                )?;
                return Ok(self.sched.cancel(sid, secs(now_ts())));
            }
        }
        match exec.start(&launch) {
            Ok(fresh) => {
                if state == JobState::Admitted {
                    let reason = format!(
                        "started by the {} executor in {}/{}",
                        exec.kind(),
                        zone.name,
                        pool.name
                    );
                    if self
                        .move_to(
                            id,
                            JobState::Running,
                            &reason,
                            json!({"fresh_start": fresh, "launch_id": run_id}),
                        )?
                        .is_none()
                    {
                        // Cancelled meanwhile: stop what was started.
                        let _ = exec.cancel(&run_id);
                    }
                }
                Ok(vec![])
            }
            Err(ExecError::NoCapacity { reason, .. }) => {
                // Withdraw the admission and let the scheduler try the next allowed option.
                let why = format!("no capacity in {}/{}: {reason}", zone.name, pool.name);
                if self
                    .move_to(
                        id,
                        JobState::Queued,
                        &why,
                        json!({"no_capacity": {"zone": zone.name, "pool": pool.name}}),
                    )?
                    .is_none()
                {
                    return Ok(self.lost_race(id, sid));
                }
                if let Some(t) = self.jobs.get_mut(id) {
                    t.zone = None;
                    t.pool = None;
                }
                Ok(self.sched.no_capacity(sid, secs(now_ts())))
            }
            Err(e) => {
                self.fail(
                    id.clone(),
                    version,
                    &format!("the executor could not start it: {e}"),
                )?;
                Ok(self.sched.cancel(sid, secs(now_ts())))
            }
        }
    }

    /// Asks the executors about running jobs and records those that ended.
    fn poll(&mut self) -> Step<()> {
        let running: Vec<(JobId, usize, u32)> = self
            .jobs
            .iter()
            .filter(|(_, t)| t.state == JobState::Running)
            .filter_map(|(id, t)| t.zone.map(|z| (id.clone(), z, t.attempt)))
            .collect();
        for (id, zone, attempt) in running {
            let Some(exec) = self.executor_for(Some(zone)) else {
                continue;
            };
            let status = match exec.poll(&launch_id(id.as_str(), attempt)) {
                Ok(s) => s,
                Err(ExecError::NoCapacity { reason, .. }) => {
                    self.withdraw_started(&id, zone, attempt, &reason)?;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot poll job");
                    continue;
                }
            };
            let mut details = serde_json::Value::Null;
            let (to, reason) = match status.clone() {
                // Waiting for the backend to admit it (Kueue): it keeps its place here.
                RunStatus::Running | RunStatus::Queued => continue,
                RunStatus::Exited { code: 0 } => (JobState::Succeeded, "exit code 0".to_string()),
                RunStatus::Exited {
                    code: CHECKPOINT_SYNC_BLOCKED,
                } => {
                    details = json!({ "exit_code": CHECKPOINT_SYNC_BLOCKED, "checkpoint_sync": "blocked" });
                    (
                        JobState::Failed,
                        format!(
                            "exit code {CHECKPOINT_SYNC_BLOCKED}: checkpoint sync blocked — the job could not reach its sync destination (the zone's egress rules may not allow it); the checkpoint was kept in the zone, see the job's logs"
                        ),
                    )
                }
                RunStatus::Exited { code } => (JobState::Failed, format!("exit code {code}")),
                RunStatus::Cancelled => (JobState::Cancelled, "cancelled".to_string()),
                RunStatus::TimedOut { limit_s } => {
                    details = json!({ "time_limit_s": limit_s });
                    (
                        JobState::Failed,
                        format!("time limit exceeded: stopped after {limit_s} s"),
                    )
                }
                RunStatus::Lost { reason } => (JobState::Failed, format!("lost: {reason}")),
                RunStatus::Preempted { reason } => {
                    // Nothing of it runs any more: back in its queue with all its options (the
                    // preemption is recorded, in the ledger first, as the effects are applied).
                    if let Some(sid) = self.jobs.get(&id).map(|t| t.sid) {
                        let fx = self.sched.evicted(sid, &reason, secs(now_ts()));
                        self.apply(fx)?;
                    }
                    continue;
                }
                RunStatus::Unknown => (
                    JobState::Failed,
                    "the executor has no record of the job".to_string(),
                ),
            };
            let Some((sid, pool)) = self.jobs.get(&id).map(|t| (t.sid, t.pool)) else {
                continue;
            };
            let (zname, pname) = self.names(zone, pool.unwrap_or(0));
            let event = run_outcome(&status);
            if let Err(e) = self.sh.evidence.run_event(
                &id,
                &zname,
                &pname,
                &launch_id(id.as_str(), attempt),
                &event,
            ) {
                // The end is recorded before anything is released; the next round tries again.
                tracing::error!(job = %id, error = %e, "the evidence ledger cannot record the run's end; it stays running until it can");
                continue;
            }
            self.move_to(&id, to, &reason, details)?;
            if let Some(t) = self.jobs.remove(&id) {
                self.explain.remove(&t.sid);
            }
            let fx = self.sched.finish(sid, secs(now_ts()));
            self.apply(fx)?;
        }
        Ok(())
    }

    /// A started run its backend gave up on for want of capacity (a Kubernetes Job Kueue did not
    /// admit within the zone's admission timeout, deleted there before this is reported): as for
    /// a start without capacity, the admission is withdrawn and the job moves to its next allowed
    /// option. The store's lifecycle has no way back from `running` to `queued`, so the job
    /// passes through `preempted` (its run was stopped, it is placed again), with the reason and
    /// `no_capacity` in the details; the run's end is in the ledger before anything moves.
    fn withdraw_started(&mut self, id: &JobId, zone: usize, attempt: u32, why: &str) -> Step<()> {
        let Some((sid, pool)) = self.jobs.get(id).map(|t| (t.sid, t.pool)) else {
            return Ok(());
        };
        let (zname, pname) = self.names(zone, pool.unwrap_or(0));
        let run = launch_id(id.as_str(), attempt);
        if let Err(e) = self
            .sh
            .evidence
            .run_event(id, &zname, &pname, &run, "no-capacity")
        {
            tracing::error!(job = %id, error = %e, "the evidence ledger cannot record the run's end; it stays running until it can");
            return Ok(());
        }
        let reason = format!("no capacity in {zname}/{pname}: {why}");
        let moved = self.move_to(
            id,
            JobState::Preempted,
            &reason,
            json!({"no_capacity": {"zone": zname, "pool": pname}, "launch_id": run}),
        )?;
        if moved.is_none() {
            let fx = self.lost_race(id, sid);
            return self.apply(fx);
        }
        if let Some(t) = self.jobs.get_mut(id) {
            t.zone = None;
            t.pool = None;
        }
        let fx = self.sched.no_capacity(sid, secs(now_ts()));
        self.apply(fx)
    }

    /// Agents that stopped syncing make their zone unreachable; one that syncs again makes it
    /// healthy (only if it was this watch that marked it).
    fn watch_agents(&self) -> Step<()> {
        if self.sh.agent_zones.is_empty() {
            return Ok(());
        }
        let now = now_ts();
        let beats = self.sh.store.heartbeats()?;
        let conds = self.sh.store.zone_conditions()?;
        let timeout = i64::try_from(self.cfg.agent_timeout.as_millis()).unwrap_or(i64::MAX);
        for zone in &self.sh.agent_zones {
            let last = beats
                .iter()
                .find(|b| &b.zone == zone)
                .map_or(self.since, |b| b.last_seen.max(self.since));
            let silent_ms = now.millis() - last.millis();
            let cond = conds.iter().find(|c| &c.zone == zone);
            let marked_by_us = cond.is_some_and(|c| {
                c.health == "unreachable"
                    && c.reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with(crate::agents::SILENT))
            });
            let unreachable = cond.is_some_and(|c| c.health == "unreachable");
            if silent_ms > timeout && !unreachable {
                tracing::warn!(
                    zone,
                    silent_ms,
                    "zone agent is silent; marking the zone unreachable"
                );
                self.sh
                    .store
                    .set_zone_condition(&tidegate_store::ZoneCondition {
                        zone: zone.clone(),
                        health: "unreachable".into(),
                        throttled: cond.is_some_and(|c| c.throttled),
                        reason: Some(format!(
                            "{} for {} s",
                            crate::agents::SILENT,
                            silent_ms / 1000
                        )),
                        updated_at: now,
                    })?;
            } else if silent_ms <= timeout && marked_by_us {
                tracing::info!(zone, "zone agent is back; the zone is healthy again");
                self.sh
                    .store
                    .set_zone_condition(&tidegate_store::ZoneCondition {
                        zone: zone.clone(),
                        health: "healthy".into(),
                        throttled: cond.is_some_and(|c| c.throttled),
                        reason: Some("the zone's agent is syncing again".into()),
                        updated_at: now,
                    })?;
            }
        }
        Ok(())
    }

    /// Zone conditions set through the API (an outage, a drill, a throttling provider): each
    /// change is handed to the core, which applies the fleet's failure hierarchy.
    fn apply_conditions(&mut self) -> Step<()> {
        let conds = self.sh.store.zone_conditions()?;
        for c in conds {
            let Some(zone) = self.zone_index(Some(&c.zone)) else {
                continue;
            };
            let health = match c.health.as_str() {
                "degraded" => Health::Degraded,
                "unreachable" => Health::Unreachable,
                _ => Health::Healthy,
            };
            let was = self
                .conditions
                .get(&zone)
                .copied()
                .unwrap_or((Health::Healthy, false));
            if was == (health, c.throttled) {
                continue;
            }
            tracing::info!(zone = %c.zone, health = %c.health, throttled = c.throttled, reason = ?c.reason, "zone condition changed");
            self.conditions.insert(zone, (health, c.throttled));
            let now = secs(now_ts());
            let mut fx = Vec::new();
            if was.0 != health {
                fx.extend(self.sched.set_zone_health(zone, health, now));
            }
            if was.1 != c.throttled {
                fx.extend(self.sched.set_throttled(zone, c.throttled, now));
            }
            self.apply(fx)?;
        }
        Ok(())
    }

    /// Jobs a user cancelled while they were admitted or running: stop them. Jobs cancelled
    /// while queued leave the scheduler core's queue (so the queue depth counts only jobs that
    /// wait): found as the tracked queued jobs the store no longer holds queued, one paging walk
    /// over the store's queue rather than one read per queued job.
    fn check_cancelled(&mut self) -> Step<()> {
        let mut suspects: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, t)| matches!(t.state, JobState::Running | JobState::Admitted))
            .map(|(id, _)| id.clone())
            .collect();
        let mut queued: HashSet<JobId> = self
            .jobs
            .iter()
            .filter(|(_, t)| t.state == JobState::Queued)
            .map(|(id, _)| id.clone())
            .collect();
        if !queued.is_empty() {
            self.each_job_in(JobState::Queued, |rec| {
                queued.remove(&rec.id);
                Ok(())
            })?;
            suspects.extend(queued);
        }
        for id in suspects {
            let Some(rec) = self.sh.store.get(&id)? else {
                continue;
            };
            if !rec.state.is_terminal() {
                continue;
            }
            let Some(t) = self.jobs.get(&id) else {
                continue;
            };
            if t.state != JobState::Queued {
                self.stop_run(&id);
            }
            let Some(t) = self.jobs.remove(&id) else {
                continue;
            };
            self.explain.remove(&t.sid);
            let fx = self.sched.cancel(t.sid, secs(now_ts()));
            self.apply(fx)?;
        }
        Ok(())
    }
}

/// A compact explanation stored with the job's first transition: the decision, allowed places,
/// and why every other zone was refused (sentences, and their codes).
fn summarize(ex: &tidegate_placement::Explanation) -> serde_json::Value {
    let allowed: Vec<String> = ex
        .candidates
        .iter()
        .flat_map(|c| {
            c.pools
                .iter()
                .filter(|p| p.allowed)
                .map(move |p| format!("{}/{}", c.zone, p.pool))
        })
        .collect();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut codes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in ex.candidates.iter().filter(|c| !c.allowed) {
        let (cs, texts) = c
            .refusal_sentences()
            .into_iter()
            .map(|(code, text)| (code.to_string(), text))
            .unzip();
        codes.insert(c.zone.clone(), cs);
        refused.insert(c.zone.clone(), texts);
    }
    json!({
        "policy_hash": ex.policy_hash,
        "effective_classification": ex.effective_classification,
        "notes": ex.notes,
        "best": ex.decision,
        "allowed": allowed,
        "refused_zones": refused,
        "refused_codes": codes,
    })
}

/// Why a job may run nowhere: the first refusal of each zone.
fn why_nowhere(ex: &tidegate_placement::Explanation) -> String {
    let parts: Vec<String> = ex
        .candidates
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.zone, c.first_refusal()?)))
        .collect();
    if parts.is_empty() {
        "no zone and pool is allowed for this job".into()
    } else {
        format!("no zone and pool may run it — {}", parts.join("; "))
    }
}

/// The ledger's name for how a run ended.
fn run_outcome(status: &RunStatus) -> String {
    match status {
        RunStatus::Exited { code } if *code >= 0 => format!("exited-{code}"),
        RunStatus::Exited { code } => format!("killed-by-signal-{}", code.unsigned_abs()),
        RunStatus::Cancelled => "cancelled".into(),
        RunStatus::TimedOut { .. } => "timed-out".into(),
        RunStatus::Lost { .. } => "lost".into(),
        RunStatus::Preempted { .. } => "preempted".into(),
        RunStatus::Unknown => "unknown".into(),
        RunStatus::Running => "running".into(),
        RunStatus::Queued => "queued".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_reason_code_joins_the_details_and_drops_nothing() {
        assert_eq!(
            with_reason_code(serde_json::Value::Null, "queue:throttled"),
            json!({"reason_code": "queue:throttled"})
        );
        assert_eq!(
            with_reason_code(
                json!({"queue_zone": "z", "allowed": [1]}),
                "queue:quota-limit"
            ),
            json!({"queue_zone": "z", "allowed": [1], "reason_code": "queue:quota-limit"})
        );
        assert_eq!(with_reason_code(json!([1, 2]), "x"), json!([1, 2]));
    }
}
