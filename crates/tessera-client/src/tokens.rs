//! [`TokenClient`]: service tokens (`client_credentials`, RFC 6749 §4.4) and derived tokens (token exchange,
//! RFC 8693) from Tessera's token endpoint, each cached until a margin before it expires.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tessera_model::clock::{Clock, SystemClock};
use tokio::time::Instant;

use crate::cache::{Fetched, TokenCache};
use crate::{AccessToken, ConfigError, Credentials, TokenError};

/// RFC 8693 §3: the type of the subject token and of the token asked for.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §2.1: the grant type of token exchange.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The longest a token is cached, whatever its lifetime.
const MAX_CACHED_SECS: u64 = 86_400;
/// The longest token answer read: a token response is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How a [`TokenClient`] reaches Tessera. [`TokenClientConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct TokenClientConfig {
    /// Tessera's base URL (`https://auth.example.com`; plain `http` only to a loopback address). The token
    /// endpoint is `/oauth2/token` under it.
    pub tessera_url: String,
    /// Who this service is.
    pub credentials: Credentials,
    /// How long before its expiry a cached token is replaced. Default 10 s; never more than half a token's
    /// lifetime, so a 60-second token serves at least 30 s.
    pub refresh_margin: Duration,
    /// How long one request to the token endpoint may take. Default 5 s.
    pub timeout: Duration,
    /// Tries per token request when Tessera is unreachable, answers 5xx or 429 (never on a refusal), with
    /// jittered exponential backoff from 100 ms up to 2 s. Default 3.
    pub attempts: u32,
    /// Derived tokens kept, one per (subject token, audience, scope). Default 10,000.
    pub exchange_cache_capacity: usize,
}

impl TokenClientConfig {
    /// Tokens from the Tessera at `tessera_url` for the client `credentials` name; every other setting its default.
    #[must_use]
    pub fn new(tessera_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            tessera_url: tessera_url.into().trim_end_matches('/').to_owned(),
            credentials,
            refresh_margin: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            attempts: 3,
            exchange_cache_capacity: 10_000,
        }
    }
}

/// What a token is asked for: one audience, and optionally fewer scopes than the most allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    audience: String,
    scope: Option<String>,
}

/// Service tokens and derived tokens from Tessera, cached. Cloning is cheap and shares the caches.
#[derive(Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    token_endpoint: String,
    config: TokenClientConfig,
    clock: Arc<dyn Clock>,
    service: TokenCache<Target>,
    /// Keyed by the subject token's SHA-256: the cache holds no user's token in its keys.
    derived: TokenCache<([u8; 32], Target)>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient").field("token_endpoint", &self.inner.token_endpoint).finish_non_exhaustive()
    }
}

