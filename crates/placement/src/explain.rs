//! Turning a placement into an explanation people and programs can read: per zone and pool,
//! allowed or not, and every reason.

use serde::Serialize;
use tidegate_model::{Fleet, JobSpec, Pricing};

use crate::constraints::{Failures, ZoneFailures};
use crate::engine::Placement;
use crate::reason::{policy_reasons, Constraint, PricingNote, Reason};

/// One pool in an explanation.
#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    /// Pool name.
    pub pool: String,
    /// GPU type.
    pub gpu_type: String,
    /// Allowed for this job.
    pub allowed: bool,
    /// Why not, or what it would cost.
    pub reasons: Vec<Reason>,
    /// Total cost estimate (compute + preemption + egress).
    pub cost: f64,
    /// Expected wait, seconds.
    pub expected_wait_s: f64,
}

/// One zone in an explanation.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateView {
    /// Zone name.
    pub zone: String,
    /// Zone tier.
    pub tier: String,
    /// Allowed (policy and zone constraints) with at least one allowed pool.
    pub allowed: bool,
    /// Reasons: policies that decided, hard constraints that failed, data that would move.
    pub reasons: Vec<Reason>,
    /// Pools.
    pub pools: Vec<PoolView>,
}

impl CandidateView {
    /// Why the zone refuses the job: its own refusals (policies, hard constraints), or else the
    /// first refusal of each of its pools, with the pool's name (what "no pool fits" stands
    /// for). Empty for an allowed zone.
    pub fn refusals(&self) -> Vec<(Option<&str>, &Reason)> {
        if self.allowed {
            return vec![];
        }
        let own: Vec<(Option<&str>, &Reason)> = self
            .reasons
            .iter()
            .filter(|r| r.is_refusal() && **r != Reason::NoPoolFits)
            .map(|r| (None, r))
            .collect();
        if !own.is_empty() {
            return own;
        }
        let pools: Vec<(Option<&str>, &Reason)> = self
            .pools
            .iter()
            .filter_map(|p| {
                p.reasons
                    .iter()
                    .find(|r| r.is_refusal() && **r != Reason::ZoneNotAllowed)
                    .map(|r| (Some(p.pool.as_str()), r))
            })
            .collect();
        if !pools.is_empty() {
            return pools;
        }
        self.reasons
            .iter()
            .filter(|r| r.is_refusal())
            .map(|r| (None, r))
            .collect()
    }

    /// The refusals as (code, sentence), a pool's sentence starting `pool NAME: `.
    pub fn refusal_sentences(&self) -> Vec<(&str, String)> {
        self.refusals()
            .into_iter()
            .map(|(pool, r)| {
                let text = match pool {
                    Some(p) => format!("pool {p}: {r}"),
                    None => r.to_string(),
                };
                (r.code(), text)
            })
            .collect()
    }

    /// The first refusal as a sentence, if refused.
    pub fn first_refusal(&self) -> Option<String> {
        self.refusal_sentences().into_iter().next().map(|(_, t)| t)
    }
}

/// The decision as names.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    /// Chosen zone, or null when the job may run nowhere.
    pub zone: Option<String>,
    /// Chosen pool.
    pub pool: Option<String>,
    /// Estimated cost of the chosen option.
    pub cost: Option<f64>,
}

/// A full explanation of one placement (the JSON form of `tidegate explain`).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Job name.
    pub job: String,
    /// The decision.
    pub decision: DecisionView,
    /// Hash of the policy set that decided.
    pub policy_hash: String,
    /// Effective classification, `level/tags`.
    pub effective_classification: String,
    /// How the effective classification was reached (label vs inputs).
    pub notes: Vec<String>,
    /// Every zone.
    pub candidates: Vec<CandidateView>,
}

fn money(x: f64) -> String {
    format!("${x:.2}")
}

fn constraint(constraint: Constraint, detail: String) -> Reason {
    Reason::Constraint { constraint, detail }
}

