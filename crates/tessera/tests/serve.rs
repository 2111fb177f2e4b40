//! `tessera serve` as a process: users from the command line, a restart that keeps everything, and SIGKILL in
//! the middle of a refresh load that loses nothing acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    add_user, claims, eventually, http, kid_of, published_kids, request, tessera, with_password, Server, PASSWORD,
};
use serde_json::Value;

mod common;

fn login_for_refresh_token(addr: SocketAddr, user: &str) -> String {
    let body =
        serde_json::json!({"username": user, "password": PASSWORD, "refresh_token_delivery": "body"}).to_string();
    let (status, body) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["refresh_token"].as_str().unwrap().to_owned()
}

fn refresh(addr: SocketAddr, token: &str) -> std::io::Result<(u16, Option<String>)> {
    let (status, body) = http(
        addr,
        "POST",
        "/oauth2/token",
        "application/x-www-form-urlencoded",
        &format!("grant_type=refresh_token&refresh_token={token}"),
    )?;
    let next = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
    Ok((status, next))
}

#[test]
fn acknowledged_refreshes_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    let mut server = Server::start(d);
    let addr = server.addr;
    let jwks_before = http(addr, "GET", "/.well-known/jwks.json", "text/plain", "").unwrap().1;

    const SESSIONS: usize = 8;
    let latest: Arc<Vec<Mutex<String>>> =
        Arc::new((0..SESSIONS).map(|_| Mutex::new(login_for_refresh_token(addr, "alice"))).collect());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (latest, acknowledged, stop) = (Arc::clone(&latest), Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let token = latest[i].lock().unwrap().clone();
                    match refresh(addr, &token) {
                        Ok((200, Some(next))) => {
                            *latest[i].lock().unwrap() = next;
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((status, _)) => panic!("session {i}: refresh answered {status} before the kill"),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the server mid-flight: no shutdown, no flush.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.load(Ordering::SeqCst) < 1_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for worker in workers {
        worker.join().unwrap();
    }
    let acked = acknowledged.load(Ordering::SeqCst);
    assert!(acked >= 1_000, "the load ran ({acked} refreshes acknowledged)");
    drop(server);

    let restarted = Server::start(d);
    // Every session's last acknowledged refresh token still works: its rotation was committed before the answer.
    // (If a later rotation committed but its answer was lost in the kill, the acknowledged token is the previous
    // generation and the grace window hands out that same successor.)
    for (i, token) in latest.iter().enumerate() {
        let token = token.lock().unwrap().clone();
        let (status, next) = refresh(restarted.addr, &token).unwrap();
        assert_eq!(status, 200, "session {i}: the last acknowledged refresh token was lost");
        assert_eq!(refresh(restarted.addr, &next.unwrap()).unwrap().0, 200, "session {i}: its successor is live");
    }
    // Users and keys survived too.
    assert_eq!(http(restarted.addr, "GET", "/.well-known/jwks.json", "text/plain", "").unwrap().1, jwks_before);
    login_for_refresh_token(restarted.addr, "alice");
}

/// `tessera serve` on a free port, logging at `rust_log` to `log`.
fn start_logging(dir: &std::path::Path, rust_log: &str, log: &std::path::Path) -> Server {
    let mut child = tessera(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    Server { child, addr }
}

/// Reads a response's head (up to the blank line) from `stream`.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// SIGTERM: requests in flight are answered in full, then the server exits cleanly and stops listening. Each login
/// is provably in flight when the signal is handled: the server has read its head and its handler is waiting for
/// the body (it asked for it with `100 Continue`), and the body is sent only once the server logged that it is
/// shutting down.
#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice");
    let log = dir.path().join("server.log");
    let mut server = start_logging(dir.path(), "info", &log);
    let addr = server.addr;
    let body = format!(r#"{{"username":"alice","password":"{PASSWORD}","refresh_token_delivery":"body"}}"#);
    let in_flight: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            write!(
                stream,
                "POST /auth/login HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 expect: 100-continue\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            let interim = read_head(&mut stream);
            assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim:?}");
            stream
        })
        .collect();
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    eventually("the server begins to shut down", || {
        std::fs::read_to_string(&log).unwrap().contains("shutting down: finishing requests in flight")
    });
    assert!(server.child.try_wait().unwrap().is_none(), "exited with requests in flight");
    for (i, mut stream) in in_flight.into_iter().enumerate() {
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "login {i} in flight at SIGTERM: {response:?}");
        assert!(response.contains("access_token"), "login {i} answered in full");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    assert!(TcpStream::connect(addr).is_err(), "still listening after exit");
}

#[test]
fn user_commands_work_on_the_store_and_a_running_server_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "bob");
    let duplicate = tessera(d).args(["user", "add", "bob", "--password-stdin"]).stdin(Stdio::null()).output().unwrap();
    assert!(!duplicate.status.success());
    let short = {
        let mut child = tessera(d)
            .args(["user", "add", "carl", "--password-stdin"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"short\n").unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("8 to 1024"), "{}", String::from_utf8_lossy(&short.stderr));
    let no_tty = tessera(d).args(["user", "add", "dan"]).stdin(Stdio::null()).output().unwrap();
    assert!(String::from_utf8_lossy(&no_tty.stderr).contains("--password-stdin"));

    let list = tessera(d).args(["user", "list", "--json"]).output().unwrap();
    let users: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["username"], "bob");

    let server = Server::start(d);
    let token = login_for_refresh_token(server.addr, "bob");
    assert!(tessera(d).args(["user", "disable", "bob"]).status().unwrap().success());
    let (status, _) = refresh(server.addr, &token).unwrap();
    assert_eq!(status, 400, "a disabled user cannot refresh (invalid_grant)");
    let body = serde_json::json!({"username": "bob", "password": PASSWORD}).to_string();
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap().0, 401);
    assert!(tessera(d).args(["user", "enable", "bob"]).status().unwrap().success());
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap().0, 200);

    // A new password ends the user's sessions unless the operator asks to keep them.
    let (first, second) = (login_for_refresh_token(server.addr, "bob"), login_for_refresh_token(server.addr, "bob"));
    with_password(d, &["user", "set-password", "bob", "--keep-sessions"], PASSWORD);
    let (status, kept) = refresh(server.addr, &first).unwrap();
    assert_eq!(status, 200, "--keep-sessions keeps them");
    with_password(d, &["user", "set-password", "bob"], "a brand new password");
    for token in [kept.unwrap(), second] {
        assert_eq!(refresh(server.addr, &token).unwrap().0, 400, "sessions from before the change are over");
    }
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap().0, 401);
    let new = serde_json::json!({"username": "bob", "password": "a brand new password"}).to_string();
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &new).unwrap().0, 200);
    let missing = tessera(d).args(["user", "disable", "nobody"]).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no user"));
}

