//! Starting and refreshing sessions, independent of how the request arrived (browser cookie, OAuth form,
//! admin API).

use std::net::IpAddr;

use tessera_model::{NewSession, RefreshOutcome, SecurityEventKind, Session};

use crate::error::ApiError;
use crate::state::{millis, AppState};

/// What a client gets for a new or refreshed session.
pub(crate) struct Issued {
    pub(crate) session: Session,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
}

/// Who a new session is for.
pub(crate) struct SessionRequest {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) scope: Option<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
    pub(crate) user_agent: Option<String>,
}

/// Creates a session (committed before this returns) and its first token pair.
pub(crate) async fn start(state: &AppState, request: SessionRequest) -> Result<Issued, ApiError> {
    start_unless_taken(state, state.new_session_id()?, request)
        .await?
        .ok_or_else(|| ApiError::internal("a new random session id is already in use"))
}

/// [`start`], under a session id chosen beforehand; `None` when a session with that id exists already. An
/// authorization code names the session its exchange starts: the store's refusal of a second session with that
/// id is what makes the code single-use, in the same write that starts the session.
pub(crate) async fn start_unless_taken(
    state: &AppState,
    sid: String,
    request: SessionRequest,
) -> Result<Option<Issued>, ApiError> {
    let now = state.clock().now_ms();
    let created = state
        .store()
        .create_session(NewSession {
            sid,
            sub: request.sub,
            client_id: request.client_id,
            scope: request.scope,
            roles: request.roles,
            claims: request.claims,
            user_agent: request.user_agent,
            created_at: now,
            expires_at: now.saturating_add(millis(state.settings().refresh_ttl)),
        })
        .await;
    let session = match created {
        Err(tessera_store::StoreError::AlreadyExists(_)) => return Ok(None),
        other => other?,
    };
    // The refresh grant checks the session's client before anything else: this node knows it without a read.
    state.clients().remember_session_owner(&session.sid, &session.client_id);
    let issued = issue(state, session).await?;
    crate::state::count_issued("refresh", OPAQUE, &issued.session.client_id);
    Ok(Some(issued))
}

/// The `alg` label of refresh tokens: opaque, MAC-protected values, not JWTs.
const OPAQUE: &str = "opaque";

/// A new access token for `session` and its live refresh token (derived again: the caller counts it as issued
/// only when it is new).
async fn issue(state: &AppState, session: Session) -> Result<Issued, ApiError> {
    let now = state.issue_time(Some(&session.sub), Some(&session.client_id)).await;
    let access_token = state.sign_access_token(&state.session_claims(&session, now)?, "access")?;
    let refresh_token = state
        .secrets()
        // Made with the key that was issuing when this generation was issued: a grace replay after a rotation
        // derives the very same token (see `crate::secrets`).
        .refresh_token(&session.sid, session.generation, session.generation_issued_at)
        .ok_or_else(|| ApiError::internal("session id is not one this server made"))?;
    Ok(Issued { session, access_token, refresh_token })
}

/// Why a refresh failed. Callers answer every rejection alike (the metrics tell them apart): not a token of this
/// server, a session that cannot be refreshed, or reuse of a rotated token (the session is then revoked).
pub(crate) enum RefreshFailure {
    /// Refused; the client must log in again.
    Rejected,
    /// Storage failed; nothing changed, the client may retry.
    Unavailable(ApiError),
}

/// Counts a refresh by outcome (its series resolved once: this is every refresh's path).
fn count_refresh(outcome: &'static str) {
    static REFRESHES: std::sync::OnceLock<crate::series::Resolved<(), metrics::Counter>> = std::sync::OnceLock::new();
    REFRESHES
        .get_or_init(crate::series::Resolved::new)
        .get(outcome, (), || metrics::counter!("tessera_refresh_total", "outcome" => outcome))
        .increment(1);
}

/// Presents a refresh token: rotation, grace replay, theft detection (see `tessera_model::decide`).
pub(crate) async fn refresh(state: &AppState, token: &str) -> Result<Issued, RefreshFailure> {
    let Some(claim) = state.secrets().open_refresh_token(token) else {
        count_refresh("invalid");
        return Err(RefreshFailure::Rejected);
    };
    let now = state.clock().now_ms();
    let outcome = state
        .store()
        .refresh(&claim.sid, claim.generation, now, state.refresh_rules())
        .await
        .map_err(|err| RefreshFailure::Unavailable(err.into()))?;
    count_refresh(outcome.label());
    tracing::info!(
        target: tessera_model::SPAN_TARGET,
        sid = %claim.sid,
        generation = claim.generation,
        outcome = outcome.label(),
        "session.refresh"
    );
    match outcome {
        RefreshOutcome::Rotated(session) => {
            let issued = issue(state, session).await.map_err(RefreshFailure::Unavailable)?;
            crate::state::count_issued("refresh", OPAQUE, &issued.session.client_id);
            Ok(issued)
        }
        RefreshOutcome::Replayed(session) => issue(state, session).await.map_err(RefreshFailure::Unavailable),
        RefreshOutcome::TheftDetected(session) => {
            let revoked = tessera_model::Revocation::Session { sid: session.sid.clone() };
            state.revocations().apply_local(&revoked, session.revoked_at().unwrap_or_else(|| state.clock().now_ms()));
            tracing::warn!(
                security_event = SecurityEventKind::RefreshTokenReuse.as_str(),
                sub = %session.sub,
                sid = %session.sid,
                presented_generation = claim.generation,
                live_generation = session.generation,
                "refresh token reuse detected: session revoked"
            );
            state.events().reuse_detected(&session);
            // The store logged the session's revocation: feed requests waiting for the log wake now.
            state.log_grew();
            Err(RefreshFailure::Rejected)
        }
        RefreshOutcome::Refused(_) => Err(RefreshFailure::Rejected),
    }
}

/// Counts a failed refresh against the caller's address and, when `token` names a session of this server, against
/// that session's user (a store read, on the failure path only); the answer is `refusal`, or 429 with the time to
/// wait once either budget is spent.
pub(crate) async fn refused(
    state: &AppState,
    ip: IpAddr,
    token: Option<&str>,
    refusal: impl Into<ApiError>,
) -> ApiError {
    let user = match token.and_then(|token| state.secrets().open_refresh_token(token)) {
        // A store that cannot answer leaves only the address's budget: the refusal stands either way.
        Some(claim) => state.store().session(&claim.sid).await.ok().flatten().map(|session| session.sub),
        None => None,
    };
    refused_for(state, ip, user.as_deref(), refusal)
}

/// [`refused`], for a caller that already knows whose session failed (`None`: nobody's).
pub(crate) fn refused_for(state: &AppState, ip: IpAddr, user: Option<&str>, refusal: impl Into<ApiError>) -> ApiError {
    state.limits().refresh_failed(ip, user).map_or_else(|| refusal.into(), ApiError::too_many)
}
