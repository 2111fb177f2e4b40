//! Endpoints for browsers and first-party apps, following the token-mediating backend pattern of the
//! browser-based-apps BCP: the access token goes to the page, the refresh token into an HttpOnly cookie.
//!
//! The cookie is `__Secure-tessera-refresh` with `Path=/auth`, `HttpOnly`, `Secure`, `SameSite=Strict` and no
//! `Domain`: scoped to the endpoints that need it (refresh and logout), rather than `__Host-` with `Path=/`, which
//! would send the refresh token along with every request to the host.

pub(crate) mod failures;
pub(crate) mod login;
mod migrate;
mod refresh;
mod restore;
mod sessions;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The refresh-token cookie.
pub(crate) const REFRESH_COOKIE: &str = "__Secure-tessera-refresh";
/// The CSRF header browsers send with cookie-authenticated requests.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login::login))
        .route("/auth/refresh", post(refresh::refresh))
        .route("/auth/session", get(restore::current))
        .route("/auth/migrate", get(migrate::status).post(migrate::migrate))
        .route("/auth/logout", post(sessions::logout))
        .route("/auth/logout-all", post(sessions::logout_all))
        .route("/auth/sessions", get(sessions::list))
        .route("/auth/sessions/{id}", delete(sessions::end))
}

/// Why a browser endpoint refused a request. Status, RFC 6749 §5.2 code and description of each are set here and
/// nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// A malformed request, and what is wrong with it.
    InvalidRequest(&'static str),
    /// A cookie-authenticated request from an origin that is neither the server's own nor an allowed one.
    CrossOrigin,
    /// The CSRF token is missing or is not the cookie's session's.
    Csrf,
    /// A refresh without the refresh cookie.
    NoRefreshCookie,
    /// A refresh cookie that is not a refresh token of this server.
    InvalidRefreshToken,
    /// A refresh token that is expired, revoked, or was already used.
    RefreshRejected,
    /// A wrong password, or an unknown or disabled user (answered alike).
    InvalidCredentials,
    /// A session that does not exist or is someone else's (answered alike).
    NoSuchSession,
    /// A migration without a valid legacy session cookie.
    NoLegacySession,
    /// A migration for a user the rollout does not steer to tokens.
    NotInRollout,
    /// A login for a user the rollout steers to legacy sessions.
    UseLegacyLogin,
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidRequest(why) => ApiError::bad_request(why),
            AuthError::CrossOrigin => {
                ApiError::new(StatusCode::FORBIDDEN, "invalid_request", "cross-origin request refused")
            }
            AuthError::Csrf => ApiError::new(StatusCode::FORBIDDEN, "invalid_request", "missing or wrong X-CSRF-Token"),
            AuthError::NoRefreshCookie => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_grant", "no refresh cookie"),
            AuthError::InvalidRefreshToken => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_grant", "invalid refresh token")
            }
            AuthError::RefreshRejected => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "the refresh token is invalid, expired or revoked",
            ),
            AuthError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_grant", "invalid username or password")
            }
            AuthError::NoSuchSession => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such session"),
            AuthError::NoLegacySession => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_grant", "no valid legacy session cookie")
            }
            AuthError::NotInRollout => ApiError::new(
                StatusCode::CONFLICT,
                "not_in_rollout",
                "the migration does not steer this user to tokens yet; keep the legacy session",
            ),
            AuthError::UseLegacyLogin => ApiError::new(
                StatusCode::CONFLICT,
                "use_legacy_login",
                "this user logs in through the legacy application while the migration steers them there",
            ),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The refusal of a migration for a user the rollout does not steer to tokens, for the token endpoint too.
pub(crate) fn not_in_rollout() -> ApiError {
    AuthError::NotInRollout.into()
}

/// `Set-Cookie` for a refresh token that lives `max_age_secs`.
pub(crate) fn refresh_cookie(token: &str, max_age_secs: i64) -> HeaderValue {
    let cookie =
        format!("{REFRESH_COOKIE}={token}; Path=/auth; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the refresh cookie.
pub(crate) fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("__Secure-tessera-refresh=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// The refresh token from the request's cookies.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    crate::extract::cookie(headers, REFRESH_COOKIE)
}

/// The refresh cookie of a browser request whose origin is the server's own or an allowed one (see
/// [`origin_allowed`]): 403 for any other origin, before the cookie is looked at; `None` without a cookie.
pub(crate) fn cookie_from_allowed_origin<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
    uri: &Uri,
) -> Result<Option<&'h str>, AuthError> {
    if !origin_allowed(state, headers, uri) {
        return Err(AuthError::CrossOrigin);
    }
    Ok(cookie_token(headers))
}

/// Whether a cookie-authenticated request comes from the server's own origin or an allowed one. Browsers send
/// `Origin` and `Sec-Fetch-Site` on such requests; a request with neither is not from a browser page (and still
/// needs the CSRF token). The request's own host is its `Host` header, or over HTTP/2, which has none, the
/// `:authority` (the URI's).
fn origin_allowed(state: &AppState, headers: &HeaderMap, uri: &Uri) -> bool {
    let allowed = &state.settings().allowed_origins;
    from_origin(headers, uri, |origin| allowed.iter().any(|a| a == origin))
}

/// Whether a browser request comes from the server's own origin (see [`origin_allowed`]); for the forms of the
/// login pages, which no other origin has any business posting.
pub(crate) fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    from_origin(headers, uri, |_| false)
}

fn from_origin(headers: &HeaderMap, uri: &Uri, also_allowed: impl Fn(&str) -> bool) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Some(origin) = origin {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(axum::http::uri::Authority::as_str))
            .unwrap_or_default();
        let own = ["http", "https"].iter().any(|scheme| origin == format!("{scheme}://{host}"));
        return (own && !host.is_empty()) || also_allowed(origin);
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}
