//! Authorization codes: issued at the end of the authorization endpoint, exchanged at the token endpoint
//! (`grant_type=authorization_code`, RFC 6749 §4.1.3, RFC 7636 §4.6) for an access token, a refresh token and,
//! with the `openid` scope, an ID token (OpenID Connect Core §3.1.3).
//!
//! A code is the [`CodeGrant`] itself, sealed (see `crate::secrets`): the store holds nothing until it is used, a
//! code cannot be read or changed, and it lives [`CODE_TTL_MS`]. It names beforehand the session its exchange
//! starts, which makes it single-use in the very write that starts the session: the store refuses a second
//! session with that id, on every node sharing it. A code that comes back a second time therefore ends that
//! session, and with it every token issued for the code.
//!
//! The exchange reads nothing from the store: the user's roles and profile travel in the code (read when it was
//! issued), and whether the login is still live is the revocation index's answer, as it is for every token
//! `/verify` checks. One write and two signatures: that is the whole exchange.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tessera_model::{AutomaticRevocation, Millis, Profile, Provenance, Revocation, User};
use tessera_revocation::TokenRef;

use super::authorize::{code_flow_client, Login, LOGIN_CLIENT};
use super::request::{is_code_verifier, param, AuthorizationRequest};
use super::OAuthError;
use crate::error::ApiError;
use crate::secrets::Sealed;
use crate::session::{self, SessionRequest};
use crate::state::AppState;

/// How long a code can be exchanged (RFC 6749 §4.1.2 recommends at most ten minutes; a browser takes seconds).
pub(crate) const CODE_TTL_MS: Millis = 60_000;

/// The claim of an application's session naming the login it came from, so that ending the login (RP-initiated
/// logout) ends it too.
pub(crate) const LOGIN_SID_CLAIM: &str = "login_sid";

/// What a code stands for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: Vec<String>,
    nonce: Option<String>,
    sub: String,
    /// The user's roles and profile when the code was issued.
    roles: Vec<String>,
    profile: Profile,
    /// The login it was issued under, which must still be live at the exchange.
    login_sid: String,
    auth_time_ms: Millis,
    /// The session the exchange starts: random, so it also makes every code unique.
    session_sid: String,
    expires_at: Millis,
}

/// A code for `request`, under `login`, of `user`.
pub(crate) fn issue(
    state: &AppState,
    request: &AuthorizationRequest,
    login: &Login,
    user: &User,
) -> Result<String, ApiError> {
    let grant = CodeGrant {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: request.scope.clone(),
        nonce: request.nonce.clone(),
        sub: login.sub.clone(),
        roles: user.roles.clone(),
        profile: user.profile.clone(),
        login_sid: login.sid.clone(),
        auth_time_ms: login.auth_time_ms,
        session_sid: state.new_session_id()?,
        expires_at: state.clock().now_ms().saturating_add(CODE_TTL_MS),
    };
    let plaintext = serde_json::to_vec(&grant).map_err(ApiError::internal)?;
    state
        .secrets()
        .seal(Sealed::Code, &plaintext, state.rng())
        .ok_or_else(|| ApiError::internal("sealing a code failed"))
}

