//! The configuration's loading and checks.

use tessera_jose::Algorithm;

use super::sections::RouteConfig;
use super::*;

#[test]
fn defaults_are_valid_and_match_the_example_file() {
    Config::default().validate().unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tessera.example.toml")).unwrap();
    let from_example: Config = Figment::from(Toml::string(&example)).extract().unwrap();
    assert_eq!(
        serde_json::to_value(&from_example).unwrap(),
        serde_json::to_value(Config::default()).unwrap(),
        "tessera.example.toml must show the defaults"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut config = Config::default();
    config.tokens.access_ttl = Duration::from_secs(48 * 3600);
    config.keys.rsa_bits = 1024;
    config.keys.algorithm = Algorithm::HS256;
    config.store.backend = StoreBackend::Postgres;
    config.store.pool_size = 0;
    config.store.redis_breaker_failures = 0;
    config.store.redis_connections = 0;
    config.store.redis_log_partitions = 2;
    config.tokens.user_scope = "orders:write pay\"ments".into();
    let message = config.validate().unwrap_err().to_string();
    for needle in [
        "tokens.user_scope: \"pay\\\"ments\"",
        "access_ttl",
        "rsa_bits",
        "cannot sign",
        "postgres_url is required",
        "pool_size",
        "redis_breaker",
        "redis_connections",
        "redis_log_partitions applies to the redis backend only",
    ] {
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn tiered_needs_both_postgresql_and_redis() {
    let mut config = Config::default();
    config.store.backend = StoreBackend::Tiered;
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("postgres_url is required with store.backend = \"tiered\""), "{message}");
    assert!(message.contains("redis_urls is required with store.backend = \"tiered\""), "{message}");
    config.store.postgres_url = Some("postgres://tessera@127.0.0.1/tessera".into());
    config.store.redis_urls = vec!["redis://127.0.0.1:6379".into()];
    config.validate().unwrap();
    config.store.backend = StoreBackend::Postgres;
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("redis_urls is set but store.backend is neither"), "{message}");
}

#[test]
fn the_redis_store_needs_its_urls_and_one_url_without_a_cluster() {
    let mut config = Config::default();
    config.store.backend = StoreBackend::Redis;
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("redis_urls is required"), "{message}");
    config.store.redis_urls = vec!["redis://a:6379/".into(), "redis://b:6379/".into()];
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("one URL unless store.redis_cluster"), "{message}");
    config.store.redis_cluster = true;
    config.validate().unwrap();
    config.store.backend = StoreBackend::Sqlite;
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("redis_urls is set"), "{message}");
}

#[test]
fn trusted_issuers_publish_their_keys_over_https_or_on_this_machine() {
    let mut config = Config::default();
    let issuer = |jwks_url: &str| -> TrustedIssuerConfig {
        serde_json::from_value(serde_json::json!({"issuer": jwks_url, "jwks_url": jwks_url, "audiences": ["api"]}))
            .unwrap()
    };
    config.trusted_issuers =
        ["https://partner.test/jwks", "http://127.0.0.1:9000/jwks", "http://localhost/jwks"].map(issuer).into();
    config.validate().unwrap();
    config.trusted_issuers.push(issuer("http://partner.test/jwks"));
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("must be https (plain http only to a loopback address)"), "{message}");
}

#[test]
fn without_an_issuer_the_configured_address_is_the_issuer() {
    let mut config = Config::default();
    assert_eq!(config.issuer(), "http://127.0.0.1:8080");
    config.server.listen = "127.0.0.1:9443".into();
    config.server.tls_cert_file = Some("cert.pem".into());
    assert_eq!(config.issuer(), "https://127.0.0.1:9443");
    config.issuer = Some("https://auth.example.com".into());
    assert_eq!(config.issuer(), "https://auth.example.com");
    config.issuer = Some(" ".into());
    assert!(config.validate().unwrap_err().to_string().contains("issuer must not be empty"));
}

