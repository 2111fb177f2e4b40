//! `/oauth2/*`: the OAuth 2.0 and OpenID Connect endpoints, with errors in the RFC 6749 §5.2 shape — except
//! the pages a person sees (`authorize`, `pages`), which answer in HTML or at the application's redirect URI.

pub(crate) mod authorize;
pub(crate) mod client_auth;
mod code_grant;
mod oidc;
mod pages;
pub(crate) mod request;
mod revoke;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
        .route("/oauth2/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/oauth2/authorize/login", post(authorize::login_submitted))
        .route("/oauth2/authorize/consent", post(authorize::consent_submitted))
        .route("/oauth2/par", post(authorize::push))
        .route("/oauth2/userinfo", get(oidc::userinfo).post(oidc::userinfo))
        .route("/oauth2/logout", get(oidc::logout_get).post(oidc::logout_post))
        .route("/oauth2/logout/confirm", post(oidc::logout_confirmed))
        .route(pages::STYLESHEET_PATH, get(stylesheet))
}

async fn stylesheet(State(state): State<AppState>) -> Response {
    pages::stylesheet(&state.settings().sign_in.look)
}

/// Why an OAuth endpoint (token, introspection, revocation) refused a request, as RFC 6749 §5.2, RFC 8693 §2.2.2
/// and RFC 8707 §2 name it. Status, code and description of each are set here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OAuthError {
    /// Missing, repeated or malformed parameters, or the wrong content type.
    InvalidRequest(&'static str),
    /// Client authentication failed (unknown client, wrong credential, disabled client: answered alike).
    InvalidClient,
    /// A grant type this server does not offer.
    UnsupportedGrantType,
    /// The refresh token is invalid, expired, revoked, or was already used.
    InvalidGrant,
    /// An authorization code that cannot be exchanged, and why (RFC 6749 §5.2 `invalid_grant`).
    InvalidCode(&'static str),
    /// A token-exchange subject or actor token that cannot be exchanged, and why.
    InvalidSubject(&'static str),
    /// The client may not use this grant, or act on this token.
    UnauthorizedClient,
    /// A scope outside the client's.
    InvalidScope,
    /// An audience outside the client's, or none where one is needed.
    InvalidTarget(&'static str),
}

impl From<OAuthError> for ApiError {
    fn from(err: OAuthError) -> Self {
        match err {
            OAuthError::InvalidRequest(why) => ApiError::bad_request(why),
            OAuthError::InvalidClient => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
                    .with_challenge(r#"Basic realm="tessera""#)
            }
            OAuthError::UnsupportedGrantType => ApiError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported: authorization_code, refresh_token, client_credentials, token exchange",
            ),
            OAuthError::InvalidGrant => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the refresh token is invalid, expired or revoked",
            ),
            OAuthError::InvalidSubject(why) | OAuthError::InvalidCode(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_grant", why)
            }
            OAuthError::UnauthorizedClient => {
                ApiError::new(StatusCode::BAD_REQUEST, "unauthorized_client", "the client may not use this grant type")
            }
            OAuthError::InvalidScope => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "a requested scope is not granted to this client",
            ),
            OAuthError::InvalidTarget(why) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_target", why),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The form parameters, each present at most once (RFC 6749 §3.2). Runs before anything else an endpoint does
/// (client authentication included), in time linear in the body.
pub(crate) fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    if !request::is_form(headers) {
        return Err(OAuthError::InvalidRequest("Content-Type must be application/x-www-form-urlencoded"));
    }
    request::parameters(body).map_err(OAuthError::InvalidRequest)
}

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A legacy application's session cookie (its value, as the `Cookie` header carries it) as a subject token.
pub(crate) const LEGACY_SESSION_TOKEN_TYPE: &str = "urn:tessera:params:oauth:token-type:legacy-session";
/// A derived token never outlives this, nor its subject token.
const EXCHANGE_TTL_SECS: i64 = 300;

use request::param;

async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = parse_form(&headers, &body)?;
    match param(&pairs, "grant_type") {
        None => Err(OAuthError::InvalidRequest("grant_type is required").into()),
        Some("authorization_code") => code_grant::exchange(&state, &headers, &pairs).await,
        Some("refresh_token") => refresh_grant(&state, ip, &headers, &pairs).await,
        Some("client_credentials") => client_credentials(&state, &headers, &pairs).await,
        Some(TOKEN_EXCHANGE) => token_exchange(&state, &headers, &pairs).await,
        Some(_) => Err(OAuthError::UnsupportedGrantType.into()),
    }
}

/// Token exchange of a legacy session (subject token type [`LEGACY_SESSION_TOKEN_TYPE`]): what `/auth/migrate` is
/// to browsers, for other clients — a Tessera session of the calling client (access token and refresh token, in
/// the body) for the legacy session's user, with its roles, when the rollout steers them to tokens. Only a client
/// registered with the `legacy_session` grant may: it mints whole sessions.
async fn legacy_session_exchange(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let client = client_for_grant(state, headers, pairs, "legacy_session").await?;
    let migration =
        state.migration().ok_or(OAuthError::InvalidRequest("no migration from legacy sessions runs here"))?;
    let cookie = param(pairs, "subject_token").ok_or(OAuthError::InvalidRequest("subject_token is required"))?;
    if param(pairs, "requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::InvalidRequest("only access tokens are issued").into());
    }
    if requested_audience(pairs)?.is_some() || param(pairs, "scope").is_some() || param(pairs, "actor_token").is_some()
    {
        return Err(OAuthError::InvalidRequest(
            "a legacy session is exchanged for a user session: no audience, scope or actor token",
        )
        .into());
    }
    let migrated = crate::migration::start_session(state, migration, cookie, client.client_id.clone(), None)
        .await
        .map_err(|refusal| match refusal {
            crate::migration::MigrateRefusal::NoSession => {
                OAuthError::InvalidSubject("the legacy session is not valid").into()
            }
            crate::migration::MigrateRefusal::NotInRollout => crate::auth::not_in_rollout(),
            crate::migration::MigrateRefusal::Failed(err) => err,
        })?;
    let issued = migrated.issued;
    let body = serde_json::json!({
        "access_token": issued.access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": state.settings().access_ttl_secs,
        "refresh_token": issued.refresh_token,
        "legacy_session": if migrated.legacy_ended { "ended" } else { "kept" },
    });
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// RFC 6749 §6, for non-browser clients holding the refresh token themselves. A session of a confidential client
/// (registered with a secret or keys) is refreshed only by that client, authenticated: a stolen refresh token is
/// useless without the client's credential. A session of a public client (the browser login's `client_id`, or an
/// id no client is registered under) needs no credential, but a client that names or authenticates itself must
/// be the session's. Both checks come before the token is consumed, so a refused request changes nothing.
async fn refresh_grant(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let token = param(pairs, "refresh_token").ok_or(OAuthError::InvalidRequest("refresh_token is required"))?;
    let authenticated = if client_auth::presents_credentials(headers, pairs) {
        let client = client_auth::authenticate(state, headers, pairs).await;
        Some(client.map_err(|refusal| session::refused_for(state, ip, None, refusal))?)
    } else {
        None
    };
    let named = authenticated.as_ref().map(|client| client.client_id.as_str()).or_else(|| param(pairs, "client_id"));
    if named.is_some() || state.clients().any_confidential() {
        let owner = match state.secrets().open_refresh_token(token) {
            Some(claim) => session_owner(state, &claim.sid).await?,
            None => None,
        };
        if let Some(owner) = &owner {
            let directory = state.clients();
            let confidential = **owner != *state.settings().client_id
                && directory.get(owner).is_some_and(|registered| registered.is_confidential());
            if confidential && authenticated.is_none() {
                return Err(session::refused(state, ip, Some(token), OAuthError::InvalidClient).await);
            }
        }
        if named.is_some_and(|named| owner.as_deref() != Some(named)) {
            return Err(session::refused(state, ip, Some(token), OAuthError::InvalidGrant).await);
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
            if let (Some(scope), Some(fields)) = (&issued.session.scope, body.as_object_mut()) {
                fields.insert("scope".into(), scope.clone().into());
            }
            let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
            Ok((no_store, Json(body)).into_response())
        }
        Err(RefreshFailure::Unavailable(error)) => Err(error),
        Err(RefreshFailure::Rejected) => Err(session::refused(state, ip, Some(token), OAuthError::InvalidGrant).await),
    }
}

/// The client of session `sid`: remembered from this node's earlier sight of the session, or read from the store
/// (`None` for a session the store does not know).
async fn session_owner(state: &AppState, sid: &str) -> Result<Option<std::sync::Arc<str>>, ApiError> {
    let directory = state.clients();
    if let Some(owner) = directory.session_owner(sid) {
        return Ok(Some(owner));
    }
    let Some(session) = state.store().session(sid).await? else { return Ok(None) };
    directory.remember_session_owner(sid, &session.client_id);
    Ok(Some(session.client_id.into()))
}

/// The authenticated client, if it may use `grant`.
async fn client_for_grant(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    grant: &str,
) -> Result<std::sync::Arc<tessera_model::Client>, ApiError> {
    let client = client_auth::authenticate(state, headers, pairs).await?;
    if client.grants.iter().any(|g| g == grant) {
        Ok(client)
    } else {
        Err(OAuthError::UnauthorizedClient.into())
    }
}

/// The target audience: RFC 8707 `resource` or `audience`, not both.
fn requested_audience(pairs: &[(String, String)]) -> Result<Option<&str>, OAuthError> {
    match (param(pairs, "resource"), param(pairs, "audience")) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest("give resource or audience, not both")),
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
                return Err(OAuthError::InvalidScope.into());
            }
            requested
        }
        None => client.scopes.clone(),
    };
    let audience = match requested_audience(pairs)? {
        Some(target) => target.to_owned(),
        None => match client.audiences.as_slice() {
            [only] => only.clone(),
            _ => return Err(OAuthError::InvalidTarget("name the audience (resource or audience parameter)").into()),
        },
    };
    if !client.audiences.contains(&audience) {
        return Err(OAuthError::InvalidTarget("the audience is not allowed for this client").into());
    }
    let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
    let now = state.issue_time(Some(&client.client_id), Some(&client.client_id)).await;
    let claims = tessera_jose::Claims {
        iss: Some(state.settings().issuer.clone()),
        sub: Some(client.client_id.clone()),
        aud: Some(tessera_jose::Audience::One(audience)),
        exp: Some(now.saturating_add(state.settings().service_ttl_secs)),
        iat: Some(now),
        jti: Some(state.random_b64::<16>()?),
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
    let token = param(&pairs, "token").ok_or(OAuthError::InvalidRequest("token is required"))?;
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
/// after 5 minutes.
///
/// - The subject token must have been meant for the calling client: a token of this server whose `client_id` is
///   the client, or any subject token whose `aud` names the client's id or one of its registered audiences (the
///   client is the resource server it was sent to). A token the client merely got hold of is refused.
/// - `act` names the calling client (and the actor token's subject, when one is given), with the subject token's
///   own `act` nested inside (RFC 8693 §4.1): a chain of exchanges reads from the newest actor to the first.
/// - `sid` and `orig_jti` tie it to the user's original token through every level of a chain (`orig_jti` is
///   always the first token's `jti`), so revoking the user's session or access token revokes every derived token.
/// - A trusted external issuer's token is exchanged only where that issuer has `allow_exchange`; the derived
///   token then names the issuer in `sub_iss`, and its `sub` is `<issuer>#<sub>`, never the bare external subject
///   a local user of the same name has. Its roles and scopes pass only through the issuer's maps.
async fn token_exchange(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    if param(pairs, "subject_token_type") == Some(LEGACY_SESSION_TOKEN_TYPE) {
        return legacy_session_exchange(state, headers, pairs).await;
    }
    let client = client_for_grant(state, headers, pairs, "token_exchange").await?;
    let subject_token = param(pairs, "subject_token").ok_or(OAuthError::InvalidRequest("subject_token is required"))?;
    if param(pairs, "subject_token_type") != Some(ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::InvalidRequest(
            "subject_token_type must be urn:ietf:params:oauth:token-type:access_token",
        )
        .into());
    }
    if param(pairs, "requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::InvalidRequest("only access tokens are issued").into());
    }
    let audience = requested_audience(pairs)?
        .ok_or(OAuthError::InvalidTarget("name the audience (resource or audience parameter)"))?
        .to_owned();
    let rule = state
        .settings()
        .exchange_rules
        .iter()
        .find(|rule| rule.client_id == client.client_id && rule.audience == audience)
        .ok_or(OAuthError::InvalidTarget("this client may not exchange tokens for that audience"))?;
    let subject = crate::extract::verify_access_token(state, subject_token)
        .await
        .map_err(|rejection| rejection.or(OAuthError::InvalidSubject("the subject token is not valid")))?;
    let own_issuer = state.settings().issuer.as_str();
    let external = match subject.iss.as_deref() {
        Some(iss) if iss == own_issuer => None,
        iss => {
            let issuer = state.issuers().iter().find(|issuer| Some(issuer.config.issuer.as_str()) == iss);
            match issuer.filter(|issuer| issuer.config.allow_exchange) {
                Some(issuer) => Some(&issuer.config),
                None => {
                    return Err(OAuthError::InvalidSubject("tokens of this issuer may not be exchanged here").into())
                }
            }
        }
    };
    let for_this_client = subject.aud.as_ref().is_some_and(|aud| {
        aud.contains(&client.client_id) || client.audiences.iter().any(|audience| aud.contains(audience))
    }) || (external.is_none() && subject.client_id.as_deref() == Some(client.client_id.as_str()));
    if !for_this_client {
        return Err(OAuthError::InvalidSubject("the subject token was not issued to or for this client").into());
    }
    let actor = match param(pairs, "actor_token") {
        Some(token) => {
            if param(pairs, "actor_token_type") != Some(ACCESS_TOKEN_TYPE) {
                return Err(OAuthError::InvalidRequest(
                    "actor_token_type must be urn:ietf:params:oauth:token-type:access_token",
                )
                .into());
            }
            let actor = crate::extract::verify_access_token(state, token)
                .await
                .map_err(|rejection| rejection.or(OAuthError::InvalidSubject("the actor token is not valid")))?;
            // An external actor's `sub` names someone in another namespace: it would read as a local actor.
            if actor.iss.as_deref() != Some(own_issuer) {
                return Err(OAuthError::InvalidSubject("the actor token must be one of this server's").into());
            }
            Some(actor)
        }
        None => None,
    };
    let subject_scopes = subject.scope.as_deref().unwrap_or_default().split(' ').filter(|s| !s.is_empty());
    // An external issuer's scope and role names mean what they mean there: only its maps say which local ones
    // they stand for.
    let subject_scopes: Vec<&str> = match external {
        None => subject_scopes.collect(),
        Some(issuer) => issuer.local_scopes(subject_scopes),
    };
    let allowed: Vec<&str> = subject_scopes.into_iter().filter(|s| rule.scopes.iter().any(|r| r == s)).collect();
    let granted: Vec<&str> = match param(pairs, "scope") {
        Some(requested) => {
            let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
            if requested.iter().any(|s| !allowed.contains(s)) {
                return Err(OAuthError::InvalidScope.into());
            }
            requested
        }
        None => allowed,
    };
    let roles = match external {
        None => subject.extra.get("roles").cloned(),
        Some(issuer) => {
            let theirs = subject.extra.get("roles").and_then(serde_json::Value::as_array);
            let theirs = theirs.into_iter().flatten().filter_map(serde_json::Value::as_str);
            let local = issuer.local_roles(theirs);
            (!local.is_empty()).then(|| local.into())
        }
    };
    let (sub, sub_iss) = match external {
        None => (subject.sub.clone(), subject.extra.get("sub_iss").cloned()),
        Some(issuer) => {
            (subject.sub.as_deref().map(|sub| format!("{}#{sub}", issuer.issuer)), Some(issuer.issuer.clone().into()))
        }
    };
    let now = state.issue_time(sub.as_deref(), Some(&client.client_id)).await;
    let exp = subject.exp.unwrap_or(now).min(now.saturating_add(EXCHANGE_TTL_SECS));
    let mut calling = serde_json::json!({"sub": client.client_id});
    // An external token's own `act` names the other issuer's actors, and is not carried.
    if let (None, Some(prior), Some(fields)) = (external, subject.extra.get("act"), calling.as_object_mut()) {
        fields.insert("act".into(), prior.clone());
    }
    let act = match &actor {
        Some(actor) => serde_json::json!({"sub": actor.sub.clone().unwrap_or_default(), "act": calling}),
        None => calling,
    };
    // The first token of the chain: revoking it revokes every level derived from it.
    let orig_jti = match external {
        None => subject.extra.get("orig_jti").and_then(serde_json::Value::as_str).or(subject.jti.as_deref()),
        Some(_) => subject.jti.as_deref(),
    };
    let mut extra = serde_json::Map::new();
    extra.insert("act".into(), act);
    if let Some(jti) = orig_jti {
        extra.insert("orig_jti".into(), jti.into());
    }
    if let Some(roles) = roles {
        extra.insert("roles".into(), roles);
    }
    if let Some(sub_iss) = sub_iss {
        extra.insert("sub_iss".into(), sub_iss);
    }
    let scope = (!granted.is_empty()).then(|| granted.join(" "));
    let claims = tessera_jose::Claims {
        iss: Some(state.settings().issuer.clone()),
        sub,
        aud: Some(tessera_jose::Audience::One(audience)),
        exp: Some(exp),
        iat: Some(now),
        jti: Some(state.random_b64::<16>()?),
        client_id: Some(client.client_id.clone()),
        scope: scope.clone(),
        // An external token's `sid` names a session of its issuer, none of this server's.
        sid: if external.is_none() { subject.sid.clone() } else { None },
        nbf: None,
        extra,
    };
    let token = state.sign_access_token(&claims, "exchanged")?;
    // Audiences are those of the configured exchange rules: a bounded label.
    if let Some(tessera_jose::Audience::One(audience)) = &claims.aud {
        metrics::counter!("tessera_token_exchanges_total", "client" => client.client_id.clone(), "audience" => audience.clone())
            .increment(1);
        tracing::info!(
            target: tessera_model::SPAN_TARGET,
            client_id = %client.client_id,
            audience = %audience,
            sub = claims.sub.as_deref(),
            jti = claims.jti.as_deref(),
            "token.exchanged"
        );
    }
    let mut body = serde_json::json!({
        "access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer", "expires_in": (exp - now).max(0),
    });
    if let (Some(scope), Some(fields)) = (scope, body.as_object_mut()) {
        fields.insert("scope".into(), scope.into());
    }
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}
