//! `tessera serve` as a process: how it starts (the issuer it names, warnings, HSTS behind a proxy, the admin
//! credential's minimum), what it logs and counts, and its own endpoints passing the endpoint audit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{add_user, claims, http, read_head, refresh, request, serve, tessera, Server, PASSWORD};
use serde_json::Value;

mod common;

#[test]
fn tesseras_own_verify_and_introspection_pass_the_full_endpoint_probe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "fay");
    let added = tessera(d).args(["client", "add", "gateway", "--audience", "tessera", "--json"]).output().unwrap();
    let gateway_secret =
        serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    let server = Server::start(d);
    let body = serde_json::json!({"username": "fay", "password": PASSWORD}).to_string();
    let access = |addr| -> String {
        let (_, login) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
        serde_json::from_str::<Value>(&login).unwrap()["access_token"].as_str().unwrap().to_owned()
    };
    // A revoked token must be refused too: log one session out and pass its token as --reject.
    let revoked = access(server.addr);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(stream, "POST /auth/logout HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {revoked}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");

    let valid = access(server.addr);
    let jwks = format!("http://{}/.well-known/jwks.json", server.addr);
    let probe_is_clean = |path: &str, extra: &[&str]| {
        let url = format!("http://{}{path}", server.addr);
        let output = tessera(d)
            .args([
                "audit", "endpoint", &url, "--token", &valid, "--jwks", &jwks, "--reject", &revoked, "--format", "json",
            ])
            .args(extra)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
        assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{path}: {report}");
        assert!(report["not_tested"].as_array().unwrap().is_empty(), "{path}: {report}");
        assert!(report["stats"]["probes_sent"].as_u64().unwrap() >= 25, "{path}: {report}");
        assert_eq!(output.status.code(), Some(0), "{path}");
    };
    probe_is_clean("/verify", &[]);
    // /oauth2/introspect too: a forged token must never come back "active".
    probe_is_clean("/oauth2/introspect", &["--introspect-as", "gateway", "--client-secret", &gateway_secret]);

    // And its published key set audits clean, cache headers included.
    let output = tessera(d).args(["audit", "jwks", &jwks, "--format", "json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report}");
    assert!(report["not_tested"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn tesseras_authorization_endpoint_passes_the_authorization_probe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let redirect = "https://app.example/callback";
    let added = tessera(d)
        .args(["client", "add", "app", "--public", "--scope", "openid profile", "--redirect-uri", redirect])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let server = Server::start(d);
    let url = format!("http://{}/oauth2/authorize", server.addr);
    let output = tessera(d)
        .args(["audit", "endpoint", &url, "--authorize-client", "app", "--redirect-uri", redirect, "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report}");
    assert!(report["not_tested"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["stats"]["authorize_probes_sent"].as_u64().unwrap() >= 10, "{report}");
    assert_eq!(output.status.code(), Some(0));

    // A client the server does not know gives the probe nothing to stand on: said, not passed.
    let output = tessera(d)
        .args([
            "audit",
            "endpoint",
            &url,
            "--authorize-client",
            "nobody",
            "--redirect-uri",
            redirect,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["findings"][0]["id"], "ENDPOINT-AUTHZ-NOT-PROBED", "{report}");
    assert_eq!(output.status.code(), Some(2), "nothing concluded must not read as a clean report");
}

/// A login, refreshes (a grace replay and a reuse among them), a verification with the token also in the query, a
/// failed login and a cookie logout: the logs, at their most verbose and as JSON, hold no token, cookie value or
/// password, and the metrics the issue names count each of these.
#[test]
fn a_session_is_logged_without_secrets_and_counted_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "lena");
    std::fs::write(d.join("tessera.toml"), "[server]\nlog_format = \"json\"\n").unwrap();
    let log_path = d.join("server.log");
    let server = Server::start_logging(d, "trace", &log_path);
    let addr = server.addr;

    let body = serde_json::json!({"username": "lena", "password": PASSWORD, "refresh_token_delivery": "body"});
    let (status, reply) = http(addr, "POST", "/auth/login", "application/json", &body.to_string()).unwrap();
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    let access = reply["access_token"].as_str().unwrap().to_owned();
    let first = reply["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(addr, &first).unwrap();
    assert_eq!(status, 200);
    let second = second.unwrap();
    let (status, third) = refresh(addr, &second).unwrap();
    assert_eq!(status, 200);
    // A lost response: the same token again inside the grace window gets the same successor (no new token).
    let (status, again) = refresh(addr, &second).unwrap();
    assert_eq!((status, &again), (200, &third));
    // A token in the query (RFC 6750 §2.3) is no parameter /verify takes (400), and must not reach the log either.
    let verify = format!("/verify?access_token={access}");
    let (status, _) = request(addr, "GET", &verify, &format!("authorization: Bearer {access}\r\n"), "").unwrap();
    assert_eq!(status, 400);
    let wrong = "a wrong password that must not be logged";
    let failed = serde_json::json!({"username": "lena", "password": wrong}).to_string();
    assert_eq!(http(addr, "POST", "/auth/login", "application/json", &failed).unwrap().0, 401);
    // Reuse of a rotated token: a security event is logged, naming the session, not the token.
    assert_eq!(refresh(addr, &first).unwrap().0, 400);
    let third = third.unwrap();
    let cookie = format!("cookie: __Secure-tessera-refresh={third}\r\nx-csrf-token: whatever\r\n");
    request(addr, "POST", "/auth/logout", &cookie, "").unwrap();
    // What happened is in the metrics the issue names.
    let (status, metrics) = request(addr, "GET", "/metrics", "", "").unwrap();
    assert_eq!(status, 200);
    for series in [
        r#"tessera_http_requests_total{route="/auth/login",method="POST",status="200"} 1"#,
        r#"tessera_http_requests_total{route="/auth/login",method="POST",status="401"} 1"#,
        r#"tessera_http_request_duration_seconds_bucket{route="/oauth2/token""#,
        r#"tessera_tokens_issued_total{type="access",alg="EdDSA",client="tessera"} 4"#,
        r#"tessera_tokens_issued_total{type="refresh",alg="opaque",client="tessera"} 3"#,
        r#"tessera_refresh_total{outcome="rotated"} 2"#,
        r#"tessera_refresh_total{outcome="grace_replay"} 1"#,
        r#"tessera_refresh_total{outcome="reuse_detected"} 1"#,
        r#"tessera_login_failures_total{reason="invalid_credentials"} 1"#,
        "tessera_argon2_seconds_count 2",
    ] {
        assert!(metrics.contains(series), "{series} missing from:\n{metrics}");
    }
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() > 10, "the server logged at trace level: {log}");
    for line in &lines {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "not a JSON line: {line}");
    }
    assert!(log.contains("refresh_token_reuse"), "the reuse was logged as a security event");
    let signature = access.rsplit('.').next().unwrap();
    for (secret, what) in [
        (access.as_str(), "the access token"),
        (signature, "the access token's signature"),
        (first.as_str(), "a refresh token"),
        (second.as_str(), "a refresh token"),
        (third.as_str(), "the refresh cookie"),
        (PASSWORD, "the password"),
        (wrong, "a wrong password"),
    ] {
        assert!(!log.contains(secret), "{what} is in the log");
    }
}

#[test]
fn without_an_issuer_the_server_names_the_address_it_really_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "nina");
    // A free port, named explicitly (not 0), as an operator would.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let (child, line) = serve(d, &listen, |_| {});
    let server = Server { child, addr: listen.parse().unwrap() };
    let issuer = format!("http://{listen}");
    assert_eq!(line.trim(), format!("listening on {issuer}"));

    let body = serde_json::json!({"username": "nina", "password": PASSWORD});
    let (status, reply) = http(server.addr, "POST", "/auth/login", "application/json", &body.to_string()).unwrap();
    assert_eq!(status, 200, "{reply}");
    let access = serde_json::from_str::<Value>(&reply).unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&access)["iss"], issuer.as_str());
    let (_, metadata) = http(server.addr, "GET", "/.well-known/oauth-authorization-server", "text/plain", "").unwrap();
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(metadata["jwks_uri"], format!("{issuer}/.well-known/jwks.json").as_str());
    assert_eq!(metadata["token_endpoint"], format!("{issuer}/oauth2/token").as_str());
}

