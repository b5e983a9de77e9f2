//! Typed reasons of a placement: why a zone or pool may not run a job, and what running it there
//! would mean. Each has a stable `code()` (what the evidence ledger, the store and API programs
//! match on) and a sentence (`Display`, for people). Rewording a sentence never changes a code.

use std::fmt;

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// A hard constraint: a check that holds whatever the policy files say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// The job's data is classified above what the zone may hold.
    ClassificationCeiling,
    /// Private-only data and a zone that is not private.
    PrivateOnlyData,
    /// The data's residency excludes the zone's jurisdiction.
    Jurisdiction,
    /// A public zone lacking a certification the data requires.
    Certification,
    /// Export-controlled data and a zone outside its origin's jurisdiction.
    ExportControl,
    /// An input's zone may not send data to this zone.
    EgressRoute,
    /// The job's `allowed_execution_zone` label excludes the zone.
    AllowedExecutionZone,
    /// The pool's GPU type is not one the job accepts.
    GpuType,
    /// The pool's GPUs have less memory than the job needs.
    GpuMemory,
    /// The pool has fewer GPUs than the job needs.
    Capacity,
}

impl Constraint {
    /// The stable code (`constraint:*`), as the evidence ledger records it.
    pub fn code(self) -> &'static str {
        match self {
            Self::ClassificationCeiling => "constraint:classification-ceiling",
            Self::PrivateOnlyData => "constraint:private-only-data",
            Self::Jurisdiction => "constraint:jurisdiction",
            Self::Certification => "constraint:certification",
            Self::ExportControl => "constraint:export-control",
            Self::EgressRoute => "constraint:egress-route",
            Self::AllowedExecutionZone => "constraint:allowed_execution_zone-label",
            Self::GpuType => "constraint:gpu-type",
            Self::GpuMemory => "constraint:gpu-memory",
            Self::Capacity => "constraint:capacity",
        }
    }

    /// Its short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AllowedExecutionZone => "allowed_execution_zone label",
            other => other.heading(),
        }
    }

    /// How an explanation's sentence about it starts (`constraint HEADING: ...`).
    fn heading(self) -> &'static str {
        match self {
            Self::ClassificationCeiling => "classification ceiling",
            Self::PrivateOnlyData => "private-only data",
            Self::Jurisdiction => "jurisdiction",
            Self::Certification => "certification",
            Self::ExportControl => "export control",
            Self::EgressRoute => "egress route",
            Self::AllowedExecutionZone => "allowed_execution_zone",
            Self::GpuType => "gpu type",
            Self::GpuMemory => "gpu memory",
            Self::Capacity => "capacity",
        }
    }
}

/// How a pool is priced, as an explanation states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PricingNote {
    /// On-demand.
    OnDemand,
    /// Spot, with its preemption risk per hour (0 to 1).
    Spot {
        /// Risk per hour.
        risk_per_hour: f64,
    },
}

/// One reason in an explanation, or in a refused re-check.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A forbid policy applied (a refusal).
    Forbidden {
        /// The policy's id.
        policy: String,
        /// Its `@reason`.
        why: String,
    },
    /// Policy evaluation failed, which denies (a refusal).
    EvaluationError {
        /// The error.
        error: String,
    },
    /// No policy permits it: default deny (a refusal).
    NoPermit,
    /// A permit policy applied.
    Permitted {
        /// The policy's id.
        policy: String,
        /// Its `@reason`.
        why: String,
    },
    /// A hard constraint failed (a refusal).
    Constraint {
        /// Which.
        constraint: Constraint,
        /// The particulars (the values compared).
        detail: String,
    },
    /// The zone is allowed, but none of its pools fits the job (a refusal).
    NoPoolFits,
    /// (A pool's reason) its zone is not allowed (a refusal).
    ZoneNotAllowed,
    /// The job no longer resolves against the fleet (a refusal of a re-check).
    JobUnresolvable {
        /// Why.
        error: String,
    },
    /// The job is not in the store (a refusal of a re-check).
    JobUnknown {
        /// The job.
        job: String,
    },
    /// The job is no longer placed there (a refusal of a re-check).
    JobNotPlacedHere {
        /// The job.
        job: String,
        /// Its state.
        state: String,
        /// The zone asked about.
        zone: String,
        /// The pool asked about.
        pool: String,
    },
    /// No such zone in the fleet (a refusal of a re-check).
    UnknownZone {
        /// The zone asked for (name, or index).
        zone: String,
    },
    /// No such pool in the zone (a refusal of a re-check).
    UnknownPool {
        /// The pool asked for (name, or index).
        pool: String,
        /// The zone.
        zone: String,
    },
    /// An input dataset moves into the zone.
    DataMoves {
        /// The dataset.
        dataset: String,
        /// Its size.
        size_gb: f64,
        /// The zone it is in.
        from: String,
        /// What moving it costs.
        egress_cost: f64,
    },
    /// (A pool's reason) what running there costs.
    Cost {
        /// Total: compute, expected preemption loss and egress.
        total: f64,
        /// GPUs.
        gpus: u32,
        /// Expected hours.
        hours: f64,
        /// Price per GPU-hour.
        price_per_gpu_hour: f64,
        /// Pricing.
        pricing: PricingNote,
        /// Expected preemption loss.
        preemption: f64,
        /// Egress.
        egress: f64,
    },
    /// (A pool's reason) its expected wait.
    ExpectedWait {
        /// Seconds.
        seconds: f64,
    },
}

fn money(x: f64) -> String {
    format!("${x:.2}")
}

