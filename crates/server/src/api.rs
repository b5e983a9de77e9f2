//! The HTTP API under `/v1` (axum), its OpenAPI document (utoipa) and the JSON shapes it speaks.
//!
//! Every handler authenticates first, then validates the request, then authorizes the action for
//! the team concerned, then does one store transaction on the blocking pool. The OpenAPI
//! document lists, for each operation, the token action it needs as the scope of its `bearer`
//! security requirement (`submit`, `read`, `cancel`, `approve`, `observe`, `agent`,
//! `administer`; `any` for the document itself), so clients and tests can derive the access
//! rules from the document. The artifact routes live in [`crate::artifacts_api`].

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tidegate_identity::{Action, Role};
use tidegate_model::{parse_job, LoadError};
use tidegate_store::{
    JobEvent, JobFilter, JobId, JobRecord, JobState, NewJob, PageRequest, Timestamp, Transition,
    MAX_PAGE_SIZE,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Longest manifest accepted, bytes.
const MAX_MANIFEST: usize = 256 * 1024;

/// Most bytes of a job's output one `logs` request returns.
pub const MAX_LOG_TAIL: u64 = 1 << 20;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "tidegate control plane", description = "Policy-aware placement of GPU jobs across private, public and edge zones."),
    paths(health, openapi_doc, submit_job, list_jobs, get_job, job_logs, cancel_job, approve_job, list_zones, set_zone_condition, agent_sync, agent_certificate, metrics, mint_token, mint_job_token, revoke_token, apply_fleet, get_fleet,
        crate::artifacts_api::put_artifact, crate::artifacts_api::list_artifacts, crate::artifacts_api::get_artifact,
        crate::artifacts_api::verify_artifact, crate::artifacts_api::promote_artifact),
    components(schemas(crate::artifacts_api::ArtifactView, crate::artifacts_api::ArtifactList, crate::artifacts_api::StatementView,
        crate::artifacts_api::VerifyView, crate::artifacts_api::PromoteRequest, crate::artifacts_api::PromoteResponse, ApproveRequest, SyncRequest, SyncReport, SyncResponse, CertificateRequest, CertificateResponse, ErrorBody, SubmitRequest, SubmitResponse, JobView, EventView, JobDetail, JobList, LogsView, ZoneView, PoolView, ConditionRequest, TokenRequest, TokenResponse, JobTokenRequest, RevokeRequest, RevokeResponse, FleetApplyRequest, FleetView, Health, HealthProblem)),
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
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi_doc))
        .route("/metrics", get(metrics))
        .route("/v1/jobs", post(submit_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/logs", get(job_logs))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/approve", post(approve_job))
        .route("/v1/zones", get(list_zones))
        .route("/v1/zones/{zone}/condition", post(set_zone_condition))
        .route("/v1/agents/{zone}/sync", post(agent_sync))
        .route("/v1/agents/{zone}/certificate", post(agent_certificate))
        .route("/v1/tokens", post(mint_token))
        .route("/v1/tokens/job", post(mint_job_token))
        .route("/v1/tokens/revoke", post(revoke_token))
        .route("/v1/fleet", post(apply_fleet).get(get_fleet))
        .route(
            "/v1/artifacts",
            post(crate::artifacts_api::put_artifact).get(crate::artifacts_api::list_artifacts),
        )
        .route(
            "/v1/artifacts/{digest}",
            get(crate::artifacts_api::get_artifact),
        )
        .route(
            "/v1/artifacts/{digest}/verify",
            get(crate::artifacts_api::verify_artifact),
        )
        .route(
            "/v1/artifacts/{digest}/promote",
            post(crate::artifacts_api::promote_artifact),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::shape::json_errors,
        ))
        .with_state(state)
}

/// Every error has the JSON error shape, an unknown route too; authentication comes first.
async fn no_route(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> ApiError {
    if let Err(e) = st.auth.authenticate(&headers) {
        return e;
    }
    ApiError::not_found(format!(
        "no route `{}`; the API is described at /openapi.json",
        uri.path()
    ))
}

/// A known route called with a method it does not serve (authentication first).
async fn wrong_method(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    if let Err(e) = st.auth.authenticate(&headers) {
        return e;
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "`{method} {}` is not served; see /openapi.json for its methods",
            uri.path()
        ),
    )
}

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

// ---------- shapes ----------

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

/// A job submission.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The job manifest, YAML (`apiVersion: tidegate.io/v1`, `kind: Job`), as in `examples/jobs/`.
    #[schema(min_length = 1)]
    pub manifest: String,
}

/// A job as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Job name.
    pub name: String,
    /// Owning team.
    pub team: String,
    /// `submitted`, `queued`, `admitted`, `running`, `succeeded`, `failed`, `cancelled`, `preempted`.
    pub state: String,
    /// Why it is in this state.
    pub reason: Option<String>,
    /// Zone (queue zone while queued; placement once admitted).
    pub zone: Option<String>,
    /// Pool once admitted.
    pub pool: Option<String>,
    /// Submission time, ms since the Unix epoch.
    pub submitted_at: i64,
    /// Last change, ms since the Unix epoch.
    pub updated_at: i64,
    /// Version (grows with every change).
    pub version: u64,
    /// The idempotency key given at submission.
    pub idempotency_key: Option<String>,
}

