//! A verifier whose keys come from a JWKS URL, kept current: fetched honouring the answer's `Cache-Control`
//! (clamped to a minute and a day), fetched again when a token names an unknown `kid` (at most once per 30 s,
//! however many tokens name one), and never emptied by a failure: a fetch that fails, or returns something
//! unusable — too large, not JSON, a symmetric or private key — keeps the last good set.
//!
//! Tessera's nodes use it for trusted external issuers; [`TokenVerifier`](crate::TokenVerifier) uses it for
//! Tessera's own keys.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use tessera_jose::{KeySet, Policy, Verifier};
use tessera_model::clock::Clock;
use tessera_model::Millis;
use tokio::sync::Notify;
use tracing::Instrument as _;

/// Largest key set accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Refetches for an unknown `kid` are at most this frequent.
const MIN_REFETCH_MS: i64 = 30_000;
/// Refresh bounds when the answer's `Cache-Control` says nothing usable.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const MIN_REFRESH: Duration = Duration::from_secs(60);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);
/// Retry delay after a failed fetch.
const RETRY: Duration = Duration::from_secs(30);
/// Longest one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a fetch left the keys as they were. Never contains a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The endpoint could not be reached, timed out or broke off.
    #[error("key set unreachable: {0}")]
    Unreachable(String),
    /// It answered with another status than 200.
    #[error("key set answered HTTP {0}")]
    Status(u16),
    /// The answer was larger than 1 MiB.
    #[error("key set larger than 1 MiB")]
    TooLarge,
    /// The answer was not a usable set of public keys.
    #[error("key set refused: {0}")]
    Refused(String),
}

/// What the owner of a [`RemoteKeys`] adds to each fetch: a span to run it in, headers to send (a request id, a
/// trace context), and the outcome. Every method has a default that adds nothing.
pub trait FetchObserver: Send + Sync {
    /// The span each fetch runs in.
    fn span(&self) -> tracing::Span {
        tracing::Span::none()
    }

    /// Headers each fetch sends.
    fn headers(&self) -> HeaderMap {
        HeaderMap::new()
    }

    /// How a fetch from `url` went: the delay until the next one, or why it failed. By default a failure is
    /// logged (a warning), a success too (at debug).
    fn fetched(&self, url: &str, outcome: Result<Duration, &FetchError>) {
        match outcome {
            Ok(_) => tracing::debug!(%url, "keys refreshed"),
            Err(err) => tracing::warn!(%url, error = %err, "fetching keys failed; keeping the last good set"),
        }
    }
}

/// The observer that adds nothing to the defaults.
#[derive(Debug, Default)]
pub struct Quiet;

impl FetchObserver for Quiet {}

/// A verifier and the state of fetching its keys.
pub struct RemoteKeys {
    url: String,
    verifier: Verifier,
    last_fetch_ms: AtomicI64,
    refetch: Notify,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys").field("url", &self.url).finish_non_exhaustive()
    }
}

impl RemoteKeys {
    /// A verifier with `policy` whose keys come from `url`, with no keys until the first fetch; it remembers
    /// `remembered` successful verifications (0: none), so a token presented again skips the signature check.
    #[must_use]
    pub fn new(url: impl Into<String>, policy: Policy, remembered: usize) -> Self {
        Self {
            url: url.into(),
            verifier: Verifier::remembering(KeySet::new(), policy, remembered),
            last_fetch_ms: AtomicI64::new(i64::MIN / 2),
            refetch: Notify::new(),
        }
    }

    /// Where the keys come from.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The verifier.
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Asks for a refetch because a token named an unknown key; ignored within 30 s of the last fetch. Concurrent
    /// callers race for the slot, so one burst of unknown kids causes one fetch.
    pub fn unknown_kid(&self, now_ms: Millis) {
        let last = self.last_fetch_ms.load(Ordering::SeqCst);
        if now_ms - last >= MIN_REFETCH_MS
            && self.last_fetch_ms.compare_exchange(last, now_ms, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            self.refetch.notify_one();
        }
    }

