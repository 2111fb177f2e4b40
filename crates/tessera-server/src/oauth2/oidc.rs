//! OpenID Connect on top of the code flow: the ID token (Core §2, §3.1.3.6), `/oauth2/userinfo` (Core §5.3) and
//! RP-initiated logout at `/oauth2/logout` (RP-Initiated Logout 1.0).
//!
//! A logout ends the login and every session an application started from it (they carry the login's id, see
//! [`LOGIN_SID_CLAIM`]): their refresh tokens stop at once and their access tokens are refused by every verifier
//! within one sync. It happens at once when the request carries an ID token of ours naming the login
//! (`id_token_hint`); any other request is asked to be confirmed, so that a link on another site cannot sign the
//! person out.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};
use std::sync::Arc;

use tessera_jose::{Algorithm, Policy, Profile, SigningKey, Verifier};
use tessera_model::{Provenance, Revocation};

use super::authorize::{
    cleared_login_cookie, current_login, open_logout, posted_with_login, redirect_after_logout, seal_logout,
    LogoutRequest, LOGIN_CLIENT,
};
use super::code_grant::LOGIN_SID_CLAIM;
use super::pages;
use super::request::{self, param, ReplyTo, OPENID};
use crate::error::ApiError;
use crate::extract::authenticate;
use crate::state::AppState;

/// What an ID token states.
pub(crate) struct IdTokenFacts {
    pub(crate) client_id: String,
    pub(crate) sub: String,
    /// The login's session id: the ID token's `sid` (Front- and Back-Channel Logout name the OP session so).
    pub(crate) login_sid: String,
    /// When the person entered their password, seconds.
    pub(crate) auth_time: i64,
    pub(crate) nonce: Option<String>,
    pub(crate) scope: Vec<String>,
    /// The user's profile when the code was issued.
    pub(crate) profile: tessera_model::Profile,
}

/// The key that signs `client`'s ID tokens: the server's signing key, or an RS256 key for a client registered for
/// RS256 (see [`crate::keys::KeyService::id_token_key`]).
pub(crate) fn id_token_key(state: &AppState, client: &tessera_model::Client) -> Result<Arc<SigningKey>, ApiError> {
    let signing = client.code_flow.as_ref().map(|flow| flow.id_token_signing).unwrap_or_default();
    state.keys().id_token_key(signing).ok_or_else(|| {
        ApiError::internal(format!(
            "client {} is registered for RS256 ID tokens, and no RS256 key is kept (keys.rs256_id_tokens is off)",
            client.client_id
        ))
    })
}

/// An ID token for `facts`, issued with `access_token` (whose `at_hash` it carries), signed with `key`, with the
/// user's claims the scopes release.
pub(crate) fn id_token(
    state: &AppState,
    key: &SigningKey,
    facts: &IdTokenFacts,
    access_token: &str,
) -> Result<String, ApiError> {
    let now = state.clock().now_ms().div_euclid(1000);
    let mut claims = Map::new();
    claims.insert("iss".into(), state.settings().issuer.clone().into());
    claims.insert("sub".into(), facts.sub.clone().into());
    claims.insert("aud".into(), facts.client_id.clone().into());
    claims.insert("azp".into(), facts.client_id.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(state.settings().access_ttl_secs).into());
    claims.insert("auth_time".into(), facts.auth_time.into());
    claims.insert("sid".into(), facts.login_sid.clone().into());
    claims.insert("at_hash".into(), token_hash(key.algorithm(), access_token).into());
    if let Some(nonce) = &facts.nonce {
        claims.insert("nonce".into(), nonce.clone().into());
    }
    claims.extend(released_claims(&facts.sub, &facts.profile, &facts.scope));
    let token = tessera_jose::encode_jwt(key, Some("JWT"), &claims)
        .map_err(|err| ApiError::internal(format!("signing failed: {err}")))?;
    crate::state::count_issued("id", key.algorithm().as_str(), &facts.client_id);
    Ok(token)
}

