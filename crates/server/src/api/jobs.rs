//! Jobs under `/v1/jobs`: submit, list, read, logs, cancel, approve.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidegate_api::{
    ApproveRequest, ErrorBody, EventView, JobDetail, JobList, JobView, ListQuery, LogsQuery,
    LogsView, SubmitRequest, SubmitResponse, MAX_LOG_TAIL,
};
use tidegate_identity::Action;
use tidegate_model::{parse_job, LoadError};
use tidegate_store::{
    JobEvent, JobFilter, JobId, JobRecord, JobState, NewJob, PageRequest, Timestamp, Transition,
    MAX_PAGE_SIZE,
};

use super::{blocking, body, path_param, JsonObject};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// Longest manifest accepted, bytes.
const MAX_MANIFEST: usize = 256 * 1024;

/// A job as the API shows it.
fn job_view(r: &JobRecord) -> JobView {
    JobView {
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

/// One event of a job's history as the API shows it.
fn event_view(e: &JobEvent) -> EventView {
    EventView {
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
pub(super) async fn submit_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    req: Result<JsonObject<SubmitRequest>, ApiError>,
) -> Result<Response, ApiError> {
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
    if let Some(d) = spec.deadline {
        if d < tidegate_vocab::Timestamp::now() {
            let text = d
                .to_rfc3339()
                .unwrap_or_else(|_| format!("{} ms", d.millis()));
            return Err(ApiError::invalid(
                "manifest.spec.deadline",
                format!("deadline {text} has already passed"),
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
            job: job_view(&rec),
            replayed,
        }),
    )
        .into_response())
}

/// List jobs, one page at a time.
#[utoipa::path(get, path = "/v1/jobs", params(ListQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(super) async fn list_jobs(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
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
        jobs: page.jobs.iter().map(job_view).collect(),
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
pub(super) async fn get_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = path_param(id, "id")?;
    let rec = load_job(&st, &id).await?;
    st.auth.authorize(&caller, Action::Read, &rec.team)?;
    let shared = st.shared.clone();
    let jid = rec.id.clone();
    let events = blocking(move || Ok(shared.store.events(&jid)?)).await?;
    Ok(Json(JobDetail {
        job: job_view(&rec),
        events: events.iter().map(event_view).collect(),
    }))
}

/// The end of a job's output (from its zone's executor).
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", params(("id" = String, Path, description = "Job id", pattern = "^[A-Za-z0-9._-]{1,64}$"), LogsQuery),
    responses((status = 200, body = LogsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(super) async fn job_logs(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    id: Result<UrlPath<String>, PathRejection>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<LogsView>, ApiError> {
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
pub(super) async fn cancel_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
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
    Ok(Json(job_view(&rec)))
}

/// Approve a job (approver of the job's team): recorded in the evidence ledger with the
/// approver as actor, and as a job event.
#[utoipa::path(post, path = "/v1/jobs/{id}/approve", request_body = ApproveRequest, params(("id" = String, Path, description = "Job id", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses((status = 200, body = JobDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = ["approve"])))]
pub(super) async fn approve_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    id: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<ApproveRequest>, ApiError>,
) -> Result<Json<JobDetail>, ApiError> {
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
        job: job_view(&rec),
        events: events.iter().map(event_view).collect(),
    }))
}