/// `tessera serve` warns at start while `/verify` takes a token for any audience, and not once a gateway audience
/// is configured or required.
#[test]
fn serve_warns_while_verify_accepts_every_audience() {
    let started_with = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tessera.toml"), config).unwrap();
        let log_path = dir.path().join("server.log");
        drop(Server::start_logging(dir.path(), "warn", &log_path));
        std::fs::read_to_string(&log_path).unwrap()
    };
    let warning = "/verify accepts tokens for every audience";
    assert!(started_with("").contains(warning));
    assert!(!started_with("[gateway]\naudience = \"orders\"\n").contains(warning));
    assert!(!started_with("[gateway]\nrequire_audience = true\n").contains(warning));
}

/// One metric's value from `/metrics` (0 when it is not there yet).
fn metric(addr: SocketAddr, series: &str) -> u64 {
    let (_, metrics) = request(addr, "GET", "/metrics", "", "").unwrap();
    let prefix = format!("{series} ");
    metrics.lines().find_map(|line| line.strip_prefix(prefix.as_str())).map_or(0, |value| value.parse().unwrap())
}

/// A login for an unknown user, or a disabled one, costs a password hash just as a wrong password does (the
/// unknown user's is the decoy's), so neither answers faster: each such login is one more argon2 check run
/// (`tessera_argon2_seconds_count`), and all three are answered alike.
#[test]
fn logins_of_unknown_and_disabled_users_run_a_password_hash_like_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    add_user(d, "bob");
    assert!(tessera(d).args(["user", "disable", "bob"]).status().unwrap().success());
    let server = Server::start(d);
    let mut answers = Vec::new();
    for (user, password) in [("alice", "a wrong password"), ("nobody", PASSWORD), ("bob", PASSWORD)] {
        let checks = metric(server.addr, "tessera_argon2_seconds_count");
        let body = serde_json::json!({"username": user, "password": password}).to_string();
        answers.push(http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap());
        assert_eq!(metric(server.addr, "tessera_argon2_seconds_count"), checks + 1, "{user}: one password hash");
    }
    assert_eq!(answers[0].0, 401);
    assert!(answers.iter().all(|answer| *answer == answers[0]), "answered alike: {answers:?}");
}