    /// Fetches the key set once; on success the keys are replaced and the delay until the next fetch returned.
    ///
    /// # Errors
    /// Why the keys were kept as they were.
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        headers: HeaderMap,
        now_ms: Millis,
    ) -> Result<Duration, FetchError> {
        self.last_fetch_ms.store(now_ms, Ordering::SeqCst);
        let unreachable = |err: reqwest::Error| FetchError::Unreachable(err.without_url().to_string());
        let mut response = client.get(&self.url).headers(headers).send().await.map_err(unreachable)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let max_age =
            refresh_after(response.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()));
        if response.content_length().is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
        }
        // Public asymmetric keys only: a symmetric or private key in the set would let anyone who reads the
        // document mint these tokens, so such a set is refused whole and the last good one kept.
        let keys = KeySet::from_public_jwks_json(&body).map_err(|err| FetchError::Refused(err.to_string()))?;
        self.verifier.replace_keys(keys);
        Ok(max_age)
    }

    /// Keeps the keys current until the task is dropped or aborted: fetches now, then when the last answer's
    /// `max-age` has passed or a token named an unknown key, and 30 s after a failure.
    pub async fn keep_current(&self, client: &reqwest::Client, clock: &dyn Clock, observer: &dyn FetchObserver) {
        loop {
            let span = observer.span();
            // Inside the span: a trace context in the headers names the fetch's own span.
            let headers = span.in_scope(|| observer.headers());
            let fetched = self.fetch(client, headers, clock.now_ms()).instrument(span).await;
            observer.fetched(&self.url, fetched.as_ref().map(|wait| *wait));
            let wait = fetched.unwrap_or(RETRY);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.refetch.notified() => {}
            }
        }
    }
}

/// The HTTP client keys are fetched with: 5 s per fetch, no redirects (a JWKS that moves is a configuration to
/// fix, not a hop to follow).
///
/// # Errors
/// When the TLS backend cannot be set up.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(FETCH_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()
}

/// How long a fetched key set serves before the next fetch: the answer's `Cache-Control: max-age`, clamped to
/// [`MIN_REFRESH`, `MAX_REFRESH`] so that an issuer can neither make every verifier hammer it nor pin keys for
/// weeks; [`DEFAULT_REFRESH`] when it gives no usable `max-age`.
fn refresh_after(cache_control: Option<&str>) -> Duration {
    cache_control
        .and_then(max_age)
        .map_or(DEFAULT_REFRESH, |secs| Duration::from_secs(secs).clamp(MIN_REFRESH, MAX_REFRESH))
}

/// The `max-age` of a `Cache-Control` value as RFC 9111 reads it: the directive name in any case, the value
/// digits only (quoted or not), and a number too large to hold meaning "very long" rather than "none" (§1.2.2).
fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        Some(value.parse::<u64>().unwrap_or(u64::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_interval_is_the_issuers_max_age_clamped_to_a_minute_and_a_day() {
        let secs = Duration::from_secs;
        for (cache_control, expected) in [
            (Some("max-age=600"), secs(600)),
            (Some("public, max-age=120, must-revalidate"), secs(120)),
            (Some("max-age=0"), secs(60)),
            (Some("max-age=59"), secs(60)),
            (Some("max-age=86401"), secs(86_400)),
            (Some("max-age=31536000"), secs(86_400)),
            (None, secs(300)),
            (Some("no-store"), secs(300)),
            (Some("max-age=-5"), secs(300)),
            (Some("max-age=soon"), secs(300)),
            (Some("max-age=+600"), secs(300)),
            (Some("MAX-AGE=600"), secs(600)),
            (Some("no-cache, Max-Age = \"120\""), secs(120)),
            (Some("max-age=99999999999999999999999"), secs(86_400)),
            (Some("s-maxage=600"), secs(300)),
        ] {
            assert_eq!(refresh_after(cache_control), expected, "{cache_control:?}");
        }
    }
}
