//! The replica itself: its health (`/healthz`, no authentication), the OpenAPI document
//! (`/openapi.json`) and its metrics (`/metrics`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidegate_api::{ErrorBody, Health, HealthProblem};
use tidegate_identity::Action;
use utoipa::OpenApi;

use super::ApiDoc;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// Liveness and role of this replica (no authentication). 503 while the job store or the
/// evidence ledger fails (a full disk, an I/O error, a database that cannot be reached), naming
/// the component in `problems`; 200 otherwise.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health, description = "A component is unhealthy: `status` is `unhealthy` and `problems` names it")))]
pub(super) async fn health(State(st): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    let draining = st.draining.load(Ordering::SeqCst);
    let problems: Vec<HealthProblem> = [&*st.shared.store_health, st.shared.evidence.health()]
        .into_iter()
        .filter_map(|c| {
            c.problem().map(|reason| HealthProblem {
                component: c.name().to_owned(),
                reason,
            })
        })
        .collect();
    let (code, status) = if !problems.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    } else if draining {
        (StatusCode::OK, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        code,
        Json(Health {
            status: status.into(),
            leader: st.shared.leading.load(Ordering::SeqCst),
            store: st
                .shared
                .store
                .describe()
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
            problems,
        }),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "The OpenAPI document"), (status = 401, body = ErrorBody)), security(("bearer" = ["any"])))]
pub(super) async fn openapi_doc(_caller: Caller) -> Result<Response, ApiError> {
    Ok(Json(ApiDoc::openapi()).into_response())
}

/// Metrics: OpenMetrics text (`application/openmetrics-text; version=1.0.0`) when `Accept`
/// asks for it, else the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text when Accept asks for application/openmetrics-text, else the Prometheus text format 0.0.4"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = ["observe"])))]
pub(super) async fn metrics(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    st.auth.authorize(&caller, Action::Observe, "")?;
    let format = crate::metrics::negotiate(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let text = st
        .shared
        .metrics
        .render_as(format)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, format.content_type()),
            (axum::http::header::VARY, "Accept"),
        ],
        text,
    )
        .into_response())
}
