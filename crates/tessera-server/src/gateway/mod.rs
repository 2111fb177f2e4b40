//! `GET /verify`: forward authentication for gateways. 200 with identity headers for the upstream, or 401 with
//! an RFC 6750 challenge.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::extract::authenticate;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/verify", get(verify))
}

async fn verify(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = authenticate(&state, &headers)?;
    let roles = claims
        .extra
        .get("roles")
        .and_then(|r| r.as_array())
        .map(|roles| roles.iter().filter_map(|r| r.as_str()).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let mut out = HeaderMap::new();
    for (name, value) in [
        ("x-user-id", claims.sub.as_deref().unwrap_or_default()),
        ("x-user-roles", roles.as_str()),
        ("x-scope", claims.scope.as_deref().unwrap_or_default()),
    ] {
        // A value that cannot be a header is refused, not passed on altered.
        let value = HeaderValue::from_str(value).map_err(|_| ApiError::invalid_token())?;
        out.insert(HeaderName::from_static(name), value);
    }
    Ok((StatusCode::OK, out).into_response())
}
