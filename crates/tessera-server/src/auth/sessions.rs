//! Logout, logout everywhere, and the user's session list.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_model::{Provenance, Revocation};

use super::{cleared_cookie, cookie_from_allowed_origin, AuthError, CSRF_HEADER};
use crate::error::ApiError;
use crate::extract::{authenticate_session, bearer};
use crate::state::AppState;

/// `POST /auth/logout`: ends the session named by the bearer access token's `sid`, or by the refresh cookie
/// (with its CSRF token). Clears the cookie.
pub(crate) async fn logout(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    let sid = if bearer(&headers).is_some() {
        authenticate_session(&state, &headers).await?.sid.ok_or_else(ApiError::invalid_token)?
    } else {
        let claim = cookie_from_allowed_origin(&state, &headers, &uri)?
            .and_then(|token| state.secrets().open_refresh_token(token))
            .ok_or_else(ApiError::invalid_token)?;
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !state.secrets().csrf_matches(&claim.sid, csrf) {
            return Err(AuthError::Csrf.into());
        }
        claim.sid
    };
    let by = Provenance::new("user", "logout");
    state.revoke(Revocation::Session { sid }, by).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared_cookie())]).into_response())
}

/// `POST /auth/logout-all`: everything the user was issued until now stops working, in O(1).
pub(crate) async fn logout_all(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = authenticate_session(&state, &headers).await?;
    let sub = claims.sub.unwrap_or_default();
    let not_before = state.clock().now_ms();
    state.revoke(Revocation::Subject { sub, not_before }, Provenance::new("user", "logout_everywhere")).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared_cookie())]).into_response())
}

/// `GET /auth/sessions`: the user's live sessions.
pub(crate) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = authenticate_session(&state, &headers).await?;
    let sub = claims.sub.unwrap_or_default();
    let live = state.store().live_sessions(&sub, state.clock().now_ms(), state.refresh_rules()).await?;
    let sessions: Vec<_> = live
        .iter()
        .map(|session| {
            serde_json::json!({
                "id": session.sid,
                "created_at": session.created_at / 1000,
                "last_used_at": session.last_used_at / 1000,
                "expires_at": session.expires_at / 1000,
                "user_agent": session.user_agent,
                "client_id": session.client_id,
                "current": claims.sid.as_deref() == Some(session.sid.as_str()),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "sessions": sessions })).into_response())
}

/// `DELETE /auth/sessions/{id}`: ends one of the user's own sessions.
pub(crate) async fn end(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = authenticate_session(&state, &headers).await?;
    let session = state.store().session(&id).await?;
    // Someone else's session is answered exactly like a missing one.
    match session {
        Some(session) if Some(&session.sub) == claims.sub.as_ref() => {
            state.revoke(Revocation::Session { sid: id }, Provenance::new("user", "user_ended_session")).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(AuthError::NoSuchSession.into()),
    }
}
