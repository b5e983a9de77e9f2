//! API errors: every failure leaves the server as JSON with a stable `code`, a message, and the
//! field at fault where there is one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidegate_api::{ErrorBody, ErrorDetail};
use tidegate_identity::IdentityError;
use tidegate_store::StoreError;

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

    /// 503 unavailable: the evidence ledger cannot record `what` (say, `the submission`), so
    /// it did not happen. The ledger's own error (which names where it lives) goes to the log,
    /// not to the caller; `storage` says what kind of storage it is (`PostgreSQL`), when known.
    pub fn ledger_refused(what: &str, storage: Option<&str>, detail: &str) -> Self {
        tracing::warn!(error = %detail, "refused {what}: the evidence ledger cannot record it");
        let ledger = match storage {
            Some(s) => format!("the evidence ledger ({s})"),
            None => "the evidence ledger".to_owned(),
        };
        Self::unavailable(format!(
            "{what} was refused: {ledger} cannot record it for now, so nothing was changed; \
             retry later"
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
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
            // Temporary: a full disk, an I/O error, a database that cannot be reached. The
            // error names the database's file or URL: it goes to the log, not to the caller.
            StoreError::Unavailable { backend, op, .. } => {
                tracing::warn!(error = %e, "the store is unavailable");
                ApiError::unavailable(format!(
                    "the {backend} store cannot {op} for now (unreachable, out of space or an \
                     I/O error); nothing was changed, retry later"
                ))
            }
            // A fault of the server, not of the request: its detail is logged only.
            StoreError::Database { backend, op, .. } => {
                tracing::error!(error = %e, "store operation failed");
                ApiError::internal(format!(
                    "the {backend} store failed to {op}; the details are in the server's log"
                ))
            }
            StoreError::Corrupt { backend, what, .. } => {
                tracing::error!(error = %e, "stored data is unreadable");
                ApiError::internal(format!(
                    "the {backend} store holds a {what} this server cannot read; the details \
                     are in the server's log"
                ))
            }
            StoreError::Migration { backend, .. } => {
                tracing::error!(error = %e, "store schema migration failed");
                ApiError::internal(format!(
                    "the {backend} store's schema is not at this server's version; the details \
                     are in the server's log"
                ))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(std::io::Error::from_raw_os_error(28))
    }

    #[test]
    fn a_store_that_cannot_write_is_unavailable_and_names_no_path() {
        let e = ApiError::from(StoreError::Unavailable {
            backend: "sqlite",
            location: "/var/lib/tidegate/state.db".into(),
            op: "submit",
            source: enospc(),
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert!(!e.message.contains("/var/lib"), "{}", e.message);
        assert!(!e.message.contains("No space"), "{}", e.message);
    }

    #[test]
    fn a_store_fault_is_internal_and_names_no_path_or_detail() {
        for err in [
            StoreError::Database {
                backend: "sqlite",
                location: "/var/lib/tidegate/state.db".into(),
                op: "submit",
                source: "UNIQUE constraint failed: jobs.secret_column".into(),
            },
            StoreError::Corrupt {
                backend: "sqlite",
                location: "/var/lib/tidegate/state.db".into(),
                what: "job state",
                reason: "unknown state `secret_column`".into(),
            },
            StoreError::Migration {
                backend: "sqlite",
                location: "/var/lib/tidegate/state.db".into(),
                version: 9,
                reason: "no such table: secret_column".into(),
            },
        ] {
            let e = ApiError::from(err);
            assert_eq!(
                (e.status, e.code),
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            );
            assert!(!e.message.contains("/var/lib"), "{}", e.message);
            assert!(!e.message.contains("secret_column"), "{}", e.message);
        }
    }

    #[test]
    fn a_ledger_refusal_names_no_path() {
        let e = ApiError::ledger_refused(
            "the submission",
            Some("files"),
            "ledger in /var/lib/tidegate/ledger: No space left on device (os error 28)",
        );
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert!(!e.message.contains("/var/lib"), "{}", e.message);
        assert!(
            e.message.starts_with("the submission was refused"),
            "{}",
            e.message
        );
    }
}