impl Reason {
    /// The stable code: a policy's id for a policy that decided, `constraint:*` for a failed
    /// hard constraint, and a fixed code for every other kind.
    pub fn code(&self) -> &str {
        match self {
            Self::Forbidden { policy, .. } | Self::Permitted { policy, .. } => policy,
            Self::EvaluationError { .. } => "policy:error",
            Self::NoPermit => "policy:no-permit",
            Self::Constraint { constraint, .. } => constraint.code(),
            Self::NoPoolFits => "pool:none-fits",
            Self::ZoneNotAllowed => "zone:not-allowed",
            Self::JobUnresolvable { .. } => "job:unresolvable",
            Self::JobUnknown { .. } => "job:unknown",
            Self::JobNotPlacedHere { .. } => "job:not-placed-here",
            Self::UnknownZone { .. } => "zone:unknown",
            Self::UnknownPool { .. } => "pool:unknown",
            Self::DataMoves { .. } => "data:moves",
            Self::Cost { .. } => "cost",
            Self::ExpectedWait { .. } => "wait",
        }
    }

    /// Whether it refuses the zone or pool (the others explain an allowed one).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Self::Permitted { .. }
                | Self::DataMoves { .. }
                | Self::Cost { .. }
                | Self::ExpectedWait { .. }
        )
    }

    /// Whether it is about the job itself, not the place (the job left its placement).
    pub fn is_about_the_job(&self) -> bool {
        matches!(
            self,
            Self::JobUnresolvable { .. } | Self::JobUnknown { .. } | Self::JobNotPlacedHere { .. }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forbidden { policy, why } => write!(f, "forbidden by {policy}: {why}"),
            Self::EvaluationError { error } => {
                write!(f, "denied: policy evaluation error: {error}")
            }
            Self::NoPermit => f.write_str("denied: no policy permits it (default deny)"),
            Self::Permitted { policy, why } => write!(f, "permitted by {policy}: {why}"),
            Self::Constraint { constraint, detail } => {
                write!(f, "constraint {}: {detail}", constraint.heading())
            }
            Self::NoPoolFits => f.write_str("no pool fits the job's resources"),
            Self::ZoneNotAllowed => f.write_str("zone not allowed"),
            Self::JobUnresolvable { error } => f.write_str(error),
            Self::JobUnknown { job } => write!(f, "job {job} is not in the store"),
            Self::JobNotPlacedHere {
                job,
                state,
                zone,
                pool,
            } => write!(f, "job {job} is {state} and not placed in {zone}/{pool}"),
            Self::UnknownZone { zone } => write!(f, "no zone {zone} in the fleet"),
            Self::UnknownPool { pool, zone } => write!(f, "no pool {pool} in zone {zone}"),
            Self::DataMoves {
                dataset,
                size_gb,
                from,
                egress_cost,
            } => write!(
                f,
                "data moves: {dataset} ({size_gb} GB) from {from} (egress {})",
                money(*egress_cost)
            ),
            Self::Cost {
                total,
                gpus,
                hours,
                price_per_gpu_hour,
                pricing,
                preemption,
                egress,
            } => {
                let pricing = match pricing {
                    PricingNote::OnDemand => "on-demand".to_string(),
                    PricingNote::Spot { risk_per_hour } => {
                        format!("spot, preemption risk {:.0}%/h", risk_per_hour * 100.0)
                    }
                };
                write!(
                    f,
                    "cost {} = {gpus} GPUs x {hours} h x {}/GPU-h ({pricing})",
                    money(*total),
                    money(*price_per_gpu_hour)
                )?;
                if *preemption > 0.0 {
                    write!(f, " + {} expected preemption loss", money(*preemption))?;
                }
                if *egress > 0.0 {
                    write!(f, " + {} egress", money(*egress))?;
                }
                Ok(())
            }
            Self::ExpectedWait { seconds } => write!(f, "expected wait {seconds:.0} s"),
        }
    }
}

/// A reason in JSON: `{"code": ..., "text": ...}`.
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Reason", 2)?;
        st.serialize_field("code", self.code())?;
        st.serialize_field("text", &self.to_string())?;
        st.end()
    }
}

/// The policy reasons of one zone's verdict: every forbid, every error, or the permits, or
/// default deny.
pub fn policy_reasons(v: &tidegate_policy::ZoneVerdict) -> Vec<Reason> {
    let mut out: Vec<Reason> = v
        .forbids
        .iter()
        .map(|p| Reason::Forbidden {
            policy: p.id.clone(),
            why: p.reason.clone(),
        })
        .collect();
    out.extend(
        v.errors
            .iter()
            .map(|e| Reason::EvaluationError { error: e.clone() }),
    );
    if v.forbids.is_empty() && v.errors.is_empty() {
        if v.permits.is_empty() {
            out.push(Reason::NoPermit);
        } else {
            out.extend(v.permits.iter().map(|p| Reason::Permitted {
                policy: p.id.clone(),
                why: p.reason.clone(),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_whatever_the_sentence_says() {
        let c = Reason::Constraint {
            constraint: Constraint::AllowedExecutionZone,
            detail: "label says public, zone is onprem (private-onprem)".into(),
        };
        assert_eq!(c.code(), "constraint:allowed_execution_zone-label");
        assert_eq!(
            c.to_string(),
            "constraint allowed_execution_zone: label says public, zone is onprem (private-onprem)"
        );
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["code"], "constraint:allowed_execution_zone-label");
        assert_eq!(j["text"], c.to_string());
        assert!(c.is_refusal());
        assert!(!Reason::ExpectedWait { seconds: 3.0 }.is_refusal());
        assert!(Reason::NoPermit.is_refusal());
        assert!(Reason::EvaluationError { error: "x".into() }.is_refusal());
    }
}
