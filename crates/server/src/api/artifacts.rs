//! Artifacts under `/v1/artifacts`: store, list, read, verify and promote artifacts in the
//! control plane's data directory — the operations `tidegate artifact` runs directly on a data
//! directory (`tidegate_artifacts::ops`), here with the store's evidence sink writing into the
//! control plane's own evidence ledger ([`crate::evidence::Evidence`]).
//!
//! Access: an artifact belongs to the team it was stored for (its `team` label). Storing needs
//! `submit` for that team, listing, reading and verifying need `read`, promoting needs
//! `approve`; an artifact without a team (stored directly on the data directory) is an
//! administrator's. Reading content also accepts a scoped job token instead of a user token: with
//! `?zone=ZONE`, the bearer token is checked offline as a job token that must grant reading
//! `<kind>:<digest>` from that zone, exactly as `tidegate artifact get --token` does, and every
//! use and refusal is recorded.
//!
//! Invariant: an artifact event through the API (a store, a token use or refusal, a promotion or
//! its refusal) is in the evidence ledger before its effect; a ledger that cannot record it
//! refuses the request (503) and nothing changes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidegate_artifacts::gates::Stage;
use tidegate_artifacts::ledger_sink::{EntryWriter, LedgerSink};
use tidegate_artifacts::{
    ops, ArtifactError, ArtifactKind, ArtifactRecord, ArtifactStore, Digest, Lane, PutOptions,
    VerifyReport,
};
use tidegate_identity::Action;

use tidegate_api::{
    ArtifactList, ArtifactView, ErrorBody, GetArtifactQuery, ListArtifactsQuery, PromoteRequest,
    PromoteResponse, PutQuery, StatementView, VerifyView, MAX_ARTIFACT_BYTES, TEAM_LABEL,
};

use super::{blocking, body, path_param, JsonObject};
use crate::auth::Caller;
use crate::control::Shared;
use crate::error::ApiError;
use crate::AppState;

/// The tag of the artifact operations in the OpenAPI document (the only operations with one),
/// kept as clients have seen it.
const ARTIFACTS_TAG: &str = "crate::artifacts_api";

// ---------- plumbing ----------

/// An artifact as the API shows it, at `stage`.
fn artifact_view(r: &ArtifactRecord, stage: Stage) -> ArtifactView {
    ArtifactView {
        digest: r.digest.to_string(),
        kind: r.kind.as_str().to_owned(),
        size: r.size,
        name: r.name.clone(),
        lane: r.lane.as_str().to_owned(),
        sensitive: r.sensitive,
        team: r.labels.get(TEAM_LABEL).cloned(),
        labels: r.labels.clone(),
        stage: stage.as_str().to_owned(),
        created_at: r.created_at,
        classification: r
            .classification
            .as_ref()
            .map(tidegate_artifacts::ArtifactClass::describe),
    }
}

/// The artifact store of the control plane's data directory, recording into its evidence ledger
/// with entries stamped `now`.
fn open_store(shared: &Shared, now: u64) -> Result<ArtifactStore, ApiError> {
    let dir = shared.evidence.data_dir();
    let store = ArtifactStore::open(dir).map_err(artifact_error)?;
    let writer: Arc<dyn EntryWriter> = shared.evidence.clone();
    let sink = LedgerSink::new(dir, writer, now).map_err(artifact_error)?;
    Ok(store.with_event_sink(Box::new(sink)))
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse::<Digest>()
        .map_err(|e| ApiError::invalid("digest", e.to_string()))
}

/// A team named in a request is a team name (what teams are named in the fleet and in tokens):
/// anything else is refused, naming the field, before it reaches storage.
fn check_team(team: &str) -> Result<(), ApiError> {
    if tidegate_model::is_valid_name(team) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "team",
        format!(
            "`{}` is not a valid team name (lower-case letters, digits and '-', at most 63)",
            team.chars().take(80).collect::<String>()
        ),
    ))
}

fn team_of(r: &ArtifactRecord) -> &str {
    r.labels.get(TEAM_LABEL).map_or("", String::as_str)
}