impl TokenClient {
    /// A client of the token endpoint `config` names.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem of `config`.
    pub fn new(config: TokenClientConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// [`TokenClient::new`] reading wall-clock time (client assertions' `iat` and `exp`) from `clock`.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem of `config`.
    pub fn with_clock(config: TokenClientConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let mut problems = config.credentials.problems();
        if let Err(why) = crate::check_https_or_loopback("tessera_url", &config.tessera_url) {
            problems.push(why);
        }
        if config.timeout.is_zero() {
            problems.push("timeout must be more than zero".to_owned());
        }
        if config.attempts == 0 {
            problems.push("attempts must be at least 1".to_owned());
        }
        if config.exchange_cache_capacity == 0 {
            problems.push("exchange_cache_capacity must be at least 1".to_owned());
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A token endpoint that redirects is a configuration to fix, not a hop to send credentials along.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| problems.push(format!("cannot build the HTTP client: {err}")))
            .ok();
        let Some(http) = http.filter(|_| problems.is_empty()) else { return Err(ConfigError(problems)) };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                token_endpoint: format!("{}/oauth2/token", config.tessera_url),
                service: TokenCache::new(1_000),
                derived: TokenCache::new(config.exchange_cache_capacity),
                config,
                clock,
            }),
        })
    }

    /// The client id this client authenticates as.
    #[must_use]
    pub fn client_id(&self) -> &str {
        self.inner.config.credentials.client_id()
    }

    /// A service token (`client_credentials`) for `audience`, with `scope` (space-separated) or, when `None`,
    /// every scope the client has. Cached per (audience, scope) until the refresh margin before it expires.
    ///
    /// # Errors
    /// [`TokenError`]: Tessera unreachable after the configured attempts, a refusal, or an unusable answer.
    pub async fn service_token(&self, audience: &str, scope: Option<&str>) -> Result<AccessToken, TokenError> {
        let target = Target { audience: audience.to_owned(), scope: scope.map(str::to_owned) };
        self.inner
            .service
            .get(&target, || {
                let mut form = vec![("grant_type", "client_credentials".to_owned()), ("audience", audience.to_owned())];
                if let Some(scope) = scope {
                    form.push(("scope", scope.to_owned()));
                }
                self.request(form)
            })
            .await
    }

    /// A token derived from a user's `subject_token` (token exchange, RFC 8693) for `audience`, narrowed to
    /// `scope` when given. Cached per (subject token, audience, scope), never past the derived token's expiry
    /// less the margin; revoking the user's session revokes it at every verifier.
    ///
    /// # Errors
    /// [`TokenError`]: as [`TokenClient::service_token`]; a subject token Tessera no longer accepts is a
    /// [`TokenError::Refused`].
    pub async fn exchange(
        &self,
        subject_token: &str,
        audience: &str,
        scope: Option<&str>,
    ) -> Result<AccessToken, TokenError> {
        let key =
            (subject_hash(subject_token), Target { audience: audience.to_owned(), scope: scope.map(str::to_owned) });
        self.inner
            .derived
            .get(&key, || {
                let mut form = vec![
                    ("grant_type", TOKEN_EXCHANGE.to_owned()),
                    ("subject_token", subject_token.to_owned()),
                    ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
                    ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
                    ("audience", audience.to_owned()),
                ];
                if let Some(scope) = scope {
                    form.push(("scope", scope.to_owned()));
                }
                self.request(form)
            })
            .await
    }

    /// Forgets `token`, the service token for (`audience`, `scope`), after a destination refused it.
    pub fn forget_service_token(&self, audience: &str, scope: Option<&str>, token: &AccessToken) {
        let target = Target { audience: audience.to_owned(), scope: scope.map(str::to_owned) };
        self.inner.service.forget(&target, token);
    }

    /// Forgets `token`, derived from `subject_token` for (`audience`, `scope`), after a destination refused it.
    pub fn forget_derived_token(&self, subject_token: &str, audience: &str, scope: Option<&str>, token: &AccessToken) {
        let key =
            (subject_hash(subject_token), Target { audience: audience.to_owned(), scope: scope.map(str::to_owned) });
        self.inner.derived.forget(&key, token);
    }

    /// One token request, tried up to `attempts` times while the failure is transient.
    async fn request(&self, form: Vec<(&'static str, String)>) -> Result<Fetched, TokenError> {
        let attempts = self.inner.config.attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.request_once(form.clone()).await {
                Err(Failure::Transient(error)) if attempt < attempts => {
                    tracing::debug!(%error, attempt, "token request failed; trying again");
                    tokio::time::sleep(crate::TOKEN_BACKOFF.after(attempt)).await;
                    attempt += 1;
                }
                Err(Failure::Transient(error) | Failure::Final(error)) => return Err(error),
                Ok(fetched) => return Ok(fetched),
            }
        }
    }

    async fn request_once(&self, mut form: Vec<(&'static str, String)>) -> Result<Fetched, Failure> {
        let inner = &self.inner;
        let request = inner.http.post(&inner.token_endpoint).header(http::header::ACCEPT, "application/json");
        let request = inner
            .config
            .credentials
            .authenticate(request, &mut form, &inner.token_endpoint, &*inner.clock)
            .map_err(Failure::Final)?;
        let asked_at = Instant::now();
        let unreachable =
            |err: reqwest::Error| Failure::Transient(TokenError::Unreachable(err.without_url().to_string()));
        let answer = request.form(&form).send().await.map_err(unreachable)?;
        let status = answer.status();
        let body = read_bounded(answer).await?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Transient(TokenError::Unavailable(status.as_u16())));
        }
        if !status.is_success() {
            return Err(Failure::Final(refusal(status.as_u16(), &body)));
        }
        let answer = parse_answer(&body).map_err(Failure::Final)?;
        // A token is cached a day at most, whatever the answer says (and an absurd `expires_in` cannot overflow).
        let lifetime = Duration::from_secs(answer.expires_in.min(MAX_CACHED_SECS));
        let margin = inner.config.refresh_margin.min(lifetime / 2);
        Ok(Fetched {
            token: AccessToken::new(answer.access_token, asked_at + lifetime, answer.scope),
            fresh_until: asked_at + lifetime - margin,
        })
    }
}

