//! The scheduler state machine: submit, finish, and the effects each one causes.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use tidegate_model::Fleet;

/// A job's identity inside the scheduler.
pub type JobId = u64;

/// What the scheduler needs of a job besides its options: size and timing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shape {
    /// GPUs, all in one pool.
    pub gpus: u32,
    /// Expected run time, seconds.
    pub expected_s: f64,
    /// Longest acceptable wait before bursting, seconds.
    pub max_wait_s: Option<f64>,
    /// Deadline, seconds on the caller's clock.
    pub deadline_s: Option<f64>,
}

/// One allowed option for a job (from placement), with what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candidate {
    /// Zone index.
    pub zone: usize,
    /// Pool index within the zone.
    pub pool: usize,
    /// The zone is public capacity (admission there is a burst).
    pub public: bool,
    /// Estimated cost of running there.
    pub cost: f64,
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
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self { burst_queue_depth: 16, allow_public: true, backfill_window: 64 }
    }
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
        /// Why a burst (empty when not).
        reason: String,
        /// Estimated cost.
        cost: f64,
        /// When.
        at: f64,
    },
    /// The job waits in a zone's queue.
    Queued {
        /// The job.
        job: JobId,
        /// Zone index of the queue.
        zone: usize,
        /// Why it waits.
        reason: String,
    },
    /// The job can never run anywhere it is allowed.
    Refused {
        /// The job.
        job: JobId,
        /// Why.
        reason: String,
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
}

#[derive(Debug, Clone)]
struct Waiting {
    id: JobId,
    shape: Shape,
    cands: Vec<Candidate>,
    submitted: f64,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    zone: usize,
    pool: usize,
    gpus: u32,
    public: bool,
}

/// The scheduler: pool capacity as counted GPU slots, one FIFO queue per zone, running jobs.
#[derive(Debug)]
pub struct Scheduler {
    capacity: Vec<Vec<u32>>,
    free: Vec<Vec<u32>>,
    queues: Vec<VecDeque<Waiting>>,
    queued_gpu_s: Vec<f64>,
    zone_gpus: Vec<u32>,
    running: HashMap<JobId, Running>,
    cfg: SchedConfig,
}

impl Scheduler {
    /// A scheduler over the fleet's pools, all free.
    pub fn new(fleet: &Fleet, cfg: SchedConfig) -> Self {
        let capacity: Vec<Vec<u32>> = fleet.zones.iter().map(|z| z.pools.iter().map(|p| p.gpus).collect()).collect();
        let zone_gpus = capacity.iter().map(|z| z.iter().sum()).collect();
        Self {
            free: capacity.clone(),
            queues: vec![VecDeque::new(); capacity.len()],
            queued_gpu_s: vec![0.0; capacity.len()],
            zone_gpus,
            capacity,
            running: HashMap::new(),
            cfg,
        }
    }