impl From<&JobRecord> for JobView {
    fn from(r: &JobRecord) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name.clone(),
            team: r.team.clone(),
            state: r.state.to_string(),
            reason: r.reason.clone(),
            zone: r.zone.clone(),
            pool: r.pool.clone(),
            submitted_at: r.submitted_at.millis(),
            updated_at: r.updated_at.millis(),
            version: r.version,
            idempotency_key: r.idempotency_key.clone(),
        }
    }
}

/// The answer to a submission.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// The job.
    pub job: JobView,
    /// True when the idempotency key had already created this job (nothing new was created).
    pub replayed: bool,
}

/// One event in a job's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// 1, 2, ...
    pub seq: u64,
    /// `submitted`, `queued`, `admitted`, `running`, `released`, ...
    pub kind: String,
    /// State before.
    pub from_state: Option<String>,
    /// State after.
    pub to_state: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// The stable code of the reason (`queue:quota-limit`, `refused:no-allowed-option`, ...)
    /// where it comes from the scheduler; match on this, never on the text.
    pub reason_code: Option<String>,
    /// Details (placement explanation, burst justification, cost...); null when the event has
    /// none.
    #[schema(value_type = Option<Object>)]
    pub details: serde_json::Value,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

impl From<&JobEvent> for EventView {
    fn from(e: &JobEvent) -> Self {
        Self {
            seq: e.seq,
            kind: e.kind.clone(),
            from_state: e.from_state.map(|s| s.to_string()),
            to_state: e.to_state.map(|s| s.to_string()),
            reason: e.reason.clone(),
            reason_code: e.reason_code.clone(),
            details: e.details.clone(),
            at: e.at.millis(),
        }
    }
}

/// A job with its events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    pub job: JobView,
    /// Its events, oldest first.
    pub events: Vec<EventView>,
}

/// One page of jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Jobs in submission order.
    pub jobs: Vec<JobView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<u64>,
}

/// Filters for listing jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    #[param(
        pattern = "^(submitted|queued|admitted|running|succeeded|failed|cancelled|preempted)$"
    )]
    pub state: Option<String>,
    /// Only this team's jobs (default: the caller's team; an admin sees every team).
    pub team: Option<String>,
    /// Only jobs in this zone.
    pub zone: Option<String>,
    /// Page size (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub after: Option<u64>,
}

/// A job's output.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogsView {
    /// Job id.
    pub job: String,
    /// The last `tail_bytes` of its combined output.
    pub logs: String,
}

/// How much output to return.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Bytes from the end (default 65536, at most 1 MiB: 1048576).
    #[param(minimum = 0, maximum = 1048576)]
    pub tail_bytes: Option<u64>,
}

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

/// An approval of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// What is approved: `run`, `burst` or `export`.
    #[schema(pattern = "^(run|burst|export)$")]
    pub scope: String,
}

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

/// The most inputs a job token names: its `token.issued` entry is about the token, the job, its
/// zone and each input, within one entry's bound on subjects.
pub const MAX_JOB_TOKEN_INPUTS: usize = tidegate_ledger::entry::MAX_SUBJECTS - 3;

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

// ---------- handlers ----------

/// Liveness and role of this replica (no authentication). 503 while the job store or the
/// evidence ledger fails (a full disk, an I/O error, a database that cannot be reached), naming
/// the component in `problems`; 200 otherwise.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health, description = "A component is unhealthy: `status` is `unhealthy` and `problems` names it")))]
async fn health(State(st): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
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
async fn openapi_doc(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    st.auth.authenticate(&headers)?;
    Ok(Json(ApiDoc::openapi()).into_response())
}

/// Metrics: OpenMetrics text (`application/openmetrics-text; version=1.0.0`) when `Accept`
/// asks for it, else the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text when Accept asks for application/openmetrics-text, else the Prometheus text format 0.0.4"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = ["observe"])))]
async fn metrics(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
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

fn manifest_error(errors: &tidegate_model::LoadErrors) -> ApiError {
    let field = errors.0.iter().find_map(|e| match e {
        LoadError::Invalid { field, .. } => Some(format!("manifest.{field}")),
        LoadError::Syntax { line, column, .. } => {
            Some(format!("manifest (line {line}, column {column})"))
        }
        LoadError::Io { .. } => None,
    });
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_manifest",
        errors.to_string(),
    )
    .field(field.unwrap_or_else(|| "manifest".into()))
}

/// A fleet that declares its teams (`teams:`) takes jobs of those teams only; one that declares
/// none takes any team's.
fn unknown_team(scheduling: &tidegate_model::Scheduling, team: &str) -> Result<(), ApiError> {
    if scheduling.teams.is_empty() || scheduling.team(team).is_some() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_manifest",
        format!("team `{team}` is not a team of this fleet's `teams:`"),
    )
    .field("manifest.metadata.team"))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .map_err(|_| {
            ApiError::invalid(
                "Idempotency-Key",
                "the Idempotency-Key header must be printable ASCII",
            )
        })?
        .trim();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header must be 1 to 255 characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Submit a job. With an `Idempotency-Key`, a retry of the same request returns the job it