fn zone_failure_reasons(f: ZoneFailures, p: &Placement, fleet: &Fleet, zone: usize) -> Vec<Reason> {
    let Some(z) = fleet.zones.get(zone) else {
        return vec![];
    };
    let a = &p.profile.attrs;
    let s = &fleet.scheme;
    let mut out = Vec::new();
    for c in f.constraints() {
        match c {
            Constraint::ClassificationCeiling => out.push(constraint(
                c,
                format!(
                    "job data is {}, zone may hold at most {}",
                    s.level_name(a.level),
                    s.level_name(z.max_classification)
                ),
            )),
            Constraint::PrivateOnlyData => out.push(constraint(
                c,
                format!(
                    "{} may not leave private zones (zone is {})",
                    p.profile.effective.describe(s),
                    z.tier
                ),
            )),
            Constraint::Jurisdiction => {
                let r: Vec<&str> = a.residency.iter().flatten().map(String::as_str).collect();
                out.push(constraint(
                    c,
                    format!(
                        "data residency [{}] excludes {}",
                        r.join(", "),
                        z.jurisdiction
                    ),
                ));
            }
            Constraint::Certification => {
                let missing: Vec<&str> = a
                    .required_certifications
                    .difference(&z.certifications)
                    .map(String::as_str)
                    .collect();
                out.push(constraint(
                    c,
                    format!("public zone lacks {}", missing.join(", ")),
                ));
            }
            Constraint::ExportControl => {
                let o: Vec<&str> = a.origin_jurisdictions.iter().map(String::as_str).collect();
                out.push(constraint(
                    c,
                    if o.is_empty() {
                        "export-controlled work with no input of known origin and no home_jurisdiction in fleet.yaml runs nowhere".to_string()
                    } else {
                        format!(
                            "export-controlled data held in {} may not move to {}",
                            o.join(", "),
                            z.jurisdiction
                        )
                    },
                ));
            }
            Constraint::AllowedExecutionZone => out.push(constraint(
                c,
                format!(
                    "label says {}, zone is {} ({})",
                    a.scope.as_label(),
                    z.name,
                    z.tier
                ),
            )),
            Constraint::EgressRoute => {
                for d in &p.profile.data {
                    let blocked = d.zone != z.name
                        && fleet
                            .zone(&d.zone)
                            .is_none_or(|src| !src.may_send_to(&z.name));
                    if blocked {
                        out.push(constraint(
                            c,
                            format!(
                                "{} sits in {}, whose egress allowlist does not include {}",
                                d.dataset, d.zone, z.name
                            ),
                        ));
                    }
                }
            }
            Constraint::GpuType | Constraint::GpuMemory | Constraint::Capacity => {}
        }
    }
    out
}

fn pool_failure_reasons(
    f: Failures,
    job: &JobSpec,
    fleet: &Fleet,
    zone: usize,
    pool: usize,
) -> Vec<Reason> {
    let Some(p) = fleet.zones.get(zone).and_then(|z| z.pools.get(pool)) else {
        return vec![];
    };
    let r = &job.resources;
    f.constraints()
        .map(|c| {
            let detail = match c {
                Constraint::GpuType => format!(
                    "job accepts {}, pool has {}",
                    r.gpu_types.join("|"),
                    p.gpu_type
                ),
                Constraint::GpuMemory => format!(
                    "job needs {} GiB per GPU, pool has {}",
                    r.gpu_memory_gb, p.gpu_memory_gb
                ),
                _ => format!("job needs {} GPUs, pool has {}", r.gpus, p.gpus),
            };
            constraint(c, detail)
        })
        .collect()
}

