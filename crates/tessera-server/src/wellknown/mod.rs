//! `/.well-known/*`: the public JWKS, and the server's metadata (RFC 8414, OpenID Connect Discovery).

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
        .route("/.well-known/openid-configuration", get(metadata))
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

/// The server's metadata: one document for both RFC 8414 and OpenID Connect Discovery 1.0, so the two can never
/// disagree.
async fn metadata(State(state): State<AppState>) -> Response {
    let settings = state.settings();
    let issuer = settings.issuer.trim_end_matches('/');
    let id_token_algorithms: Vec<&str> = state.keys().id_token_algorithms().iter().map(|alg| alg.as_str()).collect();
    let mut scopes: Vec<&str> = vec!["openid", "profile", "email"];
    if let Some(user_scope) = &settings.user_scope {
        for scope in user_scope.split(' ').filter(|s| !s.is_empty()) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    Json(serde_json::json!({
        "issuer": settings.issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "pushed_authorization_request_endpoint": format!("{issuer}/oauth2/par"),
        "require_pushed_authorization_requests": false,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/oauth2/userinfo"),
        "end_session_endpoint": format!("{issuer}/oauth2/logout"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": id_token_algorithms,
        "scopes_supported": scopes,
        "claims_supported": ["iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "name", "preferred_username", "email", "email_verified"],
        "prompt_values_supported": ["none", "login", "consent"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        // "none" is a public client: the first-party browser login's sessions, and public code-flow clients.
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
    }))
    .into_response()
}