#[test]
fn key_rotation_from_the_command_line_reaches_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "erin");
    let server = Server::start(d);
    let before = published_kids(server.addr);
    assert_eq!(before.len(), 1, "one key generated on first start");
    let rotated = tessera(d).args(["keys", "rotate", "--now", "--json"]).output().unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let new_kid = serde_json::from_slice::<Value>(&rotated.stdout).unwrap()[0]["kid"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !published_kids(server.addr).contains(&new_kid) {
        assert!(Instant::now() < deadline, "the running server never published the new key");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(published_kids(server.addr).contains(&before[0]), "the old key stays published while its tokens live");
    assert_eq!(kid_of(&login_access(server.addr, "erin")), new_kid, "new tokens are signed with the rotated key");
}

/// A keyring lost under a running server (deleted, or gone with a store's data) is not silently replaced by a new
/// key, which would make every token issued so far fail: the keys in service stay, and nothing is written.
#[test]
fn a_keyring_that_vanishes_under_a_running_server_is_not_replaced_by_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "erin");
    // Made before the server starts, so the server loads it (one made at start is first seen by a reload).
    assert!(tessera(d).args(["keys", "generate", "--alg", "EdDSA"]).status().unwrap().success());
    let log = d.join("server.log");
    let server = start_logging(d, "warn", &log);
    let before = published_kids(server.addr);
    let keyring = d.join("tessera-data/keys.json");
    std::fs::remove_file(&keyring).unwrap();
    // A reload has run since and refused to go on without the keyring (logged once, then every so often).
    eventually("a reload finds the keyring gone", || {
        std::fs::read_to_string(&log).unwrap().contains("the keyring disappeared while its keys were in service")
    });
    assert!(!keyring.exists(), "no new keyring was generated");
    assert_eq!(published_kids(server.addr), before, "the keys in service are still published");
    assert_eq!(kid_of(&login_access(server.addr, "erin")), before[0], "and still sign");
}

