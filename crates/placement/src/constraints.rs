//! Hard constraints: checks that hold whatever the policy files say. They are the floor under
//! Cedar: a zone above a job's data ceiling, outside its residency, lacking a certification, or
//! public for private-only data, or outside the job's `allowed_execution_zone` label, is refused
//! even if a fleet switched the matching baseline rule off.

use tidegate_model::{JobSpec, PolicyAttrs, Pool, Zone};

use crate::reason::Constraint;

macro_rules! flags {
    ($name:ident { $($flag:ident = $bit:expr, $c:ident, $text:expr;)* }) => {
        /// A set of failed constraints (bit flags; empty means all passed).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
        pub struct $name(pub u16);
        impl $name {
            $(#[doc = $text] pub const $flag: Self = Self(1 << $bit);)*
            /// Every flag with the constraint it stands for.
            pub const ALL: &'static [(Self, Constraint)] = &[$((Self::$flag, Constraint::$c)),*];
            /// The constraints that failed, in flag order.
            pub fn constraints(self) -> impl Iterator<Item = Constraint> {
                Self::ALL.iter().filter(move |(f, _)| self.has(*f)).map(|(_, c)| *c)
            }
            /// No failures.
            pub fn is_empty(self) -> bool { self.0 == 0 }
            /// Whether `f` is set.
            pub fn has(self, f: Self) -> bool { self.0 & f.0 != 0 }
            /// Adds `f` when `cond` holds.
            pub fn set_if(&mut self, cond: bool, f: Self) { if cond { self.0 |= f.0; } }
        }
    };
}

flags!(ZoneFailures {
    CEILING = 0, ClassificationCeiling, "classification ceiling";
    PRIVATE_ONLY = 1, PrivateOnlyData, "private-only data";
    JURISDICTION = 2, Jurisdiction, "jurisdiction";
    CERTIFICATION = 3, Certification, "certification";
    EXPORT = 4, ExportControl, "export control";
    EGRESS_ROUTE = 5, EgressRoute, "egress route";
    SCOPE = 6, AllowedExecutionZone, "allowed_execution_zone label";
});

flags!(Failures {
    GPU_TYPE = 0, GpuType, "gpu type";
    GPU_MEMORY = 1, GpuMemory, "gpu memory";
    CAPACITY = 2, Capacity, "capacity";
});

/// Zone-level hard constraints for a job's attributes (independent of the job's resources, so
/// they are computed once per attribute signature).
pub fn zone_failures(a: &PolicyAttrs, z: &Zone) -> ZoneFailures {
    let mut f = ZoneFailures::default();
    f.set_if(a.level > z.max_classification, ZoneFailures::CEILING);
    f.set_if(
        a.private_only && !z.tier.is_private(),
        ZoneFailures::PRIVATE_ONLY,
    );
    f.set_if(
        a.residency
            .as_ref()
            .is_some_and(|r| !r.contains(&z.jurisdiction)),
        ZoneFailures::JURISDICTION,
    );
    f.set_if(
        z.tier == tidegate_model::Tier::Public
            && !a.required_certifications.is_subset(&z.certifications),
        ZoneFailures::CERTIFICATION,
    );
    f.set_if(!a.scope.admits(z), ZoneFailures::SCOPE);
    f.set_if(
        // No known origin is no permission: export-controlled work with an empty origin set
        // is refused everywhere.
        a.stays_in_jurisdiction
            && (a.origin_jurisdictions.is_empty()
                || a.origin_jurisdictions.iter().any(|j| *j != z.jurisdiction)),
        ZoneFailures::EXPORT,
    );
    f
}

/// Pool-level hard constraints for a job's resources.
pub(crate) fn pool_failures(job: &JobSpec, p: &Pool) -> Failures {
    let r = &job.resources;
    let mut f = Failures::default();
    f.set_if(
        !r.gpu_types.is_empty()
            && !r
                .gpu_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&p.gpu_type)),
        Failures::GPU_TYPE,
    );
    f.set_if(r.gpu_memory_gb > p.gpu_memory_gb, Failures::GPU_MEMORY);
    f.set_if(r.gpus > p.gpus, Failures::CAPACITY);
    f
}