/// created (`replayed: true`); the same key with a different request is a conflict.
#[utoipa::path(post, path = "/v1/jobs", request_body = SubmitRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: one job per key and team")),
    responses((status = 201, body = SubmitResponse), (status = 200, body = SubmitResponse, description = "Replayed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = ["submit"])))]
async fn submit_job(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Result<JsonObject<SubmitRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    if st.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the server is shutting down; submit to another replica or retry",
        ));
    }
    let req = body(req)?;
    if req.manifest.len() > MAX_MANIFEST {
        return Err(ApiError::invalid(
            "manifest",
            format!(
                "the manifest is {} bytes; at most {MAX_MANIFEST}",
                req.manifest.len()
            ),
        ));
    }
    let spec = parse_job(
        Path::new("manifest"),
        &req.manifest,
        &st.shared.rules().fleet,
    )
    .map_err(|e| manifest_error(&e))?;
    unknown_team(&st.shared.rules().scheduling, &spec.team)?;
    // A deadline already past could never be met: refused, naming the field (the manifest's
    // parser has checked it is RFC 3339; the clock is the server's).
    if let Some(d) = spec.deadline.as_deref() {
        let past = time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| t < time::OffsetDateTime::now_utc());
        if past {
            return Err(ApiError::invalid(
                "manifest.spec.deadline",
                format!("deadline {d} has already passed"),
            ));
        }
    }
    st.auth.authorize(&caller, Action::Submit, &spec.team)?;
    let key = idempotency_key(&headers)?;
    let shared = st.shared.clone();
    let manifest = req.manifest;
    let (rec, replayed) = blocking(move || {
        let new = NewJob {
            id: JobId::generate()?,
            name: spec.name.clone(),
            team: spec.team.clone(),
            spec: serde_json::json!({ "manifest": manifest }),
            idempotency_key: key,
            reason: None,
            at: Timestamp::now(),
        };
        // Write-ahead: a job is in the store only after its `job.submitted` entry is durable, so
        // no crash, and no leader picking the job up at once, can leave a job scheduled or run
        // without it. A key already bound replays (or conflicts) in the store and records
        // nothing new. A refusal here is temporary (503) and creates nothing, so a retry with the
        // same key runs.
        let replay = match &new.idempotency_key {
            Some(k) => shared.store.idempotency_key_bound(&new.team, k)?,
            None => false,
        };
        if !replay {
            if let Err(e) = shared.evidence.submitted(&new.id, manifest.as_bytes()) {
                return Err(ApiError::ledger_refused("the submission", Some(shared.evidence.storage()), &e));
            }
        }
        let out = shared.store.submit(new)?;
        if out.replayed && !replay {
            // Another submission with the same key won the race: its job is the one; the entry
            // just written names a job that was never created.
            tracing::info!(job = %out.job.id, "a concurrent submission with the same idempotency key was replayed; its recorded id was not created");
        }
        Ok((out.job, out.replayed))
    })
    .await?;
    st.shared
        .metrics
        .submissions
        .get_or_create(&crate::metrics::label(
            "outcome",
            if replayed { "replayed" } else { "new" },
        ))
        .inc();
    st.shared.wake.notify();
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(SubmitResponse {
            job: JobView::from(&rec),
            replayed,
        }),
    )
        .into_response())
}

/// List jobs, one page at a time.
#[utoipa::path(get, path = "/v1/jobs", params(ListQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["read"])))]
async fn list_jobs(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let team = match q.team.clone() {
        Some(t) => Some(t),
        None if caller.is_admin() => None,
        None => Some(caller.team().to_owned()),
    };
    st.auth
        .authorize(&caller, Action::Read, team.as_deref().unwrap_or(""))?;
    let state = q
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(|e| ApiError::invalid("state", e.to_string()))?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be 1..={MAX_PAGE_SIZE}, got {limit}"),
        ));
    }
    let shared = st.shared.clone();
    let filter = JobFilter {
        state,
        team,
        zone: q.zone,
    };
    let page = blocking(move || {
        Ok(shared.store.list(
            &filter,
            PageRequest {
                after: q.after,
                limit,
            },
        )?)
    })
    .await?;
    Ok(Json(JobList {
        jobs: page.jobs.iter().map(JobView::from).collect(),
        next: page.next,
    }))
}

