//! Re-checking one placement: may a job still be at one (zone, pool) under the fleet, datasets
//! and policy in force now? A plain Cedar evaluation (no verdict reuse, no caches) plus every
//! hard constraint, so a run restored after a restart, handed to a zone's agent, or admitted to
//! public or edge capacity is judged from first principles, and a refusal names the rules.

use std::sync::Arc;

use tidegate_model::{JobProfile, JobSpec};
use tidegate_policy::ZoneVerdict;

use crate::constraints::{zone_failures, Failures, ZoneFailures};
use crate::engine::{AttrVerdicts, FleetState, PlacementEngine};

/// Why a placement no longer holds: the rule codes (policy ids, `constraint:*`) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    /// Rule codes that refuse the placement: forbidding policy ids, `policy:no-permit` when no
    /// policy permits, `constraint:<name>` for each failed hard constraint, `job:unresolvable`
    /// when the job no longer resolves against the fleet, `zone:unknown` / `pool:unknown`.
    pub reasons: Vec<String>,
    /// The same, for people.
    pub message: String,
}

impl std::fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn code(name: &str) -> String {
    format!("constraint:{}", name.replace(' ', "-"))
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
            return Err(Withdrawn {
                reasons: vec!["zone:unknown".into()],
                message: format!("no zone {zone} in the fleet"),
            });
        };
        let Some(pl) = z.pools.get(pool) else {
            return Err(Withdrawn {
                reasons: vec!["pool:unknown".into()],
                message: format!("no pool {pool} in zone {}", z.name),
            });
        };
        let profile = match JobProfile::resolve(job, fleet) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                return Err(Withdrawn {
                    reasons: vec!["job:unresolvable".into()],
                    message: e.to_string(),
                })
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
        let mut reasons = Vec::new();
        if let Some(v) = p.verdicts.policy.get(zone) {
            if !v.allowed {
                reasons.extend(v.forbids.iter().map(|f| f.id.clone()));
                if v.forbids.is_empty() {
                    reasons.push(
                        if v.errors.is_empty() {
                            "policy:no-permit"
                        } else {
                            "policy:error"
                        }
                        .to_owned(),
                    );
                }
            }
        }
        if let Some(zc) = p.zones.get(zone) {
            reasons.extend(
                ZoneFailures::ALL
                    .iter()
                    .filter(|(f, _)| zc.failures.has(*f))
                    .map(|(_, n)| code(n)),
            );
        }
        if let Some(pc) = p.pools.iter().find(|c| c.zone == zone && c.pool == pool) {
            reasons.extend(
                Failures::ALL
                    .iter()
                    .filter(|(f, _)| pc.failures.has(*f))
                    .map(|(_, n)| code(n)),
            );
        }
        let ex = crate::Explanation::new(&p, job, fleet);
        let why = ex.candidates.get(zone).and_then(|c| {
            c.reasons
                .iter()
                .find(|r| !r.starts_with("permitted") && !r.starts_with("data moves"))
                .or_else(|| c.pools.get(pool).and_then(|pv| pv.reasons.first()))
                .cloned()
        });
        Err(Withdrawn {
            reasons,
            message: format!(
                "{} may not run in {}/{}: {}",
                job.name,
                z.name,
                pl.name,
                why.unwrap_or_else(|| "not allowed".into())
            ),
        })
    }
}
