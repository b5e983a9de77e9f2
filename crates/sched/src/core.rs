//! The scheduler state machine: submit, finish, cancel, capacity failover, zone health and
//! throttling, and the effects each one causes. Team quotas with borrowing and reclaim by
//! preemption, fair share by decayed usage, per-class thresholds and burst budgets live here too.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;
use tidegate_model::scheduling::scope_covers;
use tidegate_model::{FailoverAction, Fleet, Scheduling, Zone};

use crate::reason::{
    BudgetLimit, BudgetOwner, BurstReason, FailoverReason, PreemptReason, QueueReason, RefuseReason,
};

/// A job's identity inside the scheduler.
pub type JobId = u64;

/// The job class used when a shape names none.
pub const DEFAULT_CLASS: &str = "default";

/// What the scheduler needs of a job besides its options: size, timing, owner and class.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Shape {
    /// GPUs, all in one pool.
    pub gpus: u32,
    /// Expected run time, seconds.
    pub expected_s: f64,
    /// Longest acceptable wait before bursting, seconds (default: the class's).
    pub max_wait_s: Option<f64>,
    /// Deadline, seconds on the caller's clock.
    pub deadline_s: Option<f64>,
    /// Job class (the job's `budget_class`); empty means [`DEFAULT_CLASS`].
    pub class: String,
    /// Owning team (quotas, fair share, standing justification, team budget).
    pub team: String,
    /// The job's own business justification for bursting.
    pub justification: Option<String>,
    /// Rank of the job's data classification (failure-hierarchy data conditions).
    pub data_level: u8,
    /// Fewest GPUs the job accepts when downsized (`None`: it cannot shrink).
    pub min_gpus: Option<u32>,
}

impl Shape {
    fn class_name(&self) -> &str {
        if self.class.is_empty() {
            DEFAULT_CLASS
        } else {
            &self.class
        }
    }
}

/// One allowed option for a job (from placement), with what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Candidate {
    /// Zone index.
    pub zone: usize,
    /// Pool index within the zone.
    pub pool: usize,
    /// The zone is public capacity (admission there is a burst).
    pub public: bool,
    /// Estimated cost of running there: compute plus the egress of moving the job's inputs,
    /// without any allowance for preemption (the scheduler adds that from `preemption_risk`).
    pub cost: f64,
    /// The egress part of `cost`.
    pub egress_cost: f64,
    /// The job's input data already sits in this zone.
    pub data_local: bool,
    /// Probability per hour that the pool (spot) preempts the job; 0 for on-demand.
    pub preemption_risk: f64,
}

impl Candidate {
    /// An on-demand option with no egress information.
    pub fn new(zone: usize, pool: usize, public: bool, cost: f64) -> Self {
        Self {
            zone,
            pool,
            public,
            cost,
            ..Self::default()
        }
    }

    /// Expected cost of a run of `expected_s` seconds: `cost` plus the expected re-run cost from
    /// preemption, `compute * min(risk_per_hour * hours * 0.5, 2)` (on average half the work is
    /// lost per preemption; capped at two extra runs), the same rule placement scores with.
    pub fn expected_cost(&self, expected_s: f64) -> f64 {
        let compute = (self.cost - self.egress_cost).max(0.0);
        let hours = expected_s.max(0.0) / 3600.0;
        self.cost + compute * (self.preemption_risk * hours * 0.5).min(2.0)
    }
}

/// Burst thresholds of one job class; `None` falls back to the scheduler-wide value.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ClassThresholds {
    /// Spill when the home queue holds at least this many jobs.
    pub burst_queue_depth: Option<usize>,
    /// SLA for jobs that give none, seconds.
    pub max_wait_s: Option<f64>,
    /// Spill when deadline slack falls below this, seconds (default 0).
    pub min_deadline_slack_s: Option<f64>,
}

/// Thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchedConfig {
    /// Spill to public capacity when the job's home queue holds at least this many jobs.
    pub burst_queue_depth: usize,
    /// Public capacity may be used at all (false = the private-only baseline).
    pub allow_public: bool,
    /// Queued jobs examined per zone when capacity frees up (smaller jobs may start ahead of a
    /// blocked head within this window).
    pub backfill_window: usize,
    /// Per job class thresholds (a class not listed uses the values above; classes declared in
    /// the fleet are added by [`Scheduler::with_rules`] unless listed here).
    pub classes: BTreeMap<String, ClassThresholds>,
    /// Half-life of the decayed GPU-seconds that fair share compares, seconds.
    pub fair_share_half_life_s: f64,
    /// A burst needs a business justification (the job's or its team's standing one).
    pub require_justification: bool,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            burst_queue_depth: 16,
            allow_public: true,
            backfill_window: 64,
            classes: BTreeMap::new(),
            fair_share_half_life_s: 24.0 * 3600.0,
            require_justification: true,
        }
    }
}

/// A zone's health as the shell observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Health {
    /// Admitting work.
    Healthy,
    /// Degraded: no new work is admitted; the fleet's failure hierarchy decides what its queue does.
    Degraded,
    /// Unreachable: as degraded.
    Unreachable,
}

/// What the caller must carry out (and record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Effect {
    /// Start the job in this pool now.
    Admitted {
        /// The job.
        job: JobId,
        /// Zone index.
        zone: usize,
        /// Pool index.
        pool: usize,
        /// Admitted to public capacity.
        burst: bool,
        /// Why a burst (`None` when not).
        reason: Option<BurstReason>,
        /// Expected cost (including the expected re-run cost of preemption).
        cost: f64,
        /// When.
        at: f64,
        /// GPUs granted (fewer than asked when the job was downsized).
        gpus: u32,
        /// Business justification recorded with a burst (the job's or its team's standing one).
        justification: Option<String>,
    },
    /// The job waits in a zone's queue (emitted again when the reason changes).
    Queued {
        /// The job.
        job: JobId,
        /// Zone index of the queue.
        zone: usize,
        /// Why it waits.
        reason: QueueReason,
    },
    /// The job can never run anywhere it is allowed, or was shed.
    Refused {
        /// The job.
        job: JobId,
        /// Why.
        reason: RefuseReason,
    },
    /// The job ended; its GPUs are free again (public ones are given back to the provider).
    Released {
        /// The job.
        job: JobId,
        /// Zone index.
        zone: usize,
        /// Pool index.
        pool: usize,
        /// GPUs released.
        gpus: u32,
        /// Public capacity released.
        public: bool,
        /// When.
        at: f64,
    },
    /// Stop the job: its GPUs are reclaimed by the team that lent them. The job is back in its
    /// queue.
    Preempted {
        /// The job.
        job: JobId,
        /// Zone index.
        zone: usize,
        /// Pool index.
        pool: usize,
        /// Why.
        reason: PreemptReason,
        /// When.
        at: f64,
    },
    /// The job's site could not take it (no capacity, or the policy re-check said no); it moves
    /// on to its next allowed option (an `Admitted`, `Queued` or `Refused` follows).
    Failover {
        /// The job.
        job: JobId,
        /// Zone index it left.
        from_zone: usize,
        /// Pool index it left.
        from_pool: usize,
        /// 1 for the first failover of this job, and so on.
        attempt: u32,
        /// Why.
        reason: FailoverReason,
        /// When.
        at: f64,
    },
    /// The job was cancelled (out of its queue, or stopped: a `Released` precedes this then).
    Cancelled {
        /// The job.
        job: JobId,
        /// When.
        at: f64,
    },
}