async fn load_job(st: &Arc<AppState>, id: &str) -> Result<JobRecord, ApiError> {
    let id = JobId::new(id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
    let shared = st.shared.clone();
    let shown = id.to_string();
    blocking(move || {
        shared
            .store
            .get(&id)?
            .ok_or_else(|| ApiError::not_found(format!("job `{shown}` not found")))
    })
    .await
}

/// A job: its state, why, and every event (the placement explanation is in the first `queued`
/// event's details).
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path, description = "Job id", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses((status = 200, body = JobDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
async fn get_job(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<JobDetail>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let id = path_param(id, "id")?;
    let rec = load_job(&st, &id).await?;
    st.auth.authorize(&caller, Action::Read, &rec.team)?;
    let shared = st.shared.clone();
    let jid = rec.id.clone();
    let events = blocking(move || Ok(shared.store.events(&jid)?)).await?;
    Ok(Json(JobDetail {
        job: JobView::from(&rec),
        events: events.iter().map(EventView::from).collect(),
    }))
}

/// The end of a job's output (from its zone's executor).
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", params(("id" = String, Path, description = "Job id", pattern = "^[A-Za-z0-9._-]{1,64}$"), LogsQuery),
    responses((status = 200, body = LogsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
async fn job_logs(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    id: Result<UrlPath<String>, PathRejection>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<LogsView>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let id = path_param(id, "id")?;
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let rec = load_job(&st, &id).await?;
    st.auth.authorize(&caller, Action::Read, &rec.team)?;
    let tail = q.tail_bytes.unwrap_or(65_536);
    if tail > MAX_LOG_TAIL {
        return Err(ApiError::invalid(
            "tail_bytes",
            format!("tail_bytes must be at most {MAX_LOG_TAIL} (1 MiB), got {tail}"),
        ));
    }
    let Some(zone) = rec.pool.as_ref().and(rec.zone.clone()) else {
        return Ok(Json(LogsView {
            job: rec.id.to_string(),
            logs: String::new(),
        }));
    };
    let exec = st
        .shared
        .executors
        .get(&zone)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("zone `{zone}` has no executor here")))?;
    let shared = st.shared.clone();
    let id = rec.id.clone();
    let logs = blocking(move || {
        // The current run: a job admitted again after preemption or failover has a new run id.
        let attempt = crate::control::admissions(&shared.store.events(&id)?);
        Ok(crate::control::launch_id(id.as_str(), attempt))
    })
    .await?;
    let jid = logs;
    let logs = blocking(move || match exec.logs(&jid, tail) {
        Ok(l) => Ok(l),
        Err(tidegate_exec::ExecError::Unknown(_)) => Ok(String::new()),
        Err(e) => Err(ApiError::internal(e.to_string())),
    })
    .await?;
    Ok(Json(LogsView {
        job: rec.id.to_string(),
        logs,
    }))
}

/// Cancel a job that has not ended; a running job is stopped.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path, description = "Job id", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["cancel"])))]
async fn cancel_job(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let id = path_param(id, "id")?;
    let rec = load_job(&st, &id).await?;
    st.auth.authorize(&caller, Action::Cancel, &rec.team)?;
    let shared = st.shared.clone();
    let who = caller.subject().to_owned();
    let rec = blocking(move || {
        let mut rec = rec;
        // A concurrent change (the scheduler admitting it) moves the version: retry a few times.
        for _ in 0..5 {
            if rec.state.is_terminal() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("job `{}` already ended ({})", rec.id, rec.state),
                ));
            }
            let t = Transition::to(JobState::Cancelled, rec.version, Timestamp::now())
                .because(&format!("cancelled by {who}"));
            match shared.store.transition(&rec.id, t) {
                Ok(r) => return Ok(r),
                Err(tidegate_store::StoreError::VersionConflict { .. }) => {
                    rec = shared
                        .store
                        .get(&rec.id)?
                        .ok_or_else(|| ApiError::not_found("job vanished"))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the job keeps changing; retry",
        ))
    })
    .await?;
    st.shared.wake.notify();
    Ok(Json(JobView::from(&rec)))
}

/// Approve a job (approver of the job's team): recorded in the evidence ledger with the
/// approver as actor, and as a job event.
#[utoipa::path(post, path = "/v1/jobs/{id}/approve", request_body = ApproveRequest, params(("id" = String, Path, description = "Job id", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses((status = 200, body = JobDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = ["approve"])))]
async fn approve_job(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    id: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<ApproveRequest>, ApiError>,
) -> Result<Json<JobDetail>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let id = path_param(id, "id")?;
    let req = body(req)?;
    let rec = load_job(&st, &id).await?;
    st.auth.authorize(&caller, Action::Approve, &rec.team)?;
    if !matches!(req.scope.as_str(), "run" | "burst" | "export") {
        return Err(ApiError::invalid(
            "scope",
            format!("`{}` is not one of run, burst, export", req.scope),
        ));
    }
    let shared = st.shared.clone();
    let approver = caller.subject().to_owned();
    let events = blocking(move || {
        shared
            .evidence
            .approved(&rec.id, &approver, &req.scope)
            .map_err(|e| {
                ApiError::ledger_refused("the approval", Some(shared.evidence.storage()), &e)
            })?;
        shared.store.append_event(
            &rec.id,
            tidegate_store::EventDraft {
                kind: "approved".into(),
                reason: Some(format!("{} approved by {approver}", req.scope)),
                reason_code: None,
                details: serde_json::json!({"scope": req.scope, "approver": approver}),
                at: Timestamp::now(),
            },
        )?;
        let events = shared.store.events(&rec.id)?;
        Ok((rec, events))
    })
    .await?;
    let (rec, events) = events;
    Ok(Json(JobDetail {
        job: JobView::from(&rec),
        events: events.iter().map(EventView::from).collect(),
    }))
}

/// Zones, their pools, and how many jobs wait and run in each.
#[utoipa::path(get, path = "/v1/zones",
    responses((status = 200, body = [ZoneView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["observe"])))]
