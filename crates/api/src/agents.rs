//! Zone agents (`/v1/agents/{zone}`): an agent's sync and the zone's work for it, a workload
//! certificate request and the certificate.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An agent's sync: who it is and what its runs are doing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The agent's name (recorded with its heartbeat): 1 to 128 characters, not all blank.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub agent: String,
    /// Its runs that changed or have not been acknowledged as ended.
    #[serde(default)]
    pub runs: Vec<SyncReport>,
}

/// One run as the agent sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncReport {
    /// Run id (1 to 80 bytes).
    #[schema(min_length = 1, max_length = 80)]
    pub run_id: String,
    /// `running`, `exited`, `cancelled`, `timed_out` (stopped past its time limit) or `lost`.
    #[schema(pattern = "^(running|exited|cancelled|timed_out|lost)$")]
    pub status: String,
    /// Exit code (required when `exited`).
    pub exit_code: Option<i32>,
    /// The end of its output.
    #[serde(default)]
    pub log_tail: String,
}

/// The zone's work for the agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncResponse {
    /// Runs to start (each a launch request; starting one twice is harmless).
    #[schema(value_type = Vec<Object>)]
    pub start: Vec<serde_json::Value>,
    /// Run ids to stop.
    pub cancel: Vec<String>,
}

/// A zone agent's request for a workload certificate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// A PKCS#10 certificate signing request, PEM, over the agent's own key (the key never leaves
    /// the agent). Only its public key is used: the certificate names the zone of the route.
    #[schema(min_length = 1, max_length = 16384)]
    pub csr: String,
}

/// A workload certificate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertificateResponse {
    /// The certificate followed by the certificate authority's, PEM.
    pub certificate: String,
    /// The certificate authority's certificate, PEM (what the agent trusts the control plane by).
    pub ca: String,
    /// The identity it carries, `spiffe://<trust-domain>/zone/<zone>`.
    pub spiffe_id: String,
    /// When it stops being valid, seconds since the Unix epoch.
    pub not_after: u64,
    /// Its serial number, hex.
    pub serial: String,
}
