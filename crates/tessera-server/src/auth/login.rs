//! `POST /auth/login`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{refresh_cookie, AuthError};
use crate::error::ApiError;
use crate::extract::{ClientIp, JsonBody};
use crate::password::{verify_password, NotChecked};
use crate::session::{self, SessionRequest};
use crate::state::{millis, AppState};
use tessera_model::User;

/// Longest username and password accepted (argon2 is not run on megabytes).
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

/// `Retry-After` of a login refused because every core is hashing and the queue is full: a queue drains in well
/// under a second.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
    /// Where the refresh token goes: `cookie` (browsers, the default) or `body` (mobile apps, command lines).
    #[serde(default)]
    refresh_token_delivery: Delivery,
}

#[derive(Deserialize, Default, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Delivery {
    #[default]
    Cookie,
    Body,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let user = check_password(&state, ip, &request.username, request.password).await?;
    // While a migration from legacy sessions runs, a user it does not (or no longer) steers to tokens logs in the
    // legacy way: that is how a rollback returns users to legacy sessions. Said only after the password is
    // checked, so the rollout reveals nothing to a guesser.
    if let Some(migration) = state.migration() {
        if crate::migration::steer(migration, &user.username, &user.roles, &std::collections::BTreeMap::new())
            == tessera_migration::Method::Session
        {
            return Err(AuthError::UseLegacyLogin.into());
        }
    }

    let user_agent =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
    let issued = session::start(
        &state,
        SessionRequest {
            sub: user.username,
            client_id: state.settings().client_id.clone(),
            scope: state.settings().user_scope.clone(),
            roles: user.roles,
            claims: serde_json::Map::new(),
            user_agent,
        },
    )
    .await?;
    metrics::counter!("tessera_logins_total", "outcome" => "success").increment(1);
    Ok(session_response(&state, &issued, request.refresh_token_delivery, |_| {}))
}

/// Why a password was not accepted.
#[derive(Debug)]
pub(crate) enum LoginRefusal {
    /// A username or password of an impossible length.
    Malformed,
    /// Too many attempts from the address or for the user: wait this many seconds.
    TooMany(u64),
    /// Every core is hashing and the queue is full.
    Busy,
    /// A wrong password, or an unknown or disabled user (answered alike).
    InvalidCredentials,
    /// The store or the hashing failed.
    Failed(ApiError),
}

impl From<LoginRefusal> for ApiError {
    fn from(refusal: LoginRefusal) -> Self {
        match refusal {
            LoginRefusal::Malformed => {
                AuthError::InvalidRequest("username must be 1-256 bytes and password at most 1024").into()
            }
            LoginRefusal::TooMany(secs) => ApiError::too_many(secs),
            LoginRefusal::Busy => ApiError::overloaded(BUSY_RETRY_AFTER_SECS),
            LoginRefusal::InvalidCredentials => AuthError::InvalidCredentials.into(),
            LoginRefusal::Failed(err) => err,
        }
    }
}

/// The user whose password this is, through the login rate limits and the hashing queue: argon2id against the
/// stored hash, or against a decoy for an unknown user, so that both failures cost the same and answer the same.
/// Every way a person logs in with a password (`/auth/login`, the login page) goes through here.
pub(crate) async fn check_password(
    state: &AppState,
    ip: std::net::IpAddr,
    username: &str,
    password: String,
) -> Result<User, LoginRefusal> {
    if username.is_empty() || username.len() > MAX_USERNAME || password.len() > MAX_PASSWORD {
        return Err(LoginRefusal::Malformed);
    }
    let attempt = state.limits().login(ip, username).map_err(|refused| {
        count_failure("rate_limited");
        if let Some(limit) = refused.locked_by {
            state.events().login_locked(username, ip, limit, refused.retry_after_secs());
        }
        LoginRefusal::TooMany(refused.retry_after_secs())
    })?;
    let user = state.store().user(username).await.map_err(|err| LoginRefusal::Failed(err.into()))?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let started = std::time::Instant::now();
    // argon2 takes tens of milliseconds of CPU and 19 MiB: never on the async runtime, one per core at a time.
    let checked = tracing::Instrument::instrument(
        state.password_checks().run(move || verify_password(&password, hash.as_deref())),
        tracing::info_span!(target: tessera_model::SPAN_TARGET, "password.verify"),
    )
    .await;
    let valid = match checked {
        Ok(valid) => valid,
        Err(NotChecked::Busy) => {
            count_failure("busy");
            return Err(LoginRefusal::Busy);
        }
        Err(NotChecked::Failed(err)) => return Err(LoginRefusal::Failed(ApiError::internal(err))),
    };
    metrics::histogram!("tessera_argon2_seconds").record(started.elapsed().as_secs_f64());
    match user {
        Some(user) if valid && !user.disabled => {
            // A right password spends nothing of the failure budgets.
            drop(attempt);
            Ok(user)
        }
        _ => {
            attempt.failed();
            count_failure("invalid_credentials");
            Err(LoginRefusal::InvalidCredentials)
        }
    }
}

/// A failed login, in `tessera_logins_total` by outcome and, as before, in `tessera_login_failures_total`.
fn count_failure(reason: &'static str) {
    metrics::counter!("tessera_logins_total", "outcome" => reason).increment(1);
    metrics::counter!("tessera_login_failures_total", "reason" => reason).increment(1);
}

/// The answer that starts a browser or app session (login, migration): the access token, its lifetime and the
/// CSRF token in the body, with whatever `extend` adds; the refresh token in the cookie, or in the body when asked.
pub(crate) fn session_response(
    state: &AppState,
    issued: &session::Issued,
    delivery: Delivery,
    extend: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("access_token".into(), issued.access_token.clone().into());
    body.insert("token_type".into(), "Bearer".into());
    body.insert("expires_in".into(), state.settings().access_ttl_secs.into());
    body.insert("csrf_token".into(), state.secrets().csrf_token(&issued.session.sid).into());
    extend(&mut body);
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    if delivery == Delivery::Body {
        body.insert("refresh_token".into(), issued.refresh_token.clone().into());
    } else {
        let max_age = millis(state.settings().refresh_ttl) / 1000;
        response_headers.insert(header::SET_COOKIE, refresh_cookie(&issued.refresh_token, max_age));
    }
    (StatusCode::OK, response_headers, Json(body)).into_response()
}
