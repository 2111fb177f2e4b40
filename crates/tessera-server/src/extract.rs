//! Request pieces every route group uses: the client's IP, JSON bodies with clear errors, bearer tokens.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap};
use serde::de::DeserializeOwned;
use tessera_jose::Claims;
use tessera_revocation::Check;

use crate::error::ApiError;
use crate::state::AppState;

/// The client's IP address: the TCP peer's (0.0.0.0 where there is none, as in in-process tests), or behind a
/// trusted reverse proxy, the one `X-Forwarded-For` names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(Self(client_address(peer, &parts.headers, &state.settings().trusted_proxies)))
    }
}

/// `peer`, unless it is a trusted proxy: then the right-most `X-Forwarded-For` hop that is not one. Hops are
/// read from the right because each proxy appends the address it saw; everything left of the last trusted
/// proxy's entry may have been written by the client. A hop that is not an address ends the walk there.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim);
    let mut client = peer;
    for hop in hops.rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// A JSON body: `Content-Type: application/json`, valid JSON, the expected fields — or a 4xx saying which.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), "invalid_request", rejection.body_text())),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (none when empty).
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|value| !value.is_empty())
}

/// The bearer token of an `Authorization` header (RFC 6750 §2.1), if well-formed.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.trim())
}

/// Verifies the request's bearer access token: signature, claims, and this server's revocation state.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::missing_token)?;
    verify_access_token(state, token).await.map_err(|rejection| {
        metrics::counter!("tessera_token_rejections_total", "reason" => rejection.label()).increment(1);
        rejection.or(ApiError::invalid_token())
    })
}

/// [`authenticate`], for the routes that act on the user's own sessions: only an access token this server issued
/// to a user session is accepted. Every other token it verifies is refused here, although `/verify` takes it: a
/// token-exchange token (it carries `act`: a service acting for the user), a `client_credentials` token (no
/// session) and a trusted external issuer's token (whose `sub` merely names the same user elsewhere).
pub(crate) async fn authenticate_session(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let claims = authenticate(state, headers).await?;
    let settings = state.settings();
    let own_session = claims.iss.as_deref() == Some(settings.issuer.as_str())
        && claims.aud.as_ref().is_some_and(|aud| aud.contains(&settings.audience))
        && claims.sid.is_some()
        && claims.sub.is_some()
        && !claims.extra.contains_key("act");
    if own_session {
        Ok(claims)
    } else {
        metrics::counter!("tessera_token_rejections_total", "reason" => "not_a_session_token").increment(1);
        Err(ApiError::invalid_token())
    }
}

/// Why [`verify_access_token`] did not accept a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The token is refused, and why.
    Refused(Refused),
    /// Compact mode's store confirmation failed: the token was neither accepted nor found revoked.
    Unconfirmed,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The verifier's reason: signature, algorithm, header or claims (see [`tessera_jose::TokenError`]).
    Verifier(tessera_jose::TokenError),
    /// A signed payload that is not a claims set.
    NotClaims,
    /// The token, its session, subject or client is revoked.
    Revoked,
    /// The revocation index is older than `revocations_stale_after`, and the policy is to fail closed.
    RevocationsStale,
}

impl Rejection {
    /// The `reason` label of `tessera_token_rejections_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Refused(Refused::Verifier(err)) => err.label(),
            Self::Refused(Refused::NotClaims) => "invalid_claims",
            Self::Refused(Refused::Revoked) => "revoked",
            Self::Refused(Refused::RevocationsStale) => "revocations_stale",
            Self::Unconfirmed => "revocation_unconfirmed",
        }
    }

    /// The answer: 503 when the store could not confirm (the caller may retry), `refused` for a real refusal.
    pub(crate) fn or(self, refused: impl Into<ApiError>) -> ApiError {
        match self {
            Self::Refused(_) => refused.into(),
            Self::Unconfirmed => unconfirmed(),
        }
    }

    /// Logs why at debug level: which check failed, which the client is never told. The verifier's reason may
    /// quote what the token names (a `kid`, an `alg`, its issuer or audience), never the token itself.
    fn log(&self) {
        match self {
            Self::Refused(Refused::Verifier(err)) => tracing::debug!(reason = %err, "access token refused"),
            Self::Refused(_) | Self::Unconfirmed => tracing::debug!(reason = self.label(), "access token refused"),
        }
    }
}

/// 503 for a token whose revocation state the store could not confirm.
pub(crate) fn unconfirmed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the revocation state could not be confirmed; retry",
    )
}

