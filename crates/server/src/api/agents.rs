//! Zone agents under `/v1/agents/{zone}`: the sync (heartbeat and reports in, runs to start
//! and stop out) and workload certificates.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidegate_api::{CertificateRequest, CertificateResponse, ErrorBody, SyncRequest, SyncResponse};
use tidegate_identity::Action;
use tidegate_store::Timestamp;

use super::{blocking, body, path_param, JsonObject};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// A zone agent's sync (agent token for that zone): records its heartbeat and its reports,
/// answers with the zone's runs to start and stop. Agents connect out; nothing connects in.
#[utoipa::path(post, path = "/v1/agents/{zone}/sync", request_body = SyncRequest, params(("zone" = String, Path, description = "The agent's zone", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")),
    responses((status = 200, body = SyncResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"), (status = 409, body = ErrorBody)),
    security(("bearer" = ["agent"])))]
pub(super) async fn agent_sync(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    peer: crate::tls::Peer,
    zone: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<SyncRequest>, ApiError>,
) -> Result<Json<SyncResponse>, ApiError> {
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
pub(super) async fn agent_certificate(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    peer: crate::tls::Peer,
    zone: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<CertificateRequest>, ApiError>,
) -> Result<Response, ApiError> {
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