async fn list_zones(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ZoneView>>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    st.auth.authorize(&caller, Action::Observe, "")?;
    let shared = st.shared.clone();
    let (counts, conditions) =
        blocking(move || Ok((shared.store.counts()?, shared.store.zone_conditions()?))).await?;
    let rules = st.shared.rules();
    let views = rules
        .fleet
        .zones
        .iter()
        .map(|z| {
            let cond = conditions.iter().find(|c| c.zone == z.name);
            let count = |states: &[JobState]| {
                counts
                    .iter()
                    .filter(|c| {
                        c.zone.as_deref() == Some(z.name.as_str()) && states.contains(&c.state)
                    })
                    .map(|c| c.count)
                    .sum()
            };
            ZoneView {
                name: z.name.clone(),
                tier: z.tier.as_str().to_owned(),
                backend: z.backend.kind().to_owned(),
                pools: z
                    .pools
                    .iter()
                    .map(|p| PoolView {
                        name: p.name.clone(),
                        gpu_type: p.gpu_type.clone(),
                        gpus: p.gpus,
                    })
                    .collect(),
                queued: count(&[JobState::Queued]),
                running: count(&[JobState::Admitted, JobState::Running]),
                health: cond.map_or_else(|| "healthy".to_owned(), |c| c.health.clone()),
                throttled: cond.is_some_and(|c| c.throttled),
                condition_reason: cond.and_then(|c| c.reason.clone()),
            }
        })
        .collect();
    Ok(Json(views))
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

/// Put a new fleet and policy set in force (admin), as `tidegate fleet apply` and SIGHUP do:
/// validated whole, ledgered (`fleet.loaded`, `policy.loaded`), swapped in at once; queued and
/// running work is re-checked against it. A set that does not load changes nothing (422).
#[utoipa::path(post, path = "/v1/fleet", request_body = FleetApplyRequest,
    responses((status = 200, body = FleetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"),
        (status = 409, body = ErrorBody, description = "The change needs a restart"), (status = 422, body = ErrorBody, description = "The fleet or policy set does not load; the one in force stays"),
        (status = 503, body = ErrorBody)),
    security(("bearer" = ["administer"])))]
async fn apply_fleet(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Result<JsonObject<FleetApplyRequest>, ApiError>,
) -> Result<Json<FleetView>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let req = body(req)?;
    st.auth.authorize(&caller, Action::Administer, "")?;
    let shared = st.shared.clone();
    let dir = req.dir.map(std::path::PathBuf::from);
    let rules = blocking(move || {
        shared.reload(dir.as_deref()).map_err(|e| match e {
            crate::control::ReloadError::Invalid(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "fleet_invalid", m).field("dir")
            }
            crate::control::ReloadError::NeedsRestart(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", m).field("dir")
            }
            crate::control::ReloadError::Ledger(m) => {
                ApiError::ledger_refused("the fleet change", Some(shared.evidence.storage()), &m)
            }
            crate::control::ReloadError::Store(m) => {
                tracing::warn!(error = %m, "the store cannot record the fleet in force");
                ApiError::unavailable(
                    "the fleet change was refused: the store cannot record the fleet in force \
                     for now, so nothing was changed; retry later",
                )
            }
        })
    })
    .await?;
    Ok(Json(fleet_view(&st.shared, &rules)))
}

/// The fleet and policy set in force on this replica (`observe`).
#[utoipa::path(get, path = "/v1/fleet",
    responses((status = 200, body = FleetView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["observe"])))]
async fn get_fleet(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<FleetView>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    st.auth.authorize(&caller, Action::Observe, "")?;
    Ok(Json(fleet_view(&st.shared, &st.shared.rules())))
}

/// What the fleet answers show of the rules in force.
pub fn fleet_view(shared: &crate::control::Shared, rules: &crate::control::Rules) -> FleetView {
    FleetView {
        dir: shared
            .fleet_dir
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .display()
            .to_string(),
        fleet_hash: rules.fleet.fleet_hash.clone(),
        policy_hash: rules.policy.hash().to_owned(),
        generation: rules.generation,
        zones: rules.fleet.zones.len(),
        datasets: rules.fleet.datasets.len(),
    }
}

/// Set a zone's condition (admin): the scheduler applies the fleet's failure hierarchy to a
/// degraded or unreachable private zone and sheds per class when a provider throttles.
#[utoipa::path(post, path = "/v1/zones/{zone}/condition", request_body = ConditionRequest, params(("zone" = String, Path, description = "Zone name", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")),
    responses((status = 200, body = ZoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 404, body = ErrorBody)),
    security(("bearer" = ["administer"])))]
async fn set_zone_condition(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    zone: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<ConditionRequest>, ApiError>,
) -> Result<Json<ZoneView>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let zone = path_param(zone, "zone")?;
    let req = body(req)?;
    st.auth.authorize(&caller, Action::Administer, "")?;
    if st.shared.rules().fleet.zone(&zone).is_none() {
        return Err(ApiError::not_found(format!(
            "zone `{zone}` is not in the fleet"
        )));
    }
    if !tidegate_store::ZONE_HEALTH.contains(&req.health.as_str()) {
        return Err(ApiError::invalid(
            "health",
            format!(
                "`{}` is not one of healthy, degraded, unreachable",
                req.health
            ),
        ));
    }
    let cond = tidegate_store::ZoneCondition {
        zone: zone.clone(),
        health: req.health,
        throttled: req.throttled,
        reason: req
            .reason
            .map(|r| format!("{r} (set by {})", caller.subject())),
        updated_at: Timestamp::now(),
    };
    let shared = st.shared.clone();
    blocking(move || Ok(shared.store.set_zone_condition(&cond)?)).await?;
    st.shared.wake.notify();
    let Json(zones) = list_zones(State(st.clone()), headers).await?;
    zones
        .into_iter()
        .find(|z| z.name == zone)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("zone `{zone}`")))
}

/// A zone agent's sync (agent token for that zone): records its heartbeat and its reports,
/// answers with the zone's runs to start and stop. Agents connect out; nothing connects in.
#[utoipa::path(post, path = "/v1/agents/{zone}/sync", request_body = SyncRequest, params(("zone" = String, Path, description = "The agent's zone", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")),
    responses((status = 200, body = SyncResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 409, body = ErrorBody)),
    security(("bearer" = ["agent"])))]
