//! The placement engine: policy verdicts (reused per attribute signature), hard constraints,
//! scoring, and the decision.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

use serde::Serialize;
use tidegate_model::{Fleet, JobProfile, JobSpec, PolicyAttrs, Pricing, ResolveError};
use tidegate_policy::{JobFacts, PolicyEngine, Val, ZoneVerdict};

use crate::constraints::{pool_failures, zone_failures, Failures, ZoneFailures};

/// What waiting is worth, per GPU-hour of the job's request, when trading wait against price.
pub(crate) const WAIT_VALUE_PER_GPU_HOUR: f64 = 2.0;

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
                .map(|z| {
                    z.pools
                        .iter()
                        .map(|p| PoolState {
                            free_gpus: p.gpus,
                            expected_wait_s: 0.0,
                        })
                        .collect()
                })
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
    /// Cedar verdict per zone (shared by every job with the same projected facts).
    pub policy: Arc<Vec<ZoneVerdict>>,
    /// Hard zone constraints per zone.
    pub failures: Arc<Vec<ZoneFailures>>,
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
    pub profile: Arc<JobProfile>,
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
        self.pools
            .iter()
            .filter(|p| p.allowed)
            .map(|p| (p.zone, p.pool))
    }
}

/// A projected zone and zone-projected job facts: equal keys, equal verdicts.
type ZoneKey = (Vec<Val>, JobFacts);

/// Zone-projected facts with the (zone, projected zone) pairs to evaluate them against.
type Group<'a> = (&'a JobFacts, Vec<(usize, &'a [Val])>);

/// Attribute sets (and facts) an engine keeps verdicts for before it starts over; zone verdicts
/// are kept up to eight times as many.
const CACHE_LIMIT: usize = 1 << 15;

/// A job resolved against the fleet (or why it could not be).
type Resolved = Result<Arc<JobProfile>, ResolveError>;

/// Placement over one fleet and its policy set.
pub struct PlacementEngine<'f> {
    fleet: &'f Fleet,
    policy: Arc<PolicyEngine>,
    attr_cache: HashMap<PolicyAttrs, Arc<AttrVerdicts>>,
    fact_cache: HashMap<JobFacts, Arc<Vec<ZoneVerdict>>>,
    zone_cache: HashMap<ZoneKey, ZoneVerdict>,
    /// Attribute sets kept before the caches start over.
    cache_limit: usize,
    zone_index: HashMap<&'f str, usize>,
    /// Distinct GPU types of the fleet (at most 64 are indexed; more fall back to string checks).
    gpu_types: Vec<&'f str>,
    /// Index into `gpu_types` of each pool, `[zone][pool]`.
    pool_type: Vec<Vec<usize>>,
    /// `egress[src][dst]`: zone `src`'s allowlist lets data go to zone `dst`.
    egress: Vec<Vec<bool>>,
    policy_hash: Arc<str>,
    evaluations: u64,
}

impl std::fmt::Debug for PlacementEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementEngine")
            .field("policy", &self.policy)
            .field("cached", &self.attr_cache.len())
            .finish()
    }
}

impl<'f> PlacementEngine<'f> {
    /// An engine for `fleet` using the loaded `policy`.
    pub fn new(fleet: &'f Fleet, policy: PolicyEngine) -> Self {
        Self::with_policy(fleet, Arc::new(policy))
    }

