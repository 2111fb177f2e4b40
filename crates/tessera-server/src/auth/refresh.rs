//! `POST /auth/refresh`: the browser's refresh, by cookie, with CSRF and origin checks.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{cookie_from_allowed_origin, refresh_cookie, AuthError, CSRF_HEADER};
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::session::{self, RefreshFailure};
use crate::state::AppState;

pub(crate) async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(token) = cookie_from_allowed_origin(&state, &headers, &uri)? else {
        return Err(session::refused(&state, ip, None, AuthError::NoRefreshCookie).await);
    };
    // The CSRF token is bound to the session the cookie names: check it before anything is changed.
    let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let refusal = match state.secrets().open_refresh_token(token) {
        Some(claim) if state.secrets().csrf_matches(&claim.sid, csrf) => None,
        Some(_) => Some(AuthError::Csrf),
        None => Some(AuthError::InvalidRefreshToken),
    };
    if let Some(refusal) = refusal {
        return Err(session::refused(&state, ip, Some(token), refusal).await);
    }
    match session::refresh(&state, token).await {
        Ok(issued) => {
            let max_age = (issued.session.expires_at - state.clock().now_ms()).max(0) / 1000;
            let mut headers = HeaderMap::new();
            headers.insert(header::SET_COOKIE, refresh_cookie(&issued.refresh_token, max_age));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let body = serde_json::json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": state.settings().access_ttl_secs,
                "csrf_token": state.secrets().csrf_token(&issued.session.sid),
            });
            Ok((StatusCode::OK, headers, Json(body)).into_response())
        }
        Err(RefreshFailure::Unavailable(error)) => Err(error),
        Err(RefreshFailure::Rejected) => {
            Err(session::refused(&state, ip, Some(token), AuthError::RefreshRejected).await)
        }
    }
}
