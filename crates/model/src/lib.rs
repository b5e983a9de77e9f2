//! The tidegate model: what a fleet, a zone, a GPU pool, a dataset and a job are, and how they are
//! loaded from files with errors that name the file, line and field.
//!
//! This crate is pure: it reads files when asked to load a fleet or job, and does nothing else.
//! Everything downstream (policy, placement, scheduler, server) works on these types.

#![warn(missing_docs, unreachable_pub)]

pub mod classification;
pub mod error;
pub mod fleet;
pub mod job;
mod load;
mod origin;
pub mod profile;
pub mod scheduling;

pub use classification::{Classification, FloorProblem, FloorSubject, LevelDef, Scheme, TagDef};
pub use error::{LoadError, LoadErrors};
pub use fleet::{
    ArtifactRecord, Backend, Dataset, DatasetRef, Fleet, Pool, Pricing, SlurmPlacement, Tier, Zone,
    ZoneScope, DEFAULT_ADMISSION_TIMEOUT_S, MAX_ADMISSION_TIMEOUT_S,
};
pub use job::{Input, JobKind, JobSpec, Labels, Resources, Sla};
pub use load::{
    is_valid_name, load_fleet, load_fleet_with_scheduling, load_job, load_jobs_dir, parse_job,
    MAX_INPUTS, RESERVED_LABELS,
};
pub use origin::Origin;
pub use profile::{DataLocation, JobProfile, PolicyAttrs, ResolveError};
pub use scheduling::{
    Budget, Failover, FailoverAction, FailoverRule, JobClass, Scheduling, TeamQuota,
};