#[derive(Debug, Clone)]
struct Waiting {
    id: JobId,
    shape: Shape,
    cands: Vec<Candidate>,
    submitted: f64,
    team: usize,
    home: usize,
    asked_gpus: u32,
    /// Options ruled out for this job (no capacity, policy re-check).
    excluded: Vec<(usize, usize)>,
    failovers: u32,
    /// Held: admitted nowhere (the failure hierarchy says wait).
    hold: Option<QueueReason>,
    /// Only zones in this mask may take it (failure hierarchy).
    only: Option<Vec<bool>>,
    /// Burst without queue pressure, for this reason.
    forced: Option<BurstReason>,
    /// The reason of its latest `Queued` effect.
    last_reason: Option<QueueReason>,
}

#[derive(Debug, Clone)]
struct Running {
    zone: usize,
    pool: usize,
    gpus: u32,
    public: bool,
    borrowed: bool,
    seq: u64,
    cost: f64,
    gpu_hours: f64,
    job: Waiting,
}

#[derive(Debug, Clone, Default)]
struct Spend {
    money: f64,
    gpu_hours: f64,
}

#[derive(Debug, Clone)]
struct TeamState {
    name: String,
    weight: f64,
    /// Quota bucket of each zone.
    bucket: Vec<usize>,
    nominal: Vec<u32>,
    used: Vec<u32>,
    limit: Option<u32>,
    justification: Option<String>,
    usage: f64,
    running_gpus: u32,
    spent: Spend,
}

enum Try {
    Started,
    Blocked(Option<QueueReason>),
}

/// Why a job may burst (formatted only when it does).
enum Pressure {
    Forced,
    OnlyPublic,
    Depth(usize, usize),
    Sla(f64, f64),
    Slack(f64, f64),
}

impl Pressure {
    fn reason(&self, w: &Waiting) -> Option<BurstReason> {
        match self {
            Self::Forced => w.forced.clone(),
            Self::OnlyPublic => Some(BurstReason::OnlyPublic),
            Self::Depth(p, d) => Some(BurstReason::QueueDepth {
                depth: *p,
                threshold: *d,
            }),
            Self::Sla(e, m) => Some(BurstReason::WaitOverSla {
                expected_s: *e,
                max_s: *m,
            }),
            Self::Slack(s, m) => Some(BurstReason::DeadlineSlack {
                slack_s: *s,
                min_s: *m,
            }),
        }
    }
}

/// The scheduler: pool capacity as counted GPU slots, one queue per zone, running jobs, team
/// quotas and budgets.
#[derive(Debug)]
pub struct Scheduler {
    zones: Vec<Zone>,
    capacity: Vec<Vec<u32>>,
    free: Vec<Vec<u32>>,
    borrowed_in_pool: Vec<Vec<u32>>,
    /// Borrowed running jobs per pool, by admission sequence.
    borrowed_jobs: Vec<Vec<BTreeMap<u64, JobId>>>,
    queues: Vec<VecDeque<Waiting>>,
    queued_gpu_s: Vec<f64>,
    zone_gpus: Vec<u32>,
    health: Vec<Health>,
    throttled: Vec<bool>,
    running: HashMap<JobId, Running>,
    rules: Scheduling,
    quotas: bool,
    teams: Vec<TeamState>,
    team_ids: HashMap<String, usize>,
    class_spent: BTreeMap<String, Spend>,
    last_t: f64,
    seq: u64,
    cfg: SchedConfig,
}

impl Scheduler {
    /// A scheduler over the fleet's pools, all free, with no quotas, budgets or failure hierarchy.
    pub fn new(fleet: &Fleet, cfg: SchedConfig) -> Self {
        Self::with_rules(fleet, &Scheduling::default(), cfg)
    }

    /// A scheduler with the fleet's scheduling rules (see `tidegate_model::load_fleet_with_scheduling`):
    /// team quotas, job-class thresholds and budgets, the failure hierarchy.
    pub fn with_rules(fleet: &Fleet, rules: &Scheduling, mut cfg: SchedConfig) -> Self {
        let capacity: Vec<Vec<u32>> = fleet
            .zones
            .iter()
            .map(|z| z.pools.iter().map(|p| p.gpus).collect())
            .collect();
        let zone_gpus = capacity.iter().map(|z| z.iter().sum()).collect();
        for c in &rules.classes {
            cfg.classes
                .entry(c.name.clone())
                .or_insert_with(|| ClassThresholds {
                    burst_queue_depth: c.burst_queue_depth,
                    max_wait_s: c.max_wait_s,
                    min_deadline_slack_s: c.min_deadline_slack_s,
                });
        }
        let n = capacity.len();
        let mut s = Self {
            zones: fleet.zones.clone(),
            free: capacity.clone(),
            borrowed_in_pool: capacity.iter().map(|z| vec![0; z.len()]).collect(),
            borrowed_jobs: capacity
                .iter()
                .map(|z| vec![BTreeMap::new(); z.len()])
                .collect(),
            queues: vec![VecDeque::new(); n],
            queued_gpu_s: vec![0.0; n],
            zone_gpus,
            health: vec![Health::Healthy; n],
            throttled: vec![false; n],
            capacity,
            running: HashMap::new(),
            rules: rules.clone(),
            quotas: !rules.teams.is_empty(),
            teams: Vec::new(),
            team_ids: HashMap::new(),
            class_spent: BTreeMap::new(),
            last_t: 0.0,
            seq: 0,
            cfg,
        };
        for t in &rules.teams {
            s.team_index(&t.name);
        }
        s
    }