impl Explanation {
    /// Renders a placement against its fleet and job.
    pub fn new(p: &Placement, job: &JobSpec, fleet: &Fleet) -> Self {
        let mut candidates = Vec::with_capacity(p.zones.len());
        for zc in &p.zones {
            let Some(zone) = fleet.zones.get(zc.zone) else {
                continue;
            };
            let mut reasons = p
                .verdicts
                .policy
                .get(zc.zone)
                .map(policy_reasons)
                .unwrap_or_default();
            reasons.extend(zone_failure_reasons(zc.failures, p, fleet, zc.zone));
            if zc.allowed {
                for d in &p.profile.data {
                    if d.zone != zone.name {
                        let cost = fleet
                            .zone(&d.zone)
                            .map_or(0.0, |s| s.egress_price_per_gb * d.size_gb);
                        reasons.push(Reason::DataMoves {
                            dataset: d.dataset.to_string(),
                            size_gb: d.size_gb,
                            from: d.zone.clone(),
                            egress_cost: cost,
                        });
                    }
                }
            }
            let mut pools = Vec::with_capacity(zone.pools.len());
            for pc in p.pools.iter().filter(|pc| pc.zone == zc.zone) {
                let Some(pool) = zone.pools.get(pc.pool) else {
                    continue;
                };
                let mut pr = pool_failure_reasons(pc.failures, job, fleet, pc.zone, pc.pool);
                if !zc.allowed {
                    pr.push(Reason::ZoneNotAllowed);
                }
                let cost = pc.compute_cost + pc.preemption_cost + zc.egress_cost;
                if pc.allowed {
                    pr.push(Reason::Cost {
                        total: cost,
                        gpus: job.resources.gpus,
                        hours: job.resources.expected_hours,
                        price_per_gpu_hour: pool.price_per_gpu_hour,
                        pricing: match pool.pricing {
                            Pricing::OnDemand => PricingNote::OnDemand,
                            Pricing::Spot => PricingNote::Spot {
                                risk_per_hour: pool.preemption_risk,
                            },
                        },
                        preemption: pc.preemption_cost,
                        egress: zc.egress_cost,
                    });
                    if pc.wait_s > 0.0 {
                        pr.push(Reason::ExpectedWait { seconds: pc.wait_s });
                    }
                }
                pools.push(PoolView {
                    pool: pool.name.clone(),
                    gpu_type: pool.gpu_type.clone(),
                    allowed: pc.allowed,
                    reasons: pr,
                    cost,
                    expected_wait_s: pc.wait_s,
                });
            }
            let any_pool = pools.iter().any(|pv| pv.allowed);
            if zc.allowed && !any_pool {
                reasons.push(Reason::NoPoolFits);
            }
            candidates.push(CandidateView {
                zone: zone.name.clone(),
                tier: zone.tier.to_string(),
                allowed: zc.allowed && any_pool,
                reasons,
                pools,
            });
        }
        let (dz, dp) = match (p.decision.zone, p.decision.pool) {
            (Some(z), Some(pl)) => {
                let zone = fleet.zones.get(z);
                (
                    zone.map(|z| z.name.clone()),
                    zone.and_then(|z| z.pools.get(pl)).map(|p| p.name.clone()),
                )
            }
            _ => (None, None),
        };
        let cost = p
            .decision
            .zone
            .zip(p.decision.pool)
            .and_then(|(z, pl)| {
                p.pools
                    .iter()
                    .find(|pc| pc.zone == z && pc.pool == pl)
                    .map(|pc| (pc, z))
            })
            .map(|(pc, z)| {
                pc.compute_cost
                    + pc.preemption_cost
                    + p.zones.get(z).map_or(0.0, |zc| zc.egress_cost)
            });
        Self {
            job: p.profile.name.clone(),
            decision: DecisionView {
                zone: dz,
                pool: dp,
                cost,
            },
            policy_hash: p.policy_hash.to_string(),
            effective_classification: p.profile.effective.describe(&fleet.scheme),
            notes: p.profile.notes.clone(),
            candidates,
        }
    }

