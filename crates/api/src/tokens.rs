//! Tokens (`/v1/tokens`): minting a user or a job token, revoking a token or a root key.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most inputs a job token names: its `token.issued` entry is about the token, the job, its
/// zone and each input, within one entry's bound on subjects (the control plane checks that
/// the two agree).
pub const MAX_JOB_TOKEN_INPUTS: usize = 13;

/// Mint a user token (admin only).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The user's name: an identifier of the evidence ledger (1 to 128 characters from
    /// `A-Z a-z 0-9 . _ : @ / + -`, starting with a letter or digit).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")]
    pub subject: String,
    /// `submitter`, `approver`, `auditor` or `admin` (`agent` for a zone's agent, whose team is
    /// the zone).
    #[schema(pattern = "^(submitter|approver|auditor|admin|agent)$")]
    pub role: String,
    /// The user's team (lower-case letters, digits and '-', at most 63).
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub team: String,
    /// Lifetime in minutes (1..=720, default 60; never past the calling token's expiry).
    #[schema(minimum = 1, maximum = 720)]
    pub minutes: Option<u32>,
}

/// Ask for a job's scoped token: it reads exactly `inputs` in `zone` and writes under
/// `output_prefix`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobTokenRequest {
    /// The job (an identifier of the evidence ledger).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")]
    pub job: String,
    /// The zone the token is valid in.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub zone: String,
    /// What it may read: `dataset:NAME@VERSION`, `dataset-snapshot:sha256:HEX`,
    /// `checkpoint:sha256:HEX` or `artifact:sha256:HEX`; each must be data that may be held in
    /// the zone. At most 13.
    #[schema(max_items = 13)]
    pub inputs: Vec<String>,
    /// Where it may write: a relative path of plain segments ending with `/`.
    #[schema(pattern = "^([A-Za-z0-9_:@+-][A-Za-z0-9._:@+-]*/)+$", max_length = 200)]
    pub output_prefix: String,
    /// Lifetime in minutes (1..=720, default 60; never past the calling token's expiry).
    #[schema(minimum = 1, maximum = 720)]
    pub minutes: Option<u32>,
}

/// Revoke one token or a root key: give exactly one of `revocation_id` and `root_key`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The token's revocation id (hex, as `tidegate token inspect` prints it).
    #[schema(pattern = "^[0-9a-f]{2,256}$")]
    pub revocation_id: Option<String>,
    /// A root key's id: every token it signed is refused.
    #[schema(minimum = 1)]
    pub root_key: Option<u32>,
}

/// A revocation in force.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokeResponse {
    /// What was revoked: `token:ID` or `root-key:N`.
    pub revoked: String,
}

/// A minted token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The bearer token.
    pub token: String,
    /// Its lifetime in minutes.
    pub minutes: u32,
}