    fn team_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.team_ids.get(name) {
            return *i;
        }
        let quota = self.rules.team(name);
        let mut keys: Vec<String> = Vec::new();
        let mut nominal = Vec::new();
        let mut bucket = Vec::with_capacity(self.zones.len());
        for z in &self.zones {
            // A zone outside every declared scope is a bucket of its own with no nominal quota.
            let key = quota
                .and_then(|q| q.scope_for(z))
                .map_or_else(|| format!("zone:{}", z.name), str::to_string);
            let idx = match keys.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    keys.push(key.clone());
                    nominal.push(
                        quota
                            .and_then(|q| q.nominal.get(&key))
                            .copied()
                            .unwrap_or(0),
                    );
                    keys.len() - 1
                }
            };
            bucket.push(idx);
        }
        let used = vec![0; nominal.len()];
        let st = TeamState {
            name: name.to_string(),
            weight: quota.map_or(1.0, |q| q.weight),
            bucket,
            nominal,
            used,
            limit: quota.and_then(|q| q.borrowing_limit),
            justification: quota.and_then(|q| q.justification.clone()),
            usage: 0.0,
            running_gpus: 0,
            spent: Spend::default(),
        };
        self.teams.push(st);
        let i = self.teams.len() - 1;
        self.team_ids.insert(name.to_string(), i);
        i
    }

    /// Jobs waiting in a zone's queue.
    pub fn queue_depth(&self, zone: usize) -> usize {
        self.queues.get(zone).map_or(0, VecDeque::len)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Where a job runs now: (zone, pool, GPUs).
    pub fn running_at(&self, id: JobId) -> Option<(usize, usize, u32)> {
        self.running.get(&id).map(|r| (r.zone, r.pool, r.gpus))
    }

    /// Free GPUs in a pool.
    pub fn free_gpus(&self, zone: usize, pool: usize) -> u32 {
        self.free
            .get(zone)
            .and_then(|z| z.get(pool))
            .copied()
            .unwrap_or(0)
    }

    /// A team's decayed GPU-seconds divided by its weight, as of the last event (fair share
    /// serves the lowest first).
    pub fn team_share(&self, team: &str) -> f64 {
        self.team_ids
            .get(team)
            .and_then(|i| self.teams.get(*i))
            .map_or(0.0, |t| t.usage / t.weight)
    }

    /// Money and GPU-hours a team has spent on bursts.
    pub fn team_spent(&self, team: &str) -> (f64, f64) {
        self.team_ids
            .get(team)
            .and_then(|i| self.teams.get(*i))
            .map_or((0.0, 0.0), |t| (t.spent.money, t.spent.gpu_hours))
    }

    /// Money and GPU-hours a job class has spent on bursts.
    pub fn class_spent(&self, class: &str) -> (f64, f64) {
        self.class_spent
            .get(class)
            .map_or((0.0, 0.0), |s| (s.money, s.gpu_hours))
    }

    /// A zone's health.
    pub fn zone_health(&self, zone: usize) -> Health {
        self.health
            .get(zone)
            .copied()
            .unwrap_or(Health::Unreachable)
    }

    /// Brings decayed usage up to `now` (running GPUs accrue GPU-seconds).
    fn advance(&mut self, now: f64) {
        let dt = now - self.last_t;
        if dt <= 0.0 {
            return;
        }
        let half = self.cfg.fair_share_half_life_s.max(1.0);
        let decay = (-dt / half * std::f64::consts::LN_2).exp();
        for t in &mut self.teams {
            t.usage = t.usage * decay + f64::from(t.running_gpus) * dt;
        }
        self.last_t = now;
    }

    fn usable(&self, w: &Waiting, c: &Candidate) -> bool {
        if self
            .health
            .get(c.zone)
            .is_none_or(|h| *h != Health::Healthy)
            || self.throttled.get(c.zone).copied().unwrap_or(true)
        {
            return false;
        }
        if w.excluded.contains(&(c.zone, c.pool)) {
            return false;
        }
        w.only
            .as_ref()
            .is_none_or(|m| m.get(c.zone).copied().unwrap_or(false))
    }

    fn fits_now(&self, c: &Candidate, gpus: u32) -> bool {
        self.free
            .get(c.zone)
            .and_then(|z| z.get(c.pool))
            .is_some_and(|f| *f >= gpus)
    }

    /// Quota check: `Some(borrowed)` when the team may take `gpus` in the zone.
    fn quota(&self, team: usize, zone: usize, gpus: u32) -> Option<bool> {
        if !self.quotas {
            return Some(false);
        }
        let t = self.teams.get(team)?;
        let b = *t.bucket.get(zone)?;
        let used = t.used.get(b).copied().unwrap_or(0);
        let nominal = t.nominal.get(b).copied().unwrap_or(0);
        let after = used + gpus;
        if after <= nominal {
            return Some(false);
        }
        let over = after - nominal;
        if t.limit.is_some_and(|l| over > l) {
            return None;
        }
        Some(true)
    }

    fn justification(&self, w: &Waiting) -> Option<String> {
        w.shape
            .justification
            .clone()
            .filter(|j| !j.trim().is_empty())
            .or_else(|| self.teams.get(w.team).and_then(|t| t.justification.clone()))
    }

    /// Why a burst of `cost` and `gpu_hours` would exceed a budget, if it would.
    fn over_budget(&self, w: &Waiting, cost: f64, gpu_hours: f64) -> Option<QueueReason> {
        let class = w.shape.class_name();
        let spent = self.class_spent.get(class).cloned().unwrap_or_default();
        let over =
            |owner: BudgetOwner, limit: BudgetLimit| QueueReason::OverBudget { owner, limit };
        if let Some(b) = self.rules.class(class).map(|c| c.budget) {
            if let Some(m) = b.money.filter(|m| spent.money + cost > *m) {
                return Some(over(
                    BudgetOwner::Class(class.to_string()),
                    BudgetLimit::Money(m),
                ));
            }
            if let Some(h) = b.gpu_hours.filter(|h| spent.gpu_hours + gpu_hours > *h) {
                return Some(over(
                    BudgetOwner::Class(class.to_string()),
                    BudgetLimit::GpuHours(h),
                ));
            }
        }
        let t = self.teams.get(w.team)?;
        let b = self.rules.team(&t.name)?.budget;
        if let Some(m) = b.money.filter(|m| t.spent.money + cost > *m) {
            return Some(over(
                BudgetOwner::Team(t.name.clone()),
                BudgetLimit::Money(m),
            ));
        }
        if let Some(h) = b.gpu_hours.filter(|h| t.spent.gpu_hours + gpu_hours > *h) {
            return Some(over(
                BudgetOwner::Team(t.name.clone()),
                BudgetLimit::GpuHours(h),
            ));
        }
        None
    }

    fn admit(
        &mut self,
        w: Waiting,
        c: Candidate,
        borrowed: bool,
        reason: Option<BurstReason>,
        justification: Option<String>,
        now: f64,
    ) -> Effect {
        let gpus = w.shape.gpus;
        if let Some(f) = self.free.get_mut(c.zone).and_then(|z| z.get_mut(c.pool)) {
            *f -= gpus;
        }
        self.seq += 1;
        if borrowed {
            if let Some(b) = self
                .borrowed_in_pool
                .get_mut(c.zone)
                .and_then(|z| z.get_mut(c.pool))
            {
                *b += gpus;
            }
            if let Some(m) = self
                .borrowed_jobs
                .get_mut(c.zone)
                .and_then(|z| z.get_mut(c.pool))
            {
                m.insert(self.seq, w.id);
            }
        }
        let cost = c.expected_cost(w.shape.expected_s);
        let gpu_hours = f64::from(gpus) * w.shape.expected_s / 3600.0;
        if let Some(t) = self.teams.get_mut(w.team) {
            if let Some(u) = t
                .bucket
                .get(c.zone)
                .copied()
                .and_then(|b| t.used.get_mut(b))
            {
                *u += gpus;
            }
            t.running_gpus += gpus;
            if c.public {
                t.spent.money += cost;
                t.spent.gpu_hours += gpu_hours;
            }
        }
        if c.public {
            let s = self
                .class_spent
                .entry(w.shape.class_name().to_string())
                .or_default();
            s.money += cost;
            s.gpu_hours += gpu_hours;
        }
        let id = w.id;
        let justification = if c.public { justification } else { None };
        self.running.insert(
            id,
            Running {
                zone: c.zone,
                pool: c.pool,
                gpus,
                public: c.public,
                borrowed,
                seq: self.seq,
                cost,
                gpu_hours,
                job: w,
            },
        );
        Effect::Admitted {
            job: id,
            zone: c.zone,
            pool: c.pool,
            burst: c.public,
            reason,
            cost,
            at: now,
            gpus,
            justification,
        }
    }

    /// Takes a running job off its pool (GPUs and quota back); `refund` undoes its burst spend.
    fn unrun(&mut self, id: JobId, refund: bool) -> Option<Running> {
        let r = self.running.remove(&id)?;
        if let Some(f) = self.free.get_mut(r.zone).and_then(|z| z.get_mut(r.pool)) {
            *f += r.gpus;
        }
        if r.borrowed {
            if let Some(b) = self
                .borrowed_in_pool
                .get_mut(r.zone)
                .and_then(|z| z.get_mut(r.pool))
            {
                *b = b.saturating_sub(r.gpus);
            }
            if let Some(m) = self
                .borrowed_jobs
                .get_mut(r.zone)
                .and_then(|z| z.get_mut(r.pool))
            {
                m.remove(&r.seq);
            }
        }
        if let Some(t) = self.teams.get_mut(r.job.team) {
            if let Some(u) = t
                .bucket
                .get(r.zone)
                .copied()
                .and_then(|b| t.used.get_mut(b))
            {
                *u = u.saturating_sub(r.gpus);
            }
            t.running_gpus = t.running_gpus.saturating_sub(r.gpus);
            if refund && r.public {
                t.spent.money -= r.cost;
                t.spent.gpu_hours -= r.gpu_hours;
            }
        }
        if refund && r.public {
            if let Some(s) = self.class_spent.get_mut(r.job.shape.class_name()) {
                s.money -= r.cost;
                s.gpu_hours -= r.gpu_hours;
            }
        }
        Some(r)
    }

    fn thresholds(&self, class: &str) -> Option<&ClassThresholds> {
        self.cfg.classes.get(class)
    }

    /// Why this job should spill to public capacity now, if it should.
    fn pressure(&self, w: &Waiting, home: usize, position: usize, now: f64) -> Option<Pressure> {
        if w.forced.is_some() {
            return Some(Pressure::Forced);
        }
        if !w.cands.iter().any(|c| !c.public) {
            return Some(Pressure::OnlyPublic);
        }
        let th = self.thresholds(w.shape.class_name());
        let depth = th
            .and_then(|t| t.burst_queue_depth)
            .unwrap_or(self.cfg.burst_queue_depth);
        if position >= depth {
            return Some(Pressure::Depth(position, depth));
        }
        let ahead_s = self.queued_gpu_s.get(home).copied().unwrap_or(0.0)
            / f64::from(self.zone_gpus.get(home).copied().unwrap_or(1).max(1));
        let waited = now - w.submitted;
        if let Some(max) = w.shape.max_wait_s.or_else(|| th.and_then(|t| t.max_wait_s)) {
            if waited + ahead_s > max {
                return Some(Pressure::Sla(waited + ahead_s, max));
            }
        }
        if let Some(d) = w.shape.deadline_s {
            let min_slack = th.and_then(|t| t.min_deadline_slack_s).unwrap_or(0.0);
            let slack = d - now - ahead_s - w.shape.expected_s;
            if slack < min_slack {
                return Some(Pressure::Slack(slack, min_slack));
            }
        }
        None
    }

    /// Frees room for a team within its nominal quota by preempting borrowed work in one pool.
    fn reclaim(&mut self, w: &Waiting, c: &Candidate, now: f64, out: &mut Vec<Effect>) -> bool {
        let gpus = w.shape.gpus;
        let free = self
            .free
            .get(c.zone)
            .and_then(|z| z.get(c.pool))
            .copied()
            .unwrap_or(0);
        let borrowed = self
            .borrowed_in_pool
            .get(c.zone)
            .and_then(|z| z.get(c.pool))
            .copied()
            .unwrap_or(0);
        if free + borrowed < gpus {
            return false;
        }
        let over_nominal = |t: &TeamState, zone: usize| {
            let b = t.bucket.get(zone).copied().unwrap_or(0);
            t.used.get(b).copied().unwrap_or(0) > t.nominal.get(b).copied().unwrap_or(0)
        };
        // Newest borrowed work first (the map is ordered by admission).
        let victims: Vec<(JobId, u32)> = self
            .borrowed_jobs
            .get(c.zone)
            .and_then(|z| z.get(c.pool))
            .into_iter()
            .flat_map(|m| m.values().rev())
            .filter_map(|id| self.running.get(id).map(|r| (*id, r)))
            .filter(|(_, r)| {
                r.job.team != w.team
                    && self
                        .teams
                        .get(r.job.team)
                        .is_some_and(|t| over_nominal(t, r.zone))
            })
            .map(|(id, r)| (id, r.gpus))
            .collect();
        let mut got = free;
        let mut take = Vec::new();
        for (id, g) in victims {
            if got >= gpus {
                break;
            }
            got += g;
            take.push(id);
        }
        if got < gpus {
            return false;
        }
        let team = self
            .teams
            .get(w.team)
            .map_or_else(String::new, |t| t.name.clone());
        for id in take {
            if let Some(r) = self.unrun(id, false) {
                self.requeue_preempted(
                    r,
                    PreemptReason::Reclaimed { team: team.clone() },
                    QueueReason::Reclaimed,
                    now,
                    out,
                );
            }
        }
        true
    }

    /// A running job stopped for other work: `Preempted`, then back at the front of its home
    /// queue with all its options (`Queued`).
    fn requeue_preempted(
        &mut self,
        r: Running,
        reason: PreemptReason,
        waits: QueueReason,
        now: f64,
        out: &mut Vec<Effect>,
    ) {
        let mut j = r.job;
        let id = j.id;
        out.push(Effect::Preempted {
            job: id,
            zone: r.zone,
            pool: r.pool,
            reason,
            at: now,
        });
        j.last_reason = Some(waits.clone());
        let home = j.home;
        if let Some(q) = self.queued_gpu_s.get_mut(home) {
            *q += f64::from(j.shape.gpus) * j.shape.expected_s;
        }
        out.push(Effect::Queued {
            job: id,
            zone: home,
            reason: waits,
        });
        if let Some(q) = self.queues.get_mut(home) {
            q.push_front(j);
        }
    }

    /// The backend stopped a running job for other work (Kueue evicted it) and nothing of it
    /// runs any more: its GPUs are free, and it goes back to the front of its home queue with
    /// all its options, to be admitted again (a new run) where and when one has room.
    pub fn evicted(&mut self, id: JobId, reason: &str, now: f64) -> Vec<Effect> {
        self.advance(now);
        let Some(r) = self.unrun(id, false) else {
            return vec![];
        };
        let mut out = Vec::new();
        self.requeue_preempted(
            r,
            PreemptReason::Evicted {
                text: reason.to_string(),
            },
            QueueReason::Evicted {
                text: reason.to_string(),
            },
            now,
            &mut out,
        );
        self.drain(now, &mut out);
        out
    }

    /// Starts a job if a private pool has room, or a public one under pressure within budget.
    fn try_start(&mut self, w: &Waiting, position: usize, now: f64, out: &mut Vec<Effect>) -> Try {
        if let Some(h) = &w.hold {
            return Try::Blocked(Some(h.clone()));
        }
        let gpus = w.shape.gpus;
        let mut quota_block = None;
        // Private (and edge) options first, cheapest first; preempt borrowed work only where no
        // option has room.
        let mut reclaimable = Vec::new();
        for c in w.cands.iter().filter(|c| !c.public) {
            if !self.usable(w, c) {
                continue;
            }
            match self.quota(w.team, c.zone, gpus) {
                None => quota_block = Some(c.zone),
                Some(borrowed) => {
                    if self.fits_now(c, gpus) {
                        self.start(w, *c, borrowed, None, None, now, out);
                        return Try::Started;
                    }
                    if !borrowed && self.quotas && self.would_reclaim(c, gpus) {
                        reclaimable.push(*c);
                    }
                }
            }
        }
        for c in reclaimable {
            if self.reclaim(w, &c, now, out) {
                self.start(w, c, false, None, None, now, out);
                return Try::Started;
            }
        }
        let mut blocked = quota_block;
        let mut choice = None;
        let mut fallback = None;
        // Options are ranked at submission: public ones by expected cost, data-local first.
        for c in w.cands.iter().filter(|c| c.public && self.usable(w, c)) {
            match self.quota(w.team, c.zone, gpus) {
                None => blocked = Some(c.zone),
                Some(borrowed) if self.fits_now(c, gpus) => {
                    choice = Some((*c, borrowed));
                    break;
                }
                Some(false) if fallback.is_none() && self.quotas && self.would_reclaim(c, gpus) => {
                    fallback = Some((*c, false))
                }
                Some(_) => {}
            }
        }
        let Some((c, borrowed)) = choice.or(fallback) else {
            return Try::Blocked(blocked.map(|z| self.quota_reason(w, z)));
        };
        let Some(why) = self.pressure(w, w.home, position, now) else {
            return Try::Blocked(blocked.map(|z| self.quota_reason(w, z)));
        };
        let just = self.justification(w);
        if self.cfg.require_justification && just.is_none() {
            let team = self
                .teams
                .get(w.team)
                .map_or_else(String::new, |t| t.name.clone());
            return Try::Blocked(Some(QueueReason::NeedsJustification { team }));
        }
        let cost = c.expected_cost(w.shape.expected_s);
        if let Some(r) = self.over_budget(w, cost, f64::from(gpus) * w.shape.expected_s / 3600.0) {
            return Try::Blocked(Some(r));
        }
        if !self.fits_now(&c, gpus) && !self.reclaim(w, &c, now, out) {
            return Try::Blocked(blocked.map(|z| self.quota_reason(w, z)));
        }
        self.start(w, c, borrowed, why.reason(w), just, now, out);
        Try::Started
    }

    fn would_reclaim(&self, c: &Candidate, gpus: u32) -> bool {
        let free = self
            .free
            .get(c.zone)
            .and_then(|z| z.get(c.pool))
            .copied()
            .unwrap_or(0);
        let borrowed = self
            .borrowed_in_pool
            .get(c.zone)
            .and_then(|z| z.get(c.pool))
            .copied()
            .unwrap_or(0);
        free + borrowed >= gpus
    }

    fn quota_reason(&self, w: &Waiting, zone: usize) -> QueueReason {
        let t = self.teams.get(w.team);
        QueueReason::QuotaLimit {
            team: t.map_or_else(String::new, |t| t.name.clone()),
            limit: t.and_then(|t| t.limit),
            zone: self
                .zones
                .get(zone)
                .map_or_else(String::new, |z| z.name.clone()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        w: &Waiting,
        c: Candidate,
        borrowed: bool,
        reason: Option<BurstReason>,
        just: Option<String>,
        now: f64,
        out: &mut Vec<Effect>,
    ) {
        let e = self.admit(w.clone(), c, borrowed, reason, just, now);
        out.push(e);
    }

    /// The failure-hierarchy treatment of a job whose home zone is not healthy: `Err` = shed.
    fn apply_hierarchy(&self, w: &mut Waiting) -> Result<(), RefuseReason> {
        let home = self
            .zones
            .get(w.home)
            .map_or("", |z| z.name.as_str())
            .to_string();
        let class = w.shape.class_name().to_string();
        let rule = self
            .rules
            .failover
            .on_degraded
            .iter()
            .find(|r| r.covers(&class));
        let mask = |to: &[String]| -> Vec<bool> {
            self.zones
                .iter()
                .enumerate()
                .map(|(i, z)| i != w.home && to.iter().any(|s| scope_covers(s, z)))
                .collect()
        };
        let Some(rule) = rule else {
            w.hold = Some(QueueReason::DegradedWaits { home, class });
            return Ok(());
        };
        match rule.action {
            FailoverAction::Wait => {
                w.hold = Some(QueueReason::DegradedWaits { home, class });
            }
            FailoverAction::Shed => {
                return Err(RefuseReason::DegradedShed { home, class });
            }
            FailoverAction::FailOver | FailoverAction::Downsize => {
                if rule
                    .max_classification
                    .is_some_and(|m| w.shape.data_level > m)
                {
                    w.hold = Some(QueueReason::DegradedClassified { home });
                    return Ok(());
                }
                if rule.action == FailoverAction::Downsize {
                    match w.shape.min_gpus.filter(|m| *m >= 1 && *m < w.shape.gpus) {
                        Some(m) => w.shape.gpus = m,
                        None => {
                            w.hold = Some(QueueReason::DegradedCannotDownsize { home });
                            return Ok(());
                        }
                    }
                }
                w.only = Some(mask(&rule.to));
                w.forced = Some(BurstReason::Hierarchy {
                    home,
                    class,
                    downsized: rule.action == FailoverAction::Downsize,
                    to: rule.to.clone(),
                });
            }
        }
        Ok(())
    }

    fn clear_hierarchy(w: &mut Waiting) {
        w.hold = None;
        w.only = None;
        w.forced = None;
        w.shape.gpus = w.asked_gpus;
    }

    /// A job needs public capacity and all of it is throttled.
    fn stranded(&self, w: &Waiting) -> bool {
        !w.cands.iter().any(|c| !c.public)
            && w.cands
                .iter()
                .filter(|c| c.public)
                .all(|c| self.throttled.get(c.zone).copied().unwrap_or(true))
    }

    fn sheds_on_throttle(&self, w: &Waiting) -> bool {
        let class = w.shape.class_name();
        self.rules
            .failover
            .throttle_shed
            .iter()
            .any(|c| c == "*" || c == class)
    }

    /// A job arrives with its allowed options. The scheduler prefers private options (cheapest
    /// first), then public ones under pressure, cheapest in expectation (spot preemption risk
    /// counted) with data-local zones first among equals.
    pub fn submit(
        &mut self,
        id: JobId,
        shape: Shape,
        mut cands: Vec<Candidate>,
        now: f64,
    ) -> Vec<Effect> {
        self.advance(now);
        if !self.cfg.allow_public {
            cands.retain(|c| !c.public);
        }
        let largest = cands
            .iter()
            .filter_map(|c| {
                self.capacity
                    .get(c.zone)
                    .and_then(|z| z.get(c.pool))
                    .copied()
            })
            .max();
        if cands.is_empty() {
            return vec![Effect::Refused {
                job: id,
                reason: RefuseReason::NoAllowedOption,
            }];
        }
        cands.retain(|c| {
            self.capacity
                .get(c.zone)
                .and_then(|z| z.get(c.pool))
                .is_some_and(|cap| *cap >= shape.gpus)
        });
        if cands.is_empty() {
            return vec![Effect::Refused {
                job: id,
                reason: RefuseReason::TooLarge {
                    gpus: shape.gpus,
                    largest: largest.unwrap_or(0),
                },
            }];
        }
        let exp = shape.expected_s;
        cands.sort_by(|a, b| a.public.cmp(&b.public).then_with(|| rank(a, b, exp)));
        let home = cands
            .iter()
            .find(|c| !c.public)
            .or(cands.first())
            .map_or(0, |c| c.zone);
        let mut w = self.waiting(id, shape, cands, home, now);
        if self.zone_health(home) != Health::Healthy
            && self.zones.get(home).is_some_and(|z| z.tier.is_private())
        {
            if let Err(reason) = self.apply_hierarchy(&mut w) {
                return vec![Effect::Refused { job: id, reason }];
            }
        }
        if self.stranded(&w) && self.sheds_on_throttle(&w) {
            return vec![Effect::Refused {
                job: id,
                reason: RefuseReason::ThrottledShed,
            }];
        }
        let mut out = Vec::new();
        let blocked = match self.try_start(&w, self.queue_depth(home), now, &mut out) {
            Try::Started => return out,
            Try::Blocked(b) => b,
        };
        let reason = blocked.unwrap_or_else(|| {
            if self.stranded(&w) {
                QueueReason::Throttled
            } else if w.cands.iter().any(|c| c.public) {
                QueueReason::PrivatePoolsFull
            } else {
                QueueReason::AllowedPoolsFull
            }
        });
        w.last_reason = Some(reason.clone());
        self.enqueue(w);
        out.push(Effect::Queued {
            job: id,
            zone: home,
            reason,
        });
        out
    }

    fn enqueue(&mut self, w: Waiting) {
        if let Some(q) = self.queued_gpu_s.get_mut(w.home) {
            *q += f64::from(w.shape.gpus) * w.shape.expected_s;
        }
        if let Some(q) = self.queues.get_mut(w.home) {
            q.push_back(w);
        }
    }

    /// Takes a queued job out of its queue.
    fn dequeue(&mut self, id: JobId) -> Option<Waiting> {
        for (zone, q) in self.queues.iter_mut().enumerate() {
            if let Some(i) = q.iter().position(|w| w.id == id) {
                let w = q.remove(i)?;
                if let Some(g) = self.queued_gpu_s.get_mut(zone) {
                    *g = (*g - f64::from(w.shape.gpus) * w.shape.expected_s).max(0.0);
                }
                return Some(w);
            }
        }
        None
    }

    /// A job ended: release its GPUs and start what now fits.
    pub fn finish(&mut self, id: JobId, now: f64) -> Vec<Effect> {
        self.advance(now);
        let mut out = Vec::new();
        if let Some(r) = self.unrun(id, false) {
            out.push(Effect::Released {
                job: id,
                zone: r.zone,
                pool: r.pool,
                gpus: r.gpus,
                public: r.public,
                at: now,
            });
        }
        self.drain(now, &mut out);
        out
    }

    fn waiting(
        &mut self,
        id: JobId,
        shape: Shape,
        cands: Vec<Candidate>,
        home: usize,
        now: f64,
    ) -> Waiting {
        Waiting {
            id,
            asked_gpus: shape.gpus,
            team: self.team_index(&shape.team),
            shape,
            cands,
            submitted: now,
            home,
            excluded: Vec::new(),
            failovers: 0,
            hold: None,
            only: None,
            forced: None,
            last_reason: None,
        }
    }

    /// Re-seats a job that is already running at `at` (a control plane rebuilding its state
    /// after a restart or a change of leader): its GPUs, quota use and spend are taken without
    /// any admission check, and no effect is emitted. `cands` are its other allowed options, for
    /// a later failover.
    pub fn restore_running(
        &mut self,
        id: JobId,
        shape: Shape,
        mut cands: Vec<Candidate>,
        at: Candidate,
        now: f64,
    ) {
        self.advance(now);
        let exp = shape.expected_s;
        cands.sort_by(|a, b| a.public.cmp(&b.public).then_with(|| rank(a, b, exp)));
        let home = cands.iter().find(|c| !c.public).map_or(at.zone, |c| c.zone);
        let w = self.waiting(id, shape, cands, home, now);
        let justification = w.shape.justification.clone();
        let _ = self.admit(
            w,
            at,
            false,
            Some(BurstReason::Restored),
            justification,
            now,
        );
    }

    /// Cancels a job: out of its queue, or stopped and its GPUs released (public ones given back
    /// at once). Unknown jobs give no effects.
    pub fn cancel(&mut self, id: JobId, now: f64) -> Vec<Effect> {
        self.advance(now);
        let mut out = Vec::new();
        if let Some(r) = self.unrun(id, false) {
            out.push(Effect::Released {
                job: id,
                zone: r.zone,
                pool: r.pool,
                gpus: r.gpus,
                public: r.public,
                at: now,
            });
            out.push(Effect::Cancelled { job: id, at: now });
            self.drain(now, &mut out);
        } else if self.dequeue(id).is_some() {
            out.push(Effect::Cancelled { job: id, at: now });
        }
        out
    }

    /// The backend reported that the job's pool has no capacity (e.g. no H200 left in the
    /// region): the admission is withdrawn and the job moves to its next allowed option in order,
    /// one site at a time.
    pub fn no_capacity(&mut self, id: JobId, now: f64) -> Vec<Effect> {
        self.advance(now);
        let Some((z, p)) = self.running.get(&id).map(|r| (r.zone, r.pool)) else {
            return vec![];
        };
        let zone = self
            .zones
            .get(z)
            .map_or("", |z| z.name.as_str())
            .to_string();
        let pool = self
            .zones
            .get(z)
            .and_then(|zz| zz.pools.get(p))
            .map_or("", |p| p.name.as_str())
            .to_string();
        self.hop(id, FailoverReason::NoCapacity { zone, pool }, now)
    }

    /// The shell's policy re-check refused the job at `zone`/`pool`: that option is struck off
    /// the job's list. A job admitted there moves on to its next option (as for
    /// [`Scheduler::no_capacity`]); a queued job left with no option is refused.
    pub fn reject_candidate(
        &mut self,
        id: JobId,
        zone: usize,
        pool: usize,
        reason: &str,
        now: f64,
    ) -> Vec<Effect> {
        self.advance(now);
        if self
            .running
            .get(&id)
            .is_some_and(|r| r.zone == zone && r.pool == pool)
        {
            return self.hop(
                id,
                FailoverReason::PolicyRecheck {
                    text: reason.to_string(),
                },
                now,
            );
        }
        if let Some(r) = self.running.get_mut(&id) {
            r.job.excluded.push((zone, pool));
            return vec![];
        }
        for q in &mut self.queues {
            if let Some(w) = q.iter_mut().find(|w| w.id == id) {
                w.excluded.push((zone, pool));
                if w.cands
                    .iter()
                    .all(|c| w.excluded.contains(&(c.zone, c.pool)))
                {
                    self.dequeue(id);
                    return vec![Effect::Refused {
                        job: id,
                        reason: RefuseReason::RecheckRefused {
                            text: reason.to_string(),
                        },
                    }];
                }
                return vec![];
            }
        }
        vec![]
    }

    fn hop(&mut self, id: JobId, reason: FailoverReason, now: f64) -> Vec<Effect> {
        let Some(r) = self.unrun(id, true) else {
            return vec![];
        };
        let mut out = Vec::new();
        let mut w = r.job;
        w.excluded.push((r.zone, r.pool));
        w.failovers += 1;
        out.push(Effect::Failover {
            job: id,
            from_zone: r.zone,
            from_pool: r.pool,
            attempt: w.failovers,
            reason: reason.clone(),
            at: now,
        });
        if w.cands
            .iter()
            .all(|c| w.excluded.contains(&(c.zone, c.pool)))
        {
            out.push(Effect::Refused {
                job: id,
                reason: RefuseReason::NoOptionLeft {
                    attempts: w.failovers,
                    last: reason,
                },
            });
            self.drain(now, &mut out);
            return out;
        }
        // It was admitted once, so moving on to a public option needs no fresh queue pressure.
        if w.forced.is_none() {
            w.forced = Some(BurstReason::Failover(reason.clone()));
        }
        match self.try_start(&w, 0, now, &mut out) {
            Try::Started => {}
            Try::Blocked(b) => {
                let why = b.unwrap_or(QueueReason::AwaitingFailover(reason));
                w.last_reason = Some(why.clone());
                out.push(Effect::Queued {
                    job: id,
                    zone: w.home,
                    reason: why,
                });
                if let Some(q) = self.queued_gpu_s.get_mut(w.home) {
                    *q += f64::from(w.shape.gpus) * w.shape.expected_s;
                }
                if let Some(q) = self.queues.get_mut(w.home) {
                    q.push_front(w);
                }
            }
        }
        // Its old pool is free again.
        self.drain(now, &mut out);
        out
    }

    /// Records a zone's health. While a private zone is not healthy nothing new is admitted
    /// there and its queued jobs follow the fleet's failure hierarchy (fail over, wait, shed or
    /// downsize); when it is healthy again they return to normal.
    pub fn set_zone_health(&mut self, zone: usize, health: Health, now: f64) -> Vec<Effect> {
        self.advance(now);
        let mut out = Vec::new();
        let Some(h) = self.health.get_mut(zone) else {
            return out;
        };
        *h = health;
        let private = self.zones.get(zone).is_some_and(|z| z.tier.is_private());
        let Some(mut q) = self.queues.get_mut(zone).map(std::mem::take) else {
            return out;
        };
        let mut kept = VecDeque::with_capacity(q.len());
        while let Some(mut w) = q.pop_front() {
            if w.hold.is_some() || w.only.is_some() {
                Self::clear_hierarchy(&mut w);
            }
            if health != Health::Healthy && private {
                if let Err(reason) = self.apply_hierarchy(&mut w) {
                    if let Some(g) = self.queued_gpu_s.get_mut(zone) {
                        *g = (*g - f64::from(w.asked_gpus) * w.shape.expected_s).max(0.0);
                    }
                    out.push(Effect::Refused { job: w.id, reason });
                    continue;
                }
                if let Some(hold) = w.hold.clone() {
                    if w.last_reason.as_ref() != Some(&hold) {
                        w.last_reason = Some(hold.clone());
                        out.push(Effect::Queued {
                            job: w.id,
                            zone,
                            reason: hold,
                        });
                    }
                }
            }
            kept.push_back(w);
        }
        if let Some(slot) = self.queues.get_mut(zone) {
            *slot = kept;
        }
        self.drain(now, &mut out);
        out
    }

    /// Marks a (public) zone throttled by its provider, or not. While throttled nothing new is
    /// admitted there; queued jobs that need it are shed if their class is in the fleet's
    /// `on_throttle.shed` list (batch first) and otherwise stay queued.
    pub fn set_throttled(&mut self, zone: usize, throttled: bool, now: f64) -> Vec<Effect> {
        self.advance(now);
        if let Some(t) = self.throttled.get_mut(zone) {
            *t = throttled;
        }
        self.after_throttle(now)
    }

    /// Marks every zone of a provider throttled, or not (see [`Scheduler::set_throttled`]).
    pub fn set_provider_throttled(
        &mut self,
        provider: &str,
        throttled: bool,
        now: f64,
    ) -> Vec<Effect> {
        self.advance(now);
        for (i, z) in self.zones.iter().enumerate() {
            if z.provider == provider {
                if let Some(t) = self.throttled.get_mut(i) {
                    *t = throttled;
                }
            }
        }
        self.after_throttle(now)
    }

    fn after_throttle(&mut self, now: f64) -> Vec<Effect> {
        let mut out = Vec::new();
        for zone in 0..self.queues.len() {
            let Some(q) = self.queues.get_mut(zone).map(std::mem::take) else {
                continue;
            };
            let mut kept = VecDeque::with_capacity(q.len());
            for mut w in q {
                if self.stranded(&w) {
                    if self.sheds_on_throttle(&w) {
                        if let Some(g) = self.queued_gpu_s.get_mut(zone) {
                            *g = (*g - f64::from(w.shape.gpus) * w.shape.expected_s).max(0.0);
                        }
                        out.push(Effect::Refused {
                            job: w.id,
                            reason: RefuseReason::ThrottledShed,
                        });
                        continue;
                    }
                    let why = QueueReason::Throttled;
                    if w.last_reason.as_ref() != Some(&why) {
                        w.last_reason = Some(why.clone());
                        out.push(Effect::Queued {
                            job: w.id,
                            zone,
                            reason: why,
                        });
                    }
                }
                kept.push_back(w);
            }
            if let Some(slot) = self.queues.get_mut(zone) {
                *slot = kept;
            }
        }
        self.drain(now, &mut out);
        out
    }

    /// Re-examines the queues at `now` (call on a timer so SLA and deadline pressure is seen).
    pub fn tick(&mut self, now: f64) -> Vec<Effect> {
        self.advance(now);
        let mut out = Vec::new();
        self.drain(now, &mut out);
        out
    }

    fn drain(&mut self, now: f64, out: &mut Vec<Effect>) {
        for zone in 0..self.queues.len() {
            if self.queues.get(zone).is_none_or(VecDeque::is_empty) {
                continue;
            }
            // Take the queue out so jobs can be examined in place while capacity changes.
            let Some(mut q) = self.queues.get_mut(zone).map(std::mem::take) else {
                continue;
            };
            let window = self.cfg.backfill_window.min(q.len());
            // Fair share: within the window, the team with the least decayed usage per weight
            // goes first; submission order breaks ties.
            let mut order: Vec<usize> = (0..window).collect();
            if self.quotas && self.teams.len() > 1 {
                let share = |i: usize| {
                    q.get(i)
                        .and_then(|w| self.teams.get(w.team))
                        .map_or(0.0, |t| t.usage / t.weight)
                };
                let shares: Vec<f64> = (0..window).map(share).collect();
                order.sort_by(|a, b| {
                    shares
                        .get(*a)
                        .copied()
                        .unwrap_or(0.0)
                        .total_cmp(&shares.get(*b).copied().unwrap_or(0.0))
                        .then(a.cmp(b))
                });
            }
            let mut started = Vec::new();
            for i in order {
                let Some(w) = q.get(i) else { continue };
                match self.try_start(w, i, now, out) {
                    Try::Started => started.push(i),
                    Try::Blocked(Some(reason)) if w.last_reason.as_ref() != Some(&reason) => {
                        out.push(Effect::Queued {
                            job: w.id,
                            zone,
                            reason: reason.clone(),
                        });
                        if let Some(x) = q.get_mut(i) {
                            x.last_reason = Some(reason);
                        }
                    }
                    Try::Blocked(_) => {}
                }
            }
            started.sort_unstable();
            for i in started.into_iter().rev() {
                if let Some(w) = q.remove(i) {
                    if let Some(g) = self.queued_gpu_s.get_mut(zone) {
                        *g = (*g - f64::from(w.shape.gpus) * w.shape.expected_s).max(0.0);
                    }
                }
            }
            if let Some(slot) = self.queues.get_mut(zone) {
                // Jobs preempted meanwhile were pushed into the emptied slot: they go first.
                let pushed = std::mem::take(slot);
                for w in pushed.into_iter().rev() {
                    q.push_front(w);
                }
                *slot = q;
            }
        }
    }
}

/// Order among options of the same tier: expected cost, then data-local first.
fn rank(a: &Candidate, b: &Candidate, expected_s: f64) -> std::cmp::Ordering {
    a.expected_cost(expected_s)
        .total_cmp(&b.expected_cost(expected_s))
        .then(b.data_local.cmp(&a.data_local))
}