#[test]
fn trusted_proxies_are_addresses_or_ranges() {
    let mut config = Config::default();
    config.server.trusted_proxies = vec!["10.0.0.0/8".into(), "192.0.2.7".into(), "2001:db8::/32".into()];
    config.validate().unwrap();
    config.server.trusted_proxies.push("proxy.internal".into());
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains(r#""proxy.internal" is not an IP address"#), "{message}");
}

#[test]
fn gateway_routes_headers_and_issuer_maps_are_checked_at_load() {
    let route = |prefix: &str, method: Option<&str>, scopes: &[&str]| RouteConfig {
        path_prefix: prefix.into(),
        case_insensitive: false,
        method: method.map(str::to_owned),
        audience: None,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut config = Config::default();
    config.gateway.routes = vec![route("/admin/", Some("delete"), &["admin"]), route("/", None, &[])];
    config.validate().unwrap();
    let settings = crate::serve::settings(&config).unwrap();
    assert_eq!(settings.routes[0].path_prefix, "/admin", "normalised, without the trailing slash");
    assert_eq!(settings.routes[0].method.as_deref(), Some("DELETE"), "upper-cased at load");

    config.gateway.routes = vec![
        route("admin", None, &[]),
        route("/a%2Fb", None, &[]),
        route("/x", Some("GET /"), &[]),
        route("/y", None, &["a b"]),
    ];
    config.gateway.forwarded_headers = ForwardedHeadersConfig::Custom;
    config.trusted_issuers = vec![TrustedIssuerConfig {
        issuer: "https://partner.test".into(),
        jwks_url: "https://partner.test/jwks.json".into(),
        audiences: vec!["api".into()],
        allow_exchange: false,
        role_map: [("partner-admin".to_owned(), "partner,admin".to_owned())].into(),
        scope_map: [("orders.read".to_owned(), "orders read".to_owned())].into(),
    }];
    let message = config.validate().unwrap_err().to_string();
    for needle in [
        r#"path_prefix "admin": the path must start with /"#,
        r#"path_prefix "/a%2Fb": the path has an encoded /"#,
        r#"method "GET /" is not an HTTP method"#,
        r#"scope "a b" is not one scope name"#,
        "gateway.method_header is required",
        "gateway.uri_header is required",
        r#"role_map: role "partner,admin" is not allowed"#,
        r#"scope_map: "orders read" is not one scope name"#,
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

#[test]
fn an_enabled_migration_reports_every_problem_and_never_trusts_unsigned_cookies() {
    let mut config = Config::default();
    config.migration.enabled = true;
    config.migration.triggers.rollback_error_rate = 1.5;
    config.migration.gates.window = std::time::Duration::ZERO;
    config.migration.poll_interval = std::time::Duration::from_secs(5);
    let message = config.validate().unwrap_err().to_string();
    for needle in ["rollback_error_rate must be a share", "gates.window must be between", "poll_interval", "secrets"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    config.migration = super::MigrationConfig { enabled: true, ..super::MigrationConfig::default() };
    config.migration.express.secrets = vec!["keyboard cat".into()];
    config.validate().unwrap();
    // The adapter's own checks: a JSON pointer that is not one, a who-am-I URL that is not http(s).
    config.migration.express.user_id_field = "user.id".into();
    assert!(config.migration.legacy_sessions().is_err());
    config.migration.adapter = super::migration::AdapterKind::Whoami;
    assert!(config.validate().unwrap_err().to_string().contains("migration.whoami.url is required"));
    config.migration.whoami.url = "ftp://legacy.example/whoami".into();
    assert!(config.migration.legacy_sessions().is_err());
    // The secrets never reach a log line through Debug.
    assert!(!format!("{config:?}").contains("keyboard cat"));
}

/// The configuration file the Kubernetes ConfigMap ships (`deploy/kubernetes/configmap.yaml`, the block under
/// `tessera.toml: |`) parses into the known settings and passes validation once the Secret's PostgreSQL URL is in
/// the environment, as the Deployment gives it.
#[test]
fn the_kubernetes_configuration_is_valid() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes/configmap.yaml"))
            .unwrap();
    let block: Vec<&str> = manifest
        .lines()
        .skip_while(|line| line.trim() != "tessera.toml: |")
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect();
    assert!(block.len() > 5, "no tessera.toml block in the ConfigMap");
    let mut config: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(&block.join("\n")))
        .extract()
        .unwrap_or_else(|err| panic!("the ConfigMap's tessera.toml: {err}"));
    assert_eq!(config.store.backend, StoreBackend::Tiered);
    config.store.postgres_url = Some("postgres://tessera@postgres:5432/tessera".into());
    config.validate().unwrap();
}
