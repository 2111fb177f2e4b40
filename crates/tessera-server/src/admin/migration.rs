//! `/admin/v1/migration`: the rollout of the migration from legacy session cookies — its status with this node's
//! measurements, a change (refused while the current phase's gate does not hold, unless forced), and the kill
//! switch. `tessera migrate` is a client of these.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tessera_migration::{Health, Phase, Rollout, Segment, SetError};

use super::{authorize, authorized_body, AdminError};
use crate::error::ApiError;
use crate::migration::{self, UpdateError};
use crate::state::AppState;

/// Longest actor or reason kept in the history.
const MAX_NOTE: usize = 256;

fn enabled(state: &AppState) -> Result<&crate::migration::Migration, ApiError> {
    state.migration().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no migration is configured ([migration] enabled = false)")
    })
}

/// `GET /admin/v1/migration`.
pub(super) async fn status(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let migration = enabled(&state)?;
    Ok(Json(status_body(&state, migration)).into_response())
}

fn status_body(state: &AppState, migration: &crate::migration::Migration) -> serde_json::Value {
    let current = migration.current();
    let settings = state.settings().migration.clone().unwrap_or_default();
    let rollout = &current.state.rollout;
    let health = |window| {
        let health: Health = migration.health(window);
        serde_json::json!({
            "window_secs": window.as_secs(),
            "requests": health.requests,
            "errors": health.errors,
            "error_rate": health.error_rate(),
            "p95_ms": [health.p95_at_least.as_secs_f64() * 1e3, health.p95_at_most.as_secs_f64() * 1e3],
        })
    };
    let gate = if rollout.phase == Phase::Off {
        serde_json::Value::Null
    } else {
        serde_json::json!(settings.gates.check(&migration.health(settings.gates.window)).err().unwrap_or_default())
    };
    serde_json::json!({
        "phase": rollout.phase.as_str(),
        "percent": rollout.percent,
        "canary_users": rollout.canary_users,
        "segments": rollout.segments,
        "since": current.state.since_ms / 1000,
        "version": current.version,
        "history": current.state.history,
        "last_auto_rollback": current.state.last_auto_rollback,
        "health": health(settings.triggers.window),
        "gate": { "window": health(settings.gates.window), "closed_because": gate },
    })
}

/// `PUT /admin/v1/migration`: the new rollout. Canary users and segments left out stay as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetRollout {
    phase: String,
    #[serde(default)]
    percent: f64,
    canary_users: Option<Vec<String>>,
    segments: Option<Vec<Segment>>,
    #[serde(default)]
    force: bool,
    actor: Option<String>,
    reason: Option<String>,
}

fn note(text: Option<String>, default: &str) -> Result<String, ApiError> {
    let text = text.filter(|text| !text.is_empty()).unwrap_or_else(|| default.to_owned());
    if text.len() > MAX_NOTE || text.chars().any(char::is_control) {
        return Err(
            AdminError::InvalidRequest("actor and reason are at most 256 bytes, no control characters".into()).into()
        );
    }
    Ok(text)
}

fn refused(err: UpdateError) -> ApiError {
    match err {
        UpdateError::Refused(SetError::Invalid(invalid)) => {
            AdminError::InvalidRequest(invalid.to_string().into()).into()
        }
        UpdateError::Refused(closed @ SetError::GateClosed { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "gate_closed", Cow::Owned(closed.to_string()))
        }
        UpdateError::Store(err) => err,
    }
}

pub(super) async fn set(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let crate::extract::JsonBody(request) = authorized_body::<SetRollout>(&state, request).await?;
    let migration = enabled(&state)?;
    let phase: Phase = request.phase.parse().map_err(|why: String| AdminError::InvalidRequest(why.into()))?;
    let actor = note(request.actor, "admin API")?;
    let reason = note(request.reason, "")?;
    let gates = state.settings().migration.clone().unwrap_or_default().gates;
    let gate = gates.check(&migration.health(gates.window));
    let now = state.clock().now_ms();
    let (after, changed) = migration::update(&state, |stored| {
        let to = Rollout {
            phase,
            percent: request.percent,
            canary_users: request.canary_users.clone().unwrap_or_else(|| stored.rollout.canary_users.clone()),
            segments: request.segments.clone().unwrap_or_else(|| stored.rollout.segments.clone()),
        };
        // Off has no token traffic to judge: leaving it needs no gate.
        let gate = if stored.rollout.phase == Phase::Off { Ok(()) } else { gate.clone() };
        stored.set(to, gate, request.force, &actor, &reason, now)
    })
    .await
    .map_err(refused)?;
    if changed {
        tracing::warn!(
            security_event = "migration_changed",
            actor = %actor,
            rollout = %after.rollout.describe(),
            forced = after.history.last().is_some_and(|change| change.kind == "forced"),
            "migration rollout changed"
        );
        state.events().admin_migration_change(&format!("set to {}", after.rollout.describe()), &actor, &reason);
    }
    Ok(Json(status_body(&state, migration)).into_response())
}

/// `POST /admin/v1/migration/rollback {actor?, reason?}`: the kill switch.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Rollback {
    actor: Option<String>,
    reason: Option<String>,
}

pub(super) async fn rollback(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let crate::extract::JsonBody(request) = authorized_body::<Rollback>(&state, request).await?;
    let migration = enabled(&state)?;
    let actor = note(request.actor, "admin API")?;
    let reason = note(request.reason, "")?;
    let now = state.clock().now_ms();
    let (_, changed) =
        migration::update(&state, |stored| Ok(stored.rollback(&actor, &reason, now))).await.map_err(refused)?;
    if changed {
        tracing::warn!(security_event = "migration_rollback", actor = %actor, "migration rolled back: everyone on legacy sessions");
        state.events().admin_migration_change("rolled back: everyone on legacy sessions", &actor, &reason);
    }
    Ok(Json(status_body(&state, migration)).into_response())
}
