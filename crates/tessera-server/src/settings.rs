//! What the service needs to know, in its own units; the binary builds it from the configuration file.

use std::time::Duration;

/// Service settings. Every default is the documented default of `tessera.example.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Audience of user access tokens, and what `/verify` accepts.
    pub audience: String,
    /// Access-token lifetime, seconds.
    pub access_ttl_secs: i64,
    /// Lifetime of service tokens from the client-credentials grant, seconds.
    pub service_ttl_secs: i64,
    /// The `scope` of users' own access tokens (space-separated), kept by the session through every refresh.
    pub user_scope: Option<String>,
    /// Refresh-family absolute lifetime, never extended by rotation.
    pub refresh_ttl: Duration,
    /// A session unused this long cannot be refreshed.
    pub idle_timeout: Duration,
    /// Re-presenting the previous refresh token within this window returns the same successor.
    pub grace: Duration,
    /// Clock skew allowed on token times, seconds.
    pub leeway_secs: i64,
    /// Longest token accepted, bytes.
    pub max_token_bytes: usize,
    /// Verified access tokens each verifier remembers (0: none); see [`tessera_jose::Verifier::remembering`].
    pub remembered_verifications: usize,
    /// `client_id` of sessions started by `/auth/login`.
    pub client_id: String,
    /// Origins allowed to call the browser endpoints besides the server's own (CORS and the CSRF origin check).
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (rate limits are per client address). Empty by
    /// default: the header is then ignored, since any client can write it.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The credential of `/admin/v1/*` (sent as a bearer token). `None` disables the admin API.
    pub admin_token: Option<String>,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Longest time a client may take over its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Longest time a client may take to send a request's head (line and headers), counted from the start of the
    /// connection or the end of the previous request on it.
    pub header_read_timeout: Duration,
    /// Password checks that may wait for a free core (one runs per core at a time); a login beyond them is
    /// answered 503 with `Retry-After`.
    pub password_hash_queue: usize,
    /// How often the keyring and the revocation log are re-read (changes made by `tessera` commands).
    pub reload_interval: Duration,
    /// Whether the server is reached over TLS (turns on HSTS).
    pub tls: bool,
    /// Which client may exchange tokens (RFC 8693) for which audience, and with which scopes at most.
    pub exchange_rules: Vec<ExchangeRule>,
    /// Per-route requirements of `/verify`, first match wins; unmatched routes need only a valid token.
    pub routes: Vec<RouteRule>,
    /// Which headers of `/verify` carry the original request's method and URI.
    pub forwarded_headers: ForwardedHeaders,
    /// The audience `/verify` requires when the gateway's auth URL names none (`/verify?audience=...`). `None`:
    /// any audience Tessera issues, or a trusted issuer's, is accepted there.
    pub verify_audience: Option<String>,
    /// Refuse (400) a `/verify` request that names no audience, neither in its URL nor by `verify_audience`.
    pub require_verify_audience: bool,
    /// Other issuers whose access tokens this server also accepts.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// How long the revocation index may go without a successful sync before it counts as stale.
    pub revocations_stale_after: Duration,
    /// How long the revocation log keeps its entries (who revoked what, when, why) for audit. Never less than
    /// verification needs: [`Settings::revocation_log_kept_ms`].
    pub revocation_log_retention: Duration,
    /// What verification does while the index is stale.
    pub stale_revocations: StalePolicy,
    /// Compact mode for the revocation index: revoked `jti`s in a time-bucketed prefilter, whose positives the
    /// store confirms. `None` (the default): the exact index.
    pub compact_revocations: Option<CompactRevocations>,
    /// Serve the demo application at `/` (a login page, a protected demo API, the user's sessions).
    pub demo: bool,
    /// The migration from legacy session cookies to tokens; `None` (the default): legacy cookies mean nothing.
    pub migration: Option<MigrationSettings>,
    /// Where security events are sent as they happen; `None` (the default): they are only recorded.
    pub webhook: Option<crate::events::WebhookSettings>,
    /// Signing users in for other applications (`/oauth2/authorize`): how long a login lasts, and the login
    /// page's look.
    pub sign_in: SignInSettings,
}

/// The authorization endpoint's login: how long it lasts and what its pages look like.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// How long a login at the login page lasts: applications send the browser back without asking for the
    /// password again until then (or until the user signs out).
    pub login_ttl: Duration,
    /// The look of the login, consent and logout pages.
    pub look: PageLook,
}

impl Default for SignInSettings {
    fn default() -> Self {
        Self { login_ttl: Duration::from_secs(12 * 3600), look: PageLook::default() }
    }
}

/// The look of the login, consent and logout pages: set in the configuration, never by editing templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLook {
    /// The name shown in titles and headings.
    pub name: String,
    /// A logo shown above the form: an `https` URL or a path on this server. `None`: no logo.
    pub logo_url: Option<String>,
    /// Buttons and links, a CSS hex colour (`#RGB` or `#RRGGBB`).
    pub accent_color: String,
    /// The page background, a CSS hex colour.
    pub background_color: String,
}

