//! Everything a request handler needs, shared behind one `Arc`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use tessera_jose::{encode_jwt, Audience, Claims, ACCESS_TOKEN_TYP};
use tessera_model::{Millis, Provenance, RefreshRules, Revocation, Session, SPAN_TARGET};
use tessera_revocation::RevocationIndex;
use tessera_store::Store;

use crate::auth::failures::rate_limited;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::keys::KeyService;
use crate::secrets::{random_b64_from, session_id_from, OsRng, Rng, TokenSecrets};
use crate::settings::Settings;

/// Shared state of the service. Handlers reach it through the accessors below, never its fields.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: KeyService,
    /// The MAC keys of refresh and CSRF tokens, kept current by `keys` as they rotate.
    secrets: Arc<TokenSecrets>,
    revocations: RevocationIndex,
    clients: crate::clients::ClientDirectory,
    limits: Limits,
    /// Password checks: one per core at a time, a bounded queue, the rest refused.
    password_checks: crate::password::HashingQueue,
    metrics: Option<PrometheusHandle>,
    issuers: Vec<Arc<crate::issuers::ExternalIssuer>>,
    /// Where session ids, token ids and request ids come from.
    rng: Arc<dyn Rng>,
    /// The migration from legacy session cookies, when `settings.migration` is set and an adapter is given.
    migration: std::sync::OnceLock<crate::migration::Migration>,
    /// Security events: recorded, and sent to the webhook when one is configured.
    events: crate::events::SecurityEvents,
    /// Bumped whenever the revocation log may have grown (a revocation here, entries a sync applied): what a
    /// long-polling feed request waits on.
    log_growth: tokio::sync::watch::Sender<u64>,
    /// True once the server stops accepting requests: long polls answer at once instead of holding it up.
    closing: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// Assembles the state, taking randomness from the OS CSPRNG. The server secrets come from the key service,
    /// which loaded them with the keyring.
    #[must_use]
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        keys: KeyService,
        clock: Arc<dyn Clock>,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        Self::with_rng(settings, store, keys, clock, metrics, Arc::new(OsRng))
    }

    /// [`AppState::new`], taking randomness from `rng`: tests inject one to make ids deterministic.
    #[must_use]
    pub fn with_rng(
        settings: Settings,
        store: Arc<dyn Store>,
        keys: KeyService,
        clock: Arc<dyn Clock>,
        metrics: Option<PrometheusHandle>,
        rng: Arc<dyn Rng>,
    ) -> Self {
        let secrets = keys.token_secrets();
        let limits = Limits::new(&settings);
        let password_checks = crate::password::HashingQueue::per_core(settings.password_hash_queue);
        let retention = settings.retention();
        let issuers = settings
            .trusted_issuers
            .iter()
            .map(|config| {
                Arc::new(crate::issuers::ExternalIssuer::new(
                    config.clone(),
                    settings.leeway_secs,
                    settings.max_token_bytes,
                    settings.remembered_verifications,
                ))
            })
            .collect();
        let revocations = match settings.compact_revocations {
            None => RevocationIndex::new(retention),
            Some(compact) => {
                let width_ms = Millis::try_from(compact.bucket_width.as_millis()).unwrap_or(Millis::MAX);
                RevocationIndex::compact(retention, width_ms, compact.bucket_capacity).unwrap_or_else(|err| {
                    // Configuration validation rules this out; the exact index is the safe way to carry on.
                    tracing::error!(error = %err, "compact revocation index not possible; using the exact index");
                    RevocationIndex::new(retention)
                })
            }
        };
        let events =
            crate::events::SecurityEvents::new(Arc::clone(&store), Arc::clone(&clock), settings.webhook.as_ref());
        keys.report_to(events.clone());
        Self(Arc::new(Inner {
            settings,
            store,
            clock,
            keys,
            secrets,
            revocations,
            clients: crate::clients::ClientDirectory::default(),
            limits,
            password_checks,
            metrics,
            issuers,
            rng,
            migration: std::sync::OnceLock::new(),
            events,
            log_growth: tokio::sync::watch::Sender::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// Turns on the migration from legacy session cookies (`settings.migration`), with `sessions` reading them.
    /// Call before serving; the stored rollout is loaded by [`crate::start_background`].
    ///
    /// # Errors
    /// When the settings have no migration section, or it is already on.
    pub fn enable_migration(&self, sessions: Arc<dyn tessera_legacy::LegacySessions>) -> Result<(), &'static str> {
        let settings = self.0.settings.migration.as_ref().ok_or("the settings have no migration section")?;
        self.0
            .migration
            .set(crate::migration::Migration::new(settings, sessions))
            .map_err(|_| "the migration is already enabled")
    }

    /// The migration, when enabled.
    pub(crate) fn migration(&self) -> Option<&crate::migration::Migration> {
        self.0.migration.get()
    }

    /// Security events.
    pub(crate) fn events(&self) -> &crate::events::SecurityEvents {
        &self.0.events
    }

    /// Changes whenever the revocation log may have grown.
    pub(crate) fn log_growth(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.log_growth.subscribe()
    }

    /// Wakes whoever waits on [`log_growth`](Self::log_growth).
    pub(crate) fn log_grew(&self) {
        self.0.log_growth.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Says the server is shutting down: requests waiting (long polls) answer now.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    /// Becomes true when the server shuts down.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    /// The revocation index.
    #[must_use]
    pub fn revocations(&self) -> &RevocationIndex {
        &self.0.revocations
    }

    /// Records a revocation durably and applies it to this node's index before the caller answers, so this
    /// node's next request already sees it; other nodes follow the log. Whether it changed anything.
    pub(crate) async fn revoke(&self, revocation: Revocation, provenance: Provenance) -> Result<bool, ApiError> {
        let now = self.0.clock.now_ms();
        let (kind, target, _) = revocation.to_columns();
        let changed = self.0.store.revoke(revocation.clone(), provenance.clone(), now).await?;
        self.0.revocations.apply_local(&revocation, now);
        self.log_grew();
        tracing::info!(
            target: SPAN_TARGET,
            revocation_kind = kind,
            revocation_target = target,
            actor = %provenance.actor,
            changed,
            "revocation.committed"
        );
        if changed {
            self.0.events.revoked(&revocation, &provenance);
        }
        Ok(changed)
    }

    /// The `iat` for a new token of `sub` issued to `client_id`: now — or, when a revocation instant of either
    /// falls in the current second, the next second, after waiting for it. Tokens carry whole seconds and a token
    /// from an instant's second counts as revoked, so a token minted in that second (a login right after a
    /// logout-everywhere, a grant right after a secret rotation) would be born dead. The wait is on the injected
    /// clock: under a test's manual clock it is over at once.
    pub(crate) async fn issue_time(&self, sub: Option<&str>, client_id: Option<&str>) -> i64 {
        let now_ms = self.0.clock.now_ms();
        match self.0.revocations.latest_instant(sub, client_id) {
            Some(instant) if instant.div_euclid(1000) >= now_ms.div_euclid(1000) => {
                let next_second = instant.div_euclid(1000) + 1;
                let wait = next_second.saturating_mul(1000).saturating_sub(now_ms);
                let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0));
                let real = self.clock().real_time_of(wait);
                if !real.is_zero() {
                    tokio::time::sleep(real).await;
                }
                next_second
            }
            _ => now_ms.div_euclid(1000),
        }
    }

    /// Signs an access token (`typ: at+jwt`) and counts it by kind, algorithm and client.
    pub(crate) fn sign_access_token(&self, claims: &Claims, kind: &'static str) -> Result<String, ApiError> {
        let key = self.0.keys.signing_key();
        let span =
            tracing::info_span!(target: SPAN_TARGET, "token.sign", token_type = kind, alg = key.algorithm().as_str());
        let token = span
            .in_scope(|| encode_jwt(&key, Some(ACCESS_TOKEN_TYP), claims))
            .map_err(|err| ApiError::internal(format!("signing failed: {err}")))?;
        tracing::info!(
            target: SPAN_TARGET,
            token_type = kind,
            jti = claims.jti.as_deref(),
            sid = claims.sid.as_deref(),
            sub = claims.sub.as_deref(),
            client_id = claims.client_id.as_deref(),
            "token.issued"
        );
        count_issued(kind, key.algorithm().as_str(), claims.client_id.as_deref().unwrap_or(&self.settings().client_id));
        Ok(token)
    }

    /// The keys in service.
    #[must_use]
    pub fn keys(&self) -> &KeyService {
        &self.0.keys
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// The MAC keys of refresh and CSRF tokens.
    pub(crate) fn secrets(&self) -> &TokenSecrets {
        &self.0.secrets
    }

    /// The registered clients, and which client each recently seen session belongs to.
    pub(crate) fn clients(&self) -> &crate::clients::ClientDirectory {
        &self.0.clients
    }

    /// The rate limiters.
    pub(crate) fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// The queue password checks run through.
    pub(crate) fn password_checks(&self) -> &crate::password::HashingQueue {
        &self.0.password_checks
    }

    /// The Prometheus recorder, when metrics are enabled.
    pub(crate) fn metrics(&self) -> Option<&PrometheusHandle> {
        self.0.metrics.as_ref()
    }

    /// `N` random bytes, base64url: token and request ids.
    pub(crate) fn random_b64<const N: usize>(&self) -> Result<String, ApiError> {
        random_b64_from::<N>(self.0.rng.as_ref()).map_err(ApiError::internal)
    }

    /// The random number generator (the OS's, or a test's).
    pub(crate) fn rng(&self) -> &dyn crate::secrets::Rng {
        self.0.rng.as_ref()
    }

    /// A new random session id.
    pub(crate) fn new_session_id(&self) -> Result<String, ApiError> {
        session_id_from(self.0.rng.as_ref()).map_err(ApiError::internal)
    }

    /// The trusted external issuers.
    pub(crate) fn issuers(&self) -> &[Arc<crate::issuers::ExternalIssuer>] {
        &self.0.issuers
    }

    /// How long a rotated refresh token may be replayed, and how long a session may sit unused.
    pub(crate) fn refresh_rules(&self) -> RefreshRules {
        let settings = self.settings();
        RefreshRules { grace_ms: millis(settings.grace), idle_timeout_ms: millis(settings.idle_timeout) }
    }

    /// The access-token claims of a session, issued at `now` (seconds): RFC 9068 claims plus `sid`, `roles` and
    /// the session's extra claims.
    pub(crate) fn session_claims(&self, session: &Session, now: i64) -> Result<Claims, ApiError> {
        let settings = self.settings();
        let mut extra = session.claims.clone();
        if !session.roles.is_empty() {
            extra.insert("roles".into(), Value::from(session.roles.clone()));
        }
        let claims = Claims {
            iss: Some(settings.issuer.clone()),
            sub: Some(session.sub.clone()),
            aud: Some(Audience::One(settings.audience.clone())),
            exp: Some(now.saturating_add(settings.access_ttl_secs)),
            iat: Some(now),
            jti: Some(self.random_b64::<16>()?),
            client_id: Some(session.client_id.clone()),
            scope: session.scope.clone(),
            sid: Some(session.sid.clone()),
            nbf: None,
            extra,
        };
        Ok(claims)
    }
}

/// Counts an issued token. Clients are registered ones (or the configured first-party client), so the `client`
/// label stays bounded.
pub(crate) fn count_issued(kind: &'static str, alg: &'static str, client: &str) {
    static ISSUED: std::sync::OnceLock<crate::series::Resolved<(&'static str, &'static str), metrics::Counter>> =
        std::sync::OnceLock::new();
    ISSUED
        .get_or_init(crate::series::Resolved::new)
        .get(client, (kind, alg), || {
            metrics::counter!("tessera_tokens_issued_total", "type" => kind, "alg" => alg, "client" => client.to_owned())
        })
        .increment(1);
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Rate limiters.
pub(crate) struct Limits {
    login_by_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_failures: crate::auth::failures::LoginFailures,
    failed_refresh_by_ip: DefaultKeyedRateLimiter<IpAddr>,
    failed_refresh_by_user: DefaultKeyedRateLimiter<String>,
    feed_by_client: DefaultKeyedRateLimiter<String>,
    /// Long polls of the revocation feed waiting now, per client, and how many one client may hold.
    feed_waits: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    feed_waits_per_client: u32,
}

/// One of a client's long-poll slots on the revocation feed, given back when dropped.
pub(crate) struct FeedWaitSlot<'a> {
    limits: &'a Limits,
    client_id: &'a str,
}

impl Drop for FeedWaitSlot<'_> {
    fn drop(&mut self) {
        let mut waits = self.limits.feed_waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = waits.get_mut(self.client_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                waits.remove(self.client_id);
            }
        }
    }
}

