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

mod effects;
mod intake;
mod lease;
mod poll;
mod recover;

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

fn now_ts() -> Timestamp {
    Timestamp::now()
}

fn secs(t: Timestamp) -> f64 {
    t.as_secs_f64()
}

pub use self::lease::run;
use self::lease::{lease_lost, LeaseKeeper};

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

impl Tracked {
    /// A job the leader tracks from its stored record, placed at `place` (zone, pool) if it runs.
    fn of(
        sid: u64,
        rec: &JobRecord,
        spec: JobSpec,
        place: Option<(usize, usize)>,
        gpus: u32,
        attempt: u32,
    ) -> Self {
        Tracked {
            sid,
            version: rec.version,
            state: rec.state,
            spec: Arc::new(spec),
            zone: place.map(|p| p.0),
            pool: place.map(|p| p.1),
            gpus,
            attempt,
        }
    }
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
        deadline_s: spec.deadline.map(Timestamp::as_secs_f64),
        class: spec.budget_class.clone(),
        team: spec.team.clone(),
        justification: spec.justification.clone(),
        data_level: level,
        min_gpus: None,
    }
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

    fn alloc(&mut self, id: &JobId) -> u64 {
        let sid = self.next_sid;
        self.next_sid += 1;
        self.by_sid.insert(sid, id.clone());
        sid
    }

    fn parse(&self, rec: &JobRecord) -> Result<JobSpec, String> {
        stored_spec(rec, self.fleet())
    }
}