/// The API error for an artifact error: a stable code per failure, the artifact named.
fn artifact_error(e: ArtifactError) -> ApiError {
    let message = e.to_string();
    match e {
        ArtifactError::InvalidDigest(_) => ApiError::invalid("digest", message),
        ArtifactError::NotFound(_) => ApiError::not_found(message),
        ArtifactError::Tampered { .. } => {
            ApiError::new(StatusCode::CONFLICT, "artifact_tampered", message)
        }
        ArtifactError::Shredded(_) => ApiError::new(StatusCode::GONE, "artifact_shredded", message),
        ArtifactError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        ArtifactError::TokenRefused { code, .. } => match code {
            "token-expired" => ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", message)
                .field("Authorization"),
            "token-request-denied" => {
                ApiError::new(StatusCode::FORBIDDEN, "token_not_granted", message)
                    .field("Authorization")
            }
            tidegate_artifacts::access::ZONE_NOT_ALLOWED => {
                ApiError::new(StatusCode::FORBIDDEN, "zone_not_allowed", message).field("zone")
            }
            "token-invalid-spec" => ApiError::invalid("zone", message),
            "token-invalid-keyring" => {
                ApiError::unavailable(format!("token keys are unusable: {message}"))
            }
            "token-library-error" => ApiError::internal(message),
            _ => ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
                .field("Authorization"),
        },
        ArtifactError::Unauthorized(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
        }
        ArtifactError::Key(_) | ArtifactError::Signature(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "verification_failed",
            message,
        ),
        ArtifactError::Invalid(_) => ApiError::invalid("body", message),
        ArtifactError::PromotionRefused { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "promotion_refused",
            message,
        ),
        ArtifactError::Evidence(_) => {
            ApiError::ledger_refused("the artifact operation", None, &message)
        }
        // Temporary: a full disk, an I/O error, object storage or key management that cannot be
        // reached. The error names files and endpoints: it goes to the log, not to the caller.
        ArtifactError::Io { .. }
        | ArtifactError::Backend(_)
        | ArtifactError::Kms(_)
        | ArtifactError::NotStored { .. } => {
            tracing::warn!(error = %message, "artifact storage is unavailable");
            ApiError::unavailable(
                "artifact storage cannot be read or written for now (out of space, an I/O error \
                 or a backend that cannot be reached); nothing was changed, retry later",
            )
        }
        ArtifactError::Policy(_) => {
            tracing::error!(error = %message, "the promotion policy is invalid");
            ApiError::internal(
                "the promotion policy cannot be evaluated; the details are in the server's log",
            )
        }
    }
}

fn refuse_while_draining(st: &AppState) -> Result<(), ApiError> {
    if st.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the server is shutting down; retry on another replica",
        ));
    }
    Ok(())
}

/// Reads the record of `digest` (404 when absent).
async fn load_record(st: &Arc<AppState>, digest: &Digest) -> Result<ArtifactRecord, ApiError> {
    let shared = st.shared.clone();
    let digest = digest.clone();
    blocking(move || {
        ArtifactStore::open(shared.evidence.data_dir())
            .and_then(|s| s.record(&digest))
            .map_err(artifact_error)
    })
    .await
}

/// `LEVEL` or `LEVEL/TAG,TAG`, ranked by the fleet's scheme.
fn parse_classification(
    text: &str,
    scheme: &tidegate_model::Scheme,
) -> Result<tidegate_model::Classification, ApiError> {
    tidegate_data::holding::parse_classification(text, scheme)
        .map_err(|e| ApiError::invalid("classification", e))
}

/// The effective classification of job `id` of `team` (its inputs and labels, under the fleet
/// and datasets in force), joined with what the caller declared.
fn job_classification(
    shared: &Shared,
    id: &str,
    team: &str,
    declared: Option<&tidegate_model::Classification>,
) -> Result<tidegate_model::Classification, ApiError> {
    let job_id =
        tidegate_store::JobId::new(id).map_err(|e| ApiError::invalid("job", e.to_string()))?;
    let rec = shared
        .store
        .get(&job_id)?
        .ok_or_else(|| ApiError::invalid("job", format!("no job `{id}`")))?;
    let rules = shared.rules();
    let spec = crate::control::stored_spec(&rec, &rules.fleet).map_err(|e| {
        ApiError::unavailable(format!(
            "job {id}'s manifest no longer loads, so its artifact cannot be classified: {e}"
        ))
    })?;
    if spec.team != team {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("job `{id}` is not a job of team {team}"),
        )
        .field("job"));
    }
    let profile = tidegate_model::JobProfile::resolve(&spec, &rules.fleet)
        .map_err(|e| ApiError::unavailable(format!("job {id} cannot be classified: {e}")))?;
    Ok(match declared {
        Some(d) => profile.effective.join(d, &rules.fleet.scheme),
        None => profile.effective,
    })
}

