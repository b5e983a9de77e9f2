//! API errors: every failure leaves the server as JSON with a stable `code`, a message, and the
//! field at fault where there is one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tidegate_identity::IdentityError;
use tidegate_store::StoreError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`unauthenticated`, `token_expired`, `forbidden`,
    /// `token_not_granted`, `not_found`, `invalid_request`, `invalid_manifest`,
    /// `idempotency_conflict`, `conflict`, `artifact_tampered`, `artifact_shredded`,
    /// `verification_failed`, `promotion_refused`, `too_large`, `method_not_allowed`,
    /// `uri_too_long`, `headers_too_large`, `unsupported_media_type`, `request_timeout`,
    /// `fleet_invalid`, `unavailable`, `draining`, `internal`).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault (`manifest`, `spec.resources.gpus`, `Idempotency-Key`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error the API returns.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the field at fault.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 invalid_request.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).field(field)
    }

    /// 404 not_found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 internal.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503 unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"tidegate\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Invalid { field, .. } => ApiError::invalid(field, e.to_string()),
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::AlreadyExists { .. }
            | StoreError::VersionConflict { .. }
            | StoreError::IllegalTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::IdempotencyConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "idempotency_conflict", e.to_string())
                    .field("Idempotency-Key")
            }
            StoreError::Unavailable { .. } => {
                ApiError::unavailable(format!("{e}; nothing was changed, retry later"))
            }
            StoreError::Database { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Migration { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match &e {
            IdentityError::Expired { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", e.to_string())
            }
            IdentityError::Denied(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            IdentityError::InvalidSpec(_) => ApiError::invalid("body", e.to_string()),
            IdentityError::InvalidKeyring(_) => {
                ApiError::unavailable(format!("token keys are unusable: {e}"))
            }
            _ => ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()),
        }
    }
}
