//! [`TokenVerifier`]: Tessera's keys and revocations kept current in the background, and the check of a token
//! against them — what a Tessera node does for `/verify`, inside the service.

use std::sync::Arc;
use std::time::Duration;

use tessera_jose::{Claims, Payload, Policy, TokenError};
use tessera_model::clock::{Clock, SystemClock};
use tessera_model::Millis;
use tessera_revocation::{Check, Retention, RevocationIndex, TokenRef};

use crate::feed::{Feed, FEED_PATH};
use crate::keys::{Quiet, RemoteKeys};
use tessera_client::{check_https_or_loopback, Credentials};

/// What a stale revocation index means: the feed has not been heard from for `stale_after`, so a revocation
/// made meanwhile may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StalePolicy {
    /// Refuse every token until the feed is back (the default): a revocation is never missed.
    #[default]
    FailClosed,
    /// Accept tokens the index does not know to be revoked (availability first); each is logged at debug.
    FailOpen,
}

/// How a [`TokenVerifier`] reaches Tessera and judges tokens. [`VerifierConfig::new`] gives the defaults.
#[derive(Clone)]
pub struct VerifierConfig {
    /// Tessera's base URL (`https://auth.example.com`; plain `http` only to a loopback address).
    pub tessera_url: String,
    /// The `iss` of Tessera's tokens (its `issuer` setting). Default: the base URL.
    pub issuer: String,
    /// This service's audience: a token must name it in `aud`.
    pub audience: String,
    /// The client this service authenticates as to the revocation feed (it needs the `revocations:read` scope):
    /// `client_secret_basic`, or `private_key_jwt` with [`Credentials::private_key`].
    pub credentials: Credentials,
    /// How long without a good answer from the feed before the index counts as stale. Default 60 s.
    pub stale_after: Duration,
    /// What a stale index means. Default [`StalePolicy::FailClosed`].
    pub stale_policy: StalePolicy,
    /// The longest lifetime of any token this service accepts: revocations older than it (plus leeway) are
    /// forgotten. Default 24 h; never shorter than Tessera's longest token lifetime.
    pub max_token_lifetime: Duration,
    /// Clock leeway on `exp`, `nbf` and `iat`. Default `tessera_jose::DEFAULT_LEEWAY_SECS`.
    pub leeway: Duration,
    /// How long a feed request waits for news once caught up. Default 9 s (Tessera shortens it to its request
    /// timeout less a second).
    pub poll_wait: Duration,
    /// Successful verifications remembered, so a token presented again skips the signature check. Default 10,000.
    pub remembered: usize,
}

impl std::fmt::Debug for VerifierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret (`Credentials` shows the client id and the method only).
        f.debug_struct("VerifierConfig")
            .field("tessera_url", &self.tessera_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("credentials", &self.credentials)
            .field("stale_after", &self.stale_after)
            .field("stale_policy", &self.stale_policy)
            .finish_non_exhaustive()
    }
}

impl VerifierConfig {
    /// Tokens of the Tessera at `tessera_url` for `audience`; revocations read as `client_id` with
    /// `client_secret` (`client_secret_basic`; set [`credentials`](Self::credentials) for `private_key_jwt`);
    /// every other setting its default.
    #[must_use]
    pub fn new(
        tessera_url: impl Into<String>,
        audience: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        let tessera_url = tessera_url.into().trim_end_matches('/').to_owned();
        Self {
            issuer: tessera_url.clone(),
            tessera_url,
            audience: audience.into(),
            credentials: Credentials::secret(client_id, client_secret),
            stale_after: Duration::from_secs(60),
            stale_policy: StalePolicy::FailClosed,
            max_token_lifetime: Duration::from_secs(86_400),
            leeway: Duration::from_secs(u64::try_from(tessera_jose::DEFAULT_LEEWAY_SECS).unwrap_or(30)),
            poll_wait: Duration::from_secs(9),
            remembered: 10_000,
        }
    }
}

/// Why a [`TokenVerifier`] could not start. Configuration problems are all reported at once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable, and why (every problem).
    #[error("invalid verifier configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The HTTP client could not be set up.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// There is no Tokio runtime to run the background tasks on.
    #[error("TokenVerifier::start must be called inside a Tokio runtime")]
    NoRuntime,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a valid access token of this Tessera for this audience (signature, algorithm, type, issuer, audience,
    /// expiry, size, ...).
    #[error("invalid token: {0}")]
    Invalid(TokenError),
    /// A JWS whose payload is not a claims object.
    #[error("invalid token: not a claims object")]
    NotClaims,
    /// Revoked: its session, its subject (up to an instant), its client, or the token itself.
    #[error("token revoked")]
    Revoked,
    /// The revocation index is stale and the policy fails closed: the answer is not known, the token may be fine.
    #[error("revocations unknown: the feed has not been heard from in time")]
    Stale,
    /// Tessera's keys have not been fetched yet (it was unreachable since the start): the token may be fine.
    #[error("keys unknown: Tessera's key set has not been fetched yet")]
    KeysUnknown,
}

