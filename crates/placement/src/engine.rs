//! The placement engine: policy verdicts (reused per attribute signature), hard constraints,
//! scoring, and the decision.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use tidegate_model::{Fleet, JobProfile, JobSpec, PolicyAttrs, Pricing, ResolveError};
use tidegate_policy::{PolicyEngine, ZoneVerdict};

use crate::constraints::{pool_failures, zone_failures, Failures, ZoneFailures};

/// What waiting is worth, per GPU-hour of the job's request, when trading wait against price.
pub const WAIT_VALUE_PER_GPU_HOUR: f64 = 2.0;

/// Live state of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PoolState {
    /// GPUs free now.
    pub free_gpus: u32,
    /// Expected wait for a job that does not fit now, seconds.
    pub expected_wait_s: f64,
}

/// Live state of the fleet: one entry per pool, indexed `[zone][pool]` like the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetState {
    /// Pool states.
    pub pools: Vec<Vec<PoolState>>,
}

impl FleetState {
    /// Every GPU free, no wait.
    pub fn idle(fleet: &Fleet) -> Self {
        Self {
            pools: fleet
                .zones
                .iter()
                .map(|z| z.pools.iter().map(|p| PoolState { free_gpus: p.gpus, expected_wait_s: 0.0 }).collect())
                .collect(),
        }
    }

    fn get(&self, zone: usize, pool: usize) -> Option<&PoolState> {
        self.pools.get(zone).and_then(|z| z.get(pool))
    }
}

/// The verdicts that depend only on a job's policy attributes: one per zone.
#[derive(Debug)]
pub struct AttrVerdicts {
    /// Cedar verdict per zone.
    pub policy: Vec<ZoneVerdict>,
    /// Hard zone constraints per zone.
    pub failures: Vec<ZoneFailures>,
}

/// The outcome for one zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneCheck {
    /// Zone index.
    pub zone: usize,
    /// Policy allowed it and no zone constraint failed (pools are judged separately).
    pub allowed: bool,
    /// Failed zone constraints, including egress routes for this job's data.
    pub failures: ZoneFailures,
    /// GB of input data that would move into this zone.
    pub egress_gb: f64,
    /// What moving it costs.
    pub egress_cost: f64,
}

/// The outcome for one pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PoolCheck {
    /// Zone index.
    pub zone: usize,
    /// Pool index within the zone.
    pub pool: usize,
    /// Failed pool constraints.
    pub failures: Failures,
    /// Zone allowed and no pool constraint failed.
    pub allowed: bool,
    /// Compute cost: GPUs x hours x price.
    pub compute_cost: f64,
    /// Expected extra cost of preemption (spot pools).
    pub preemption_cost: f64,
    /// Expected wait, seconds.
    pub wait_s: f64,
    /// Total score (lower is better): compute + preemption + egress + value of waiting.
    pub score: f64,
}

/// The engine's choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    /// Chosen zone index, if any option is allowed.
    pub zone: Option<usize>,
    /// Chosen pool index within the zone.
    pub pool: Option<usize>,
    /// Its score.
    pub score: f64,
}

/// A complete placement: the decision and everything needed to explain it.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The job resolved against the fleet.
    pub profile: JobProfile,
    /// Policy verdicts and zone constraints for the job's attributes (shared between jobs).
    pub verdicts: Arc<AttrVerdicts>,
    /// Per-zone outcome.
    pub zones: Vec<ZoneCheck>,
    /// Per-pool outcome, zone by zone.
    pub pools: Vec<PoolCheck>,
    /// The decision.
    pub decision: Decision,
    /// Hash of the policy set that made it.
    pub policy_hash: Arc<str>,
}

impl Placement {
    /// The (zone, pool) pairs allowed, in fleet order.
    pub fn allowed_pools(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.pools.iter().filter(|p| p.allowed).map(|p| (p.zone, p.pool))
    }
}

/// Placement over one fleet and its policy set.
pub struct PlacementEngine<'f> {
    fleet: &'f Fleet,
    policy: PolicyEngine,
    cache: HashMap<PolicyAttrs, Arc<AttrVerdicts>>,
    zone_index: HashMap<&'f str, usize>,
    policy_hash: Arc<str>,
    evaluations: u64,
}

impl std::fmt::Debug for PlacementEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementEngine").field("policy", &self.policy).field("cached", &self.cache.len()).finish()
    }
}

impl<'f> PlacementEngine<'f> {
    /// An engine for `fleet` using the loaded `policy`.
    pub fn new(fleet: &'f Fleet, policy: PolicyEngine) -> Self {
        let policy_hash: Arc<str> = Arc::from(policy.hash());
        let zone_index = fleet.zones.iter().enumerate().map(|(i, z)| (z.name.as_str(), i)).collect();
        Self { fleet, policy, cache: HashMap::new(), zone_index, policy_hash, evaluations: 0 }
    }