/// A login's access token.
fn login_access(addr: SocketAddr, user: &str) -> String {
    let body = serde_json::json!({"username": user, "password": PASSWORD}).to_string();
    let (_, login) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    serde_json::from_str::<Value>(&login).unwrap()["access_token"].as_str().unwrap().to_owned()
}

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
fn clients_from_the_command_line_get_service_tokens_from_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let added = tessera(d)
        .args(["client", "add", "billing", "--scope", "read write", "--audience", "ledger", "--json"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let secret = serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "256 bits");
    let listed = tessera(d).args(["client", "list", "--json"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&secret), "secrets are never listed");
    let duplicate = tessera(d).args(["client", "add", "billing", "--audience", "ledger"]).output().unwrap();
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    let server = Server::start(d);
    let grant = |secret: &str| {
        http(
            server.addr,
            "POST",
            "/oauth2/token",
            "application/x-www-form-urlencoded",
            &format!("grant_type=client_credentials&client_id=billing&client_secret={secret}&scope=read"),
        )
        .unwrap()
    };
    let (status, body) = grant(&secret);
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_owned();
    let (status, introspected) = http(
        server.addr,
        "POST",
        "/oauth2/introspect",
        "application/x-www-form-urlencoded",
        &format!("token={token}&client_id=billing&client_secret={secret}"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&introspected).unwrap()["active"], true, "{introspected}");

    let rotated = tessera(d).args(["client", "rotate-secret", "billing", "--json"]).output().unwrap();
    let new_secret =
        serde_json::from_slice::<Value>(&rotated.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    eventually("the old secret stops working", || grant(&secret).0 == 401);
    let (status, body) = grant(&new_secret);
    assert_eq!(status, 200);
    // A token minted right after the rotation is not caught by it (tokens carry whole seconds).
    let fresh = serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_owned();
    let verify = |token: &str| {
        let request = format!("token={token}&client_id=billing&client_secret={new_secret}");
        let (_, body) =
            http(server.addr, "POST", "/oauth2/introspect", "application/x-www-form-urlencoded", &request).unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["active"].as_bool().unwrap()
    };
    assert!(verify(&fresh));
    assert!(!verify(&token), "the tokens of the rotated secret are dead");

    // `tessera revoke` writes to the store; the running server applies it within its reload interval.
    let revoked = tessera(d)
        .args(["revoke", "--jti", claims(&fresh)["jti"].as_str().unwrap(), "--reason", "test"])
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    eventually("the revoked token is inactive", || !verify(&fresh));
    let refused = tessera(d).args(["revoke", "--jti", "a", "--sid", "b"]).output().unwrap();
    assert!(!refused.status.success());
    let future = tessera(d).args(["revoke", "--sub", "x", "--before", "99999999999"]).output().unwrap();
    assert!(String::from_utf8_lossy(&future.stderr).contains("future"), "{}", String::from_utf8_lossy(&future.stderr));

    assert!(tessera(d).args(["client", "disable", "billing"]).status().unwrap().success());
    eventually("a disabled client is refused", || grant(&new_secret).0 == 401);
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
    let server = start_logging(d, "trace", &log_path);
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
        r#"tessera_tokens_issued_total{type="access"} 4"#,
        r#"tessera_tokens_issued_total{type="refresh"} 3"#,
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
fn a_client_added_on_the_command_line_works_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The server would learn of the client from the store only at its next reload, a minute away.
    std::fs::write(
        d.join("tessera.toml"),
        "[server]\nreload_interval = \"60s\"\n[revocation]\nstale_after = \"120s\"\n",
    )
    .unwrap();
    let server = Server::start(d);
    let added = tessera(d).args(["client", "add", "scripted", "--audience", "ledger", "--json"]).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let secret = serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    let (status, body) = http(
        server.addr,
        "POST",
        "/oauth2/token",
        "application/x-www-form-urlencoded",
        &format!("grant_type=client_credentials&client_id=scripted&client_secret={secret}"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn without_an_issuer_the_server_names_the_address_it_really_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "nina");
    // A free port, named explicitly (not 0), as an operator would.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tessera(d)
        .args(["serve", "--listen", &listen])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
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
        drop(start_logging(dir.path(), "warn", &log_path));
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

/// `tessera client disable` ends the client's outstanding tokens, not only its authentication.
#[test]
fn disabling_a_client_ends_its_outstanding_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let added = tessera(d).args(["client", "add", "billing", "--audience", "ledger", "--json"]).output().unwrap();
    let secret = serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    let server = Server::start(d);
    let grant = || {
        let body = format!("grant_type=client_credentials&client_id=billing&client_secret={secret}");
        http(server.addr, "POST", "/oauth2/token", "application/x-www-form-urlencoded", &body).unwrap()
    };
    let (status, body) = grant();
    assert_eq!(status, 200, "{body}");
    let outstanding = serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_owned();
    let verify = |token: &str| {
        request(server.addr, "GET", "/verify", &format!("authorization: Bearer {token}\r\n"), "").unwrap().0
    };
    assert_eq!(verify(&outstanding), 200);
    assert!(tessera(d).args(["client", "disable", "billing"]).status().unwrap().success());
    eventually("the disabled client's outstanding token is refused", || verify(&outstanding) == 401);
    assert_eq!(grant().0, 401, "and the client cannot get another");
}

/// Logins and logouts acknowledged before a SIGKILL all hold after the restart: each acknowledged login's session
/// refreshes, each acknowledged logout's session is over (refresh and access token refused).
#[test]
fn acknowledged_logins_and_logouts_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A fixed issuer (the restarted server listens elsewhere), and room for a stream of logins from one address
    // and for the refused refreshes of the logged-out sessions.
    std::fs::write(
        d.join("tessera.toml"),
        "issuer = \"http://tessera.test\"\n[rate_limits]\nlogin_per_ip = 100000\nfailed_refresh_per_ip = 100000\n\
         failed_refresh_per_user = 100000\n",
    )
    .unwrap();
    add_user(d, "alice");
    let mut server = Server::start(d);
    let addr = server.addr;
    // (access token, refresh token) of sessions whose login, or whose logout, was acknowledged.
    let (logged_in, logged_out) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let body =
                    serde_json::json!({"username": "alice", "password": PASSWORD, "refresh_token_delivery": "body"})
                        .to_string();
                // Every other session is logged out again at once.
                for turn in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok((200, login)) = http(addr, "POST", "/auth/login", "application/json", &body) else { break };
                    let login: Value = serde_json::from_str(&login).unwrap();
                    let session = (
                        login["access_token"].as_str().unwrap().to_owned(),
                        login["refresh_token"].as_str().unwrap().to_owned(),
                    );
                    if turn % 2 == 0 {
                        logged_in.lock().unwrap().push(session);
                        continue;
                    }
                    let bearer = format!("authorization: Bearer {}\r\n", session.0);
                    match request(addr, "POST", "/auth/logout", &bearer, "") {
                        Ok((204, _)) => logged_out.lock().unwrap().push(session),
                        _ => break, // the server is gone: this logout may or may not have been made
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while logged_out.lock().unwrap().len() < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        server.child.kill().unwrap(); // SIGKILL, with logins and logouts in flight
        server.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
    });
    drop(server);
    let (logged_in, logged_out) = (logged_in.into_inner().unwrap(), logged_out.into_inner().unwrap());
    assert!(logged_out.len() >= 20, "the load ran ({} logouts acknowledged)", logged_out.len());

    let restarted = Server::start(d);
    let verify = |token: &str| {
        request(restarted.addr, "GET", "/verify", &format!("authorization: Bearer {token}\r\n"), "").unwrap().0
    };
    for (i, (access, refresh_token)) in logged_out.iter().enumerate() {
        assert_eq!(refresh(restarted.addr, refresh_token).unwrap().0, 400, "logout {i} was lost: it refreshes");
        assert_eq!(verify(access), 401, "logout {i} was lost: its access token verifies");
    }
    for (i, (access, refresh_token)) in logged_in.iter().enumerate() {
        assert_eq!(verify(access), 200, "login {i}: its access token");
        assert_eq!(refresh(restarted.addr, refresh_token).unwrap().0, 200, "login {i} was lost");
    }
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