/// A failed token request, and whether trying again may help.
enum Failure {
    Transient(TokenError),
    Final(TokenError),
}

fn subject_hash(subject_token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject_token.as_bytes());
    let mut hash = [0; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// The answer's body: a connection broken off is worth another try, an answer past [`MAX_ANSWER_BYTES`] is not.
async fn read_bounded(mut answer: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    let broken = |err: reqwest::Error| Failure::Transient(TokenError::Unreachable(err.without_url().to_string()));
    while let Some(chunk) = answer.chunk().await.map_err(broken)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            let why = format!("the answer is longer than {MAX_ANSWER_BYTES} bytes");
            return Err(Failure::Final(TokenError::BadAnswer(why)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// RFC 6749 §5.1's successful answer, as far as it is used.
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    token_type: String,
    expires_in: u64,
    scope: Option<String>,
}

/// The successful answer, checked: a non-empty Bearer token that expires in the future. The error never quotes
/// the body, which may hold a token.
fn parse_answer(body: &[u8]) -> Result<Answer, TokenError> {
    let bad = |why: &str| TokenError::BadAnswer(why.to_owned());
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|err| TokenError::BadAnswer(format!("not a token response ({})", describe(err.classify()))))?;
    if !answer.token_type.eq_ignore_ascii_case("bearer") {
        return Err(bad("token_type is not Bearer"));
    }
    if answer.access_token.is_empty() || !answer.access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("access_token is empty or not printable ASCII"));
    }
    if answer.expires_in == 0 {
        return Err(bad("expires_in is zero"));
    }
    Ok(answer)
}

/// RFC 6749 §5.2's error answer, or what stands for it when the body is not one.
fn refusal(status: u16, body: &[u8]) -> TokenError {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        error: String,
        error_description: Option<String>,
    }
    // Codes and descriptions are printable ASCII (RFC 6749 §5.2); anything else is not repeated.
    let printable = |text: &str| text.len() <= 200 && text.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(answer) if printable(&answer.error) => TokenError::Refused {
            status,
            error: answer.error,
            description: answer.error_description.filter(|text| printable(text)),
        },
        _ => TokenError::Refused { status, error: "unknown".to_owned(), description: None },
    }
}

/// What kind of JSON error, without the text around it (the body may hold a token).
fn describe(category: serde_json::error::Category) -> &'static str {
    match category {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a field is missing or has the wrong type",
        serde_json::error::Category::Eof => "cut short",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answer_is_checked_and_never_quoted() {
        let ok = parse_answer(br#"{"access_token":"abc.def.ghi","token_type":"bearer","expires_in":60}"#).unwrap();
        assert_eq!((ok.access_token.as_str(), ok.expires_in), ("abc.def.ghi", 60));
        for (body, expected) in [
            (&br#"{"access_token":"secret-token","token_type":"mac","expires_in":60}"#[..], "token_type"),
            (br#"{"access_token":"","token_type":"Bearer","expires_in":60}"#, "access_token"),
            (br#"{"access_token":"secret-token","token_type":"Bearer","expires_in":0}"#, "expires_in"),
            (br#"{"access_token":"secret-token","token_type":"Bearer","expires_in":-5}"#, "wrong type"),
            (br#"{"access_token":"secret-token","token_type":"Bearer"}"#, "missing"),
            (b"<html>secret-token</html>", "not JSON"),
        ] {
            let error = parse_answer(body).err().unwrap().to_string();
            assert!(error.contains(expected) && !error.contains("secret-token"), "{error}");
        }
    }

    #[test]
    fn refusals_keep_rfc_6749_codes_and_drop_anything_else() {
        let refused = refusal(400, br#"{"error":"invalid_scope","error_description":"not yours"}"#);
        assert_eq!(
            refused,
            TokenError::Refused { status: 400, error: "invalid_scope".into(), description: Some("not yours".into()) }
        );
        let proxy = refusal(403, b"<html>Forbidden</html>");
        assert_eq!(proxy, TokenError::Refused { status: 403, error: "unknown".into(), description: None });
        let control = refusal(400, b"{\"error\":\"bad\\u001b[31m\"}");
        assert_eq!(control, TokenError::Refused { status: 400, error: "unknown".into(), description: None });
    }
}
