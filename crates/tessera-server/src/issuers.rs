//! Tokens of other issuers (Auth0, Keycloak, Okta, ...): each trusted issuer's JWKS is fetched in the background,
//! honouring `Cache-Control`, refetched when a token names an unknown `kid` (at most once per 30 s), and the last
//! good key set is kept when a fetch fails or returns something unusable.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tessera_jose::{KeySet, Policy, Verifier};
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::settings::TrustedIssuer;

/// Largest key set accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Refetches for an unknown `kid` are at most this frequent.
const MIN_REFETCH_MS: i64 = 30_000;
/// Refresh bounds when the issuer's `Cache-Control` says nothing usable.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const MIN_REFRESH: Duration = Duration::from_secs(60);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);
/// Retry delay after a failed fetch.
const RETRY: Duration = Duration::from_secs(30);

/// Whether `url` may serve a trusted issuer's keys: `https`, or plain `http` to this machine only (127.0.0.0/8,
/// `::1`, `localhost`). Over plain HTTP anyone on the path could swap the keys, and with them whose tokens are
/// accepted; loopback stays allowed for a local sidecar and for tests.
///
/// # Errors
/// Why not, for the operator.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    check_https_or_loopback("jwks_url", url)
}

/// Whether `url`, the value of setting `name`, is https, or plain http to a loopback address.
pub(crate) fn check_https_or_loopback(name: &str, url: &str) -> Result<(), String> {
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

/// One trusted issuer's verifier and fetch state.
pub struct ExternalIssuer {
    /// The configuration.
    pub config: TrustedIssuer,
    verifier: Verifier,
    last_fetch_ms: AtomicI64,
    refetch: Notify,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

impl ExternalIssuer {
    /// A verifier for `config`, with no keys until the first fetch.
    #[must_use]
    pub fn new(config: TrustedIssuer, leeway_secs: i64, max_token_len: usize, remembered: usize) -> Self {
        let mut policy = Policy::access(config.issuer.clone(), config.audiences.clone());
        policy.leeway_secs = leeway_secs;
        policy.max_token_len = max_token_len;
        Self {
            verifier: Verifier::remembering(KeySet::new(), policy, remembered),
            config,
            last_fetch_ms: AtomicI64::new(i64::MIN / 2),
            refetch: Notify::new(),
        }
    }

    /// The verifier.
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Asks for a refetch because a token named an unknown key; ignored within 30 s of the last fetch. Concurrent
    /// callers race for the slot, so one burst of unknown kids causes one fetch.
    pub fn unknown_kid(&self, now_ms: i64) {
        let last = self.last_fetch_ms.load(Ordering::SeqCst);
        if now_ms - last >= MIN_REFETCH_MS
            && self.last_fetch_ms.compare_exchange(last, now_ms, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            self.refetch.notify_one();
        }
    }

    /// Fetches the key set once; on success the keys are replaced and the next refresh delay returned.
    async fn fetch(&self, client: &reqwest::Client, now_ms: i64) -> Result<Duration, String> {
        self.last_fetch_ms.store(now_ms, Ordering::SeqCst);
        let request = client.get(&self.config.jwks_url).headers(crate::trace::outgoing_headers());
        let response = request.send().await.map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let max_age =
            refresh_after(response.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()));
        if response.content_length().is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
            return Err("key set larger than 1 MiB".into());
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err("key set larger than 1 MiB".into());
            }
        }
        // Public asymmetric keys only: a symmetric or private key in the set would let anyone who reads the
        // document mint this issuer's tokens, so such a set is refused whole and the last good one kept.
        let keys = KeySet::from_public_jwks_json(&body).map_err(|err| err.to_string())?;
        self.verifier.replace_keys(keys);
        Ok(max_age)
    }
}

/// How long a fetched key set serves before the next fetch: the issuer's `Cache-Control: max-age`, clamped to
/// [`MIN_REFRESH`, `MAX_REFRESH`] so that an issuer can neither make every node hammer it nor pin keys for weeks;
/// [`DEFAULT_REFRESH`] when it gives no usable `max-age`.
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

/// Keeps one issuer's keys current until the task is aborted.
pub(crate) async fn keep_current(issuer: Arc<ExternalIssuer>, clock: Arc<dyn Clock>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
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
    loop {
        let span = tracing::info_span!(
            target: tessera_model::SPAN_TARGET,
            "jwks.fetch",
            otel.kind = "client",
            issuer = %issuer.config.issuer,
        );
        let wait = match issuer.fetch(&client, clock.now_ms()).instrument(span).await {
            Ok(refresh) => {
                tracing::debug!(issuer = %issuer.config.issuer, "trusted issuer keys refreshed");
                refresh
            }
            Err(err) => {
                metrics::counter!("tessera_external_jwks_failures_total").increment(1);
                tracing::warn!(issuer = %issuer.config.issuer, error = %err, "fetching a trusted issuer's keys failed; keeping the last good set");
                RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = issuer.refetch.notified() => {}
        }
    }
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

    #[test]
    fn jwks_urls_are_https_or_loopback_http() {
        for allowed in [
            "https://idp.example/jwks.json",
            "http://127.0.0.1:9000/jwks.json",
            "http://127.3.4.5/k",
            "http://[::1]:8080/k",
            "http://localhost/k",
            "http://LOCALHOST:1/k",
        ] {
            assert_eq!(check_jwks_url(allowed), Ok(()), "{allowed}");
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
            assert!(check_jwks_url(refused).is_err(), "{refused}");
        }
    }
}