/// Behind a TLS-terminating proxy (`server.behind_tls`), the server speaks plain HTTP but its clients use HTTPS:
/// every answer carries HSTS. Without it, none does.
#[test]
fn behind_a_tls_terminating_proxy_answers_carry_hsts() {
    let hsts_of = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tessera.toml"), format!("issuer = \"https://tessera.test\"\n{config}"))
            .unwrap();
        let server = Server::start(dir.path());
        let mut stream = TcpStream::connect(server.addr).unwrap();
        write!(stream, "GET /healthz HTTP/1.1\r\nhost: tessera.test\r\nconnection: close\r\n\r\n").unwrap();
        let head = read_head(&mut stream).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        head.lines().find_map(|line| line.strip_prefix("strict-transport-security: ")).map(str::to_owned)
    };
    assert_eq!(hsts_of("[server]\nbehind_tls = true\n").as_deref(), Some("max-age=63072000; includesubdomains"));
    assert_eq!(hsts_of(""), None, "no HSTS over plain HTTP without a proxy in front");
}

/// The admin credential must be at least 32 characters: a shorter one stops `tessera serve` at start with a clear
/// error (rather than guard the admin API with a guessable one); 32 are taken.
#[test]
fn an_admin_token_shorter_than_32_characters_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let short = "a".repeat(31);
    let log = d.join("refused.log");
    let mut refused = tessera(d)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TESSERA_ADMIN_TOKEN", &short)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = refused.kill();
            panic!("a 31-character admin token was taken: the server is running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success() && stderr.contains("at least 32 characters"), "{status}: {stderr}");
    assert!(!stderr.contains(&short), "the error does not repeat the credential: {stderr}");

    let enough = "b".repeat(32);
    std::fs::write(d.join("admin-token"), &enough).unwrap();
    std::fs::write(d.join("tessera.toml"), "[server]\nadmin_token_file = \"admin-token\"\n").unwrap();
    let server = Server::start(d);
    let headers = format!("authorization: Bearer {enough}\r\ncontent-type: application/json\r\n");
    let (status, body) = request(server.addr, "POST", "/admin/v1/sessions", &headers, r#"{"sub":"carol"}"#).unwrap();
    assert_eq!(status, 201, "{body}");
}