async fn agent_sync(
    State(st): State<Arc<AppState>>,
    peer: crate::tls::Peer,
    headers: HeaderMap,
    zone: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<SyncRequest>, ApiError>,
) -> Result<Json<SyncResponse>, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let zone = path_param(zone, "zone")?;
    let req = body(req)?;
    st.auth.authorize(&caller, Action::Agent, &zone)?;
    // Under TLS the zone is the one the client certificate names, not only the path's.
    crate::tls::require_zone(st.tls.as_deref(), &peer, &zone)?;
    if !st.shared.agent_zones.contains(&zone) {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("zone `{zone}` is not run by an agent here (start the control plane with --agent-zone {zone})")));
    }
    if req.agent.trim().is_empty() || req.agent.len() > 128 {
        return Err(ApiError::invalid(
            "agent",
            "the agent name must be 1 to 128 characters",
        ));
    }
    let reports: Vec<tidegate_store::RunReport> = req
        .runs
        .into_iter()
        .map(|r| tidegate_store::RunReport {
            run_id: r.run_id,
            status: r.status,
            exit_code: r.exit_code,
            log_tail: r.log_tail,
        })
        .collect();
    let shared = st.shared.clone();
    let agent = req.agent;
    let (cancel, start) = blocking(move || {
        let work = shared.store.agent_sync(&zone, &agent, &reports, Timestamp::now(), 64)?;
        let (cancel, pending): (Vec<_>, Vec<_>) = work.into_iter().partition(|r| r.cancel);
        // Last line before a run starts in the zone: a run whose job is no longer placed there,
        // or whose placement the rules in force no longer allow, is withheld (the leader
        // withdraws it, ledgered, and places the job again).
        let mut start = Vec::with_capacity(pending.len());
        for run in pending {
            let pool = run.launch.get("pool").and_then(|p| p.as_str()).unwrap_or_default().to_owned();
            let verdict = match shared.store.get(&run.job_id)? {
                Some(rec) => crate::control::may_start(&shared, &rec, &zone, &pool),
                None => Err(tidegate_placement::Withdrawn::because(tidegate_placement::Reason::JobUnknown { job: run.job_id.to_string() })),
            };
            match verdict {
                Ok(()) => start.push(run.launch),
                Err(w) => {
                    tracing::warn!(run = %run.run_id, zone = %zone, reason = %w, "withheld a run from the zone's agent");
                    // A run whose job has left this placement (cancelled, ended, placed again)
                    // is marked stopped, so the agent reports it and it never starts.
                    if w.reasons.iter().any(tidegate_placement::Reason::is_about_the_job) {
                        shared.store.cancel_run(&run.run_id, Timestamp::now())?;
                    }
                }
            }
        }
        Ok((cancel, start))
    })
    .await?;
    st.shared.wake.notify();
    Ok(Json(SyncResponse {
        start,
        cancel: cancel.into_iter().map(|r| r.run_id).collect(),
    }))
}

/// A workload certificate for a zone's agent (agent token for that zone): the control plane's
/// certificate authority signs the agent's key for `spiffe://<trust-domain>/zone/{zone}`, valid
/// for the control plane's workload lifetime (1 h unless configured). Ledgered as a credential
/// issued (`token.issued`, id `x509:<serial>`, scope `role:agent`, `team:<zone>`) before it is
/// handed out. A caller that
/// presents a client certificate of another zone is refused (`403 zone_identity`); over plain
/// HTTP there is no authority (`409 no_authority`).
#[utoipa::path(post, path = "/v1/agents/{zone}/certificate", request_body = CertificateRequest, params(("zone" = String, Path, description = "The agent's zone", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")),
    responses((status = 201, body = CertificateResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 409, body = ErrorBody, description = "The zone is not run by an agent here, or the control plane serves plain HTTP (no certificate authority)"), (status = 503, body = ErrorBody)),
    security(("bearer" = ["agent"])))]
async fn agent_certificate(
    State(st): State<Arc<AppState>>,
    peer: crate::tls::Peer,
    headers: HeaderMap,
    zone: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<CertificateRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let zone = path_param(zone, "zone")?;
    let req = body(req)?;
    st.auth.authorize(&caller, Action::Agent, &zone)?;
    crate::tls::refuse_other_zone(&peer, &zone)?;
    let Some(tls) = st.tls.clone() else {
        return Err(ApiError::new(StatusCode::CONFLICT, "no_authority", "the control plane serves plain HTTP and has no certificate authority; restart it without --plain-http"));
    };
    if !st.shared.agent_zones.contains(&zone) {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("zone `{zone}` is not run by an agent here (start the control plane with --agent-zone {zone})")));
    }
    if req.csr.len() > 16 * 1024 {
        return Err(ApiError::invalid(
            "csr",
            "the certificate signing request is over 16 KiB",
        ));
    }
    let now = st.auth.now();
    let ttl = tls.workload_ttl.as_secs().max(1);
    let issued = tls
        .authority
        .issue_workload_for_csr(&req.csr, &zone, tidegate_pki::Validity::starting(now, ttl))
        .map_err(|e| match e {
            tidegate_pki::PkiError::Csr(_) => ApiError::invalid("csr", e.to_string()),
            other => ApiError::internal(other.to_string()),
        })?;
    let spiffe_id = issued.spiffe_id.clone().unwrap_or_default();
    let shared = st.shared.clone();
    let (issuer, credential, not_after) = (
        caller.subject().to_owned(),
        format!("x509:{}", issued.serial),
        issued.validity.not_after,
    );
    let zone_for_ledger = zone.clone();
    // Recorded before the certificate is handed out: one the ledger cannot record is not issued.
    blocking(move || {
        shared
            .evidence
            .token_issued(&issuer, &credential, not_after, "agent", &zone_for_ledger)
            .map_err(|e| {
                ApiError::ledger_refused("the certificate", Some(shared.evidence.storage()), &e)
            })
    })
    .await?;
    tracing::info!(zone = %zone, spiffe_id = %spiffe_id, serial = %issued.serial, not_after, "issued a workload certificate");
    Ok((
        StatusCode::CREATED,
        Json(CertificateResponse {
            certificate: issued.chain_pem,
            ca: tls.authority.cert_pem().to_owned(),
            spiffe_id,
            not_after,
            serial: issued.serial,
        }),
    )
        .into_response())
}