fn parse_put_query(
    pairs: Vec<(String, String)>,
) -> Result<(PutQuery, BTreeMap<String, String>), ApiError> {
    let mut q = PutQuery::default();
    let mut kind = None;
    let mut labels = BTreeMap::new();
    for (key, value) in pairs {
        match key.as_str() {
            "kind" => kind = Some(value),
            "lane" => q.lane = Some(value),
            "name" => q.name = Some(value),
            "team" => q.team = Some(value),
            "job" => q.job = Some(value),
            "classification" => q.classification = Some(value),
            "sensitive" => {
                q.sensitive = Some(value.parse().map_err(|_| {
                    ApiError::invalid("sensitive", format!("`{value}` is not true or false"))
                })?);
            }
            "label" => {
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    ApiError::invalid("label", format!("expected KEY=VALUE, got `{value}`"))
                })?;
                if k == TEAM_LABEL {
                    return Err(ApiError::invalid(
                        "label",
                        "the team is set with the `team` parameter, not a label",
                    ));
                }
                labels.insert(k.to_owned(), v.to_owned());
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown query parameter `{other}`"),
                ))
            }
        }
    }
    q.kind = kind.ok_or_else(|| {
        ApiError::invalid(
            "kind",
            "the artifact kind is required: ?kind=model (or checkpoint, dataset-snapshot, ...)",
        )
    })?;
    Ok((q, labels))
}

fn view(store: &ArtifactStore, r: &ArtifactRecord) -> Result<ArtifactView, ApiError> {
    let stage =
        tidegate_artifacts::gates::current_stage(store, &r.digest).map_err(artifact_error)?;
    Ok(artifact_view(r, stage))
}

fn verify_view(store: &ArtifactStore, report: &VerifyReport) -> Result<VerifyView, ApiError> {
    Ok(VerifyView {
        artifact: view(store, &report.record)?,
        verified: true,
        statements: report
            .statements
            .iter()
            .map(|s| StatementView {
                predicate_type: s.statement.predicate_type.clone(),
                keyids: s.keyids.clone(),
                owners: s.owners.clone(),
                roles: s.roles.clone(),
                signed_at: s.signed_at,
            })
            .collect(),
        provenance: report.provenance().map(|p| p.statement.predicate.clone()),
    })
}

fn content_response(record: &ArtifactRecord, content: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, content).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&record.digest.to_string()) {
        headers.insert("x-tidegate-digest", v);
    }
    headers.insert(
        "x-tidegate-kind",
        HeaderValue::from_static(record.kind.as_str()),
    );
    resp
}

// ---------- handlers ----------

/// Store the request body as an immutable, encrypted, content-addressed artifact for a team
/// (`submit`). Its `artifact.stored` entry is in the evidence ledger before the content is
/// written; storing the same content again returns the existing record.
#[utoipa::path(post, path = "/v1/artifacts", tag = ARTIFACTS_TAG,
    params(PutQuery, ("label" = Option<Vec<String>>, Query, description = "A label `KEY=VALUE` (repeatable; the team is set with `team`)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The content (at most 256 MiB)"),
    responses((status = 201, body = ArtifactView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = ["submit"])))]
