//! tidegate scheduler core: per-zone queues, admission against pool capacity, spill-over to public
//! capacity under queue-depth, wait or deadline pressure (only where placement allows the job
//! there), and release of GPUs when a job ends. Sans-IO and deterministic: the caller passes every
//! event and the time, and gets back the effects to carry out. The simulator (`tidegate-sim`)
//! and the control plane's loop drive the same code; what placement allowed reaches it as
//! [`Candidate`]s.
//!
//! With the fleet's scheduling rules (`Scheduler::with_rules`): cost-aware choice among allowed
//! options (spot re-run risk, egress, data locality), burst thresholds per job class, team quotas
//! that lend idle capacity within borrowing limits and reclaim it by preemption, fair share by
//! decayed usage, burst budgets per class and team with a recorded business justification,
//! capacity failover one site at a time, the failure hierarchy for degraded private zones and
//! throttled providers, and cancel.

#![warn(missing_docs, unreachable_pub)]

mod core;
pub mod reason;

pub use crate::core::{
    Candidate, ClassThresholds, Effect, Health, JobId, SchedConfig, Scheduler, Shape, DEFAULT_CLASS,
};
pub use crate::reason::{
    BudgetLimit, BudgetOwner, BurstReason, FailoverReason, PreemptReason, QueueReason, RefuseReason,
};
