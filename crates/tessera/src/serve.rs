//! `tessera serve`: wiring configuration, store, keys and the HTTP service together.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tessera_jose::{KeySet, Policy};
use tessera_server::clock::{Clock as _, SystemClock};
use tessera_server::keys::KeyService;
use tessera_server::{AppState, ExchangeRule, ForwardedHeaders, RateLimits, RouteRule, Settings, TrustedIssuer};

use crate::config::{secs, Config, StoreBackend, MASTER_KEY_ENV};

pub(crate) fn run(config: &Config, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let telemetry = crate::telemetry::init(config.server.log_format, &config.tracing)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let served = runtime.block_on(serve(config, listen, &telemetry));
    // After the runtime: the exporter's last flush blocks.
    drop(runtime);
    telemetry.shutdown();
    served?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn settings(config: &Config) -> anyhow::Result<Settings> {
    Ok(Settings {
        issuer: config.issuer(),
        audience: config.tokens.audience.clone(),
        access_ttl_secs: secs(config.tokens.access_ttl),
        service_ttl_secs: secs(config.tokens.service_ttl),
        user_scope: {
            let scopes: Vec<&str> = config.tokens.user_scope.split(' ').filter(|s| !s.is_empty()).collect();
            (!scopes.is_empty()).then(|| scopes.join(" "))
        },
        refresh_ttl: config.sessions.refresh_ttl,
        idle_timeout: config.sessions.idle_timeout,
        grace: config.sessions.grace,
        leeway_secs: secs(config.tokens.leeway),
        max_token_bytes: config.tokens.max_token_bytes,
        remembered_verifications: config.tokens.remembered_verifications,
        client_id: config.sessions.client_id.clone(),
        allowed_origins: config.server.allowed_origins.clone(),
        demo: config.demo.enabled,
        sign_in: config.sign_in.settings(),
        migration: config.migration.enabled.then(|| config.migration.settings()),
        webhook: config.events.webhook()?,
        trusted_proxies: config
            .server
            .trusted_proxies
            .iter()
            .map(|proxy| crate::config::parse_proxy(proxy))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        admin_token: config.admin_token()?,
        rate_limits: RateLimits {
            login_per_ip: config.rate_limits.login_per_ip,
            failed_login_per_user_and_ip: config.rate_limits.failed_login_per_user_and_ip,
            failed_login_per_user: config.rate_limits.failed_login_per_user,
            failed_refresh_per_ip: config.rate_limits.failed_refresh_per_ip,
            failed_refresh_per_user: config.rate_limits.failed_refresh_per_user,
            feed_per_client: config.rate_limits.feed_per_client,
            feed_waits_per_client: config.rate_limits.feed_waits_per_client,
        },
        max_body_bytes: config.server.max_body_bytes,
        request_timeout: config.server.request_timeout,
        tls_handshake_timeout: config.server.tls_handshake_timeout,
        header_read_timeout: config.server.header_read_timeout,
        password_hash_queue: config.server.password_hash_queue,
        reload_interval: config.server.reload_interval,
        revocations_stale_after: config.revocation.stale_after,
        revocation_log_retention: config.revocation.log_retention,
        stale_revocations: match config.revocation.stale_policy {
            crate::config::StalePolicyConfig::FailClosed => tessera_server::StalePolicy::FailClosed,
            crate::config::StalePolicyConfig::FailOpen => tessera_server::StalePolicy::FailOpen,
        },
        compact_revocations: config.revocation.compact.then_some(tessera_server::CompactRevocations {
            bucket_width: config.revocation.compact_bucket_width,
            bucket_capacity: config.revocation.compact_bucket_capacity,
        }),
        tls: config.server.behind_tls || config.server.tls_cert_file.is_some(),
        exchange_rules: config
            .token_exchange
            .iter()
            .map(|rule| ExchangeRule {
                client_id: rule.client.clone(),
                audience: rule.audience.clone(),
                scopes: rule.scopes.clone(),
            })
            .collect(),
        trusted_issuers: config
            .trusted_issuers
            .iter()
            .map(|i| TrustedIssuer {
                issuer: i.issuer.clone(),
                jwks_url: i.jwks_url.clone(),
                audiences: i.audiences.clone(),
                allow_exchange: i.allow_exchange,
                role_map: i.role_map.clone(),
                scope_map: i.scope_map.clone(),
            })
            .collect(),
        routes: config
            .gateway
            .routes
            .iter()
            .map(|route| {
                Ok(RouteRule {
                    path_prefix: tessera_server::gateway::path::normalise_prefix(&route.path_prefix)
                        .with_context(|| format!("gateway.routes: path_prefix {:?}", route.path_prefix))?,
                    case_insensitive: route.case_insensitive,
                    method: route.method.as_deref().map(str::to_ascii_uppercase),
                    audience: route.audience.clone(),
                    scopes: route.scopes.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        forwarded_headers: forwarded_headers(&config.gateway),
        verify_audience: config.gateway.audience.clone(),
        require_verify_audience: config.gateway.require_audience,
    })
}

fn forwarded_headers(gateway: &crate::config::GatewayConfig) -> ForwardedHeaders {
    use crate::config::ForwardedHeadersConfig as Style;
    match gateway.forwarded_headers {
        Style::Auto => ForwardedHeaders::Auto,
        Style::Nginx => ForwardedHeaders::Nginx,
        Style::Traefik => ForwardedHeaders::Traefik,
        Style::Envoy => ForwardedHeaders::Envoy,
        Style::Custom => ForwardedHeaders::Custom {
            method: gateway.method_header.clone().unwrap_or_default().to_ascii_lowercase(),
            uri: gateway.uri_header.clone().unwrap_or_default().to_ascii_lowercase(),
        },
    }
}

/// Warns when `/verify` takes a token for any audience: a token a user got for one service then opens every
/// other service behind a gateway that names no audience.
fn warn_if_verify_accepts_every_audience(settings: &Settings) {
    if settings.verify_audience.is_none() && !settings.require_verify_audience {
        tracing::warn!(
            "/verify accepts tokens for every audience Tessera issues (and every trusted issuer's) unless the gateway \
             names one: put ?audience=NAME in each gateway's auth URL and set gateway.require_audience = true, or \
             set gateway.audience"
        );
    }
}

async fn serve(
    config: &Config,
    listen: Option<SocketAddr>,
    telemetry: &crate::telemetry::Telemetry,
) -> anyhow::Result<()> {
    // The metrics recorder first: the store and the server resolve some series once, at their first use, and a
    // series resolved before the recorder exists would count nowhere.
    let metrics = tessera_server::metrics_handle();
    let mut settings = settings(config)?;
    warn_if_verify_accepts_every_audience(&settings);
    if config.issuer.is_none() && config.store.backend != StoreBackend::Sqlite {
        anyhow::bail!(
            "a shared store needs `issuer` set (the URL clients reach Tessera at): every node must issue and accept the \
             same one, and each would otherwise name its own address"
        );
    }
    // The listener comes first: with no `issuer` configured, the issuer is the address really served.
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(tessera_server::tls::acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let address = listen.map_or_else(|| config.server.listen.clone(), |a| a.to_string());
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("listening on {address}"))?;
    let local = listener.local_addr()?;
    settings.issuer = served_issuer(config, scheme, local);
    // Before connecting: a shared store never holds keys in clear, so there is nothing to connect for without one.
    config.require_master_key_for_shared_store()?;
    let store = crate::store::open(config).await?;
    let keystore = crate::store::keyring_in_server(config, &store)?;
    if !keystore.seals() {
        // Only the embedded store gets here (a shared one needs a master key): the keys are files on this machine.
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            "no master key ({MASTER_KEY_ENV} or keys.master_key_file): the signing keys and the MAC keys of refresh \
             and CSRF tokens are stored UNENCRYPTED in keys.json and secrets.json in the data directory; \
             `tessera keys master-key` makes a master key, and `tessera keys seal` seals the existing keys with it"
        );
    }
    let clock = Arc::new(SystemClock);
    let mut policy = Policy::access(settings.issuer.clone(), vec![settings.audience.clone()]);
    policy.leeway_secs = settings.leeway_secs;
    policy.max_token_len = settings.max_token_bytes;
    let verifier = tessera_jose::Verifier::remembering(KeySet::new(), policy, settings.remembered_verifications);
    let keys = KeyService::load(keystore, config.rotation_policy(), verifier, clock.now_secs())
        .context("loading signing keys")?;
    let state = AppState::new(settings, store, keys, clock, metrics);
    if config.migration.enabled {
        state.enable_migration(config.migration.legacy_sessions()?).map_err(anyhow::Error::msg)?;
    }
    let background = tessera_server::start_background(&state).await.context("loading the revocation log")?;
    tracing::info!(address = %local, issuer = %state.settings().issuer, "tessera is serving");
    // A line on stdout for scripts and tests that start the server on port 0.
    println!("listening on {scheme}://{local}");
    let router = telemetry.around(tessera_server::app(state.clone()));
    tessera_server::serve_router(listener, &state, router, tls, tessera_server::shutdown_signal()).await?;
    background.abort();
    Ok(())
}

/// The issuer `tessera serve` uses: the configured one, with a warning when it is not the address served (right
/// only behind a proxy or load balancer); or the URL of the address really served, so that tokens, metadata and
/// the JWKS URL agree with it.
fn served_issuer(config: &Config, scheme: &str, local: SocketAddr) -> String {
    let served = format!("{scheme}://{local}");
    match &config.issuer {
        Some(issuer) => {
            if !names_address(issuer, scheme, local) {
                tracing::warn!(
                    %issuer,
                    %served,
                    "the configured issuer is not the address Tessera serves: right behind a proxy or load balancer \
                     that clients reach at the issuer's address; otherwise tokens and metadata send clients elsewhere"
                );
            }
            issuer.clone()
        }
        None => {
            if local.ip().is_unspecified() || config.server.behind_tls {
                tracing::warn!(
                    issuer = %served,
                    "no issuer configured: tokens and metadata name the address served, which is not the one \
                     clients use (all interfaces, or behind a TLS proxy); set `issuer` to the public URL"
                );
            }
            served
        }
    }
}

/// Whether `issuer` is a URL of `scheme` for the address `local` (any host name for a wildcard address,
/// `localhost` for a loopback one).
fn names_address(issuer: &str, scheme: &str, local: SocketAddr) -> bool {
    let Ok(url) = reqwest::Url::parse(issuer) else { return false };
    let host = url.host_str().unwrap_or_default();
    let same_host = local.ip().is_unspecified()
        || (host == "localhost" && local.ip().is_loopback())
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == local.ip());
    url.scheme() == scheme && url.port_or_known_default() == Some(local.port()) && same_host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_names_the_address_served_by_scheme_host_and_port() {
        let local: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        for issuer in ["http://127.0.0.1:9000", "http://localhost:9000/", "http://127.0.0.1:9000/tenant"] {
            assert!(names_address(issuer, "http", local), "{issuer}");
        }
        for issuer in [
            "https://127.0.0.1:9000",
            "http://127.0.0.1:8080",
            "http://10.0.0.1:9000",
            "http://auth.test:9000",
            "nonsense",
        ] {
            assert!(!names_address(issuer, "http", local), "{issuer}");
        }
        let everywhere: SocketAddr = "0.0.0.0:443".parse().unwrap();
        assert!(names_address("https://auth.example.com", "https", everywhere));
        assert!(!names_address("https://auth.example.com", "http", everywhere));
        let v6: SocketAddr = "[::1]:8443".parse().unwrap();
        assert!(names_address("https://[::1]:8443", "https", v6));
    }
}
