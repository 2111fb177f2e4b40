//! # tessera-client
//!
//! The calling side of a Rust service behind Tessera: the tokens it sends, not the ones it checks (that is
//! `tessera-verify`).
//!
//! - [`TokenClient`]: service tokens (`client_credentials`) and tokens derived from a user's for the next hop
//!   (token exchange, RFC 8693), authenticated with `client_secret_basic` or `private_key_jwt`
//!   ([`Credentials`]). Each token is cached until a margin before it expires and fetched by one caller
//!   however many wait for it; derived tokens per (user's token, audience, scope), never past their own expiry.
//!   Transient failures are retried a bounded number of times with backoff; refusals are not.
//! - [`ServiceAuth`]: a `reqwest-middleware` middleware that puts the right token on each call by destination
//!   ([`Destination`]), derived for the user when the call is made [`OnBehalfOf`] one, passes the request's
//!   `X-Request-ID` and W3C trace context on ([`RequestContext`], made current by the [`PassContext`] layer on
//!   the serving side), and breaks the circuit to a destination that keeps failing ([`BreakerConfig`]).
//!
//! ```no_run
//! use tessera_client::{Credentials, Destination, OnBehalfOf, ServiceAuth, TokenClient, TokenClientConfig};
//!
//! # async fn run(user_token: String) -> Result<(), Box<dyn std::error::Error>> {
//! let credentials = Credentials::secret("orders", "the client's secret");
//! let tokens = TokenClient::new(TokenClientConfig::new("https://auth.example.com", credentials))?;
//! let payments = Destination::new("https://payments.internal", "payments")
//!     .for_users(Some("payments:charge"))
//!     .as_service(Some("payments:reconcile"));
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(ServiceAuth::new(tokens, [payments])?)
//!     .build();
//! // On the user's behalf: a token derived from theirs, for payments only, with payments:charge only.
//! client.post("https://payments.internal/charges").with_extension(OnBehalfOf::new(user_token)).send().await?;
//! // As the service itself.
//! client.post("https://payments.internal/reconcile").send().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod breaker;
mod cache;
mod context;
mod credentials;
mod middleware;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use breaker::BreakerConfig;
pub use context::{PassContext, PassContextService, RequestContext, REQUEST_ID, TRACEPARENT, TRACESTATE};
pub use credentials::Credentials;
pub use middleware::{CallError, Destination, OnBehalfOf, ServiceAuth};
pub use tokens::{TokenClient, TokenClientConfig};

/// The waits between a token request's attempts.
const TOKEN_BACKOFF: Backoff = Backoff { first: Duration::from_millis(100), max: Duration::from_secs(2) };

/// An access token from Tessera and when it expires. `Debug` never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<str>,
    expires_at: Instant,
    scope: Option<Arc<str>>,
}

impl AccessToken {
    pub(crate) fn new(value: String, expires_at: Instant, scope: Option<String>) -> Self {
        Self { value: value.into(), expires_at, scope: scope.map(Into::into) }
    }

    /// The token itself, for an `Authorization: Bearer` header. Never log it.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// When it expires (by the time the answer said, counted from when it was asked for).
    #[must_use]
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// The scopes granted, when Tessera said.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("expires_at", &self.expires_at).field("scope", &self.scope).finish()
    }
}

/// Why no token was had. It never holds a token or a secret; cloned to every caller that waited for one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Tessera could not be reached, or its answer not read, within the attempts.
    #[error("Tessera's token endpoint is unreachable: {0}")]
    Unreachable(String),
    /// Tessera answered 5xx or 429 to every attempt.
    #[error("Tessera's token endpoint is unavailable (HTTP {0})")]
    Unavailable(u16),
    /// Tessera refused the request (RFC 6749 §5.2): `invalid_client`, `invalid_scope`, `invalid_target`, or, for
    /// an exchange, a user's token that is no longer valid.
    #[error("Tessera refused the token request (HTTP {status}): {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The RFC 6749 error code (`unknown` when the answer was not an OAuth error).
        error: String,
        /// Tessera's description, when printable.
        description: Option<String>,
    },
    /// A 200 answer that is not a usable token response.
    #[error("Tessera's token endpoint answered something unusable: {0}")]
    BadAnswer(String),
    /// The client's own credentials could not be used (a key that cannot sign).
    #[error("the client's credentials cannot be used: {0}")]
    Credentials(String),
}

/// A configuration that cannot work, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tessera-client configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

/// Whether `url`, the value of setting `name`, is `https`, or plain `http` to this machine only (127.0.0.0/8,
/// `::1`, `localhost`). Over plain HTTP anyone on the path could read the tokens, or swap the keys that decide
/// whose tokens are accepted; loopback stays allowed for a local sidecar and for tests.
///
/// # Errors
/// Why not, for the operator.
pub fn check_https_or_loopback(name: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|err| format!("{name} {url:?} is not a URL: {err}"))?;
    // The parser has normalised the host already (lower case, `127.1` as `127.0.0.1`, IPv6 in brackets).
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{name} {url:?} must be https (plain http only to a loopback address)")),
    }
}

/// 128 random bits from the OS, base64url: a client assertion's `jti`, a request id for a call made outside
/// any request.
pub(crate) fn random_id() -> Result<String, TokenError> {
    let mut bytes = [0_u8; 16];
    #[expect(clippy::disallowed_methods, reason = "a client library has no injected RNG; ids must be unguessable")]
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TokenError::Credentials("the OS random source failed".into()))?;
    Ok(tessera_jose::base64url::encode(bytes))
}

/// Waits between tries: doubling from `first` up to `max`, less up to a quarter at random, so that the instances
/// of a service that failed together do not try again together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` failures in a row (1 for the first).
    #[must_use]
    pub fn after(&self, failures: u32) -> Duration {
        let full = self.first.saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1))).min(self.max);
        // Spread, not a secret: the standard library's randomly keyed hasher is enough.
        let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), failures);
        let quarter = u64::try_from((full / 4).as_millis()).unwrap_or(0);
        full.saturating_sub(Duration::from_millis(random.checked_rem(quarter.saturating_add(1)).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_maximum_less_at_most_a_quarter() {
        let backoff = Backoff { first: Duration::from_millis(200), max: Duration::from_secs(10) };
        for (failures, full) in [(1, 200), (2, 400), (3, 800), (6, 6_400), (7, 10_000), (40, 10_000)] {
            let wait = backoff.after(failures).as_millis();
            assert!(full * 3 / 4 <= wait && wait <= full, "{failures}: {wait} ms");
        }
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        for allowed in [
            "https://idp.example/jwks.json",
            "http://127.0.0.1:9000/jwks.json",
            "http://127.3.4.5/k",
            "http://[::1]:8080/k",
            "http://localhost/k",
            "http://LOCALHOST:1/k",
        ] {
            assert_eq!(check_https_or_loopback("jwks_url", allowed), Ok(()), "{allowed}");
        }
        for refused in [
            "http://idp.example/jwks.json",
            "http://10.0.0.1/k",
            "http://localhost.idp.example/k",
            "http://[::ffff:127.0.0.1]/k",
            "ftp://127.0.0.1/k",
            "file:///etc/jwks.json",
            "idp.example/jwks.json",
        ] {
            assert!(check_https_or_loopback("jwks_url", refused).is_err(), "{refused}");
        }
    }
}
