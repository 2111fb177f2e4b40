//! `GET /auth/session`: how a page that was just loaded (or reloaded) gets back into its session.
//!
//! After a reload the page has lost its access token and its CSRF token (both lived in memory only); the browser
//! still holds the HttpOnly refresh cookie. Refresh needs the CSRF token, so without this endpoint every reload
//! would be a new login. Here the cookie alone buys the session's CSRF token and a summary — nothing that can be
//! used without the cookie, and only for the page's own origin (or an allowed one):
//!
//! - a cross-site or other-origin page is refused by the same origin check as refresh (`Origin`, or
//!   `Sec-Fetch-Site` where a browser sends no `Origin`): 403, before the cookie is looked at;
//! - older browsers that send neither still never attach a `SameSite=Strict` cookie to a cross-site request, and
//!   CORS (only for `allowed_origins`, with credentials) keeps the answer unreadable to any other origin;
//! - the answer is JSON with `nosniff`, so it cannot be pulled in as a script, and `no-store`, so no cache keeps it.
//!
//! Nothing changes: the refresh token is not rotated and no access token is issued (the page then calls
//! `POST /auth/refresh` with the CSRF token). A token that the refresh endpoint would refuse is refused here
//! alike, and counts against the same failure budgets; theft detection stays with the refresh endpoint.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_model::{decide, Decision};

use super::{cookie_from_allowed_origin, AuthError};
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::session;
use crate::state::AppState;

pub(crate) async fn current(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // No cookie is how a logged-out visitor's page starts: answered, but not counted as a failure.
    let Some(token) = cookie_from_allowed_origin(&state, &headers, &uri)? else {
        return Err(AuthError::NoRefreshCookie.into());
    };
    let Some(claim) = state.secrets().open_refresh_token(token) else {
        return Err(session::refused(&state, ip, None, AuthError::InvalidRefreshToken).await);
    };
    let Some(found) = state.store().session(&claim.sid).await? else {
        return Err(session::refused(&state, ip, None, AuthError::RefreshRejected).await);
    };
    let subject = state.store().subject(&found.sub).await?;
    let now = state.clock().now_ms();
    match decide(&found, claim.generation, &subject, now, state.refresh_rules()) {
        Decision::Rotate | Decision::Replay => {}
        Decision::Theft | Decision::Refuse(_) => {
            return Err(session::refused_for(&state, ip, Some(&found.sub), AuthError::RefreshRejected));
        }
    }
    let body = serde_json::json!({
        "csrf_token": state.secrets().csrf_token(&found.sid),
        "session": {
            "id": found.sid,
            "sub": found.sub,
            "expires_at": found.expires_at / 1000,
        },
    });
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin, Cookie"));
    Ok(response)
}
