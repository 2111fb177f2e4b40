//! `GET /auth/migrate` (where this browser's user is steered) and `POST /auth/migrate` (a legacy session cookie
//! turned into a Tessera session, without a password).
//!
//! Both are authenticated by a cookie the browser sends on its own, so both are held to the browser endpoints'
//! origin check; the POST also takes only `application/json`, which a cross-site form cannot send and a
//! cross-site `fetch` cannot send without a CORS preflight that only allowed origins pass — the same protection
//! as `/auth/login`.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::login::{session_response, Delivery};
use super::{origin_allowed, AuthError};
use crate::error::ApiError;
use crate::extract::{ClientIp, JsonBody};
use crate::migration::{self, MigrateRefusal, Migrated};
use crate::session;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct MigrateRequest {
    #[serde(default)]
    refresh_token_delivery: Delivery,
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// `GET /auth/migrate`: `{phase, method}`, `method` being where the user of the request's legacy session is
/// steered (`null` without a valid one).
pub(crate) async fn status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let migration = state.migration().ok_or_else(ApiError::no_such_endpoint)?;
    if !origin_allowed(&state, &headers, &uri) {
        return Err(AuthError::CrossOrigin.into());
    }
    let phase = migration.current().state.rollout.phase;
    let method = match migration.cookie(&headers)? {
        None => None,
        Some(cookie) => match migration::identify(&state, migration, cookie).await {
            Ok(identity) => {
                Some(migration::steer(migration, &identity.user_id, &identity.roles, &identity.attributes).as_str())
            }
            Err(err) if err.status() == StatusCode::SERVICE_UNAVAILABLE => return Err(err),
            Err(_) => None,
        },
    };
    let body = serde_json::json!({ "phase": phase.as_str(), "method": method });
    Ok((StatusCode::OK, no_store(), Json(body)).into_response())
}

/// `POST /auth/migrate`: the legacy session's user gets a Tessera session (access token, refresh cookie, CSRF
/// token — as from `/auth/login`) with the legacy session's roles, if the rollout steers them to tokens; the
/// legacy session is then kept or ended, as configured.
pub(crate) async fn migrate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    JsonBody(request): JsonBody<MigrateRequest>,
) -> Result<Response, ApiError> {
    let migration = state.migration().ok_or_else(ApiError::no_such_endpoint)?;
    if !origin_allowed(&state, &headers, &uri) {
        return Err(AuthError::CrossOrigin.into());
    }
    let Some(cookie) = migration.cookie(&headers)? else {
        return Err(session::refused_for(&state, ip, None, AuthError::NoLegacySession));
    };
    let user_agent =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
    let client_id = state.settings().client_id.clone();
    let Migrated { issued, legacy_ended: ended } =
        match migration::start_session(&state, migration, cookie, client_id, user_agent).await {
            Ok(migrated) => migrated,
            // A forged or dead cookie spends the address's failure budget, as a bad refresh cookie does.
            Err(MigrateRefusal::NoSession) => {
                return Err(session::refused_for(&state, ip, None, AuthError::NoLegacySession))
            }
            Err(MigrateRefusal::NotInRollout) => return Err(AuthError::NotInRollout.into()),
            Err(MigrateRefusal::Failed(err)) => return Err(err),
        };
    let mut response = session_response(&state, &issued, request.refresh_token_delivery, |body| {
        body.insert("legacy_session".into(), if ended { "ended" } else { "kept" }.into());
    });
    if ended {
        // The browser forgets the dead cookie too (the adapter's name; path `/`, express-session's default).
        let name = migration.sessions().cookie_name();
        if let Ok(clear) = HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0; HttpOnly")) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
    }
    Ok(response)
}
