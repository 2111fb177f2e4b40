//! Tokens of other issuers (Auth0, Keycloak, Okta, ...): each trusted issuer's keys are a
//! [`RemoteKeys`](tessera_verify::keys::RemoteKeys) — its JWKS fetched in the background, honouring
//! `Cache-Control`, refetched when a token names an unknown `kid` (at most once per 30 s), the last good set kept
//! when a fetch fails or returns something unusable. This module adds the server's part: the fetch's span and
//! trace context, and the failure counter.

use std::sync::Arc;
use std::time::Duration;

use tessera_jose::{Policy, Verifier};
use tessera_verify::keys::{FetchError, FetchObserver, RemoteKeys};

use crate::clock::Clock;
use crate::settings::TrustedIssuer;

/// Whether `url` may serve a trusted issuer's keys: `https`, or plain `http` to this machine only.
///
/// # Errors
/// Why not, for the operator.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    tessera_client::check_https_or_loopback("jwks_url", url)
}

/// One trusted issuer's verifier and fetch state.
#[derive(Debug)]
pub struct ExternalIssuer {
    /// The configuration.
    pub config: TrustedIssuer,
    keys: RemoteKeys,
}

impl ExternalIssuer {
    /// A verifier for `config`, with no keys until the first fetch.
    #[must_use]
    pub fn new(config: TrustedIssuer, leeway_secs: i64, max_token_len: usize, remembered: usize) -> Self {
        let mut policy = Policy::access(config.issuer.clone(), config.audiences.clone());
        policy.leeway_secs = leeway_secs;
        policy.max_token_len = max_token_len;
        Self { keys: RemoteKeys::new(config.jwks_url.clone(), policy, remembered), config }
    }

    /// The verifier.
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        self.keys.verifier()
    }

    /// Asks for a refetch because a token named an unknown key (see [`RemoteKeys::unknown_kid`]).
    pub fn unknown_kid(&self, now_ms: i64) {
        self.keys.unknown_kid(now_ms);
    }
}

impl FetchObserver for ExternalIssuer {
    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            target: tessera_model::SPAN_TARGET,
            "jwks.fetch",
            otel.kind = "client",
            issuer = %self.config.issuer,
        )
    }

    fn headers(&self) -> axum::http::HeaderMap {
        crate::trace::outgoing_headers()
    }

    fn fetched(&self, _url: &str, outcome: Result<Duration, &FetchError>) {
        match outcome {
            Ok(_) => tracing::debug!(issuer = %self.config.issuer, "trusted issuer keys refreshed"),
            Err(err) => {
                metrics::counter!("tessera_external_jwks_failures_total").increment(1);
                tracing::warn!(issuer = %self.config.issuer, error = %err, "fetching a trusted issuer's keys failed; keeping the last good set");
            }
        }
    }
}

/// Keeps one issuer's keys current until the task is aborted.
pub(crate) async fn keep_current(issuer: Arc<ExternalIssuer>, clock: Arc<dyn Clock>) {
    let client = match tessera_verify::keys::client() {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the JWKS client");
            return;
        }
    };
    if let Err(why) = check_jwks_url(&issuer.config.jwks_url) {
        tracing::error!(issuer = %issuer.config.issuer, "{why}: its keys are never fetched, its tokens never accepted");
        return;
    }
    issuer.keys.keep_current(&client, &*clock, &*issuer).await;
}
