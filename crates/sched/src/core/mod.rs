//! The scheduler state machine: submit, finish, cancel, capacity failover, zone health and
//! throttling, and the effects each one causes. Team quotas with borrowing and reclaim by
//! preemption, fair share by decayed usage, per-class thresholds and burst budgets live here too.

mod budget;
mod failover;
mod pressure;
mod quota;
mod types;

use std::collections::{BTreeMap, HashMap, VecDeque};

use tidegate_model::{Fleet, Scheduling, Zone};

use crate::reason::{BurstReason, QueueReason, RefuseReason};

pub use self::types::{
    Candidate, ClassThresholds, Effect, Health, JobId, SchedConfig, Shape, DEFAULT_CLASS,
};

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

impl Running {
    /// The effect of this run giving its GPUs back.
    fn released(&self, job: JobId, at: f64) -> Effect {
        Effect::Released {
            job,
            zone: self.zone,
            pool: self.pool,
            gpus: self.gpus,
            public: self.public,
            at,
        }
    }
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

    /// Free GPUs in a pool (none in a pool the fleet does not have).
    pub fn free_gpus(&self, zone: usize, pool: usize) -> u32 {
        self.free
            .get(zone)
            .and_then(|z| z.get(pool))
            .copied()
            .unwrap_or(0)
    }

    /// The name of a zone the scheduler holds (by an index it made).
    fn zone_name(&self, zone: usize) -> &str {
        debug_assert!(
            zone < self.zones.len(),
            "zone {zone} of {}",
            self.zones.len()
        );
        self.zones.get(zone).map_or("", |z| z.name.as_str())
    }

    /// The name of a pool the scheduler holds (by indices it made).
    fn pool_name(&self, zone: usize, pool: usize) -> &str {
        let p = self.zones.get(zone).and_then(|z| z.pools.get(pool));
        debug_assert!(p.is_some(), "pool {zone}/{pool} is not in the fleet");
        p.map_or("", |p| p.name.as_str())
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
        if let Some(f) = pool_mut(&mut self.free, c.zone, c.pool) {
            *f -= gpus;
        }
        self.seq += 1;
        if borrowed {
            if let Some(b) = pool_mut(&mut self.borrowed_in_pool, c.zone, c.pool) {
                *b += gpus;
            }
            if let Some(m) = pool_mut(&mut self.borrowed_jobs, c.zone, c.pool) {
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
        if let Some(f) = pool_mut(&mut self.free, r.zone, r.pool) {
            *f += r.gpus;
        }
        if r.borrowed {
            if let Some(b) = pool_mut(&mut self.borrowed_in_pool, r.zone, r.pool) {
                *b = b.saturating_sub(r.gpus);
            }
            if let Some(m) = pool_mut(&mut self.borrowed_jobs, r.zone, r.pool) {
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
            out.push(r.released(id, now));
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
            out.push(r.released(id, now));
            out.push(Effect::Cancelled { job: id, at: now });
            self.drain(now, &mut out);
        } else if self.dequeue(id).is_some() {
            out.push(Effect::Cancelled { job: id, at: now });
        }
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

/// An entry of a table the scheduler sized itself (per zone, per quota bucket) at an index it
/// made: always there. A missing one is a bug, caught in debug builds; release builds read it as
/// empty rather than fail a decision.
fn slot<T: Copy + Default>(table: &[T], i: usize) -> T {
    debug_assert!(
        i < table.len(),
        "index {i} outside a table of {}",
        table.len()
    );
    table.get(i).copied().unwrap_or_default()
}

/// The entry of a per-zone, per-pool table, to change it.
fn pool_mut<T>(table: &mut [Vec<T>], zone: usize, pool: usize) -> Option<&mut T> {
    table.get_mut(zone).and_then(|z| z.get_mut(pool))
}

/// [`slot`] of a per-zone, per-pool table.
fn pool_slot<T: Copy + Default>(table: &[Vec<T>], zone: usize, pool: usize) -> T {
    debug_assert!(
        zone < table.len(),
        "zone {zone} outside a table of {}",
        table.len()
    );
    table.get(zone).map_or_else(T::default, |z| slot(z, pool))
}

/// Order among options of the same tier: expected cost, then data-local first.
fn rank(a: &Candidate, b: &Candidate, expected_s: f64) -> std::cmp::Ordering {
    a.expected_cost(expected_s)
        .total_cmp(&b.expected_cost(expected_s))
        .then(b.data_local.cmp(&a.data_local))
}