impl Default for PageLook {
    fn default() -> Self {
        Self {
            name: "Tessera".into(),
            logo_url: None,
            accent_color: "#1f5fbf".into(),
            background_color: "#f4f5f7".into(),
        }
    }
}

/// Whether `color` is a CSS hex colour, `#RGB` or `#RRGGBB`: the only form the pages' stylesheet takes, so a
/// configured colour can never close the rule it is put in.
#[must_use]
pub fn is_hex_color(color: &str) -> bool {
    color.strip_prefix('#').is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// How the migration from legacy session cookies runs on this node (the rollout itself is in the store).
#[derive(Debug, Clone)]
pub struct MigrationSettings {
    /// End the legacy session (through the adapter, where it can) once `/auth/migrate` has turned it into a
    /// Tessera session. Off by default: keeping it lets a rollback return the user to it without a new login.
    pub end_legacy_session: bool,
    /// Audiences a legacy session satisfies at `/verify?audience=...`; a legacy session carries none, so by
    /// default it opens only gateways whose auth URL names no audience.
    pub session_audiences: Vec<String>,
    /// How often each node re-reads the rollout from the store.
    pub poll_interval: Duration,
    /// What returns the rollout to its previous phase.
    pub triggers: tessera_migration::Triggers,
    /// What must hold before the rollout may advance.
    pub gates: tessera_migration::Gates,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            end_legacy_session: false,
            session_audiences: Vec::new(),
            poll_interval: Duration::from_millis(250),
            triggers: tessera_migration::Triggers {
                window: Duration::from_secs(30),
                min_requests: 50,
                error_rate: 0.01,
                p95: Duration::from_millis(200),
            },
            gates: tessera_migration::Gates {
                window: Duration::from_secs(60),
                min_requests: 100,
                max_error_rate: 0.001,
                max_p95: Duration::from_millis(50),
            },
        }
    }
}

/// The shape of compact mode's prefilter (see `tessera_revocation::compact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactRevocations {
    /// How wide an expiry bucket is; a bucket is dropped whole once its tokens have expired.
    pub bucket_width: Duration,
    /// The revocations one bucket is sized for; beyond it the bucket grows and its false-positive rate with it.
    pub bucket_capacity: usize,
}

/// What verification does while this node cannot confirm its revocation index is current (the store
/// unreachable for longer than [`Settings::revocations_stale_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    /// Refuse every token: a revocation made elsewhere in the meantime is never ignored. The default, because
    /// honouring a stolen token that was revoked is the failure this service exists to prevent.
    FailClosed,
    /// Accept tokens the index does not know to be revoked, and report it (log, metric): availability over
    /// revocation freshness.
    FailOpen,
}

/// An issuer whose tokens are verified with its published JWKS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// Its exact `iss`.
    pub issuer: String,
    /// Where its JWKS is published.
    pub jwks_url: String,
    /// Audiences its tokens must name (one of).
    pub audiences: Vec<String>,
    /// Whether its tokens may be the subject of a token exchange. False by default: the derived token would be
    /// signed by Tessera, so an external subject is exchanged only where the operator allows it.
    pub allow_exchange: bool,
    /// Its role names (the `roles` claim) that `/verify` passes on, each as the local role it stands for; every
    /// other role of its tokens is dropped. Empty by default: an external token carries no local role.
    pub role_map: std::collections::BTreeMap<String, String>,
    /// The same for its scopes (the `scope` claim): route rules and `X-Scope` see only the mapped names.
    pub scope_map: std::collections::BTreeMap<String, String>,
}

impl TrustedIssuer {
    /// The local roles this issuer's `roles` stand for, each once, in the order first named; unmapped roles are
    /// dropped.
    pub(crate) fn local_roles<'a>(&'a self, theirs: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        mapped(theirs, &self.role_map)
    }

    /// The same for its scopes.
    pub(crate) fn local_scopes<'a>(&'a self, theirs: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        mapped(theirs, &self.scope_map)
    }
}

/// The local names `map` gives `names`, each once, in the order first named; unmapped names are dropped.
fn mapped<'a>(
    names: impl Iterator<Item = &'a str>,
    map: &'a std::collections::BTreeMap<String, String>,
) -> Vec<&'a str> {
    let mut local: Vec<&str> = Vec::new();
    for name in names.filter_map(|name| map.get(name)) {
        if !local.contains(&name.as_str()) {
            local.push(name);
        }
    }
    local
}

/// Token exchange policy for one (client, audience) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRule {
    /// The calling client.
    pub client_id: String,
    /// The audience it may exchange for.
    pub audience: String,
    /// The most the derived token may carry (it also never exceeds the subject token's scope).
    pub scopes: Vec<String>,
}

