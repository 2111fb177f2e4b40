//! `/oauth2/*`: the OAuth 2.0 endpoints, with errors in the RFC 6749 §5.2 shape.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::session::{self, RefreshFailure};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/oauth2/token", post(token))
}

/// Why a token request failed, as RFC 6749 §5.2 names it.
enum TokenError {
    /// Missing, repeated or malformed parameters, or the wrong content type.
    InvalidRequest(&'static str),
    /// A grant type this server does not offer.
    UnsupportedGrantType,
    /// The refresh token is invalid, expired, revoked, or was already used.
    InvalidGrant,
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::InvalidRequest(why) => ApiError::bad_request(why),
            TokenError::UnsupportedGrantType => {
                ApiError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", "supported: refresh_token")
            }
            TokenError::InvalidGrant => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the refresh token is invalid, expired or revoked",
            ),
        }
    }
}

/// The form parameters, each present at most once (RFC 6749 §3.2).
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, TokenError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(TokenError::InvalidRequest("Content-Type must be application/x-www-form-urlencoded"));
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| TokenError::InvalidRequest("the body is not a valid form"))?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs.iter().skip(i + 1).any(|(other, _)| other == name) {
            return Err(TokenError::InvalidRequest("a parameter is repeated"));
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = parse_form(&headers, &body)?;
    match param(&pairs, "grant_type") {
        None => Err(TokenError::InvalidRequest("grant_type is required").into()),
        Some("refresh_token") => refresh_grant(&state, ip, &pairs).await,
        Some(_) => Err(TokenError::UnsupportedGrantType.into()),
    }
}

/// RFC 6749 §6, for non-browser clients holding the refresh token themselves.
async fn refresh_grant(
    state: &AppState,
    ip: std::net::IpAddr,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    state.0.limits.refresh_allowed(ip).map_err(ApiError::too_many)?;
    let token = param(pairs, "refresh_token").ok_or(TokenError::InvalidRequest("refresh_token is required"))?;
    if let Some(client_id) = param(pairs, "client_id") {
        // A token presented by another client than the one it was issued to is refused before it is consumed.
        let owner = match state.0.secrets.open_refresh_token(token) {
            Some(claim) => state.store().family(&claim.sid).await?.map(|f| f.session.client_id),
            None => None,
        };
        if owner.as_deref() != Some(client_id) {
            state.0.limits.refresh_failed(ip);
            return Err(TokenError::InvalidGrant.into());
        }
    }
    match session::refresh(state, token).await {
        Ok(issued) => {
            let mut body = serde_json::json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": state.settings().access_ttl_secs,
                "refresh_token": issued.refresh_token,
            });
            if let (Some(scope), Some(fields)) = (&issued.family.session.scope, body.as_object_mut()) {
                fields.insert("scope".into(), scope.clone().into());
            }
            let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
            Ok((no_store, Json(body)).into_response())
        }
        Err(RefreshFailure::Unavailable(error)) => Err(error),
        Err(_) => {
            state.0.limits.refresh_failed(ip);
            Err(TokenError::InvalidGrant.into())
        }
    }
}
