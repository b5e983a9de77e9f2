//! Re-checking one placement: may a job still be at one (zone, pool) under the fleet, datasets
//! and policy in force now? A plain Cedar evaluation (no verdict reuse, no caches) plus every
//! hard constraint, so a run restored after a restart, handed to a zone's agent, or admitted to
//! public or edge capacity is judged from first principles, and a refusal names the rules.

use tidegate_model::JobSpec;

use crate::constraints::{Failures, ZoneFailures};
use crate::engine::{FleetState, PlacementEngine};

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
    /// Whether `job` may run on pool `pool` of zone `zone` (fleet indexes), judged the naive way:
    /// one Cedar authorization built from the job's full attributes, and every zone and pool
    /// constraint except free capacity (the run already holds its GPUs).
    ///
    /// # Errors
    /// [`Withdrawn`] naming every rule that refuses it.
    pub fn recheck_plain(&self, job: &JobSpec, zone: usize, pool: usize) -> Result<(), Withdrawn> {
        let fleet = self.fleet();
        let Some(z) = fleet.zones.get(zone) else {
            return Err(Withdrawn {
                reasons: vec!["zone:unknown".into()],
                message: format!("zone #{zone} is not in the fleet"),
            });
        };
        if z.pools.get(pool).is_none() {
            return Err(Withdrawn {
                reasons: vec!["pool:unknown".into()],
                message: format!("pool #{pool} is not in zone {}", z.name),
            });
        }
        let p = match self.place_naive(job, &FleetState::idle(fleet)) {
            Ok(p) => p,
            Err(e) => {
                return Err(Withdrawn {
                    reasons: vec!["job:unresolvable".into()],
                    message: e.to_string(),
                })
            }
        };
        let mut reasons = Vec::new();
        let mut words = Vec::new();
        if let Some(v) = p.verdicts.policy.get(zone) {
            if !v.allowed {
                if v.forbids.is_empty() {
                    reasons.push("policy:no-permit".to_owned());
                    words.push("no policy permits it".to_owned());
                }
                for f in &v.forbids {
                    reasons.push(f.id.clone());
                    words.push(format!("{} ({})", f.id, f.reason));
                }
                for e in &v.errors {
                    words.push(format!("evaluation error: {e}"));
                }
            }
        }
        if let Some(zc) = p.zones.get(zone) {
            for (flag, name) in ZoneFailures::ALL {
                if zc.failures.has(*flag) {
                    reasons.push(code(name));
                    words.push(format!("hard constraint: {name}"));
                }
            }
        }
        if let Some(pc) = p.pools.iter().find(|c| c.zone == zone && c.pool == pool) {
            for (flag, name) in Failures::ALL {
                if *flag != Failures::CAPACITY && pc.failures.has(*flag) {
                    reasons.push(code(name));
                    words.push(format!("hard constraint: {name}"));
                }
            }
        }
        if reasons.is_empty() && words.is_empty() {
            return Ok(());
        }
        if reasons.is_empty() {
            reasons.push("policy:error".to_owned());
        }
        let pool_name = z.pools.get(pool).map_or("?", |p| p.name.as_str());
        Err(Withdrawn {
            reasons,
            message: format!(
                "{} may no longer run in {}/{}: {}",
                job.name,
                z.name,
                pool_name,
                words.join("; ")
            ),
        })
    }
}
