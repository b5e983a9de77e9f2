//! tidegate scheduler core: per-zone queues, admission against pool capacity, spill-over to public
//! capacity under queue-depth, wait or deadline pressure (only where placement allows the job
//! there), and release of GPUs when a job ends. Sans-IO and deterministic: the caller passes every
//! event and the time, and gets back the effects to carry out. The simulator and (later) the
//! server drive the same code.
//!
//! With the fleet's scheduling rules (`Scheduler::with_rules`): cost-aware choice among allowed
//! options (spot re-run risk, egress, data locality), burst thresholds per job class, team quotas
//! that lend idle capacity within borrowing limits and reclaim it by preemption, fair share by
//! decayed usage, burst budgets per class and team with a recorded business justification,
//! capacity failover one site at a time, the failure hierarchy for degraded private zones and
//! throttled providers, and cancel.

mod core;
pub mod pollux;
pub mod sim;

use tidegate_model::{Fleet, Tier};
use tidegate_placement::Placement;

pub use crate::core::{
    Candidate, ClassThresholds, Effect, Health, JobId, SchedConfig, Scheduler, Shape, DEFAULT_CLASS,
};

/// The options placement allowed for a job, as the scheduler weighs them: cost is compute plus
/// egress (the scheduler adds the expected cost of spot re-runs itself), data-local where no
/// input has to move.
pub fn candidates(p: &Placement, fleet: &Fleet) -> Vec<Candidate> {
    p.pools
        .iter()
        .filter(|pc| pc.allowed)
        .filter_map(|pc| {
            let zone = fleet.zones.get(pc.zone)?;
            let pool = zone.pools.get(pc.pool)?;
            let zc = p.zones.get(pc.zone);
            let egress = zc.map_or(0.0, |z| z.egress_cost);
            Some(Candidate {
                zone: pc.zone,
                pool: pc.pool,
                public: zone.tier == Tier::Public,
                cost: pc.compute_cost + egress,
                egress_cost: egress,
                data_local: zc.is_some_and(|z| z.egress_gb <= 0.0),
                preemption_risk: pool.preemption_risk,
            })
        })
        .collect()
}
