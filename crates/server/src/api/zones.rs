//! Zones and the fleet: `/v1/zones` (their load), `/v1/zones/{zone}/condition` (an outage, a
//! drill, a throttling provider), `/v1/fleet` (the fleet and policy set in force).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use tidegate_api::{ConditionRequest, ErrorBody, FleetApplyRequest, FleetView, PoolView, ZoneView};
use tidegate_identity::Action;
use tidegate_store::{JobState, Timestamp};

use super::{blocking, body, path_param, JsonObject};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// Zones, their pools, and how many jobs wait and run in each.
#[utoipa::path(get, path = "/v1/zones",
    responses((status = 200, body = [ZoneView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["observe"])))]
pub(super) async fn list_zones(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<ZoneView>>, ApiError> {
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

/// Put a new fleet and policy set in force (admin), as `tidegate fleet apply` and SIGHUP do:
/// validated whole, ledgered (`fleet.loaded`, `policy.loaded`), swapped in at once; queued and
/// running work is re-checked against it. A set that does not load changes nothing (422).
#[utoipa::path(post, path = "/v1/fleet", request_body = FleetApplyRequest,
    responses((status = 200, body = FleetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody, description = "The body is over 2 MiB"),
        (status = 409, body = ErrorBody, description = "The change needs a restart"), (status = 422, body = ErrorBody, description = "The fleet or policy set does not load; the one in force stays"),
        (status = 503, body = ErrorBody)),
    security(("bearer" = ["administer"])))]
pub(super) async fn apply_fleet(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    req: Result<JsonObject<FleetApplyRequest>, ApiError>,
) -> Result<Json<FleetView>, ApiError> {
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
pub(super) async fn get_fleet(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<FleetView>, ApiError> {
    st.auth.authorize(&caller, Action::Observe, "")?;
    Ok(Json(fleet_view(&st.shared, &st.shared.rules())))
}

/// What the fleet answers show of the rules in force.
fn fleet_view(shared: &crate::control::Shared, rules: &crate::control::Rules) -> FleetView {
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
pub(super) async fn set_zone_condition(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    zone: Result<UrlPath<String>, PathRejection>,
    req: Result<JsonObject<ConditionRequest>, ApiError>,
) -> Result<Json<ZoneView>, ApiError> {
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
    let Json(zones) = list_zones(State(st.clone()), caller).await?;
    zones
        .into_iter()
        .find(|z| z.name == zone)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("zone `{zone}`")))
}
