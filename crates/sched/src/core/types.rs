//! The scheduler's vocabulary: job shapes, candidate options, configuration, zone health and
//! the effects the scheduler asks its caller to carry out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::reason::{BurstReason, FailoverReason, PreemptReason, QueueReason, RefuseReason};

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
    pub(crate) fn class_name(&self) -> &str {
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