/// `at_hash` (Core §3.1.3.6): the left half of the token's hash under the hash of the signing algorithm —
/// SHA-512 for Ed25519, whose signatures are made with it.
fn token_hash(alg: Algorithm, token: &str) -> String {
    let hash = match alg {
        Algorithm::EdDSA => &aws_lc_rs::digest::SHA512,
        _ => &aws_lc_rs::digest::SHA256,
    };
    let digest = aws_lc_rs::digest::digest(hash, token.as_bytes());
    let bytes = digest.as_ref();
    tessera_jose::base64url::encode(bytes.get(..bytes.len() / 2).unwrap_or_default())
}

/// The claims of user `username` with `profile` that `scope` releases (Core §5.4): `name` and
/// `preferred_username` with `profile`; `email` and `email_verified` with `email`. Only what is set.
fn released_claims(username: &str, profile: &tessera_model::Profile, scope: &[String]) -> Map<String, Value> {
    let has = |wanted: &str| scope.iter().any(|s| s == wanted);
    let mut claims = Map::new();
    if has("profile") {
        if let Some(name) = &profile.name {
            claims.insert("name".into(), name.clone().into());
        }
        claims.insert("preferred_username".into(), username.into());
    }
    if has("email") {
        if let Some(email) = &profile.email {
            claims.insert("email".into(), email.clone().into());
            claims.insert("email_verified".into(), profile.email_verified.into());
        }
    }
    claims
}

/// `GET|POST /oauth2/userinfo` (Core §5.3): the claims of the access token's user that its scopes release. The
/// token must be one of this server's, issued with the `openid` scope.
pub(crate) async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = authenticate(&state, &headers).await?;
    let own = claims.iss.as_deref() == Some(state.settings().issuer.as_str()) && !claims.extra.contains_key("act");
    let scope: Vec<String> =
        claims.scope.as_deref().unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if !own || !scope.iter().any(|s| s == OPENID) {
        return Err(ApiError::insufficient_scope());
    }
    let sub = claims.sub.unwrap_or_default();
    let user = state.store().user(&sub).await?.filter(|user| !user.disabled).ok_or_else(ApiError::invalid_token)?;
    let mut body = Map::new();
    body.insert("sub".into(), sub.into());
    body.extend(released_claims(&user.username, &user.profile, &scope));
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// `GET /oauth2/logout`.
pub(crate) async fn logout_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    logout(&state, &headers, request::query_or_form(&headers, query.as_deref(), None)).await
}

/// `POST /oauth2/logout` (the same request as a form).
pub(crate) async fn logout_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    logout(&state, &headers, request::query_or_form(&headers, None, Some(&body))).await
}

async fn logout(state: &AppState, headers: &HeaderMap, pairs: Result<Vec<(String, String)>, &'static str>) -> Response {
    let look = &state.settings().sign_in.look;
    let pairs = match pairs {
        Ok(pairs) => pairs,
        Err(why) => return pages::error(look, StatusCode::BAD_REQUEST, why),
    };
    let hint = param(&pairs, "id_token_hint").and_then(|hint| verified_hint(state, hint));
    let client_id = match (param(&pairs, "client_id"), &hint) {
        (Some(named), Some(hint)) if named != hint.client_id => {
            return pages::error(look, StatusCode::BAD_REQUEST, "The logout request names two different applications.")
        }
        (Some(named), _) => Some(named.to_owned()),
        (None, hint) => hint.as_ref().map(|hint| hint.client_id.clone()),
    };
    let then = match param(&pairs, "post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = match &client_id {
                Some(id) => crate::clients::find(state, id).await,
                None => None,
            };
            let registered = client.as_ref().and_then(|found| found.client.code_flow.as_ref());
            if !registered.is_some_and(|flow| flow.post_logout_redirect_uris.iter().any(|known| known == uri)) {
                return pages::error(
                    look,
                    StatusCode::BAD_REQUEST,
                    "The application asked to send you to an address it has not registered. You were not signed out.",
                );
            }
            Some(ReplyTo { redirect_uri: uri.to_owned(), state: param(&pairs, "state").map(str::to_owned) })
        }
    };
    let login = match current_login(state, headers).await {
        Ok(login) => login,
        Err(err) => return err.into_response(),
    };
    match (hint, login) {
        (Some(hint), login) => {
            if let Err(err) = end_login(state, &hint.sid, &hint.sub).await {
                return err.into_response();
            }
            let ended_here = login.is_some_and(|login| login.sid == hint.sid);
            finish_logout(state, then.as_ref(), ended_here)
        }
        (None, Some(login)) => match seal_logout(state, &LogoutRequest { sid: login.sid, then }) {
            Some(sealed) => pages::confirm_logout(look, &sealed),
            None => ApiError::internal("sealing the logout form failed").into_response(),
        },
        (None, None) => finish_logout(state, then.as_ref(), false),
    }
}