    /// Plain-text rendering for terminals.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "job {}  (effective classification: {})\n",
            self.job, self.effective_classification
        ));
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        match (&self.decision.zone, &self.decision.pool) {
            (Some(z), Some(p)) => s.push_str(&format!(
                "decision: {z}/{p}{}\n",
                self.decision
                    .cost
                    .map(|c| format!("  (est. {})", money(c)))
                    .unwrap_or_default()
            )),
            _ => s.push_str("decision: REFUSED: no zone may run this job\n"),
        }
        s.push_str(&format!("policy set: sha256:{}\n", self.policy_hash));
        for c in &self.candidates {
            s.push_str(&format!(
                "\n  {} {} ({})\n",
                if c.allowed { "ALLOW" } else { "DENY " },
                c.zone,
                c.tier
            ));
            for r in &c.reasons {
                s.push_str(&format!("      - {r}\n"));
            }
            for p in &c.pools {
                if !c.allowed && p.reasons.iter().all(|r| *r == Reason::ZoneNotAllowed) {
                    continue;
                }
                s.push_str(&format!(
                    "      pool {} [{}] {}\n",
                    p.pool,
                    p.gpu_type,
                    if p.allowed { "ok" } else { "no" }
                ));
                for r in p.reasons.iter().filter(|r| **r != Reason::ZoneNotAllowed) {
                    s.push_str(&format!("          {r}\n"));
                }
            }
        }
        s
    }
}

impl Placement {
    /// The chosen zone and pool by name, if the job may run anywhere.
    pub fn decided<'f>(&self, fleet: &'f Fleet) -> Option<(&'f str, &'f str)> {
        let zone = fleet.zones.get(self.decision.zone?)?;
        let pool = zone.pools.get(self.decision.pool?)?;
        Some((zone.name.as_str(), pool.name.as_str()))
    }

    /// Reason codes for the evidence ledger: for a placed job, the policies that permitted its
    /// zone; for a refused one, every forbidding policy and failed constraint across the fleet
    /// (at most `max`, first seen first).
    pub fn reason_codes(&self, max: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |s: String| {
            if !out.contains(&s) && out.len() < max {
                out.push(s);
            }
        };
        match self.decision.zone {
            Some(z) => {
                if let Some(v) = self.verdicts.policy.get(z) {
                    v.permits.iter().for_each(|r| add(r.id.clone()));
                }
            }
            None => {
                for v in self.verdicts.policy.iter() {
                    v.forbids.iter().for_each(|r| add(r.id.clone()));
                }
                for zc in &self.zones {
                    zc.failures
                        .constraints()
                        .for_each(|c| add(c.code().to_string()));
                }
                for pc in &self.pools {
                    pc.failures
                        .constraints()
                        .for_each(|c| add(c.code().to_string()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, reasons: Vec<Reason>) -> PoolView {
        PoolView {
            pool: name.into(),
            gpu_type: "H100".into(),
            allowed: false,
            reasons,
            cost: 0.0,
            expected_wait_s: 0.0,
        }
    }

    #[test]
    fn a_zone_refuses_with_its_own_refusals_first_then_its_pools() {
        // Default deny is a refusal of the zone, not "zone not allowed" of its pools.
        let denied = CandidateView {
            zone: "z".into(),
            tier: "public".into(),
            allowed: false,
            reasons: vec![Reason::NoPermit],
            pools: vec![pool("p", vec![Reason::ZoneNotAllowed])],
        };
        assert_eq!(
            denied.first_refusal().as_deref(),
            Some("denied: no policy permits it (default deny)")
        );
        // Allowed by policy, but no pool fits: the zone's own refusal, then each pool's.
        let gpu = Reason::Constraint {
            constraint: Constraint::GpuType,
            detail: "job accepts H200, pool has H100".into(),
        };
        let no_fit = CandidateView {
            zone: "z".into(),
            tier: "public".into(),
            allowed: false,
            reasons: vec![
                Reason::Permitted {
                    policy: "base".into(),
                    why: "ok".into(),
                },
                Reason::NoPoolFits,
            ],
            pools: vec![pool("p", vec![gpu.clone()])],
        };
        // "No pool fits" stands for its pools' refusals, which say why.
        assert_eq!(no_fit.refusals(), vec![(Some("p"), &gpu)]);
        assert_eq!(
            no_fit.first_refusal().as_deref(),
            Some("pool p: constraint gpu type: job accepts H200, pool has H100")
        );
        let no_pools = CandidateView {
            pools: vec![],
            ..no_fit.clone()
        };
        assert_eq!(no_pools.refusals(), vec![(None, &Reason::NoPoolFits)]);
        let allowed = CandidateView {
            allowed: true,
            ..no_fit
        };
        assert!(allowed.refusals().is_empty());
    }
}
