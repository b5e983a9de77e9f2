//! A placement as the scheduler core weighs it: the allowed options of a [`Placement`] as
//! [`Candidate`]s of `tidegate-sched`, for the control plane's loop and the simulator alike.

use tidegate_model::{Fleet, Tier};
use tidegate_sched::Candidate;

use crate::Placement;

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
