//! tidegate scheduler core: per-zone queues, admission against pool capacity, spill-over to public
//! capacity under queue-depth, wait or deadline pressure (only where placement allows the job
//! there), and release of GPUs when a job ends. Sans-IO and deterministic: the caller passes every
//! event and the time, and gets back the effects to carry out. The simulator and (later) the
//! server drive the same code.
//!
//! Not yet here (the control-plane work continues): team quotas with borrowing and preemption,
//! fair share, budgets in money and GPU-hours, the failure hierarchy and capacity failover.

mod core;
pub mod sim;

pub use crate::core::{Candidate, ClassThresholds, Effect, Health, JobId, SchedConfig, Scheduler, Shape, DEFAULT_CLASS};
