//! Zones and the fleet (`/v1/zones`, `/v1/fleet`): a zone and its load, a zone's new condition,
//! the fleet and policy set in force.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A pool in a zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    /// Pool name.
    pub name: String,
    /// GPU type.
    pub gpu_type: String,
    /// GPUs.
    pub gpus: u32,
}

/// A zone and its load.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ZoneView {
    /// Zone name.
    pub name: String,
    /// `private`, `public` or `edge`.
    pub tier: String,
    /// Backend kind.
    pub backend: String,
    /// Pools.
    pub pools: Vec<PoolView>,
    /// Jobs waiting in the zone's queue.
    pub queued: u64,
    /// Jobs admitted or running there.
    pub running: u64,
    /// `healthy`, `degraded` or `unreachable`, as last set.
    pub health: String,
    /// Its provider is throttling new work.
    pub throttled: bool,
    /// Why, as given when the condition was set.
    pub condition_reason: Option<String>,
}

/// A zone's new condition (an outage, a drill, a throttling provider).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionRequest {
    /// `healthy`, `degraded` or `unreachable`.
    #[schema(pattern = "^(healthy|degraded|unreachable)$")]
    pub health: String,
    /// The provider throttles new work (default false).
    #[serde(default)]
    pub throttled: bool,
    /// Why, for the record.
    pub reason: Option<String>,
}

/// A fleet to put in force.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetApplyRequest {
    /// The fleet directory, on the control plane's host (default: the one in force, re-read).
    #[serde(default)]
    pub dir: Option<String>,
}

/// The fleet and policy set in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetView {
    /// The directory it was read from.
    pub dir: String,
    /// SHA-256 of the fleet's files.
    pub fleet_hash: String,
    /// SHA-256 of the policy set (schema, scheme, every policy).
    pub policy_hash: String,
    /// How many times the rules were swapped since start.
    pub generation: u64,
    /// Zones in the fleet.
    pub zones: usize,
    /// Dataset versions it knows (registered ones included).
    pub datasets: usize,
}
