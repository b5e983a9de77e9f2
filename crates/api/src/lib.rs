//! tidegate's API: the request and response types of the control plane's HTTP API and their
//! OpenAPI schemas, as the server answers with them and its clients (the command line, the
//! zone agent, the benchmarks) read them. Only serde and utoipa: a client depends on this crate,
//! not on the server.
//!
//! One module per resource, every type at the crate root. The OpenAPI document itself
//! (paths, security) is the server's, built from these schemas.

#![warn(missing_docs, unreachable_pub)]

mod agents;
mod artifacts;
mod error;
mod jobs;
mod meta;
mod tokens;
mod zones;

pub use agents::{CertificateRequest, CertificateResponse, SyncReport, SyncRequest, SyncResponse};
pub use artifacts::{
    ArtifactList, ArtifactView, GetArtifactQuery, ListArtifactsQuery, PromoteRequest,
    PromoteResponse, PutQuery, StatementView, VerifyView, MAX_ARTIFACT_BYTES, TEAM_LABEL,
};
pub use error::{ErrorBody, ErrorDetail};
pub use jobs::{
    ApproveRequest, EventView, JobDetail, JobList, JobView, ListQuery, LogsQuery, LogsView,
    SubmitRequest, SubmitResponse, MAX_LOG_TAIL,
};
pub use meta::{Health, HealthProblem};
pub use tokens::{
    JobTokenRequest, RevokeRequest, RevokeResponse, TokenRequest, TokenResponse,
    MAX_JOB_TOKEN_INPUTS,
};
pub use zones::{ConditionRequest, FleetApplyRequest, FleetView, PoolView, ZoneView};