    /// Jobs waiting in a zone's queue.
    pub fn queue_depth(&self, zone: usize) -> usize {
        self.queues.get(zone).map_or(0, VecDeque::len)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    fn free_mut(&mut self, zone: usize, pool: usize) -> Option<&mut u32> {
        self.free.get_mut(zone).and_then(|z| z.get_mut(pool))
    }

    fn fits_now(&self, c: &Candidate, gpus: u32) -> bool {
        self.free.get(c.zone).and_then(|z| z.get(c.pool)).is_some_and(|f| *f >= gpus)
    }

    fn admit(&mut self, id: JobId, c: Candidate, gpus: u32, reason: String, now: f64) -> Effect {
        if let Some(f) = self.free_mut(c.zone, c.pool) {
            *f -= gpus;
        }
        self.running.insert(id, Running { zone: c.zone, pool: c.pool, gpus, public: c.public });
        Effect::Admitted { job: id, zone: c.zone, pool: c.pool, burst: c.public, reason, cost: c.cost, at: now }
    }

    /// Why this job should spill to public capacity now, if it should.
    fn pressure(&self, w: &Waiting, home: usize, position: usize, now: f64) -> Option<String> {
        if !w.cands.iter().any(|c| !c.public) {
            return Some("no private zone may run it; public capacity is its place".into());
        }
        if position >= self.cfg.burst_queue_depth {
            return Some(format!("queue depth {position} >= {} in its home zone", self.cfg.burst_queue_depth));
        }
        let ahead_s = self.queued_gpu_s.get(home).copied().unwrap_or(0.0)
            / f64::from(self.zone_gpus.get(home).copied().unwrap_or(1).max(1));
        let waited = now - w.submitted;
        if let Some(max) = w.shape.max_wait_s {
            if waited + ahead_s > max {
                return Some(format!("expected wait {:.0} s exceeds the SLA of {max:.0} s", waited + ahead_s));
            }
        }
        if let Some(d) = w.shape.deadline_s {
            if d - now - ahead_s < w.shape.expected_s {
                return Some("deadline slack is below the expected run time".into());
            }
        }
        None
    }

    /// A job arrives with its allowed options (cheapest first within each tier is fine; the
    /// scheduler prefers private options, then public ones under pressure).
    pub fn submit(&mut self, id: JobId, shape: Shape, mut cands: Vec<Candidate>, now: f64) -> Vec<Effect> {
        if !self.cfg.allow_public {
            cands.retain(|c| !c.public);
        }
        let largest = cands
            .iter()
            .filter_map(|c| self.capacity.get(c.zone).and_then(|z| z.get(c.pool)).copied())
            .max();
        if cands.is_empty() {
            return vec![Effect::Refused { job: id, reason: "no zone and pool is allowed for this job".into() }];
        }
        cands.retain(|c| self.capacity.get(c.zone).and_then(|z| z.get(c.pool)).is_some_and(|cap| *cap >= shape.gpus));
        if cands.is_empty() {
            return vec![Effect::Refused {
                job: id,
                reason: format!("needs {} GPUs; the largest allowed pool has {}", shape.gpus, largest.unwrap_or(0)),
            }];
        }
        cands.sort_by(|a, b| a.public.cmp(&b.public).then(a.cost.total_cmp(&b.cost)));
        let home = cands.iter().find(|c| !c.public).or(cands.first()).map_or(0, |c| c.zone);
        let w = Waiting { id, shape, cands, submitted: now };
        if let Some(e) = self.try_start(&w, home, self.queue_depth(home), now) {
            return vec![e];
        }
        let reason = if w.cands.iter().any(|c| c.public) {
            "private pools are full; no public pressure yet".to_string()
        } else {
            "allowed pools are full".to_string()
        };
        if let Some(q) = self.queued_gpu_s.get_mut(home) {
            *q += f64::from(w.shape.gpus) * w.shape.expected_s;
        }
        if let Some(q) = self.queues.get_mut(home) {
            q.push_back(w);
        }
        vec![Effect::Queued { job: id, zone: home, reason }]
    }

    /// Starts a job if a private pool has room, or a public one under pressure.
    fn try_start(&mut self, w: &Waiting, home: usize, position: usize, now: f64) -> Option<Effect> {
        let gpus = w.shape.gpus;
        if let Some(c) = w.cands.iter().find(|c| !c.public && self.fits_now(c, gpus)).copied() {
            return Some(self.admit(w.id, c, gpus, String::new(), now));
        }
        if w.cands.iter().any(|c| c.public) {
            if let Some(why) = self.pressure(w, home, position, now) {
                if let Some(c) = w.cands.iter().find(|c| c.public && self.fits_now(c, gpus)).copied() {
                    return Some(self.admit(w.id, c, gpus, why, now));
                }
            }
        }
        None
    }

    /// A job ended: release its GPUs and start what now fits.
    pub fn finish(&mut self, id: JobId, now: f64) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(r) = self.running.remove(&id) {
            if let Some(f) = self.free_mut(r.zone, r.pool) {
                *f += r.gpus;
            }
            out.push(Effect::Released { job: id, zone: r.zone, pool: r.pool, gpus: r.gpus, public: r.public, at: now });
        }
        self.drain(now, &mut out);
        out
    }

    /// Re-examines the queues at `now` (call on a timer so SLA and deadline pressure is seen).
    pub fn tick(&mut self, now: f64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.drain(now, &mut out);
        out
    }

    fn drain(&mut self, now: f64, out: &mut Vec<Effect>) {
        for zone in 0..self.queues.len() {
            // Take the queue out so jobs can be examined in place while capacity changes.
            let Some(mut q) = self.queues.get_mut(zone).map(std::mem::take) else { continue };
            let mut i = 0;
            let mut examined = 0;
            while examined < self.cfg.backfill_window && i < q.len() {
                examined += 1;
                let started = q.get(i).and_then(|w| self.try_start(w, zone, i, now));
                match started {
                    Some(e) => {
                        if let Some(w) = q.remove(i) {
                            if let Some(g) = self.queued_gpu_s.get_mut(zone) {
                                *g = (*g - f64::from(w.shape.gpus) * w.shape.expected_s).max(0.0);
                            }
                        }
                        out.push(e);
                    }
                    None => i += 1,
                }
            }
            if let Some(slot) = self.queues.get_mut(zone) {
                *slot = q;
            }
        }
    }
}