pub(super) async fn put_artifact(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    refuse_while_draining(&st)?;
    let Query(pairs) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let (q, mut labels) = parse_put_query(pairs)?;
    let kind: ArtifactKind = q
        .kind
        .parse()
        .map_err(|e: ArtifactError| ApiError::invalid("kind", e.to_string()))?;
    let lane: Lane = q
        .lane
        .as_deref()
        .unwrap_or("production")
        .parse()
        .map_err(|e: ArtifactError| ApiError::invalid("lane", e.to_string()))?;
    if kind == ArtifactKind::Checkpoint && q.job.is_none() {
        return Err(ApiError::invalid("job", "a checkpoint is produced by a job: name it with ?job=ID (`tidegate checkpoint push` does, from TIDEGATE_JOB_ID), so it inherits the job's classification"));
    }
    // An artifact produced by a job belongs to the job's team unless another is named.
    let job_team = match (&q.team, &q.job) {
        (None, Some(id)) => {
            let shared = st.shared.clone();
            let job_id = tidegate_store::JobId::new(id)
                .map_err(|e| ApiError::invalid("job", e.to_string()))?;
            blocking(move || Ok(shared.store.get(&job_id)?.map(|r| r.team))).await?
        }
        _ => None,
    };
    let team = q
        .team
        .or(job_team)
        .unwrap_or_else(|| caller.team().to_owned());
    if team.is_empty() {
        return Err(ApiError::invalid(
            "team",
            "name the team the artifact is stored for: ?team=NAME",
        ));
    }
    check_team(&team)?;
    st.auth.authorize(&caller, Action::Submit, &team)?;
    // Read the body only once the caller may store, and to a file as it arrives: memory stays
    // bounded whatever its size, and nothing is spooled for strangers.
    let spool_dir = crate::spool::dir_of(st.shared.evidence.data_dir());
    let content = crate::spool::spool(body, &spool_dir, MAX_ARTIFACT_BYTES as u64).await?;
    labels.insert(TEAM_LABEL.to_owned(), team.clone());
    let declared = q
        .classification
        .as_deref()
        .map(|c| parse_classification(c, &st.shared.rules().fleet.scheme))
        .transpose()?;
    let now = st.auth.now();
    let shared = st.shared.clone();
    let (name, sensitive, job) = (
        q.name.unwrap_or_default(),
        q.sensitive.unwrap_or(false),
        q.job,
    );
    let view = blocking(move || {
        let classification = match &job {
            Some(id) => Some(job_classification(&shared, id, &team, declared.as_ref())?),
            None => declared,
        };
        if let Some(id) = &job {
            labels.insert("job".to_owned(), id.clone());
        }
        let rules = shared.rules();
        let scheme = &rules.fleet.scheme;
        let mut reader = std::fs::File::open(content.path()).map_err(|e| {
            tracing::error!(error = %e, "cannot read a spooled upload");
            ApiError::unavailable("the upload cannot be read back for now; retry later")
        })?;
        tidegate_data::holding::check_claim_reader(
            kind,
            classification.as_ref(),
            scheme,
            &mut reader,
        )
        .map_err(|e| ApiError::invalid("classification", e))?;
        let sensitive = sensitive
            || classification
                .as_ref()
                .is_none_or(|c| scheme.private_only(c));
        let options = PutOptions {
            name,
            lane,
            sensitive,
            labels,
            classification: classification.map(|c| tidegate_data::holding::class_of(&c, scheme)),
        };
        let store = open_store(&shared, now)?;
        let mut reader = std::fs::File::open(content.path()).map_err(|e| {
            tracing::error!(error = %e, "cannot read a spooled upload");
            ApiError::unavailable("the upload cannot be read back for now; retry later")
        })?;
        let (digest, _) = Digest::of_reader(&mut reader).map_err(|e| {
            tracing::error!(error = %e, "cannot read a spooled upload");
            ApiError::unavailable("the upload cannot be read back for now; retry later")
        })?;
        // Bytes another team stored first are answered as new content for this team, and this
        // team holds them too: nothing tells it they were there ([`crate::holdings`]).
        let owner = match store.record(&digest) {
            Ok(existing) => Some(existing),
            Err(ArtifactError::NotFound(_)) => None,
            Err(e) => return Err(artifact_error(e)),
        };
        if owner.as_ref().is_none_or(|o| team_of(o) == team) {
            let rec = store
                .put_file(content.path(), kind, &options, now)
                .map_err(artifact_error)?;
            if team_of(&rec) == team {
                return view(&store, &rec);
            }
            // Another team stored the same bytes in the meantime: held, as below.
            return hold(&store, &rec, content.len(), kind, options, now);
        }
        match owner {
            Some(o) => hold(&store, &o, content.len(), kind, options, now),
            None => Err(ApiError::internal(
                "artifact record vanished while it was stored",
            )),
        }
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Records that the team in `options`' labels holds `content`, whose record `owner` belongs to
/// another team, and answers as a new artifact of its own would be: the same `artifact.stored`
/// entry in the ledger first, then the team's own record, at stage `candidate`. A team that
/// already holds it gets its record back, or the same conflict as for its own artifact when the
/// kind or lane differ.
fn hold(
    store: &ArtifactStore,
    owner: &ArtifactRecord,
    size: u64,
    kind: ArtifactKind,
    options: PutOptions,
    now: u64,
) -> Result<ArtifactView, ApiError> {
    let dir = store.data_dir();
    let team = options.labels.get(TEAM_LABEL).cloned().unwrap_or_default();
    if let Some(held) = crate::holdings::get(dir, &owner.digest, &team)? {
        if held.kind != kind || held.lane != options.lane {
            return Err(artifact_error(ArtifactError::Conflict {
                digest: held.digest.clone(),
                existing: format!("{} in lane {}", held.kind, held.lane.as_str()),
            }));
        }
        return Ok(artifact_view(&held, Stage::Candidate));
    }
    store
        .record_event(&tidegate_artifacts::events::ArtifactEvent::Put {
            digest: owner.digest.clone(),
            kind: kind.to_string(),
            classification: options
                .classification
                .as_ref()
                .map(tidegate_artifacts::ArtifactClass::ident),
            lane: options.lane.as_str().to_owned(),
            sensitive: options.sensitive,
            at: now,
        })
        .map_err(artifact_error)?;
    let rec = ArtifactRecord {
        digest: owner.digest.clone(),
        kind,
        size,
        name: options.name,
        lane: options.lane,
        sensitive: options.sensitive,
        labels: options.labels,
        created_at: now,
        encryption: owner.encryption.clone(),
        key_manager: owner.key_manager.clone(),
        classification: options.classification,
    };
    crate::holdings::put(dir, &rec)?;
    Ok(artifact_view(&rec, Stage::Candidate))
}

/// The record of `digest` as `caller` may see it: the owner's when the caller may `action` for
/// the owner's team, else the caller's team's own holding of the same bytes. Neither is the
/// same answer as for a digest nobody stored (404), so nothing says another team holds it; a
/// caller who may not `action` for its own team either is refused as usual (403).
async fn record_for(
    st: &Arc<AppState>,
    caller: &Caller,
    action: Action,
    digest: &Digest,
) -> Result<(ArtifactRecord, bool), ApiError> {
    let record = load_record(st, digest).await?;
    if st.auth.authorize(caller, action, team_of(&record)).is_ok() {
        return Ok((record, true));
    }
    st.auth.authorize(caller, action, caller.team())?;
    let (shared, digest, team) = (st.shared.clone(), digest.clone(), caller.team().to_owned());
    let held =
        blocking(move || crate::holdings::get(shared.evidence.data_dir(), &digest, &team)).await?;
    match held {
        Some(h) => Ok((h, false)),
        None => Err(artifact_error(ArtifactError::NotFound(record.digest))),
    }
}

/// List stored artifacts with kind, stage, lane, size and team (`read` for the team).
#[utoipa::path(get, path = "/v1/artifacts", tag = ARTIFACTS_TAG, params(ListArtifactsQuery),
    responses((status = 200, body = ArtifactList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(super) async fn list_artifacts(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    q: Result<Query<ListArtifactsQuery>, QueryRejection>,
) -> Result<Json<ArtifactList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    if let Some(t) = &q.team {
        check_team(t)?;
    }
    let team = match q.team {
        Some(t) => Some(t),
        None if caller.is_admin() => None,
        None => Some(caller.team().to_owned()),
    };
    st.auth
        .authorize(&caller, Action::Read, team.as_deref().unwrap_or(""))?;
    let shared = st.shared.clone();
    let now = st.auth.now();
    let artifacts = blocking(move || {
        let store = open_store(&shared, now)?;
        let all = ops::list_with_stages(&store).map_err(artifact_error)?;
        let mut views: Vec<ArtifactView> = all
            .iter()
            .filter(|(r, _)| team.as_deref().is_none_or(|t| team_of(r) == t))
            .map(|(r, stage)| artifact_view(r, *stage))
            .collect();
        // A team's holdings of bytes another team stored first are its artifacts too.
        if let Some(t) = team.as_deref() {
            let mut held = crate::holdings::of_team(shared.evidence.data_dir(), t)?;
            held.sort_by(|a, b| (a.created_at, &a.digest).cmp(&(b.created_at, &b.digest)));
            views.extend(held.iter().map(|r| artifact_view(r, Stage::Candidate)));
        }
        Ok(views)
    })
    .await?;
    Ok(Json(ArtifactList { artifacts }))
}

/// The verified content of an artifact (`application/octet-stream`): decrypted, authenticated
/// and re-hashed to its digest; models and checkpoints must also carry signed provenance. Either
/// a user token with `read` for the artifact's team, or — with `?zone=ZONE` — a scoped job token
/// granting `<kind>:<digest>` from that zone, checked offline; each job-token use and refusal is
/// in the evidence ledger (`token.used`, `token.refused`) before the answer.
#[utoipa::path(get, path = "/v1/artifacts/{digest}", tag = ARTIFACTS_TAG, params(("digest" = String, Path, description = "sha256:<hex>", pattern = "^sha256:[0-9a-f]{64}$"), GetArtifactQuery),
    responses((status = 200, description = "The verified content", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The stored object is tampered"), (status = 410, body = ErrorBody, description = "Crypto-shredded"),
        (status = 422, body = ErrorBody, description = "Provenance missing or not verifiable"), (status = 503, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(super) async fn get_artifact(
    State(st): State<Arc<AppState>>,
    peer: crate::tls::Peer,
    headers: HeaderMap,
    digest: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<GetArtifactQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    // The one route that takes no `Caller`: the query says which token the bearer is (a job's
    // with `zone`, checked offline below, else a user's, authenticated as `Caller` is); one that
    // does not parse is told only to a caller with a user token.
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            st.auth.authenticate(&headers)?;
            return Err(ApiError::invalid("query", e.body_text()));
        }
    };
    let now = st.auth.now();
    let shared = st.shared.clone();
    if let Some(zone) = q.zone {
        // A job's read: the bearer token is a scoped job token, checked offline; the zone is
        // proven by its agent's token, and the artifact must be data that may be in that zone.
        let token = crate::auth::bearer(&headers)?.to_owned();
        st.auth.authenticate_zone(&headers, &zone)?;
        // A caller presenting another zone's workload certificate is not this zone.
        crate::tls::refuse_other_zone(&peer, &zone)?;
        let digest = path_param(digest, "digest")?;
        let digest = parse_digest(&digest)?;
        let verifier = st.auth.verifier()?;
        let (record, content) = blocking(move || {
            let store = open_store(&shared, now)?;
            let versions = shared.evidence.registered_versions().map_err(|e| match e {
                crate::evidence::RegistryRead::Unavailable(_) => {
                    ApiError::unavailable(e.to_string())
                }
                crate::evidence::RegistryRead::Refused(_) => {
                    ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
                }
            })?;
            let rules = shared.rules();
            let admit = |r: &tidegate_artifacts::ArtifactRecord, z: &str| {
                tidegate_data::holding::admit(&rules.fleet, &rules.policy, &versions, &store, r, z)
            };
            ops::read_with_job_token(&store, &verifier, &admit, &token, &digest, &zone, now)
                .map_err(artifact_error)
        })
        .await?;
        return Ok(content_response(&record, content));
    }
    let caller = st.auth.authenticate(&headers)?;
    let digest = path_param(digest, "digest")?;
    let digest = parse_digest(&digest)?;
    let (shown, _) = record_for(&st, &caller, Action::Read, &digest).await?;
    let (_, content) = blocking(move || {
        let store = open_store(&shared, now)?;
        ops::read_verified(&store, &digest, now).map_err(artifact_error)
    })
    .await?;
    Ok(content_response(&shown, content))
}

/// Verify an artifact (`read` for its team): content integrity and every attached signature
/// against the data directory's keyring; a failure names what is tampered or unsigned.
#[utoipa::path(get, path = "/v1/artifacts/{digest}/verify", tag = ARTIFACTS_TAG, params(("digest" = String, Path, description = "sha256:<hex>", pattern = "^sha256:[0-9a-f]{64}$")),
    responses((status = 200, body = VerifyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The stored object is tampered"),
        (status = 410, body = ErrorBody, description = "Crypto-shredded"), (status = 422, body = ErrorBody, description = "A signature or the provenance does not verify")),
    security(("bearer" = ["read"])))]
pub(super) async fn verify_artifact(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    digest: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<VerifyView>, ApiError> {
    let digest = path_param(digest, "digest")?;
    let digest = parse_digest(&digest)?;
    let (record, owned) = record_for(&st, &caller, Action::Read, &digest).await?;
    if !owned {
        // Attestations and stages belong to the owner's record: not shown to another holder.
        return Err(artifact_error(ArtifactError::NotFound(record.digest)));
    }
    let now = st.auth.now();
    let shared = st.shared.clone();
    let view = blocking(move || {
        let store = open_store(&shared, now)?;
        let report = ops::verify(&store, &digest, now).map_err(artifact_error)?;
        verify_view(&store, &report)
    })
    .await?;
    Ok(Json(view))
}

/// Promote an artifact to the next stage through the Cedar promotion gates (`approve` for its
/// team). A refusal (422 `promotion_refused`) names each missing piece of evidence and is
/// recorded as `artifact.promotion_refused`; an allowed promotion is recorded as
/// `artifact.promoted` before the stage changes.
#[utoipa::path(post, path = "/v1/artifacts/{digest}/promote", tag = ARTIFACTS_TAG, request_body = PromoteRequest, params(("digest" = String, Path, description = "sha256:<hex>", pattern = "^sha256:[0-9a-f]{64}$")),
    responses((status = 200, body = PromoteResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "Refused by the gates: the missing evidence is named"),
        (status = 503, body = ErrorBody)),
    security(("bearer" = ["approve"])))]
pub(super) async fn promote_artifact(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    digest: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
    req: Result<JsonObject<PromoteRequest>, ApiError>,
) -> Result<Json<PromoteResponse>, ApiError> {
    let digest = path_param(digest, "digest")?;
    refuse_while_draining(&st)?;
    let req = body(req)?;
    let digest = parse_digest(&digest)?;
    let (record, owned) = record_for(&st, &caller, Action::Approve, &digest).await?;
    if !owned {
        // The owner's stage is the owner's to change.
        return Err(artifact_error(ArtifactError::NotFound(record.digest)));
    }
    let to: Stage = req
        .to
        .parse()
        .map_err(|e: ArtifactError| ApiError::invalid("to", e.to_string()))?;
    let actor = match req.actor {
        Some(a) if a != caller.subject() && !caller.is_admin() => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} may only promote as themselves, not as `{a}`",
                    caller.subject()
                ),
            )
            .field("actor"));
        }
        Some(a) => a,
        None => caller.subject().to_owned(),
    };
    tidegate_ledger::Ident::new(&actor).map_err(|e| {
        ApiError::invalid(
            "actor",
            format!("`{actor}` cannot be recorded as the actor: {e}"),
        )
    })?;
    let now = st.auth.now();
    let shared = st.shared.clone();
    let rec = blocking(move || {
        let store = open_store(&shared, now)?;
        ops::promote(&store, &digest, to, &actor, now).map_err(artifact_error)
    })
    .await?;
    Ok(Json(PromoteResponse {
        digest: rec.digest.to_string(),
        from: rec.from.as_str().to_owned(),
        stage: rec.to.as_str().to_owned(),
        actor: rec.actor,
        policy_hash: rec.policy_hash.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_ledger_that_cannot_record_refuses_with_503() {
        let e = artifact_error(ArtifactError::Evidence(
            "the evidence ledger refused the entry: closed".into(),
        ));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "unavailable");
        assert!(e.message.contains("nothing was changed"), "{}", e.message);
    }

    #[test]
    fn a_full_disk_under_artifacts_is_unavailable_and_names_no_path() {
        let e = artifact_error(ArtifactError::Io {
            path: "/var/lib/tidegate/artifacts/blobs/ab/cd".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert!(!e.message.contains("/var/lib"), "{}", e.message);
    }

    #[test]
    fn token_refusals_keep_their_meaning() {
        let refused = |code| ArtifactError::TokenRefused {
            resource: "model:sha256:00".into(),
            code,
            reason: "why".into(),
        };
        let e = artifact_error(refused("token-expired"));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNAUTHORIZED, "token_expired")
        );
        let e = artifact_error(refused("token-request-denied"));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, "token_not_granted")
        );
        let e = artifact_error(refused("token-revoked"));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
    }

    #[test]
    fn put_parameters_are_checked() {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>()
        };
        let (q, labels) = parse_put_query(pairs(&[
            ("kind", "model"),
            ("label", "run=7"),
            ("sensitive", "true"),
        ]))
        .unwrap();
        assert_eq!(q.kind, "model");
        assert_eq!(q.sensitive, Some(true));
        assert_eq!(labels.get("run").map(String::as_str), Some("7"));
        assert_eq!(
            parse_put_query(pairs(&[("lane", "production")]))
                .unwrap_err()
                .field
                .as_deref(),
            Some("kind")
        );
        assert_eq!(
            parse_put_query(pairs(&[("kind", "model"), ("label", "team=x")]))
                .unwrap_err()
                .field
                .as_deref(),
            Some("label")
        );
        assert_eq!(
            parse_put_query(pairs(&[("kind", "model"), ("colour", "red")]))
                .unwrap_err()
                .field
                .as_deref(),
            Some("colour")
        );
    }
}
