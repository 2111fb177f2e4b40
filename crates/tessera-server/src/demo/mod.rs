//! The demo application (`[demo] enabled`, on by default): a login page, a protected demo API called through
//! `@tessera/browser`, the user's sessions and a countdown to the access token's expiry — served from Tessera's
//! own origin, so it needs no CORS and shows the browser flow as it is meant to be deployed.
//!
//! The page is also an example of the XSS defences the token-in-memory design relies on: a Content-Security-Policy
//! with no inline script or style at all (so no nonce or hash is needed), scripts only from this origin, requests
//! only to this origin, and no framing. Every file is compiled into the binary, so the demo works offline and
//! cannot be swapped on disk.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::extract::authenticate;
use crate::state::AppState;

/// The demo's pages and scripts may load scripts and styles from this origin and talk to it; nothing else.
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                        form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// The library as published (`clients/browser/dist`), built and checked against its sources by `scripts/test`.
const LIBRARY_JS: &str = include_str!("../../../../clients/browser/dist/tessera-browser.js");

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/demo/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/demo/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/demo/tessera-browser.js", get(|| async { asset("text/javascript; charset=utf-8", LIBRARY_JS) }))
        .route("/demo/api/me", get(me))
}

/// One of the demo's files, with the demo's CSP. `no-cache`: a browser revalidates, so an upgraded binary's demo
/// is never mixed with a cached older script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DEMO_CSP)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /demo/api/me`: the demo's protected resource. Any access token this server accepts, answered with what
/// an API would learn from it.
async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = authenticate(&state, &headers).await?;
    let roles = claims.extra.get("roles").cloned().unwrap_or_else(|| serde_json::json!([]));
    let sub = claims.sub.unwrap_or_default();
    let body = serde_json::json!({
        "message": format!("Hello, {sub}: this answer came from an API that verified your access token."),
        "sub": sub,
        "roles": roles,
        "scope": claims.scope,
        "exp": claims.exp,
    });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
