//! The body of every error answer: a stable code, a message, and the field at fault where there
//! is one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`unauthenticated`, `token_expired`, `forbidden`,
    /// `token_not_granted`, `not_found`, `invalid_request`, `invalid_manifest`,
    /// `idempotency_conflict`, `conflict`, `artifact_tampered`, `artifact_shredded`,
    /// `verification_failed`, `promotion_refused`, `too_large`, `method_not_allowed`,
    /// `uri_too_long`, `headers_too_large`, `unsupported_media_type`, `request_timeout`,
    /// `fleet_invalid`, `zone_identity`, `no_authority`, `unavailable`, `draining`, `internal`).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault (`manifest`, `spec.resources.gpus`, `Idempotency-Key`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
