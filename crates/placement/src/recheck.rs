//! Re-checking one placement: may a job still be at one (zone, pool) under the fleet, datasets
//! and policy in force now? A plain Cedar evaluation (no verdict reuse, no caches) plus every
//! hard constraint, so a run restored after a restart, handed to a zone's agent, or admitted to
//! public or edge capacity is judged from first principles, and a refusal names the rules.

use std::sync::Arc;

use tidegate_model::{JobProfile, JobSpec};
use tidegate_policy::ZoneVerdict;

use crate::constraints::zone_failures;
use crate::engine::{AttrVerdicts, FleetState, PlacementEngine};
use crate::reason::Reason;

/// Why a placement no longer holds: every rule that refuses it, and a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Withdrawn {
    /// What refuses the placement: forbidding policies (or no permit, or an evaluation error),
    /// each failed hard constraint, or a job, zone or pool that no longer resolves. Their
    /// [codes](Reason::code) are what the evidence ledger records.
    pub reasons: Vec<Reason>,
    /// The same, for people.
    pub message: String,
}

impl Withdrawn {
    /// One reason, as its own sentence.
    pub fn because(reason: Reason) -> Self {
        Self {
            message: reason.to_string(),
            reasons: vec![reason],
        }
    }

    /// The reasons' codes.
    pub fn codes(&self) -> Vec<String> {
        self.reasons.iter().map(|r| r.code().to_string()).collect()
    }
}

impl std::fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl PlacementEngine<'_> {
    /// The re-check of one option: whether `job` may run on pool `pool` of zone `zone` (fleet
    /// indexes), decided afresh — the job resolved again, plain Cedar for that zone (full
    /// attributes, the fleet's zones as they are, no projection, no cache) and every hard
    /// constraint. Used before admitting a job to a public or edge zone, when a run is restored
    /// after a restart, and before a zone's agent is handed a run, so a fault in verdict reuse
    /// or a change of data or policy can never carry work where it may not be.
    ///
    /// # Errors
    /// [`Withdrawn`] naming every rule that refuses it.
    pub fn recheck_plain(&self, job: &JobSpec, zone: usize, pool: usize) -> Result<(), Withdrawn> {
        let fleet = self.fleet();
        let Some(z) = fleet.zones.get(zone) else {
            return Err(Withdrawn::because(Reason::UnknownZone {
                zone: zone.to_string(),
            }));
        };
        let Some(pl) = z.pools.get(pool) else {
            return Err(Withdrawn::because(Reason::UnknownPool {
                pool: pool.to_string(),
                zone: z.name.clone(),
            }));
        };
        let profile = match JobProfile::resolve(job, fleet) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                return Err(Withdrawn::because(Reason::JobUnresolvable {
                    error: e.to_string(),
                }))
            }
        };
        let level = fleet.scheme.level_name(profile.attrs.level);
        let not_checked = |z: usize| ZoneVerdict {
            zone: z,
            allowed: false,
            permits: vec![],
            forbids: vec![],
            errors: vec!["not re-checked (another zone's re-check)".into()],
        };
        let policy: Vec<ZoneVerdict> = (0..fleet.zones.len())
            .map(|i| {
                if i == zone {
                    self.policy().evaluate_plain(&profile.attrs, level, i)
                } else {
                    not_checked(i)
                }
            })
            .collect();
        let failures = fleet
            .zones
            .iter()
            .map(|z| zone_failures(&profile.attrs, z))
            .collect();
        let verdicts = Arc::new(AttrVerdicts {
            policy: Arc::new(policy),
            failures: Arc::new(failures),
        });
        let p = self.finish(job, profile, verdicts, &FleetState::idle(fleet));
        if p.pools
            .iter()
            .any(|pc| pc.allowed && pc.zone == zone && pc.pool == pool)
        {
            return Ok(());
        }
        // Every refusal of the zone (policies and hard constraints), then of the pool.
        let ex = crate::Explanation::new(&p, job, fleet);
        let mut reasons: Vec<Reason> = Vec::new();
        if let Some(c) = ex.candidates.iter().find(|c| c.zone == z.name) {
            reasons.extend(c.reasons.iter().filter(|r| r.is_refusal()).cloned());
            if let Some(pv) = c.pools.iter().find(|pv| pv.pool == pl.name) {
                reasons.extend(
                    pv.reasons
                        .iter()
                        .filter(|r| r.is_refusal() && **r != Reason::ZoneNotAllowed)
                        .cloned(),
                );
            }
        }
        let why = reasons
            .first()
            .map_or_else(|| "not allowed".to_string(), ToString::to_string);
        Err(Withdrawn {
            message: format!("{} may not run in {}/{}: {why}", job.name, z.name, pl.name),
            reasons,
        })
    }
}