/// The key an address is limited under: an IPv6 client usually holds a whole /64 and can pick any address in
/// it, so the /64 is limited as one; an IPv4-mapped IPv6 address is the IPv4 address.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
        IpAddr::V4(_) => ip,
    }
}

/// Whole seconds until a refused key may try again, at least 1 (for `Retry-After`).
fn seconds_to_wait(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
    not_until.wait_time_from(now).as_secs().max(1)
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    fn new(settings: &Settings) -> Self {
        let r = settings.rate_limits;
        Self {
            login_by_ip: RateLimiter::keyed(per_minute(r.login_per_ip)),
            login_failures: crate::auth::failures::LoginFailures::new(
                r.failed_login_per_user_and_ip,
                r.failed_login_per_user,
            ),
            failed_refresh_by_ip: RateLimiter::keyed(per_minute(r.failed_refresh_per_ip)),
            failed_refresh_by_user: RateLimiter::keyed(per_minute(r.failed_refresh_per_user)),
            feed_by_client: RateLimiter::keyed(per_minute(r.feed_per_client)),
            feed_waits: std::sync::Mutex::default(),
            feed_waits_per_client: r.feed_waits_per_client,
        }
    }

    /// Counts a login attempt against its address, whatever its outcome (each costs a password hash), and lets it
    /// go ahead unless its address or its user has too many failures (see [`crate::auth::failures`]); call
    /// [`crate::auth::failures::Attempt::failed`] when the password turns out wrong. `Err` says how long to wait.
    pub(crate) fn login(
        &self,
        ip: IpAddr,
        username: &str,
    ) -> Result<crate::auth::failures::Attempt<'_>, crate::auth::failures::Refused> {
        self.login_by_ip.check_key(&rate_key(ip)).map_err(|not_until| {
            rate_limited("login_per_ip");
            crate::auth::failures::Refused { wait: Duration::from_secs(seconds_to_wait(not_until)), locked_by: None }
        })?;
        self.login_failures.attempt(&username.to_lowercase(), rate_key(ip))
    }

    /// Counts a failed refresh from `ip`, and against `user` when the token named a session of theirs;
    /// `Some(seconds)` to wait once either is over its budget, so the failing refreshes are answered 429. Only
    /// failures are limited: a valid refresh token is honoured from any address and for any user, since many users
    /// share one NAT address, and someone replaying a user's stolen token must not lock that user out.
    pub(crate) fn refresh_failed(&self, ip: IpAddr, user: Option<&str>) -> Option<u64> {
        let by_ip = self.failed_refresh_by_ip.check_key(&rate_key(ip)).err().map(seconds_to_wait);
        let by_user =
            user.and_then(|user| self.failed_refresh_by_user.check_key(&user.to_owned()).err().map(seconds_to_wait));
        if by_ip.is_some() {
            rate_limited("failed_refresh_per_ip");
        }
        if by_user.is_some() {
            rate_limited("failed_refresh_per_user");
        }
        by_ip.max(by_user)
    }

    /// Counts a revocation-feed request of an authenticated client: `Err(seconds)` to wait once it is over its
    /// budget.
    pub(crate) fn feed(&self, client_id: &str) -> Result<(), u64> {
        self.feed_by_client.check_key(&client_id.to_owned()).map_err(|not_until| {
            rate_limited("feed_per_client");
            seconds_to_wait(not_until)
        })
    }

    /// Takes one of `client_id`'s long-poll slots for as long as the slot lives; `None` when the client already holds
    /// `rate_limits.feed_waits_per_client` of them. The request budget alone would let one client park a minute's
    /// worth of requests at once, each holding a connection and a task for up to 30 s.
    pub(crate) fn feed_wait<'a>(&'a self, client_id: &'a str) -> Option<FeedWaitSlot<'a>> {
        let mut waits = self.feed_waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = waits.entry(client_id.to_owned()).or_insert(0);
        if *count >= self.feed_waits_per_client {
            rate_limited("feed_waits_per_client");
            return None;
        }
        *count += 1;
        Some(FeedWaitSlot { limits: self, client_id })
    }

    /// Forgets the keys whose budget is full again. Keys are client addresses and attacker-chosen usernames, so
    /// without this the limiters would grow with every address and name ever seen.
    pub(crate) fn forget_idle(&self) {
        for limiter in [&self.login_by_ip, &self.failed_refresh_by_ip] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.failed_refresh_by_user, &self.feed_by_client] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.login_failures.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU8, Ordering};

    use tessera_jose::base64url;

    use crate::clock::ManualClock;
    use crate::secrets::RngFailed;

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_and_a_mapped_ipv4_by_its_address() {
        let key = |text: &str| rate_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    }

    const START_MS: Millis = 1_800_000_000_000;

    /// Bytes 0, 1, 2, … in order, across calls.
    struct CountingRng(AtomicU8);

    impl Rng for CountingRng {
        fn fill(&self, dest: &mut [u8]) -> Result<(), RngFailed> {
            for byte in dest {
                *byte = self.0.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    }

    fn state_in(dir: &std::path::Path, clock: Arc<ManualClock>, rng: Arc<dyn Rng>) -> AppState {
        let store = Arc::new(tessera_store::SqliteStore::open(&dir.join("tessera.db")).unwrap());
        let settings = Settings::default();
        let policy = tessera_jose::Policy::access(settings.issuer.clone(), vec![settings.audience.clone()]);
        let verifier = tessera_jose::Verifier::new(tessera_jose::KeySet::new(), policy);
        let keystore = tessera_keys::KeyStore::open(dir, None).unwrap();
        let keys =
            KeyService::load(keystore, tessera_keys::RotationPolicy::default(), verifier, clock.now_secs()).unwrap();
        AppState::with_rng(settings, store, keys, clock, None, rng)
    }

    #[tokio::test]
    async fn session_ids_and_token_ids_come_from_the_injected_rng() {
        let dir = tempfile::tempdir().unwrap();
        let rng = Arc::new(CountingRng(AtomicU8::new(0)));
        let state = state_in(dir.path(), Arc::new(ManualClock::new(START_MS)), rng);
        let request = crate::session::SessionRequest {
            sub: "alice".into(),
            client_id: "tessera".into(),
            scope: None,
            roles: Vec::new(),
            claims: serde_json::Map::new(),
            user_agent: None,
        };
        let issued = crate::session::start(&state, request).await.unwrap();
        let sid = state.secrets().open_refresh_token(&issued.refresh_token).unwrap().sid;
        assert_eq!(sid, base64url::encode((0..16).collect::<Vec<u8>>()), "the first 16 bytes drawn");
        let token = tessera_jose::decode_unverified(&issued.access_token, 8192).unwrap();
        let jti = token.payload.claims().unwrap().jti.clone().unwrap();
        assert_eq!(jti, base64url::encode((16..32).collect::<Vec<u8>>()), "the next 16");
    }

    #[tokio::test]
    async fn the_wait_for_the_next_second_is_on_the_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let now = START_MS + 300;
        let state = state_in(dir.path(), Arc::new(ManualClock::new(now)), Arc::new(OsRng));
        let logged_out = Revocation::Subject { sub: "alice".into(), not_before: now };
        state.revocations().apply_local(&logged_out, now);
        // Paused, tokio's time jumps over any sleep at once and counts it: what elapses is what was slept.
        tokio::time::pause();
        let started = tokio::time::Instant::now();
        assert_eq!(state.issue_time(Some("alice"), None).await, START_MS / 1000 + 1, "the next second");
        assert_eq!(started.elapsed(), Duration::ZERO, "no real time slept under a manual clock");
        assert_eq!(state.issue_time(Some("bob"), None).await, START_MS / 1000, "others are issued at once");
    }
}