/// `POST /oauth2/logout/confirm`: the confirmation of a logout without an ID token.
pub(crate) async fn logout_confirmed(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, login) = match posted_with_login(&state, &headers, &uri, &body).await {
        Ok(posted) => posted,
        Err(page) => return *page,
    };
    let confirmed = login.as_ref().and_then(|login| {
        let request = open_logout(&state, param(&fields, "request")?, login)?;
        Some((login, request))
    });
    let Some((login, request)) = confirmed else {
        // Already signed out (or the form is stale): nothing left to end.
        return finish_logout(&state, None, true);
    };
    if let Err(err) = end_login(&state, &login.sid, &login.sub).await {
        return err.into_response();
    }
    finish_logout(&state, request.then.as_ref(), true)
}

/// The answer after a logout: back to the application, or the signed-out page; the cookie cleared when the login
/// it named was the one ended.
fn finish_logout(state: &AppState, then: Option<&ReplyTo>, clear_cookie: bool) -> Response {
    let mut response = match then {
        Some(to) => redirect_after_logout(to),
        None => pages::signed_out(&state.settings().sign_in.look),
    };
    if clear_cookie {
        response.headers_mut().append(header::SET_COOKIE, cleared_login_cookie());
    }
    response
}

/// Ends the login `sid` of `sub` and every live session an application started from it.
async fn end_login(state: &AppState, sid: &str, sub: &str) -> Result<(), ApiError> {
    let Some(login) = state.store().session(sid).await? else { return Ok(()) };
    if login.client_id != LOGIN_CLIENT || login.sub != sub {
        return Ok(());
    }
    let sessions = state.store().live_sessions(sub, state.clock().now_ms(), state.refresh_rules()).await?;
    let from_login = sessions
        .into_iter()
        .filter(|session| session.claims.get(LOGIN_SID_CLAIM).and_then(Value::as_str) == Some(sid))
        .map(|session| session.sid);
    for ended in std::iter::once(sid.to_owned()).chain(from_login) {
        state.revoke(Revocation::Session { sid: ended }, Provenance::new(format!("user:{sub}"), "logout")).await?;
    }
    Ok(())
}

/// What a verified `id_token_hint` names.
struct Hint {
    client_id: String,
    sub: String,
    sid: String,
}

/// The login and application an ID token of this server names, when its signature and issuer are good. An
/// expired one is refused here too (its `exp` is checked like any token's): the person is then asked to confirm.
fn verified_hint(state: &AppState, token: &str) -> Option<Hint> {
    let settings = state.settings();
    let policy = Policy {
        profile: Profile::Jws,
        issuer: Some(settings.issuer.clone()),
        audiences: Vec::new(),
        leeway_secs: settings.leeway_secs,
        max_token_len: settings.max_token_bytes,
    };
    let keys = state.keys().id_token_keys();
    let verified =
        Verifier::new((*keys).clone(), policy).verify(token, state.clock().now_ms().div_euclid(1000)).ok()?;
    let claims = verified.claims()?;
    let client_id = match claims.aud.as_ref()? {
        tessera_jose::Audience::One(aud) => aud.clone(),
        tessera_jose::Audience::Many(auds) => auds.first()?.clone(),
    };
    // An access token is not an ID token, though both are ours.
    if claims.extra.get("azp").and_then(Value::as_str) != Some(client_id.as_str()) {
        return None;
    }
    Some(Hint { client_id, sub: claims.sub.clone()?, sid: claims.sid.clone()? })
}