    /// An engine for `fleet` sharing a loaded `policy` with other engines (one per thread or per
    /// request: each keeps its own caches).
    pub fn with_policy(fleet: &'f Fleet, policy: Arc<PolicyEngine>) -> Self {
        let policy_hash: Arc<str> = Arc::from(policy.hash());
        let zone_index = fleet
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.name.as_str(), i))
            .collect();
        let mut gpu_types: Vec<&str> = Vec::new();
        let pool_type = fleet
            .zones
            .iter()
            .map(|z| {
                z.pools
                    .iter()
                    .map(|p| {
                        match gpu_types
                            .iter()
                            .position(|t| t.eq_ignore_ascii_case(&p.gpu_type))
                        {
                            Some(i) => i,
                            None => {
                                gpu_types.push(&p.gpu_type);
                                gpu_types.len() - 1
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        Self {
            fleet,
            policy,
            attr_cache: HashMap::default(),
            fact_cache: HashMap::default(),
            zone_cache: HashMap::default(),
            cache_limit: CACHE_LIMIT,
            zone_index,
            gpu_types,
            pool_type,
            egress: fleet
                .zones
                .iter()
                .map(|s| fleet.zones.iter().map(|d| s.may_send_to(&d.name)).collect())
                .collect(),
            policy_hash,
            evaluations: 0,
        }
    }

    /// The fleet.
    pub fn fleet(&self) -> &'f Fleet {
        self.fleet
    }

    /// The policy engine.
    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    /// Cedar evaluations made so far (one per distinct zone-projected fact set and zone).
    pub fn cedar_evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Policy verdicts and zone constraints for full attributes: from the attribute cache, or
    /// computed through the fact and zone caches (Cedar runs only for zone-projected facts no
    /// zone has seen).
    fn verdicts_for(&mut self, attrs: &PolicyAttrs) -> Arc<AttrVerdicts> {
        if let Some(v) = self.attr_cache.get(attrs) {
            return v.clone();
        }
        self.fill(std::slice::from_ref(attrs), 1);
        self.attr_cache
            .get(attrs)
            .cloned()
            .unwrap_or_else(|| Arc::new(self.evaluate_uncached(attrs)))
    }

    /// Everything for `attrs` from scratch (used only if a cache fill went wrong; denies nothing
    /// it should allow and allows nothing it should deny, it is just slower).
    fn evaluate_uncached(&self, attrs: &PolicyAttrs) -> AttrVerdicts {
        let facts = self
            .policy
            .facts(attrs, self.fleet.scheme.level_name(attrs.level));
        AttrVerdicts {
            policy: Arc::new(self.policy.evaluate_all(&facts)),
            failures: Arc::new(
                self.fleet
                    .zones
                    .iter()
                    .map(|z| zone_failures(attrs, z))
                    .collect(),
            ),
        }
    }

    /// Fills the caches for attribute sets not seen yet, evaluating new (zone, facts) pairs with
    /// Cedar on up to `workers` threads. Facts, zone keys and hard constraints are computed in
    /// parallel too; new pairs that share their zone-projected facts are evaluated together,
    /// against one entity store.
    fn fill(&mut self, attrs: &[PolicyAttrs], workers: usize) {
        let policy = &self.policy;
        let fleet = self.fleet;
        let zones = policy.zones();
        // Zones equal in everything the policies read share verdicts: each class is evaluated
        // through its first zone.
        let classes: Vec<usize> = (0..zones).map(|z| policy.zone_class(z)).collect();
        let reps: Vec<usize> = (0..zones).filter(|&z| classes.get(z) == Some(&z)).collect();
        let rep_pos: HashMap<usize, usize> =
            reps.iter().enumerate().map(|(i, &z)| (z, i)).collect();
        // The caches are bounded: past the bound they start over (a backlog of all-new jobs
        // gains nothing from them, and a long-lived engine must not grow without end).
        if self.attr_cache.len() + attrs.len() > self.cache_limit
            || self.zone_cache.len() + attrs.len() * reps.len() > self.cache_limit * 8
        {
            self.attr_cache.clear();
            self.fact_cache.clear();
            self.zone_cache.clear();
        }
        // 1. The attribute sets not seen yet, and their facts.
        let uniq: Vec<&PolicyAttrs> = {
            let mut seen: HashSet<&PolicyAttrs> = HashSet::default();
            attrs
                .iter()
                .filter(|a| !self.attr_cache.contains_key(*a) && seen.insert(*a))
                .collect()
        };
        let facts: Vec<JobFacts> = par_map(&uniq, workers, |a| {
            policy.facts(a, fleet.scheme.level_name(a.level))
        });
        // 2. The facts not seen yet, and their key in every zone class.
        let new_facts: Vec<JobFacts> = {
            let mut seen: HashSet<&JobFacts> = HashSet::default();
            facts
                .iter()
                .filter(|f| !self.fact_cache.contains_key(*f) && seen.insert(*f))
                .cloned()
                .collect()
        };
        let keys: Vec<Vec<ZoneKey>> = par_map(&new_facts, workers, |f| {
            reps.iter()
                .map(|&z| {
                    let zf = policy.zone_facts(f, z);
                    (policy.zone_key(&zf, z), zf)
                })
                .collect()
        });
        // 3. The (zone, key) pairs not evaluated yet, grouped by zone-projected facts.
        let mut groups: Vec<Group<'_>> = Vec::new();
        {
            let mut seen: HashSet<&ZoneKey> = HashSet::default();
            let mut group_of: HashMap<&JobFacts, usize> = HashMap::default();
            for fact_keys in &keys {
                for (key, &z) in fact_keys.iter().zip(&reps) {
                    if self.zone_cache.contains_key(key) || !seen.insert(key) {
                        continue;
                    }
                    let g = *group_of.entry(&key.1).or_insert_with(|| {
                        groups.push((&key.1, Vec::new()));
                        groups.len() - 1
                    });
                    if let Some((_, members)) = groups.get_mut(g) {
                        members.push((z, key.0.as_slice()));
                    }
                }
            }
        }
        let evaluated: Vec<Vec<ZoneVerdict>> = par_map(&groups, workers, |(zf, members)| {
            policy.evaluate_group(zf, members)
        });
        let mut fresh: Vec<(ZoneKey, ZoneVerdict)> = Vec::new();
        for ((zf, members), verdicts) in groups.iter().zip(evaluated) {
            self.evaluations += verdicts.len() as u64;
            for (&(_, key), v) in members.iter().zip(verdicts) {
                fresh.push(((key.to_vec(), (*zf).clone()), v));
            }
        }
        self.zone_cache.extend(fresh);
        // 4. Every new fact's verdicts in every zone.
        for (f, fact_keys) in new_facts.into_iter().zip(&keys) {
            let v: Option<Vec<ZoneVerdict>> = (0..zones)
                .map(|z| {
                    let key = classes
                        .get(z)
                        .and_then(|c| rep_pos.get(c))
                        .and_then(|&i| fact_keys.get(i))?;
                    let mut v = self.zone_cache.get(key).cloned()?;
                    v.zone = z;
                    Some(v)
                })
                .collect();
            if let Some(v) = v {
                self.fact_cache.insert(f, Arc::new(v));
            }
        }
        // 5. Hard constraints read the full attributes (not the projection): they hold whatever
        // the policies say.
        let failures: Vec<Arc<Vec<ZoneFailures>>> = par_map(&uniq, workers, |a| {
            Arc::new(fleet.zones.iter().map(|z| zone_failures(a, z)).collect())
        });
        for ((a, f), failures) in uniq.into_iter().zip(&facts).zip(failures) {
            let Some(policy_v) = self.fact_cache.get(f).cloned() else {
                continue;
            };
            self.attr_cache.insert(
                a.clone(),
                Arc::new(AttrVerdicts {
                    policy: policy_v,
                    failures,
                }),
            );
        }
    }

    /// Places a job, reusing policy verdicts for equal attribute signatures.
    pub fn place(&mut self, job: &JobSpec, state: &FleetState) -> Result<Placement, ResolveError> {
        let profile = Arc::new(JobProfile::resolve(job, self.fleet)?);
        let verdicts = self.verdicts_for(&profile.attrs);
        Ok(self.finish(job, profile, verdicts, state))
    }

    /// Places a batch of jobs using every core: jobs are resolved in parallel, each distinct
    /// attribute set not yet seen is evaluated once (new Cedar evaluations in parallel), then
    /// every job is finished in parallel against the shared verdicts. Same results as calling
    /// [`place`](Self::place) on each job in order.
    pub fn place_batch(
        &mut self,
        jobs: &[JobSpec],
        state: &FleetState,
    ) -> Vec<Result<Placement, ResolveError>> {
        let workers = Self::workers();
        let fleet = self.fleet;
        // 1. Resolve.
        let resolved: Vec<Resolved> = par_map(jobs, workers, |job| {
            JobProfile::resolve(job, fleet).map(Arc::new)
        });
        // 2. Evaluate what is new.
        let new: Vec<PolicyAttrs> = resolved
            .iter()
            .flatten()
            .filter(|p| !self.attr_cache.contains_key(&p.attrs))
            .map(|p| p.attrs.clone())
            .collect();
        if !new.is_empty() {
            self.fill(&new, workers);
        }
        // 3. Finish every job in parallel.
        let this = &*self;
        let pairs: Vec<(&JobSpec, &Resolved)> = jobs.iter().zip(&resolved).collect();
        par_map(&pairs, workers, |(job, r)| {
            let profile = Arc::clone((*r).as_ref().map_err(Clone::clone)?);
            let verdicts = this
                .attr_cache
                .get(&profile.attrs)
                .cloned()
                .unwrap_or_else(|| Arc::new(this.evaluate_uncached(&profile.attrs)));
            Ok(this.finish(job, profile, verdicts, state))
        })
    }

    /// Places a job the naive way: one Cedar authorization per zone, building everything from
    /// scratch, reusing nothing. Same result as [`place`](Self::place); used to check and
    /// measure the reuse.
    pub fn place_naive(
        &self,
        job: &JobSpec,
        state: &FleetState,
    ) -> Result<Placement, ResolveError> {
        self.place_unreused(job, state, |attrs, level| {
            (0..self.fleet.zones.len())
                .map(|z| self.policy.evaluate_one_naive(attrs, level, z))
                .collect()
        })
    }

    /// Places a job with the policy verdicts `evaluate` gives for its attributes and level,
    /// nothing cached.
    fn place_unreused(
        &self,
        job: &JobSpec,
        state: &FleetState,
        evaluate: impl Fn(&PolicyAttrs, &str) -> Vec<ZoneVerdict>,
    ) -> Result<Placement, ResolveError> {
        let profile = Arc::new(JobProfile::resolve(job, self.fleet)?);
        let level = self.fleet.scheme.level_name(profile.attrs.level);
        let policy = evaluate(&profile.attrs, level);
        let failures = self
            .fleet
            .zones
            .iter()
            .map(|z| zone_failures(&profile.attrs, z))
            .collect();
        Ok(self.finish(
            job,
            profile,
            Arc::new(AttrVerdicts {
                policy: Arc::new(policy),
                failures: Arc::new(failures),
            }),
            state,
        ))
    }

    /// Places a job as a competent Cedar user would without reuse: one entity set for the job
    /// and every zone, each zone authorised against it, nothing kept between jobs. Same result
    /// as [`place`](Self::place); the fair baseline of `tidegate bench placement`.
    pub fn place_fair(&self, job: &JobSpec, state: &FleetState) -> Result<Placement, ResolveError> {
        self.place_unreused(job, state, |attrs, level| {
            self.policy.evaluate_job_fair(attrs, level)
        })
    }

    /// [`place_fair`](Self::place_fair) over a batch, spread over the same threads as
    /// [`place_batch`](Self::place_batch), in order.
    pub fn place_fair_batch(
        &self,
        jobs: &[JobSpec],
        state: &FleetState,
    ) -> Vec<Result<Placement, ResolveError>> {
        par_map(jobs, Self::workers(), |job| self.place_fair(job, state))
    }

    /// Bounds the verdicts kept to `limit` attribute sets (at least one; the default is 32,768):
    /// past it the caches start over.
    pub fn set_cache_limit(&mut self, limit: usize) {
        self.cache_limit = limit.max(1);
    }

    /// Attribute sets whose verdicts are kept now.
    pub fn cached_attribute_sets(&self) -> usize {
        self.attr_cache.len()
    }

    /// Threads a batch is placed on (the machine's cores, at most 16).
    pub fn workers() -> usize {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 16)
    }

    pub(crate) fn finish(
        &self,
        job: &JobSpec,
        profile: Arc<JobProfile>,
        verdicts: Arc<AttrVerdicts>,
        state: &FleetState,
    ) -> Placement {
        let fleet = self.fleet;
        let r = &job.resources;
        let gpus = f64::from(r.gpus);
        let mut zones = Vec::with_capacity(fleet.zones.len());
        let mut pools = Vec::with_capacity(fleet.pool_count());
        let mut best: Option<(f64, usize, usize)> = None;
        // Accepted GPU types as a bit mask over the fleet's distinct types (same test as
        // `pool_failures`: any accepted type equal ignoring ASCII case; none listed = any).
        let accepted: Option<u64> = (self.gpu_types.len() <= 64).then(|| {
            if r.gpu_types.is_empty() {
                return u64::MAX;
            }
            self.gpu_types
                .iter()
                .enumerate()
                .filter(|(_, t)| r.gpu_types.iter().any(|a| a.eq_ignore_ascii_case(t)))
                .fold(0u64, |m, (i, _)| m | (1 << i))
        });
        // Where each input sits (None: a zone the fleet does not have, so no route exists).
        let sources: Vec<(Option<usize>, f64)> = profile
            .data
            .iter()
            .map(|d| (self.zone_index.get(d.zone.as_str()).copied(), d.size_gb))
            .collect();
        for (zi, zone) in fleet.zones.iter().enumerate() {
            let mut failures = verdicts
                .failures
                .get(zi)
                .copied()
                .unwrap_or(ZoneFailures(u16::MAX));
            let mut egress_gb = 0.0;
            let mut egress_cost = 0.0;
            for &(src, size_gb) in &sources {
                if src == Some(zi) {
                    continue;
                }
                let route = src.and_then(|s| {
                    Some((self.egress.get(s)?.get(zi).copied()?, fleet.zones.get(s)?))
                });
                match route {
                    Some((true, src)) => {
                        egress_gb += size_gb;
                        egress_cost += size_gb * src.egress_price_per_gb;
                    }
                    _ => failures.0 |= ZoneFailures::EGRESS_ROUTE.0,
                }
            }
            let policy_ok = verdicts.policy.get(zi).is_some_and(|v| v.allowed);
            let zone_ok = policy_ok && failures.is_empty();
            zones.push(ZoneCheck {
                zone: zi,
                allowed: zone_ok,
                failures,
                egress_gb,
                egress_cost,
            });
            for (pi, pool) in zone.pools.iter().enumerate() {
                let pf = match (accepted, self.pool_type.get(zi).and_then(|t| t.get(pi))) {
                    (Some(mask), Some(&ti)) => {
                        let mut f = Failures::default();
                        f.set_if(mask & (1u64 << ti) == 0, Failures::GPU_TYPE);
                        f.set_if(r.gpu_memory_gb > pool.gpu_memory_gb, Failures::GPU_MEMORY);
                        f.set_if(r.gpus > pool.gpus, Failures::CAPACITY);
                        f
                    }
                    _ => pool_failures(job, pool),
                };
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
                let score = compute_cost
                    + preemption_cost
                    + egress_cost
                    + wait_s / 3600.0 * gpus * WAIT_VALUE_PER_GPU_HOUR;
                if allowed && score.is_finite() && best.is_none_or(|(b, _, _)| score < b) {
                    best = Some((score, zi, pi));
                }
                pools.push(PoolCheck {
                    zone: zi,
                    pool: pi,
                    failures: pf,
                    allowed,
                    compute_cost,
                    preemption_cost,
                    wait_s,
                    score,
                });
            }
        }
        let decision = match best {
            Some((score, z, p)) => Decision {
                zone: Some(z),
                pool: Some(p),
                score,
            },
            None => Decision {
                zone: None,
                pool: None,
                score: f64::INFINITY,
            },
        };
        Placement {
            profile,
            verdicts,
            zones,
            pools,
            decision,
            policy_hash: self.policy_hash.clone(),
        }
    }
}

/// Maps `f` over `items` on up to `workers` scoped threads, keeping their order. A worker that
/// panicked has its share redone on the calling thread, so no result is ever silently missing.
fn par_map<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(workers.max(1)).max(1);
    if workers <= 1 || items.len() <= chunk {
        return items.iter().map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                (
                    part,
                    s.spawn(move || part.iter().map(f).collect::<Vec<R>>()),
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(part, h)| h.join().unwrap_or_else(|_| part.iter().map(f).collect()))
            .collect()
    })
}
