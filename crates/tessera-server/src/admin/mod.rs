//! `/admin/v1/*`: for applications that authenticate users themselves (mint a session) and for operators
//! (revoke, the migration, security events). Authenticated by the admin credential (a bearer token, compared in
//! constant time); disabled unless one is configured.

use std::borrow::Cow;

use axum::extract::{FromRequest as _, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};

mod events;
mod migration;

use crate::error::ApiError;
use crate::extract::{bearer, JsonBody};
use crate::session::{self, SessionRequest};
use crate::state::AppState;

/// Claims an admin may not set: they are the issuer's. `act`, `orig_jti`, `sub_iss` and `azp` carry who acted,
/// what a derived token dies with, and whose subject it is: set by hand, they would forge a delegation chain or
/// an external identity.
const RESERVED: [&str; 15] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "sid",
    "roles",
    "act",
    "orig_jti",
    "sub_iss",
    "azp",
];

/// Why the admin API refused a request. Status, code and description of each are set here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdminError {
    /// No admin credential is configured.
    Disabled,
    /// The admin credential is missing or wrong.
    BadCredential,
    /// A session was asked for a local user who is disabled.
    UserDisabled,
    /// A malformed request, and what is wrong with it.
    InvalidRequest(Cow<'static, str>),
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Disabled => ApiError::new(StatusCode::FORBIDDEN, "access_denied", "the admin API is disabled"),
            AdminError::BadCredential => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "admin credential missing or wrong")
            }
            AdminError::UserDisabled => ApiError::new(StatusCode::FORBIDDEN, "access_denied", "the user is disabled"),
            AdminError::InvalidRequest(why) => ApiError::bad_request(why),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/sessions", post(create_session))
        .route("/admin/v1/revocations", post(revoke))
        .route("/admin/v1/migration", get(migration::status).put(migration::set))
        .route("/admin/v1/migration/rollback", post(migration::rollback))
        .route("/admin/v1/security-events", get(events::list))
}

pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.settings().admin_token else {
        return Err(AdminError::Disabled.into());
    };
    let presented = bearer(headers).unwrap_or_default();
    // Compare digests in constant time: neither length nor content leaks through timing.
    let digest = |text: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let matches =
        aws_lc_rs::constant_time::verify_slices_are_equal(digest(presented).as_ref(), digest(expected).as_ref())
            .is_ok();
    if matches && !presented.is_empty() {
        Ok(())
    } else {
        Err(AdminError::BadCredential.into())
    }
}

/// The request's JSON body, read only once the admin credential is checked: an unauthenticated caller learns
/// nothing about what the body should be.
pub(crate) async fn authorized_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    request: Request,
) -> Result<JsonBody<T>, ApiError> {
    authorize(state, request.headers())?;
    JsonBody::from_request(request, state).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSession {
    sub: String,
    #[serde(default)]
    claims: Map<String, Value>,
    #[serde(default)]
    roles: Vec<String>,
    scope: Option<String>,
    client_id: Option<String>,
}

/// `POST /admin/v1/sessions {sub, claims?, roles?, scope?, client_id?}`: mints a token pair for a user the
/// application authenticated.
async fn create_session(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let JsonBody(request) = authorized_body::<NewSession>(&state, request).await?;
    if request.sub.is_empty() || request.sub.len() > 256 {
        return Err(AdminError::InvalidRequest("sub must be 1-256 bytes".into()).into());
    }
    // A disabled local user gets no session from here either (the application may not know of the disabling).
    if state.store().user(&request.sub).await?.is_some_and(|user| user.disabled) {
        return Err(AdminError::UserDisabled.into());
    }
    if let Some(name) = request.claims.keys().find(|name| RESERVED.contains(&name.as_str())) {
        return Err(AdminError::InvalidRequest(format!("claim {name:?} is set by the issuer").into()).into());
    }
    // Roles travel comma-joined in `X-User-Roles`: one containing `,` would pass as two.
    crate::gateway::check_roles(&request.roles).map_err(|err| AdminError::InvalidRequest(err.to_string().into()))?;
    let issued = session::start(
        &state,
        SessionRequest {
            sub: request.sub,
            client_id: request.client_id.unwrap_or_else(|| state.settings().client_id.clone()),
            scope: request.scope,
            roles: request.roles,
            claims: request.claims,
            user_agent: None,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(serde_json::json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": state.settings().access_ttl_secs,
            "refresh_token": issued.refresh_token,
            "session_id": issued.session.sid,
        })),
    )
        .into_response())
}

/// `POST /admin/v1/revocations`: exactly one of `jti`, `sid`, `sub`; with `sub`, optionally `before` (Unix
/// seconds, not in the future): everything the subject was issued up to that instant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRevocation {
    jti: Option<String>,
    sid: Option<String>,
    sub: Option<String>,
    before: Option<i64>,
    reason: Option<String>,
}

async fn revoke(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let JsonBody(request) = authorized_body::<NewRevocation>(&state, request).await?;
    let now = state.clock().now_ms();
    let retention = state.revocations().retention();
    let revocation =
        tessera_revocation::operator_request(request.jti, request.sid, request.sub, request.before, now, retention)
            .map_err(|err| AdminError::InvalidRequest(err.to_string().into()))?;
    let reason = request.reason.unwrap_or_default();
    if reason.len() > tessera_revocation::MAX_ID_LEN {
        return Err(AdminError::InvalidRequest("the reason is too long".into()).into());
    }
    let changed = state.revoke(revocation.clone(), tessera_model::Provenance::new("admin", reason.clone())).await?;
    state.events().admin_revocation(&revocation, &reason, changed);
    metrics::counter!("tessera_revocations_total", "via" => "admin").increment(1);
    Ok(Json(serde_json::json!({ "revoked": revocation, "changed": changed })).into_response())
}
