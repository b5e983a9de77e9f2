//! The replica itself (`/healthz`): its health and what is unhealthy.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Health of this replica.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`; `draining` while shutting down; `unhealthy` (answered 503) while a component it
    /// depends on fails (see `problems`).
    pub status: String,
    /// This replica runs the scheduler loop.
    pub leader: bool,
    /// Which kind of store it uses (`sqlite` or `postgres`); where it lives is not told to
    /// callers who need no token to ask.
    pub store: String,
    /// Each component that is unhealthy now, and why (absent when none is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<HealthProblem>,
}

/// A component of the replica that is unhealthy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthProblem {
    /// `store` (the job store) or `ledger` (the evidence ledger).
    pub component: String,
    /// Why, from its latest operation (a write that failed stays until a write succeeds).
    pub reason: String,
}