/// The one access-token check: the token core, then the revocation index (in compact mode, with the store
/// confirming what the prefilter may hold). Its duration and verdict are measured by issuer and result.
pub(crate) async fn verify_access_token(state: &AppState, token: &str) -> Result<Claims, Rejection> {
    let started = std::time::Instant::now();
    let external = external_issuer(state, token);
    let span = tracing::info_span!(
        target: tessera_model::SPAN_TARGET,
        "token.verify",
        issuer = tracing::field::Empty,
        result = tracing::field::Empty,
        jti = tracing::field::Empty,
        sub = tracing::field::Empty,
    );
    let verdict = tracing::Instrument::instrument(verify(state, token, external), span.clone()).await;
    let issuer =
        external.map_or(metrics::SharedString::const_str("self"), |issuer| issuer.config.issuer.clone().into());
    let result = match &verdict {
        Ok(_) => "valid",
        Err(rejection) => rejection.label(),
    };
    if !span.is_disabled() {
        span.record("issuer", &*issuer).record("result", result);
        if let Ok(claims) = &verdict {
            span.record("jti", claims.jti.as_deref()).record("sub", claims.sub.as_deref());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if external.is_none() && verdict.is_ok() {
        hot().valid.record(elapsed);
    } else {
        metrics::histogram!("tessera_token_validation_duration_seconds", "issuer" => issuer, "result" => result)
            .record(elapsed);
    }
    verdict.inspect_err(Rejection::log)
}

/// The series every valid token of this issuer touches, resolved once: looking a series up by name and labels on
/// each of `/verify`'s requests costs about as much as the revocation check it measures. Resolved at the first
/// verification, after `tessera serve` installed the recorder.
struct Hot {
    valid: metrics::Histogram,
    index_pass: metrics::Counter,
    check: metrics::Histogram,
}

fn hot() -> &'static Hot {
    static HOT: std::sync::OnceLock<Hot> = std::sync::OnceLock::new();
    HOT.get_or_init(|| Hot {
        valid: metrics::histogram!("tessera_token_validation_duration_seconds", "issuer" => "self", "result" => "valid"),
        index_pass: metrics::counter!("tessera_revocation_checks_total", "layer" => "index", "outcome" => "pass"),
        check: metrics::histogram!("tessera_revocation_check_duration_seconds"),
    })
}

/// With trusted issuers configured, the (unverified) `iss` picks the verifier; that verifier then checks
/// everything, `iss` included. Without them, nothing is parsed twice.
fn external_issuer<'s>(state: &'s AppState, token: &str) -> Option<&'s std::sync::Arc<crate::issuers::ExternalIssuer>> {
    if state.issuers().is_empty() {
        return None;
    }
    let iss = tessera_jose::decode_unverified(token, state.settings().max_token_bytes)
        .ok()
        .and_then(|t| t.payload.claims().and_then(|c| c.iss.clone()))?;
    state.issuers().iter().find(|issuer| issuer.config.issuer == iss)
}

async fn verify(
    state: &AppState,
    token: &str,
    external: Option<&std::sync::Arc<crate::issuers::ExternalIssuer>>,
) -> Result<Claims, Rejection> {
    let now_ms = state.clock().now_ms();
    let now = now_ms.div_euclid(1000);
    let verified = match external {
        Some(issuer) => issuer.verifier().verify(token, now).map_err(|err| {
            if matches!(err, tessera_jose::TokenError::UnknownKey(_)) {
                issuer.unknown_kid(now_ms);
            }
            Rejection::Refused(Refused::Verifier(err))
        })?,
        None => state.keys().verifier().verify(token, now).map_err(|err| Rejection::Refused(Refused::Verifier(err)))?,
    };
    let tessera_jose::Payload::Claims(claims) = verified.payload else {
        return Err(Rejection::Refused(Refused::NotClaims));
    };
    check_revocation(state, &claims).await?;
    let stale_ms = now_ms.saturating_sub(state.revocations().last_sync_ms());
    if stale_ms > crate::state::millis(state.settings().revocations_stale_after) {
        match state.settings().stale_revocations {
            crate::settings::StalePolicy::FailClosed => return Err(Rejection::Refused(Refused::RevocationsStale)),
            crate::settings::StalePolicy::FailOpen => {
                metrics::counter!("tessera_accepted_while_stale_total").increment(1);
            }
        }
    }
    Ok(claims)
}