/// Mint a user token (admin only).
#[utoipa::path(post, path = "/v1/tokens", request_body = TokenRequest,
    responses((status = 201, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB")),
    security(("bearer" = ["administer"])))]
async fn mint_token(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Result<JsonObject<TokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let req = body(req)?;
    // The subject is the actor of every ledger entry the token's holder causes, the team a name
    // like every team: a token that names either wrongly is refused here, naming the field,
    // rather than issued to fail later.
    if let Err(e) = tidegate_ledger::Ident::new(req.subject.as_str()) {
        return Err(ApiError::invalid(
            "subject",
            format!("the subject cannot name an actor in the evidence ledger: {e}"),
        ));
    }
    if !tidegate_model::is_valid_name(&req.team) {
        return Err(ApiError::invalid(
            "team",
            format!(
                "`{}` is not a valid team name (lower-case letters, digits and '-', at most 63)",
                req.team
            ),
        ));
    }
    let role = Role::parse(&req.role).map_err(|e| ApiError::invalid("role", e.to_string()))?;
    st.auth.authorize(&caller, Action::Administer, &req.team)?;
    // A token minted here is never wider or longer-lived than the caller's own.
    let minutes = minted_minutes(&st, &caller, req.minutes)?;
    let token = st
        .auth
        .mint(&req.subject, role, &req.team, minutes)
        .map_err(|e| {
            if e.code == "invalid_request" {
                e.field("minutes")
            } else {
                e
            }
        })?;
    // Recorded before the token is handed out: a token the ledger cannot record is not issued.
    let (token_id, expires) = st.auth.token_id(&token)?;
    let shared = st.shared.clone();
    let (issuer, role_name, team) = (
        caller.subject().to_owned(),
        role.as_str().to_owned(),
        req.team.clone(),
    );
    blocking(move || {
        shared
            .evidence
            .token_issued(&issuer, &token_id, expires, &role_name, &team)
            .map_err(|e| ApiError::ledger_refused("the token", Some(shared.evidence.storage()), &e))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(TokenResponse { token, minutes })).into_response())
}

/// The lifetime a token minted by `caller` gets: what was asked (default 60 minutes), never
/// past the caller's own expiry; an attenuated caller mints nothing (its restrictions would not
/// carry over).
fn minted_minutes(
    st: &AppState,
    caller: &crate::auth::Caller,
    asked: Option<u32>,
) -> Result<u32, ApiError> {
    if caller.claims.blocks > 1 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an attenuated token cannot mint tokens: its restrictions would not carry over to them",
        )
        .field("Authorization"));
    }
    let left = u32::try_from(caller.claims.expires_at.saturating_sub(st.auth.now()) / 60)
        .unwrap_or(u32::MAX);
    let minutes = match asked {
        Some(m) if m > left => {
            return Err(ApiError::invalid(
                "minutes",
                format!(
                "the calling token expires in {left} minutes; a token it mints cannot outlive it"
            ),
            ))
        }
        Some(m) => m,
        None => 60.min(left),
    };
    if minutes == 0 {
        return Err(ApiError::invalid(
            "minutes",
            "the calling token expires within a minute; it mints nothing",
        ));
    }
    Ok(minutes)
}

/// Mint a job's scoped token (admin only). Each input must be data that may be held in the
/// zone (the floor and policy of placement); the token's issue is recorded in the evidence
/// ledger, about the job, before it is handed out.
#[utoipa::path(post, path = "/v1/tokens/job", request_body = JobTokenRequest,
    responses((status = 201, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Not an admin token, or an input may not be read in the zone"), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 503, body = ErrorBody, description = "The evidence ledger or the dataset registry cannot be used")),
    security(("bearer" = ["administer"])))]