/// `grant_type=authorization_code`. Every check that needs no store comes first, and a code is spent only by a
/// request that passes them: someone who saw a code but holds neither the client's credential nor the PKCE
/// verifier cannot burn it.
pub(crate) async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let client = code_flow_client(state, headers, pairs).await?;
    let code = param(pairs, "code").ok_or(OAuthError::InvalidRequest("code is required"))?;
    let verifier =
        param(pairs, "code_verifier").ok_or(OAuthError::InvalidRequest("code_verifier is required (PKCE)"))?;
    let redirect_uri = param(pairs, "redirect_uri").ok_or(OAuthError::InvalidRequest("redirect_uri is required"))?;
    let grant: CodeGrant = state
        .secrets()
        .open(Sealed::Code, code)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(OAuthError::InvalidCode("the code is invalid or expired"))?;
    let now = state.clock().now_ms();
    if grant.expires_at <= now {
        return Err(OAuthError::InvalidCode("the code is invalid or expired").into());
    }
    if grant.client_id != client.client_id {
        return Err(OAuthError::InvalidCode("the code was issued to another client").into());
    }
    if grant.redirect_uri != redirect_uri {
        return Err(OAuthError::InvalidCode("redirect_uri is not the one the code was sent to").into());
    }
    if !is_code_verifier(verifier) || !challenge_matches(verifier, &grant.code_challenge) {
        return Err(OAuthError::InvalidCode("the code_verifier does not match the code_challenge").into());
    }
    // The login must still be live: a logout (or the user's disabling) between the redirect and the exchange ends
    // the code with it.
    let login = TokenRef {
        jti: None,
        orig_jti: None,
        sid: Some(&grant.login_sid),
        sub: Some(&grant.sub),
        client_id: Some(LOGIN_CLIENT),
        iat_secs: grant.auth_time_ms.div_euclid(1000),
        exp_secs: grant.expires_at.div_euclid(1000),
    };
    if state.revocations().is_revoked(&login) {
        return Err(OAuthError::InvalidCode("the login the code was issued under has ended").into());
    }
    // Found before anything is written, so a client the server cannot sign for starts no session.
    let id_token_key = if grant.scope.iter().any(|s| s == super::request::OPENID) {
        Some(super::oidc::id_token_key(state, &client)?)
    } else {
        None
    };
    let scope = (!grant.scope.is_empty()).then(|| grant.scope.join(" "));
    let mut claims = serde_json::Map::new();
    claims.insert(LOGIN_SID_CLAIM.into(), grant.login_sid.clone().into());
    let started = session::start_unless_taken(
        state,
        grant.session_sid.clone(),
        SessionRequest {
            sub: grant.sub.clone(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            roles: grant.roles.clone(),
            claims,
            user_agent: None,
        },
    )
    .await?;
    let Some(issued) = started else {
        // RFC 6749 §4.1.2: a code used twice revokes what was issued for it.
        let ended = Revocation::Session { sid: grant.session_sid.clone() };
        state.revoke(ended, Provenance::automatic(AutomaticRevocation::CodeReplayed)).await?;
        tracing::warn!(
            security_event = "authorization_code_replayed",
            client_id = %client.client_id,
            sub = %grant.sub,
            sid = %grant.session_sid,
            "an authorization code was presented twice: the tokens issued for it are revoked"
        );
        return Err(OAuthError::InvalidCode("the code was already used").into());
    };
    let mut body = serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": state.settings().access_ttl_secs,
        "refresh_token": issued.refresh_token,
    });
    if let Some(fields) = body.as_object_mut() {
        if let Some(scope) = scope {
            fields.insert("scope".into(), scope.into());
        }
        if let Some(key) = id_token_key {
            let facts = grant.id_token_facts(&client.client_id);
            let id_token = super::oidc::id_token(state, &key, &facts, &issued.access_token)?;
            fields.insert("id_token".into(), id_token.into());
        }
    }
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

impl CodeGrant {
    /// What the ID token says about this grant.
    fn id_token_facts(&self, client_id: &str) -> super::oidc::IdTokenFacts {
        super::oidc::IdTokenFacts {
            client_id: client_id.to_owned(),
            sub: self.sub.clone(),
            login_sid: self.login_sid.clone(),
            auth_time: self.auth_time_ms.div_euclid(1000),
            nonce: self.nonce.clone(),
            scope: self.scope.clone(),
            profile: self.profile.clone(),
        }
    }
}

/// Whether `BASE64URL(SHA-256(verifier))` is `challenge` (RFC 7636 §4.6), compared in constant time.
fn challenge_matches(verifier: &str, challenge: &str) -> bool {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let computed = tessera_jose::base64url::encode(digest.as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifier_matches_its_challenge() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(challenge_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!challenge_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!challenge_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