/// The revocation check of verified claims, counted by layer — the index's exact entries, compact mode's
/// prefilter, the store's confirmation — so that each layer's hit rate can be watched, and timed as a whole.
async fn check_revocation(state: &AppState, claims: &Claims) -> Result<(), Rejection> {
    // Timing a check of the index costs about as much as the check (two clock reads and a sample): one in
    // CHECK_TIMING_SAMPLE is timed, which keeps the histogram's shape (and so its quantiles and the share above
    // the objective); every check that asks the store is timed. Counts are in tessera_revocation_checks_total.
    let mut started = sample_check_timing().then(std::time::Instant::now);
    // What the index looks at, read from the claims as every embedded verifier reads it.
    let token = tessera_verify::token_ref(claims);
    let layer = |layer: &'static str, outcome: &'static str| {
        metrics::counter!("tessera_revocation_checks_total", "layer" => layer, "outcome" => outcome).increment(1);
    };
    let compact = state.revocations().is_compact();
    let checked = match state.revocations().check(&token) {
        Check::Valid => {
            hot().index_pass.increment(1);
            if compact {
                layer("prefilter", "miss");
            }
            Ok(())
        }
        Check::Revoked => {
            layer("index", "revoked");
            Err(Rejection::Refused(Refused::Revoked))
        }
        Check::Confirm(jtis) => {
            started.get_or_insert_with(std::time::Instant::now);
            hot().index_pass.increment(1);
            layer("prefilter", "hit");
            confirm_not_revoked(state, jtis.into_iter().flatten(), token.exp_secs.saturating_mul(1000)).await
        }
    };
    if let Some(started) = started {
        hot().check.record(started.elapsed().as_secs_f64());
    }
    checked
}

/// One revocation check in this many that needs no store is timed (see `check_revocation`).
const CHECK_TIMING_SAMPLE: u32 = 64;

/// Whether this thread's next index-only check is one to time.
fn sample_check_timing() -> bool {
    thread_local! {
        static CHECKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    CHECKS.with(|checks| {
        let n = checks.get();
        checks.set(n.wrapping_add(1));
        n % CHECK_TIMING_SAMPLE == 0
    })
}

/// Compact mode's exact lookup of the `jti`s its prefilter may hold: a false positive (about 0.1% of valid
/// tokens) costs one store read and is accepted; a store that cannot answer refuses the token, as a stale index
/// under the default policy does. A `jti` found revoked is remembered exactly (until `expires_at`), so a revoked
/// token presented again is refused without a read.
async fn confirm_not_revoked<'a>(
    state: &AppState,
    jtis: impl Iterator<Item = &'a str>,
    expires_at: tessera_model::Millis,
) -> Result<(), Rejection> {
    for jti in jtis {
        let answer = state.store().token_revoked(jti).await;
        let outcome = match &answer {
            Ok(false) => "valid",
            Ok(true) => "revoked",
            Err(_) => "unavailable",
        };
        metrics::counter!("tessera_revocation_confirmations_total", "outcome" => outcome).increment(1);
        let layer_outcome = if outcome == "valid" { "pass" } else { outcome };
        metrics::counter!("tessera_revocation_checks_total", "layer" => "store", "outcome" => layer_outcome)
            .increment(1);
        match answer {
            Ok(false) => {}
            Ok(true) => {
                state.revocations().confirmed_revoked(jti, expires_at);
                return Err(Rejection::Refused(Refused::Revoked));
            }
            Err(err) => {
                crate::error::note_storage_failure(err);
                return Err(Rejection::Unconfirmed);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(hops: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for hop in hops {
            headers.append("x-forwarded-for", hop.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy_and_from_the_right() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let client = |peer: &str, hops: &[&str]| client_address(ip(peer), &forwarded(hops), &trusted);
        // A client talking to Tessera directly cannot pick its address.
        assert_eq!(client("198.51.100.9", &["203.0.113.1"]), ip("198.51.100.9"));
        assert_eq!(client("10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(client("10.0.0.2", &["203.0.113.1"]), ip("203.0.113.1"));
        // What the client wrote itself (left of the proxy's entry) is ignored; chained proxies are skipped.
        assert_eq!(client("10.0.0.2", &["1.1.1.1, 203.0.113.1"]), ip("203.0.113.1"));
        assert_eq!(client("10.0.0.2", &["1.1.1.1", "203.0.113.1, 10.0.0.3"]), ip("203.0.113.1"));
        // A hop that is not an address stops the walk at the last proxy.
        assert_eq!(client("10.0.0.2", &["203.0.113.1, unknown"]), ip("10.0.0.2"));
    }
}
