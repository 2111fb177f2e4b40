//! `/oauth2/*`: the OAuth 2.0 endpoints, with errors in the RFC 6749 §5.2 shape.

pub(crate) mod client_auth;
mod revoke;

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
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke::revoke))
}

/// Why a token request failed, as RFC 6749 §5.2 names it.
enum TokenError {
    /// Missing, repeated or malformed parameters, or the wrong content type.
    InvalidRequest(&'static str),
    /// A grant type this server does not offer.
    UnsupportedGrantType,
    /// The refresh token is invalid, expired, revoked, or was already used.
    InvalidGrant,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// A scope outside the client's.
    InvalidScope,
    /// An audience outside the client's, or none where one is needed.
    InvalidTarget(&'static str),
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::InvalidRequest(why) => ApiError::bad_request(why),
            TokenError::UnsupportedGrantType => ApiError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported: refresh_token, client_credentials, token exchange",
            ),
            TokenError::InvalidGrant => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the refresh token is invalid, expired or revoked",
            ),
            TokenError::UnauthorizedClient => {
                ApiError::new(StatusCode::BAD_REQUEST, "unauthorized_client", "the client may not use this grant type")
            }
            TokenError::InvalidScope => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "a requested scope is not granted to this client",
            ),
            TokenError::InvalidTarget(why) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_target", why),
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

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A derived token never outlives this, nor its subject token.
const EXCHANGE_TTL_SECS: i64 = 300;

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
        Some("client_credentials") => client_credentials(&state, &headers, &pairs).await,
        Some(TOKEN_EXCHANGE) => token_exchange(&state, &headers, &pairs).await,
        Some(_) => Err(TokenError::UnsupportedGrantType.into()),
    }
}