async fn mint_job_token(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Result<JsonObject<JobTokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let req = body(req)?;
    if let Err(e) = tidegate_ledger::Ident::new(req.job.as_str()) {
        return Err(ApiError::invalid(
            "job",
            format!("the job cannot be named in the evidence ledger: {e}"),
        ));
    }
    if !tidegate_model::is_valid_name(&req.zone) {
        return Err(ApiError::invalid(
            "zone",
            format!("`{}` is not a valid zone name", req.zone),
        ));
    }
    if req.inputs.len() > MAX_JOB_TOKEN_INPUTS {
        return Err(ApiError::invalid(
            "inputs",
            format!(
                "{} inputs; a job token names at most {MAX_JOB_TOKEN_INPUTS}, each recorded in its ledger entry",
                req.inputs.len()
            ),
        ));
    }
    st.auth.authorize(&caller, Action::Administer, "admin")?;
    let minutes = minted_minutes(&st, &caller, req.minutes)?;
    let shared = st.shared.clone();
    let now = st.auth.now();
    let (zone, inputs) = (req.zone.clone(), req.inputs.clone());
    let input_subjects = blocking(move || {
        let rules = shared.rules();
        if !rules.fleet.zones.iter().any(|z| z.name == zone) {
            return Err(ApiError::invalid(
                "zone",
                format!("no zone `{zone}` in the fleet"),
            ));
        }
        let versions = shared.evidence.registered_versions().map_err(|e| match e {
            crate::evidence::RegistryRead::Unavailable(_) => ApiError::unavailable(e.to_string()),
            crate::evidence::RegistryRead::Refused(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("no token minted: {e}"),
            )
            .field("inputs"),
        })?;
        let store =
            tidegate_artifacts::ArtifactStore::open(shared.evidence.data_dir()).map_err(|e| {
                ApiError::unavailable(format!("the artifact store cannot be read: {e}"))
            })?;
        let checked = tidegate_data::holding::check_token_inputs(
            &rules.fleet,
            &rules.policy,
            &versions,
            &store,
            &inputs,
            &zone,
        )
        .map_err(|refused| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "no token minted: {} of its inputs may not be read in zone {zone}: {}",
                    refused.len(),
                    refused.join("; ")
                ),
            )
            .field("inputs")
        });
        checked?;
        crate::evidence::token_input_subjects(&inputs, &store)
            .map_err(|e| ApiError::invalid("inputs", e))
    })
    .await?;
    let spec = tidegate_identity::TokenSpec::Job {
        job_id: req.job.clone(),
        zone: req.zone.clone(),
        inputs: req.inputs.clone(),
        output_prefix: req.output_prefix.clone(),
        ttl_minutes: minutes,
    };
    let token = st.auth.mint_spec(&spec, now).map_err(|e| {
        if e.code == "invalid_request" {
            e.field("output_prefix")
        } else {
            e
        }
    })?;
    let (token_id, expires) = st.auth.token_id(&token)?;
    let shared = st.shared.clone();
    let issuer = caller.subject().to_owned();
    blocking(move || {
        let grant = crate::evidence::TokenGrant::Job {
            job: &req.job,
            zone: &req.zone,
            inputs: &req.inputs,
            output_prefix: &req.output_prefix,
            input_subjects: &input_subjects,
        };
        shared
            .evidence
            .job_token_issued(&issuer, &token_id, expires, &grant)
            .map_err(|e| ApiError::ledger_refused("the token", Some(shared.evidence.storage()), &e))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(TokenResponse { token, minutes })).into_response())
}

/// Revoke a token or a root key (admin only), in force at once: the keyring it leaves is
/// recorded in the evidence ledger (`key.changed`) before it is written, so the revocation is
/// what the ledger says, not what a file says.
#[utoipa::path(post, path = "/v1/tokens/revoke", request_body = RevokeRequest,
    responses((status = 200, body = RevokeResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 503, body = ErrorBody, description = "The evidence ledger cannot record it, or the keyring file differs from the one recorded")),
    security(("bearer" = ["administer"])))]
async fn revoke_token(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Result<JsonObject<RevokeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = st.auth.authenticate(&headers)?;
    let req = body(req)?;
    let what = match (req.revocation_id, req.root_key) {
        (Some(id), None) => {
            if id.len() < 2
                || id.len() > 256
                || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(ApiError::invalid(
                    "revocation_id",
                    "a revocation id is lower-case hex (`tidegate token inspect` prints it)",
                ));
            }
            crate::auth::Revocation::Token(id)
        }
        (None, Some(k)) if k >= 1 => crate::auth::Revocation::RootKey(k),
        (None, Some(_)) => return Err(ApiError::invalid("root_key", "root key ids start at 1")),
        _ => {
            return Err(ApiError::invalid(
                "revocation_id",
                "give exactly one of `revocation_id` and `root_key`",
            ))
        }
    };
    st.auth.authorize(&caller, Action::Administer, "admin")?;
    if caller.claims.blocks > 1 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an attenuated token cannot change the token keyring",
        )
        .field("Authorization"));
    }
    let shared = st.shared.clone();
    let state = st.clone();
    let actor = caller.subject().to_owned();
    let now = st.auth.now();
    let revoked = blocking(move || {
        let (key_id, change, revoked) = match &what {
            crate::auth::Revocation::Token(id) => {
                (id.clone(), "token-revoked", format!("token:{id}"))
            }
            crate::auth::Revocation::RootKey(k) => (
                format!("token-root-{k}"),
                "token-root-revoked",
                format!("root-key:{k}"),
            ),
        };
        state.auth.revoke(&what, now, |ring| {
            shared
                .evidence
                .token_keyring_changed(&actor, &key_id, change, ring)
                .map_err(|e| {
                    ApiError::ledger_refused("the revocation", Some(shared.evidence.storage()), &e)
                })
        })?;
        Ok(revoked)
    })
    .await?;
    Ok(Json(RevokeResponse { revoked }).into_response())
}