/// Verifies Tessera's access tokens in process. Its background tasks (keys, feed) end when it is dropped.
pub struct TokenVerifier {
    keys: Arc<RemoteKeys>,
    index: Arc<RevocationIndex>,
    clock: Arc<dyn Clock>,
    stale_after_ms: Millis,
    stale_policy: StalePolicy,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl Drop for TokenVerifier {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl TokenVerifier {
    /// Starts keeping Tessera's keys and revocations current, on the current Tokio runtime. It returns at once:
    /// until the first key set and the first feed answer arrive, tokens are refused (no keys; stale index).
    ///
    /// # Errors
    /// An unusable configuration (every problem at once), no HTTP client, no runtime.
    pub fn start(config: VerifierConfig) -> Result<Self, StartError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// [`start`](Self::start), reading time from `clock`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn with_clock(config: VerifierConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let mut problems = Vec::new();
        if let Err(why) = check_https_or_loopback("tessera_url", &config.tessera_url) {
            problems.push(why);
        }
        for (name, value) in [("issuer", &config.issuer), ("audience", &config.audience)] {
            if value.trim().is_empty() {
                problems.push(format!("{name} must not be empty"));
            }
        }
        problems.extend(config.credentials.problems());
        if config.stale_after <= config.poll_wait {
            problems.push("stale_after must be longer than poll_wait (a quiet long poll is not staleness)".to_owned());
        }
        if !problems.is_empty() {
            return Err(StartError::Invalid(problems));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let millis = |duration: Duration| Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX);
        let mut policy = Policy::access(config.issuer.clone(), vec![config.audience.clone()]);
        policy.leeway_secs = i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX);
        let keys = Arc::new(RemoteKeys::new(
            format!("{}/.well-known/jwks.json", config.tessera_url),
            policy,
            config.remembered,
        ));
        let index = Arc::new(RevocationIndex::new(Retention {
            max_token_lifetime_ms: millis(config.max_token_lifetime),
            leeway_ms: millis(config.leeway),
        }));
        let client = crate::keys::client()?;
        // The feed's requests carry their own, longer timeout (they may wait for news).
        let feed_client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let feed = Feed {
            client: feed_client,
            url: format!("{}{FEED_PATH}", config.tessera_url),
            token_endpoint: format!("{}/oauth2/token", config.tessera_url),
            credentials: config.credentials.clone(),
            wait: config.poll_wait,
        };
        let tasks = vec![
            runtime.spawn({
                let (keys, clock) = (Arc::clone(&keys), Arc::clone(&clock));
                async move { keys.keep_current(&client, &*clock, &Quiet).await }
            }),
            runtime.spawn({
                let (index, clock) = (Arc::clone(&index), Arc::clone(&clock));
                async move { crate::feed::follow(feed, &index, &*clock).await }
            }),
        ];
        Ok(Self {
            keys,
            index,
            clock,
            stale_after_ms: millis(config.stale_after),
            stale_policy: config.stale_policy,
            tasks,
        })
    }

    /// Verifies `token`: signature and claims under Tessera's policy, then this service's revocation index, then
    /// the stale policy.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        let now_ms = self.clock.now_ms();
        if self.keys.verifier().keys().is_empty() {
            // Tessera answers its JWKS with at least its active key: an empty set means none was fetched yet.
            return Err(Refusal::KeysUnknown);
        }
        let verified = self.keys.verifier().verify(token, now_ms.div_euclid(1000)).map_err(|err| {
            if matches!(err, TokenError::UnknownKey(_)) {
                self.keys.unknown_kid(now_ms);
            }
            Refusal::Invalid(err)
        })?;
        let Payload::Claims(claims) = verified.payload else {
            return Err(Refusal::NotClaims);
        };
        match self.index.check(&token_ref(&claims)) {
            Check::Valid => {}
            // The index here is exact: it never asks for a confirmation, and a question it cannot answer refuses.
            Check::Revoked | Check::Confirm(_) => return Err(Refusal::Revoked),
        }
        if now_ms.saturating_sub(self.index.last_sync_ms()) > self.stale_after_ms {
            match self.stale_policy {
                StalePolicy::FailClosed => return Err(Refusal::Stale),
                StalePolicy::FailOpen => tracing::debug!("token accepted while the revocation index is stale"),
            }
        }
        Ok(claims)
    }

    /// The revocation index this verifier keeps (its size, its last sync).
    #[must_use]
    pub fn revocations(&self) -> &RevocationIndex {
        &self.index
    }
}

/// What the revocation index looks at in verified claims: the token, the one it was derived from by exchange
/// (`orig_jti`), its session, subject and client, and its times.
#[must_use]
pub fn token_ref(claims: &Claims) -> TokenRef<'_> {
    TokenRef {
        jti: claims.jti.as_deref(),
        orig_jti: claims.extra.get("orig_jti").and_then(serde_json::Value::as_str),
        sid: claims.sid.as_deref(),
        sub: claims.sub.as_deref(),
        client_id: claims.client_id.as_deref(),
        iat_secs: claims.iat.unwrap_or(i64::MIN),
        exp_secs: claims.exp.unwrap_or(i64::MIN),
    }
}