/// RFC 6749 §6, for non-browser clients holding the refresh token themselves.
async fn refresh_grant(
    state: &AppState,
    ip: std::net::IpAddr,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let token = param(pairs, "refresh_token").ok_or(TokenError::InvalidRequest("refresh_token is required"))?;
    if let Some(client_id) = param(pairs, "client_id") {
        // A token presented by another client than the one it was issued to is refused before it is consumed.
        let family = match state.0.secrets.open_refresh_token(token) {
            Some(claim) => state.store().family(&claim.sid).await?,
            None => None,
        };
        if family.as_ref().map(|f| f.session.client_id.as_str()) != Some(client_id) {
            let user = family.map(|f| f.session.sub);
            return Err(session::refused_for(state, ip, user.as_deref(), TokenError::InvalidGrant.into()));
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
        Err(RefreshFailure::Rejected) => {
            Err(session::refused(state, ip, Some(token), TokenError::InvalidGrant.into()).await)
        }
    }
}

/// The authenticated client, if it may use `grant`.
async fn client_for_grant(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    grant: &str,
) -> Result<std::sync::Arc<tessera_store::Client>, ApiError> {
    let client = client_auth::authenticate(state, headers, pairs).await?;
    if client.grants.iter().any(|g| g == grant) {
        Ok(client)
    } else {
        Err(TokenError::UnauthorizedClient.into())
    }
}

/// The target audience: RFC 8707 `resource` or `audience`, not both.
fn requested_audience(pairs: &[(String, String)]) -> Result<Option<&str>, TokenError> {
    match (param(pairs, "resource"), param(pairs, "audience")) {
        (Some(_), Some(_)) => Err(TokenError::InvalidRequest("give resource or audience, not both")),
        (target @ Some(_), None) | (None, target) => Ok(target),
    }
}

/// `client_credentials` (RFC 6749 §4.4): a short-lived service token for exactly one of the client's audiences
/// (RFC 8707 `resource`, or `audience`), with a subset of its scopes.
async fn client_credentials(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let client = client_for_grant(state, headers, pairs, "client_credentials").await?;
    let scopes: Vec<String> = match param(pairs, "scope") {
        Some(requested) => {
            let requested: Vec<String> = requested.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if requested.iter().any(|s| !client.scopes.contains(s)) {
                return Err(TokenError::InvalidScope.into());
            }
            requested
        }
        None => client.scopes.clone(),
    };
    let audience = match requested_audience(pairs)? {
        Some(target) => target.to_owned(),
        None => match client.audiences.as_slice() {
            [only] => only.clone(),
            _ => return Err(TokenError::InvalidTarget("name the audience (resource or audience parameter)").into()),
        },
    };
    if !client.audiences.contains(&audience) {
        return Err(TokenError::InvalidTarget("the audience is not allowed for this client").into());
    }
    let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
    let now = state.issue_time(Some(&client.client_id), Some(&client.client_id)).await;
    let claims = tessera_jose::Claims {
        iss: Some(state.settings().issuer.clone()),
        sub: Some(client.client_id.clone()),
        aud: Some(tessera_jose::Audience::One(audience)),
        exp: Some(now.saturating_add(state.settings().service_ttl_secs)),
        iat: Some(now),
        jti: Some(
            crate::secrets::random_b64::<16>().map_err(|_| ApiError::internal("random number generator failed"))?,
        ),
        client_id: Some(client.client_id.clone()),
        scope: scope.clone(),
        ..tessera_jose::Claims::default()
    };
    let token = state.sign_access_token(&claims, "service")?;
    let mut body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": state.settings().service_ttl_secs});
    if let (Some(scope), Some(fields)) = (scope, body.as_object_mut()) {
        fields.insert("scope".into(), scope.into());
    }
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// `POST /oauth2/introspect` (RFC 7662): `{"active": false}` and nothing else for any token that is not currently
/// valid, or that is not meant for one of the calling client's audiences; the claims otherwise.
async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let pairs = parse_form(&headers, &body)?;
    let client = client_auth::authenticate(&state, &headers, &pairs).await?;
    let token = param(&pairs, "token").ok_or(TokenError::InvalidRequest("token is required"))?;
    let inactive = || Json(serde_json::json!({"active": false})).into_response();
    let claims = match crate::extract::verify_access_token(&state, token).await {
        Ok(claims) => claims,
        // Not knowing is not "inactive": a resource server would drop a valid caller.
        Err(crate::extract::Rejection::Unconfirmed) => return Err(crate::extract::unconfirmed()),
        Err(_) => return Ok(inactive()),
    };
    let for_client = claims.aud.as_ref().is_some_and(|aud| client.audiences.iter().any(|a| aud.contains(a)));
    if !for_client {
        return Ok(inactive());
    }
    let mut body = serde_json::to_value(&claims).unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        fields.insert("active".into(), true.into());
        fields.insert("token_type".into(), "Bearer".into());
    }
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// Token exchange (RFC 8693): a user's access token narrowed into a derived token for exactly one downstream
/// audience. Its scope is the subject's, narrowed by the (client, audience) rule; it expires with the subject or
/// after 5 minutes; `act` names the calling client; `sid` and `orig_jti` tie it to the subject, so revoking the
/// user's session revokes every derived token too.
async fn token_exchange(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let client = client_for_grant(state, headers, pairs, "token_exchange").await?;
    let subject_token = param(pairs, "subject_token").ok_or(TokenError::InvalidRequest("subject_token is required"))?;
    if param(pairs, "subject_token_type") != Some(ACCESS_TOKEN_TYPE) {
        return Err(TokenError::InvalidRequest(
            "subject_token_type must be urn:ietf:params:oauth:token-type:access_token",
        )
        .into());
    }
    if param(pairs, "requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(TokenError::InvalidRequest("only access tokens are issued").into());
    }
    let audience = requested_audience(pairs)?
        .ok_or(TokenError::InvalidTarget("name the audience (resource or audience parameter)"))?
        .to_owned();
    let rule = state
        .settings()
        .exchange_rules
        .iter()
        .find(|rule| rule.client_id == client.client_id && rule.audience == audience)
        .ok_or(TokenError::InvalidTarget("this client may not exchange tokens for that audience"))?;
    let subject = crate::extract::verify_access_token(state, subject_token)
        .await
        .map_err(|rejection| rejection.or(TokenError::InvalidGrant))?;
    let actor = match param(pairs, "actor_token") {
        Some(token) => {
            if param(pairs, "actor_token_type") != Some(ACCESS_TOKEN_TYPE) {
                return Err(TokenError::InvalidRequest(
                    "actor_token_type must be urn:ietf:params:oauth:token-type:access_token",
                )
                .into());
            }
            Some(
                crate::extract::verify_access_token(state, token)
                    .await
                    .map_err(|rejection| rejection.or(TokenError::InvalidGrant))?,
            )
        }
        None => None,
    };
    let subject_scopes: Vec<&str> =
        subject.scope.as_deref().unwrap_or_default().split(' ').filter(|s| !s.is_empty()).collect();
    let allowed: Vec<&str> = subject_scopes.into_iter().filter(|s| rule.scopes.iter().any(|r| r == s)).collect();
    let granted: Vec<&str> = match param(pairs, "scope") {
        Some(requested) => {
            let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
            if requested.iter().any(|s| !allowed.contains(s)) {
                return Err(TokenError::InvalidScope.into());
            }
            requested
        }
        None => allowed,
    };
    let now = state.issue_time(subject.sub.as_deref(), Some(&client.client_id)).await;
    let exp = subject.exp.unwrap_or(now).min(now.saturating_add(EXCHANGE_TTL_SECS));
    let mut act = serde_json::json!({"sub": client.client_id});
    if let (Some(actor), Some(fields)) = (&actor, act.as_object_mut()) {
        fields.insert("sub".into(), actor.sub.clone().unwrap_or_default().into());
        fields.insert("act".into(), serde_json::json!({"sub": client.client_id}));
    }
    let mut extra = serde_json::Map::new();
    extra.insert("act".into(), act);
    if let Some(jti) = &subject.jti {
        extra.insert("orig_jti".into(), jti.clone().into());
    }
    if let Some(roles) = subject.extra.get("roles") {
        extra.insert("roles".into(), roles.clone());
    }
    let scope = (!granted.is_empty()).then(|| granted.join(" "));
    let claims = tessera_jose::Claims {
        iss: Some(state.settings().issuer.clone()),
        sub: subject.sub.clone(),
        aud: Some(tessera_jose::Audience::One(audience)),
        exp: Some(exp),
        iat: Some(now),
        jti: Some(
            crate::secrets::random_b64::<16>().map_err(|_| ApiError::internal("random number generator failed"))?,
        ),
        client_id: Some(client.client_id.clone()),
        scope: scope.clone(),
        sid: subject.sid.clone(),
        nbf: None,
        extra,
    };
    let token = state.sign_access_token(&claims, "exchanged")?;
    let mut body = serde_json::json!({
        "access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer", "expires_in": (exp - now).max(0),
    });
    if let (Some(scope), Some(fields)) = (scope, body.as_object_mut()) {
        fields.insert("scope".into(), scope.into());
    }
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}
