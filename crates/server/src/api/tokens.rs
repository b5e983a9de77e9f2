//! Tokens under `/v1/tokens`: minting a user or a job token, revoking a token or a root key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidegate_api::{
    ErrorBody, JobTokenRequest, RevokeRequest, RevokeResponse, TokenRequest, TokenResponse,
    MAX_JOB_TOKEN_INPUTS,
};
use tidegate_identity::{Action, Role};

use super::{blocking, body, JsonObject};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

// A job token's `token.issued` entry is about the token, the job, its zone and each input: the
// API's bound on inputs is the ledger's bound on an entry's subjects, less those three.
const _: () = assert!(MAX_JOB_TOKEN_INPUTS == tidegate_ledger::entry::MAX_SUBJECTS - 3);

/// Mint a user token (admin only).
#[utoipa::path(post, path = "/v1/tokens", request_body = TokenRequest,
    responses((status = 201, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB")),
    security(("bearer" = ["administer"])))]
pub(super) async fn mint_token(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    req: Result<JsonObject<TokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
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
pub(super) async fn mint_job_token(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    req: Result<JsonObject<JobTokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
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
pub(super) async fn revoke_token(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    req: Result<JsonObject<RevokeRequest>, ApiError>,
) -> Result<Response, ApiError> {
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