/// Where `/verify` finds the original request's method and URI. A gateway forwards the client's own headers to
/// its auth request (nginx does), so the headers Tessera reads must be ones the gateway sets itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForwardedHeaders {
    /// `X-Original-Method`/`X-Original-URI` and `X-Forwarded-Method`/`X-Forwarded-Uri` both; a request whose
    /// two styles disagree is refused, never resolved by preference. `/verify/<path>` (Envoy) works too.
    #[default]
    Auto,
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI` only.
    Nginx,
    /// Traefik ForwardAuth: `X-Forwarded-Method` and `X-Forwarded-Uri` only.
    Traefik,
    /// Envoy HTTP `ext_authz`: only `/verify/<path>`, the method and path of the check request itself.
    Envoy,
    /// These two headers (lower-case names).
    Custom {
        /// The header carrying the method.
        method: String,
        /// The header carrying the URI (path and query).
        uri: String,
    },
}

/// What `/verify` requires of requests to one part of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// The original request's normalised path must be this or lie below it (segment by segment: `/admin` covers
    /// `/admin` and `/admin/users`, not `/administrator`). Normalised, without a trailing `/` (but `/` itself).
    pub path_prefix: String,
    /// Compare the path ignoring ASCII case (for upstreams whose routes do).
    pub case_insensitive: bool,
    /// The original method must be exactly this, upper case (any method when `None`).
    pub method: Option<String>,
    /// The token must be for this audience (any accepted audience when `None`).
    pub audience: Option<String>,
    /// The token must carry every one of these scopes.
    pub scopes: Vec<String>,
}

/// Per-minute budgets.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Login attempts per client IP, failed or not: each costs a password hash.
    pub login_per_ip: u32,
    /// Failed logins per username from one client IP; beyond them that address is refused for that user.
    pub failed_login_per_user_and_ip: u32,
    /// Failed logins per username from all addresses together; beyond them the user is refused from every address
    /// that failed for them in the last minute, and still served from any other.
    pub failed_login_per_user: u32,
    /// Failed refreshes per client IP.
    pub failed_refresh_per_ip: u32,
    /// Failed refreshes per user, counted when the refresh token names one of their sessions.
    pub failed_refresh_per_user: u32,
    /// Revocation-feed requests per client (`/gateway/v1/revocations`), shared by every instance that
    /// authenticates as that client.
    pub feed_per_client: u32,
    /// Revocation-feed long polls one client may have waiting at once, across all its instances.
    pub feed_waits_per_client: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_ip: 60,
            failed_login_per_user_and_ip: 10,
            failed_login_per_user: 100,
            failed_refresh_per_ip: 60,
            failed_refresh_per_user: 30,
            feed_per_client: 600,
            feed_waits_per_client: 64,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "tessera".into(),
            access_ttl_secs: 15 * 60,
            service_ttl_secs: 60,
            user_scope: None,
            refresh_ttl: Duration::from_secs(7 * 86_400),
            idle_timeout: Duration::from_secs(86_400),
            grace: Duration::from_secs(10),
            leeway_secs: 30,
            max_token_bytes: tessera_jose::DEFAULT_MAX_TOKEN_LEN,
            remembered_verifications: 10_000,
            client_id: "tessera".into(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            admin_token: None,
            rate_limits: RateLimits::default(),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            password_hash_queue: 32,
            reload_interval: Duration::from_millis(250),
            tls: false,
            exchange_rules: Vec::new(),
            routes: Vec::new(),
            forwarded_headers: ForwardedHeaders::Auto,
            verify_audience: None,
            require_verify_audience: false,
            trusted_issuers: Vec::new(),
            revocations_stale_after: Duration::from_secs(60),
            revocation_log_retention: Duration::from_secs(90 * 86_400),
            stale_revocations: StalePolicy::FailClosed,
            compact_revocations: None,
            demo: true,
            migration: None,
            webhook: None,
            sign_in: SignInSettings::default(),
        }
    }
}

impl Settings {
    /// How long the revocation log keeps an entry: the audit retention, or longer when verification needs it
    /// longer (until no token it matches can still be valid).
    #[must_use]
    pub fn revocation_log_kept_ms(&self) -> tessera_model::Millis {
        let audit = tessera_model::Millis::try_from(self.revocation_log_retention.as_millis()).unwrap_or(i64::MAX);
        let retention = self.retention();
        audit.max(retention.max_token_lifetime_ms.saturating_add(retention.leeway_ms))
    }

    /// How long revocations matter to this server (see [`revocation_retention`]).
    #[must_use]
    pub fn retention(&self) -> tessera_revocation::Retention {
        revocation_retention(self.access_ttl_secs, self.service_ttl_secs, self.leeway_secs)
    }
}

/// How long revocations matter for tokens that live at most `access_ttl_secs` (a user's) or `service_ttl_secs` (a
/// service's), checked with `leeway_secs`: the longest lifetime, plus leeway. The one computation of it: the
/// server's index keeps revocations this long, and `tessera revoke` refuses a `before` further back.
#[must_use]
pub fn revocation_retention(
    access_ttl_secs: i64,
    service_ttl_secs: i64,
    leeway_secs: i64,
) -> tessera_revocation::Retention {
    tessera_revocation::Retention {
        max_token_lifetime_ms: access_ttl_secs.max(service_ttl_secs).saturating_mul(1000),
        leeway_ms: leeway_secs.saturating_mul(1000),
    }
}