    /// The fleet.
    pub fn fleet(&self) -> &'f Fleet {
        self.fleet
    }

    /// The policy engine.
    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    /// Distinct attribute signatures evaluated so far (Cedar evaluations = this x zones).
    pub fn signatures_evaluated(&self) -> u64 {
        self.evaluations
    }

    fn verdicts_for(&mut self, attrs: &PolicyAttrs) -> Arc<AttrVerdicts> {
        if let Some(v) = self.cache.get(attrs) {
            return v.clone();
        }
        let v = Arc::new(self.evaluate(attrs));
        self.evaluations += 1;
        self.cache.insert(attrs.clone(), v.clone());
        v
    }

    fn evaluate(&self, attrs: &PolicyAttrs) -> AttrVerdicts {
        let level = self.fleet.scheme.level_name(attrs.level);
        AttrVerdicts {
            policy: self.policy.evaluate_all(attrs, level),
            failures: self.fleet.zones.iter().map(|z| zone_failures(attrs, z)).collect(),
        }
    }

    /// Places a job, reusing policy verdicts for equal attribute signatures.
    pub fn place(&mut self, job: &JobSpec, state: &FleetState) -> Result<Placement, ResolveError> {
        let profile = JobProfile::resolve(job, self.fleet)?;
        let verdicts = self.verdicts_for(&profile.attrs);
        Ok(self.finish(job, profile, verdicts, state))
    }

    /// Places a job the naive way: one Cedar authorization per zone, building everything from
    /// scratch, reusing nothing. Same result as [`place`](Self::place); used to check and
    /// measure the reuse.
    pub fn place_naive(&self, job: &JobSpec, state: &FleetState) -> Result<Placement, ResolveError> {
        let profile = JobProfile::resolve(job, self.fleet)?;
        let level = self.fleet.scheme.level_name(profile.attrs.level);
        let policy = (0..self.fleet.zones.len())
            .map(|z| self.policy.evaluate_one_naive(&profile.attrs, level, z))
            .collect();
        let failures = self.fleet.zones.iter().map(|z| zone_failures(&profile.attrs, z)).collect();
        Ok(self.finish(job, profile, Arc::new(AttrVerdicts { policy, failures }), state))
    }

    fn finish(&self, job: &JobSpec, profile: JobProfile, verdicts: Arc<AttrVerdicts>, state: &FleetState) -> Placement {
        let fleet = self.fleet;
        let r = &job.resources;
        let gpus = f64::from(r.gpus);
        let mut zones = Vec::with_capacity(fleet.zones.len());
        let mut pools = Vec::with_capacity(fleet.pool_count());
        let mut best: Option<(f64, usize, usize)> = None;
        for (zi, zone) in fleet.zones.iter().enumerate() {
            let mut failures = verdicts.failures.get(zi).copied().unwrap_or(ZoneFailures(u16::MAX));
            let mut egress_gb = 0.0;
            let mut egress_cost = 0.0;
            for d in &profile.data {
                if d.zone == zone.name {
                    continue;
                }
                match self.zone_index.get(d.zone.as_str()).and_then(|i| fleet.zones.get(*i)) {
                    Some(src) if src.may_send_to(&zone.name) => {
                        egress_gb += d.size_gb;
                        egress_cost += d.size_gb * src.egress_price_per_gb;
                    }
                    _ => failures.0 |= ZoneFailures::EGRESS_ROUTE.0,
                }
            }
            let policy_ok = verdicts.policy.get(zi).is_some_and(|v| v.allowed);
            let zone_ok = policy_ok && failures.is_empty();
            zones.push(ZoneCheck { zone: zi, allowed: zone_ok, failures, egress_gb, egress_cost });
            for (pi, pool) in zone.pools.iter().enumerate() {
                let pf = pool_failures(job, pool);
                let allowed = zone_ok && pf.is_empty();
                let compute_cost = gpus * r.expected_hours * pool.price_per_gpu_hour;
                // A preempted spot job loses on average half the time to the next checkpoint
                // per preemption; expected preemptions = risk per hour x hours (capped).
                let preemption_cost = if pool.pricing == Pricing::Spot {
                    compute_cost * (pool.preemption_risk * r.expected_hours * 0.5).min(2.0)
                } else {
                    0.0
                };
                let wait_s = match state.get(zi, pi) {
                    Some(s) if s.free_gpus >= r.gpus => 0.0,
                    Some(s) => s.expected_wait_s.max(0.0),
                    None => f64::INFINITY,
                };
                let score = compute_cost + preemption_cost + egress_cost + wait_s / 3600.0 * gpus * WAIT_VALUE_PER_GPU_HOUR;
                if allowed && score.is_finite() && best.is_none_or(|(b, _, _)| score < b) {
                    best = Some((score, zi, pi));
                }
                pools.push(PoolCheck { zone: zi, pool: pi, failures: pf, allowed, compute_cost, preemption_cost, wait_s, score });
            }
        }
        let decision = match best {
            Some((score, z, p)) => Decision { zone: Some(z), pool: Some(p), score },
            None => Decision { zone: None, pool: None, score: f64::INFINITY },
        };
        Placement { profile, verdicts, zones, pools, decision, policy_hash: self.policy_hash.clone() }
    }
}
