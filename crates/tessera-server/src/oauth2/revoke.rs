//! `POST /oauth2/revoke` (RFC 7009): a client revokes a token it was issued. A refresh token ends its whole
//! session (refresh tokens and every access token carrying its `sid`, RFC 7009 §2.1); an access token is revoked
//! by its `jti`, together with every token derived from it by exchange. Tokens that are invalid, expired or not
//! this server's are answered 200 and change nothing (§2.2): the caller's goal — the token no longer works — holds.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_model::{Provenance, Revocation};

use super::{client_auth, param, parse_form, OAuthError};
use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = parse_form(&headers, &body)?;
    let caller = caller(&state, &headers, &pairs).await?;
    let token = param(&pairs, "token").ok_or(OAuthError::InvalidRequest("token is required"))?;
    // The hint only orders the lookups (RFC 7009 §2.1); both kinds are tried, whatever it says.
    let revocation = match state.secrets().open_refresh_token(token) {
        Some(claim) => match state.store().session(&claim.sid).await? {
            Some(session) => Some((session.client_id, Revocation::Session { sid: claim.sid })),
            None => None,
        },
        None => access_token_revocation(&state, token).await?,
    };
    if let Some((owner, revocation)) = revocation {
        if owner != caller {
            return Err(OAuthError::UnauthorizedClient.into());
        }
        state.revoke(revocation, Provenance::new(format!("client:{caller}"), "rfc7009")).await?;
        metrics::counter!("tessera_revocations_total", "via" => "rfc7009").increment(1);
    }
    Ok((StatusCode::OK, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response())
}

/// The client making the request: a confidential client authenticates (Basic or post); the first-party public
/// client of `/auth/login` sessions names itself with `client_id` alone, as RFC 7009 §2.1 allows public clients.
async fn caller(state: &AppState, headers: &HeaderMap, pairs: &[(String, String)]) -> Result<String, ApiError> {
    let presents_secret = headers.contains_key(header::AUTHORIZATION) || param(pairs, "client_secret").is_some();
    match param(pairs, "client_id") {
        Some(public) if !presents_secret && public == state.settings().client_id => Ok(public.to_owned()),
        _ => Ok(client_auth::authenticate(state, headers, pairs).await?.client_id.clone()),
    }
}

/// An access token of this server, still valid: its client and its `jti` revocation. `None` for anything else
/// (RFC 7009 answers those alike); an error when the store could not confirm whether it is already revoked.
async fn access_token_revocation(state: &AppState, token: &str) -> Result<Option<(String, Revocation)>, ApiError> {
    let claims = match crate::extract::verify_access_token(state, token).await {
        Ok(claims) => claims,
        Err(crate::extract::Rejection::Unconfirmed) => return Err(crate::extract::unconfirmed()),
        Err(_) => return Ok(None),
    };
    if claims.iss.as_deref() != Some(state.settings().issuer.as_str()) {
        return Ok(None);
    }
    let (Some(client_id), Some(jti), Some(exp)) = (claims.client_id, claims.jti, claims.exp) else { return Ok(None) };
    Ok(Some((client_id, Revocation::Token { jti, expires_at: exp.saturating_mul(1000) })))
}
