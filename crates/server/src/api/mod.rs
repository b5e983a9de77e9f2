//! The HTTP API under `/v1` (axum) and its OpenAPI document (utoipa), one module per resource:
//! `jobs`, `zones` (zones, their conditions, the fleet), `agents`, `tokens`,
//! `artifacts`, and `meta` (health, this document, metrics). The JSON shapes it speaks are
//! `tidegate_api`'s.
//!
//! Every handler but `/healthz`'s authenticates first (its [`Caller`] argument, the one
//! extractor that reads a user's bearer token; reading an artifact's content, whose bearer may
//! be a job token, authenticates a user's the same way when it is one), then validates the
//! request, then authorizes the action for the team concerned, then does its store
//! transactions on the blocking pool (`blocking`, the one helper that does). The OpenAPI
//! document lists, for each operation, the token action it needs as the scope of its `bearer`
//! security requirement (`submit`, `read`, `cancel`, `approve`, `observe`, `agent`,
//! `administer`; `any` for the document itself), so clients and tests can derive the access
//! rules from the document.

mod agents;
mod artifacts;
mod jobs;
mod meta;
mod tokens;
mod zones;

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path as UrlPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use tidegate_api::{
    ApproveRequest, ArtifactList, ArtifactView, CertificateRequest, CertificateResponse,
    ConditionRequest, ErrorBody, EventView, FleetApplyRequest, FleetView, Health, HealthProblem,
    JobDetail, JobList, JobTokenRequest, JobView, LogsView, PoolView, PromoteRequest,
    PromoteResponse, RevokeRequest, RevokeResponse, StatementView, SubmitRequest, SubmitResponse,
    SyncReport, SyncRequest, SyncResponse, TokenRequest, TokenResponse, VerifyView, ZoneView,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
// The handlers, by name: a module path in `paths(...)` would become each operation's tag.
use self::{agents::*, artifacts::*, jobs::*, meta::*, tokens::*, zones::*};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "tidegate control plane", description = "Policy-aware placement of GPU jobs across private, public and edge zones."),
    paths(health, openapi_doc, submit_job, list_jobs, get_job, job_logs, cancel_job, approve_job, list_zones, set_zone_condition, agent_sync, agent_certificate, metrics, mint_token, mint_job_token, revoke_token, apply_fleet, get_fleet,
        put_artifact, list_artifacts, get_artifact, verify_artifact, promote_artifact),
    components(schemas(ArtifactView, ArtifactList, StatementView,
        VerifyView, PromoteRequest, PromoteResponse, ApproveRequest, SyncRequest, SyncReport, SyncResponse, CertificateRequest, CertificateResponse, ErrorBody, SubmitRequest, SubmitResponse, JobView, EventView, JobDetail, JobList, LogsView, ZoneView, PoolView, ConditionRequest, TokenRequest, TokenResponse, JobTokenRequest, RevokeRequest, RevokeResponse, FleetApplyRequest, FleetView, Health, HealthProblem)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("Biscuit")
                    .description(Some("A tidegate user token (role and team), e.g. from `tidegate token mint --user`. The scope names the action the route needs."))
                    .build(),
            ),
        );
    }
}

/// The API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(meta::health))
        .route("/openapi.json", get(meta::openapi_doc))
        .route("/metrics", get(meta::metrics))
        .route("/v1/jobs", post(jobs::submit_job).get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/jobs/{id}/logs", get(jobs::job_logs))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/v1/jobs/{id}/approve", post(jobs::approve_job))
        .route("/v1/zones", get(zones::list_zones))
        .route(
            "/v1/zones/{zone}/condition",
            post(zones::set_zone_condition),
        )
        .route("/v1/agents/{zone}/sync", post(agents::agent_sync))
        .route(
            "/v1/agents/{zone}/certificate",
            post(agents::agent_certificate),
        )
        .route("/v1/tokens", post(tokens::mint_token))
        .route("/v1/tokens/job", post(tokens::mint_job_token))
        .route("/v1/tokens/revoke", post(tokens::revoke_token))
        .route("/v1/fleet", post(zones::apply_fleet).get(zones::get_fleet))
        .route(
            "/v1/artifacts",
            post(artifacts::put_artifact).get(artifacts::list_artifacts),
        )
        .route("/v1/artifacts/{digest}", get(artifacts::get_artifact))
        .route(
            "/v1/artifacts/{digest}/verify",
            get(artifacts::verify_artifact),
        )
        .route(
            "/v1/artifacts/{digest}/promote",
            post(artifacts::promote_artifact),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::shape::json_errors,
        ))
        .with_state(state)
}

/// The caller of a route, authenticated from its bearer token ([`crate::auth::Auth::authenticate`]):
/// a handler takes it as its first argument after the state, so a missing, malformed, expired
/// or revoked token is refused (401) before anything about the request is read or told. The
/// route's action is authorized explicitly, for the team it concerns, in the handler.
impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        st.auth.authenticate(&parts.headers)
    }
}

/// Every error has the JSON error shape, an unknown route too; authentication comes first.
async fn no_route(_caller: Caller, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route `{}`; the API is described at /openapi.json",
        uri.path()
    ))
}

/// A known route called with a method it does not serve (authentication first).
async fn wrong_method(
    _caller: Caller,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "`{method} {}` is not served; see /openapi.json for its methods",
            uri.path()
        ),
    )
}

/// Runs `f` (store transactions, ledger writes, file and executor I/O) on the blocking pool:
/// every handler's blocking work goes through here.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// A path parameter, read after authentication: one that does not decode is a JSON 400 naming
/// it.
pub(crate) fn path_param<T>(
    r: Result<UrlPath<T>, PathRejection>,
    field: &str,
) -> Result<T, ApiError> {
    r.map(|UrlPath(t)| t).map_err(|e| {
        ApiError::invalid(
            field,
            format!(
                "the path parameter `{field}` is not valid: {}",
                e.body_text()
            ),
        )
    })
}

/// A JSON request body that is a JSON object, as every body the API documents is. (Serde would
/// also read a struct from a JSON array, `["run"]` for `{"scope": "run"}`, which no client is
/// told.) The content type is checked as the JSON extractor checks it; the rejection is the
/// API's JSON error, for the handler to return after authentication.
pub(crate) struct JsonObject<T>(pub T);

fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T, S> axum::extract::FromRequest<S> for JsonObject<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let invalid = |why: String| {
            ApiError::invalid("body", format!("the request body is not valid: {why}"))
        };
        if !json_content_type(req.headers()) {
            return Err(invalid(
                "Expected request with `Content-Type: application/json`".to_owned(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the request body is too large: {}", e.body_text()),
                    )
                    .field("body")
                } else {
                    invalid(e.body_text())
                }
            })?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid("expected a JSON object".to_owned()));
        }
        let Json(t) = Json::<T>::from_bytes(&bytes).map_err(|e| invalid(e.body_text()))?;
        Ok(Self(t))
    }
}

/// A JSON body, read after authentication: one over the limit is a JSON 413, one that is not a
/// JSON object of the request type a JSON 400 naming `body`.
pub(crate) fn body<T>(r: Result<JsonObject<T>, ApiError>) -> Result<T, ApiError> {
    r.map(|JsonObject(t)| t)
}
