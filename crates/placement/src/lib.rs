//! tidegate placement: the pure, deterministic placement engine. Given a job, the fleet and the
//! fleet's current state (free GPUs, expected waits), it says for every zone and pool whether the
//! job may run there and why (the Cedar policies that permitted or forbade it, and each hard
//! constraint that failed), scores the allowed options (cost, egress, expected wait), and picks
//! one. No I/O, no clock: the same inputs always give the same placement.
//!
//! Policy verdicts depend only on a job's [`PolicyAttrs`](tidegate_model::PolicyAttrs), so the
//! engine reuses them across jobs with equal attributes; the reuse is exact, not approximate.

#![warn(missing_docs, unreachable_pub)]

mod candidates;
mod constraints;
mod engine;
mod explain;
mod reason;
mod recheck;
pub mod synth;

pub use candidates::candidates;
pub use constraints::{zone_failures, Failures, ZoneFailures};
pub use engine::{
    Decision, FleetState, Placement, PlacementEngine, PoolCheck, PoolState, ZoneCheck,
};
pub use explain::{CandidateView, Explanation};
pub use reason::{policy_reasons, Constraint, PricingNote, Reason};
pub use recheck::Withdrawn;
