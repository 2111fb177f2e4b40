//! Checks of a loaded configuration, beyond what its types enforce: every problem is reported at once.

use std::time::Duration;

use anyhow::bail;

use super::{parse_proxy, Config, ForwardedHeadersConfig, StoreBackend};

impl Config {
    /// Every problem of this configuration, or none.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let t = &self.tokens;
        let k = &self.keys;
        if self.issuer.as_deref().is_some_and(|issuer| issuer.trim().is_empty()) {
            problems.push("issuer must not be empty (leave it out to use the address served)".to_owned());
        }
        if t.audience.trim().is_empty() {
            problems.push("tokens.audience must not be empty".to_owned());
        }
        if t.access_ttl.is_zero() || t.access_ttl > t.max_ttl {
            problems.push(format!(
                "tokens.access_ttl must be between 1s and tokens.max_ttl ({})",
                humantime::format_duration(t.max_ttl)
            ));
        }
        if t.access_ttl.as_millis() > u128::try_from(tessera_store::MAX_ACCESS_TTL_MS).unwrap_or(0) {
            problems.push(format!(
                "tokens.access_ttl must be at most {}",
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(tessera_store::MAX_ACCESS_TTL_MS).unwrap_or(0)
                ))
            ));
        }
        if t.service_ttl.is_zero() || t.service_ttl > t.max_ttl {
            problems.push("tokens.service_ttl must be between 1s and tokens.max_ttl".to_owned());
        }
        // RFC 6749 §3.3: a scope token is printable ASCII without space, `"` or `\`.
        if let Some(bad) = t
            .user_scope
            .split(' ')
            .find(|scope| scope.bytes().any(|b| !b.is_ascii_graphic() || b == b'"' || b == b'\\'))
        {
            problems
                .push(format!("tokens.user_scope: {bad:?} is not a scope (printable ASCII, no quote or backslash)"));
        }
        problems.extend(self.sign_in.problems());
        let backend = self.store.backend;
        let (uses_postgres, uses_redis) = (
            matches!(backend, StoreBackend::Postgres | StoreBackend::Tiered),
            matches!(backend, StoreBackend::Redis | StoreBackend::Tiered),
        );
        match (uses_postgres, &self.store.postgres_url) {
            (true, None) => {
                problems.push(format!("store.postgres_url is required with store.backend = {:?}", backend.name()))
            }
            (false, Some(_)) => problems
                .push("store.postgres_url is set but store.backend is neither \"postgres\" nor \"tiered\"".to_owned()),
            _ => {}
        }
        let redis_urls = self.store.redis_urls.len();
        match uses_redis {
            true if redis_urls == 0 => {
                problems.push(format!("store.redis_urls is required with store.backend = {:?}", backend.name()));
            }
            true if redis_urls > 1 && !self.store.redis_cluster => problems.push(
                "store.redis_urls must hold one URL unless store.redis_cluster = true (a Redis Cluster)".to_owned(),
            ),
            false if redis_urls > 0 => problems
                .push("store.redis_urls is set but store.backend is neither \"redis\" nor \"tiered\"".to_owned()),
            _ => {}
        }
        if self.store.redis_breaker_failures == 0 {
            problems.push("store.redis_breaker_failures must be at least 1".to_owned());
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.store.timeout) {
            problems.push("store.timeout must be between 100ms and 1m".to_owned());
        }
        if uses_redis && self.store.timeout < Duration::from_secs(2) {
            problems.push(
                "with Redis, store.timeout must be at least 2s (a write may wait 1 s for its replicas)".to_owned(),
            );
        }
        if self.server.reload_interval < Duration::from_millis(10)
            || self.server.reload_interval > Duration::from_secs(60)
        {
            problems.push("server.reload_interval must be between 10ms and 60s".to_owned());
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.revocation.compact_bucket_width) {
            problems.push("revocation.compact_bucket_width must be between 1m and 1d".to_owned());
        }
        if !(1..=100_000_000).contains(&self.revocation.compact_bucket_capacity) {
            problems.push("revocation.compact_bucket_capacity must be between 1 and 100000000".to_owned());
        }
        if self.revocation.log_retention < Duration::from_secs(60) {
            problems.push("revocation.log_retention must be at least 1m".to_owned());
        }
        if self.revocation.stale_after <= self.server.reload_interval {
            problems.push("revocation.stale_after must be longer than server.reload_interval".to_owned());
        }
        if !(1..=1024).contains(&self.store.pool_size) {
            problems.push("store.pool_size must be between 1 and 1024".to_owned());
        }
        if !(1..=256).contains(&self.store.redis_connections) {
            problems.push("store.redis_connections must be between 1 and 256".to_owned());
        }
        if !(1..=tessera_store::model::MAX_LOG_PARTITIONS).contains(&self.store.redis_log_partitions) {
            problems.push(format!(
                "store.redis_log_partitions must be between 1 and {}",
                tessera_store::model::MAX_LOG_PARTITIONS
            ));
        } else if self.store.redis_log_partitions > 1 && self.store.backend != StoreBackend::Redis {
            problems.push(
                "store.redis_log_partitions applies to the redis backend only (tiered keeps the log in PostgreSQL)"
                    .to_owned(),
            );
        }
        if t.leeway > Duration::from_secs(300) {
            problems.push("tokens.leeway must be at most 5m".to_owned());
        }
        if !(1024..=65_536).contains(&t.max_token_bytes) {
            problems.push("tokens.max_token_bytes must be between 1024 and 65536".to_owned());
        }
        if t.remembered_verifications > 1_000_000 {
            problems.push("tokens.remembered_verifications must be at most 1000000".to_owned());
        }
        if !k.algorithm.can_sign() {
            problems.push(format!("keys.algorithm {} cannot sign; use EdDSA, ES256 or RS256", k.algorithm));
        }
        if ![2048, 3072].contains(&k.rsa_bits) {
            problems.push("keys.rsa_bits must be 2048 or 3072".to_owned());
        }
        if k.prepublish >= k.rotation_interval {
            problems.push("keys.prepublish must be shorter than keys.rotation_interval".to_owned());
        }
        // A token is made with a key until its successor issues, and accepted until the next one does: one interval
        // after it stopped issuing, which must cover a session left unused for up to the idle timeout.
        if k.secrets_rotation_interval < self.sessions.idle_timeout {
            problems.push("keys.secrets_rotation_interval must be at least sessions.idle_timeout".to_owned());
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("server.listen {:?} is not an address like 127.0.0.1:8080", self.server.listen));
        }
        if self.sessions.grace >= self.sessions.idle_timeout || self.sessions.idle_timeout > self.sessions.refresh_ttl {
            problems.push("sessions: grace < idle_timeout <= refresh_ttl is required".to_owned());
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            problems.push("server.tls_cert_file and server.tls_key_file go together".to_owned());
        }
        let r = &self.rate_limits;
        let budgets = [
            r.login_per_ip,
            r.failed_login_per_user_and_ip,
            r.failed_login_per_user,
            r.failed_refresh_per_ip,
            r.failed_refresh_per_user,
            r.feed_per_client,
        ];
        if budgets.contains(&0) {
            problems.push("rate_limits must be at least 1 per minute".to_owned());
        }
        if r.feed_waits_per_client == 0 {
            problems.push("rate_limits.feed_waits_per_client must be at least 1".to_owned());
        }
        for (name, timeout) in [
            ("server.tls_handshake_timeout", self.server.tls_handshake_timeout),
            ("server.header_read_timeout", self.server.header_read_timeout),
        ] {
            if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&timeout) {
                problems.push(format!("{name} must be between 100ms and 10m"));
            }
        }
        if self.server.password_hash_queue > 10_000 {
            problems.push("server.password_hash_queue must be at most 10000".to_owned());
        }
        if self
            .server
            .allowed_origins
            .iter()
            .any(|o| o == "*" || !(o.starts_with("https://") || o.starts_with("http://")))
        {
            problems
                .push("server.allowed_origins must be exact origins like https://app.example.com (no *)".to_owned());
        }
        for proxy in &self.server.trusted_proxies {
            if let Err(why) = parse_proxy(proxy) {
                problems.push(why);
            }
        }
        for issuer in &self.trusted_issuers {
            if let Err(why) = tessera_server::issuers::check_jwks_url(&issuer.jwks_url) {
                problems.push(format!("trusted_issuers {:?}: {why}", issuer.issuer));
            }
            if issuer.audiences.is_empty() {
                problems.push(format!("trusted_issuers {:?}: needs at least one audience", issuer.issuer));
            }
            if issuer.issuer == self.issuer() {
                problems.push("trusted_issuers must not include Tessera's own issuer".to_owned());
            }
        }
        self.validate_gateway(&mut problems);
        self.migration.validate(&mut problems);
        self.tracing.validate(&mut problems);
        self.events.validate(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
        }
    }

    fn validate_gateway(&self, problems: &mut Vec<String>) {
        let gateway = &self.gateway;
        let custom = gateway.forwarded_headers == ForwardedHeadersConfig::Custom;
        for (name, header) in [("method_header", &gateway.method_header), ("uri_header", &gateway.uri_header)] {
            match header {
                Some(header)
                    if custom
                        && (header.is_empty()
                            || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) =>
                {
                    problems.push(format!("gateway.{name} {header:?} is not a header name"));
                }
                Some(_) if !custom => {
                    problems.push(format!("gateway.{name} is set but gateway.forwarded_headers is not \"custom\""));
                }
                None if custom => {
                    problems.push(format!("gateway.{name} is required with forwarded_headers = \"custom\""))
                }
                _ => {}
            }
        }
        if gateway.audience.as_deref().is_some_and(|audience| audience.trim().is_empty()) {
            problems.push("gateway.audience must not be empty".to_owned());
        }
        for route in &gateway.routes {
            if let Err(why) = tessera_server::gateway::path::normalise_prefix(&route.path_prefix) {
                problems.push(format!("gateway.routes: path_prefix {:?}: {why}", route.path_prefix));
            }
            if let Some(method) = &route.method {
                if !tessera_server::gateway::is_method(&method.to_ascii_uppercase()) {
                    problems.push(format!("gateway.routes: method {method:?} is not an HTTP method"));
                }
            }
            if route.audience.as_deref().is_some_and(str::is_empty) {
                problems.push("gateway.routes: audience must not be empty".to_owned());
            }
            if let Some(scope) = route.scopes.iter().find(|scope| !tessera_server::gateway::is_scope_token(scope)) {
                problems.push(format!("gateway.routes: scope {scope:?} is not one scope name"));
            }
        }
        for issuer in &self.trusted_issuers {
            let name = &issuer.issuer;
            if let Err(why) = tessera_server::gateway::check_roles(issuer.role_map.values()) {
                problems.push(format!("trusted_issuers {name:?}: role_map: {why}"));
            }
            if let Some(scope) = issuer.scope_map.values().find(|scope| !tessera_server::gateway::is_scope_token(scope))
            {
                problems.push(format!("trusted_issuers {name:?}: scope_map: {scope:?} is not one scope name"));
            }
        }
    }
}
