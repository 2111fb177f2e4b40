//! `/.well-known/*`: the public JWKS and the RFC 8414 authorization-server metadata.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let cache = format!("public, max-age={}", state.keys().jwks_max_age());
    let body = state.keys().jwks();
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json")),
            (header::CACHE_CONTROL, HeaderValue::from_str(&cache).unwrap_or(HeaderValue::from_static("no-cache"))),
        ],
        body.as_str().to_owned(),
    )
        .into_response()
}

async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = state.settings().issuer.trim_end_matches('/');
    Json(serde_json::json!({
        "issuer": state.settings().issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "grant_types_supported": ["refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
        // "none" is the first-party public client of /auth/login sessions (refresh and revocation only).
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "response_types_supported": [],
    }))
    .into_response()
}
