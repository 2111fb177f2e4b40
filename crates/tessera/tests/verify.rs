//! `tessera-verify` inside a service, against a real `tessera serve`: tokens verified in process once the keys
//! and the feed have arrived, a logout refused within the propagation time, the tower layer's RFC 6750 answers
//! and per-route scopes, a Tessera unreachable from the start (503, never 401), and a feed cut off: refused after
//! `stale_after` under the default policy, accepted under fail-open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use common::{add_user, http, request, tessera, Server, PASSWORD};
use serde_json::Value;
use tessera_verify::{Refusal, RequireToken, StalePolicy, TokenVerifier, Verified, VerifierConfig};
use tower::ServiceExt as _;

const CLIENT: &str = "orders-verifier";

/// A Tessera with a user and the service's client (revocation feed, and service tokens scoped `orders:read`).
fn tessera_with_a_service() -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice");
    let added = add_service_client(dir.path(), "revocations:read orders:read", &["--grant", "client_credentials"]);
    let secret = added["client_secret"].as_str().unwrap().to_owned();
    let server = Server::start(dir.path());
    (dir, server, secret)
}

/// Registers the service's client with `scope` and `extra` arguments; what `client add --json` printed.
fn add_service_client(d: &std::path::Path, scope: &str, extra: &[&str]) -> Value {
    let added = tessera(d)
        .args(["client", "add", CLIENT, "--audience", "tessera", "--scope", scope, "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    serde_json::from_slice(&added.stdout).unwrap()
}

fn config(server: &Server, secret: &str) -> VerifierConfig {
    VerifierConfig::new(format!("http://{}", server.addr), "tessera", CLIENT, secret)
}

fn login(server: &Server) -> String {
    let body = serde_json::json!({"username": "alice", "password": PASSWORD}).to_string();
    let (status, answer) = http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str::<Value>(&answer).unwrap()["access_token"].as_str().unwrap().to_owned()
}

fn service_token(server: &Server, secret: &str) -> String {
    let form = format!("grant_type=client_credentials&client_id={CLIENT}&client_secret={secret}&scope=orders%3Aread");
    let (status, answer) =
        http(server.addr, "POST", "/oauth2/token", "application/x-www-form-urlencoded", &form).unwrap();
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str::<Value>(&answer).unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// Waits (10 s at most) until `verifier` answers `token` as `expected` says.
async fn until(
    verifier: &TokenVerifier,
    token: &str,
    what: &str,
    expected: impl Fn(&Result<tessera_jose::Claims, Refusal>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = verifier.verify(token);
        if expected(&answer) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within 10 s: {what} (last: {answer:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_verified_in_process_is_refused_once_its_session_is_revoked() {
    let (_dir, server, secret) = tessera_with_a_service();
    let verifier = TokenVerifier::start(config(&server, &secret)).unwrap();
    let access = login(&server);
    until(&verifier, &access, "accepted once keys and feed arrived", Result::is_ok).await;
    assert_eq!(verifier.verify(&access).unwrap().sub.as_deref(), Some("alice"));

    let logout = format!("authorization: Bearer {access}\r\n");
    assert_eq!(request(server.addr, "POST", "/auth/logout", &logout, "").unwrap().0, 204);
    // The feed's long poll brings the session's revocation.
    until(&verifier, &access, "refused after the logout", |answer| answer == &Err(Refusal::Revoked)).await;
    // Another token of another session is still good, and tampering is still caught.
    let other = login(&server);
    until(&verifier, &other, "a new session accepted", Result::is_ok).await;
    let mut forged = other.clone();
    forged.push('A');
    assert!(matches!(verifier.verify(&forged), Err(Refusal::Invalid(_))));
}

/// A service whose client has no secret, only a registered public key, follows the feed with `private_key_jwt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_authenticating_with_a_private_key_follows_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    let key =
        tessera_jose::SigningKey::generate(tessera_jose::Algorithm::ES256, tessera_jose::RsaBits::Bits2048).unwrap();
    let jwks = serde_json::json!({"keys": [key.verifying_key().public_jwk().unwrap()]});
    std::fs::write(d.join("verifier.jwks.json"), jwks.to_string()).unwrap();
    let added = add_service_client(d, "revocations:read", &["--jwks", "verifier.jwks.json"]);
    assert_eq!(added.get("client_secret"), None, "a client with keys holds no secret: {added}");
    let server = Server::start(d);
    let mut config = config(&server, "unused");
    config.credentials = tessera_verify::Credentials::private_key(CLIENT, key);
    let verifier = TokenVerifier::start(config).unwrap();

    let access = login(&server);
    until(&verifier, &access, "accepted once keys and feed arrived", Result::is_ok).await;
    let logout = format!("authorization: Bearer {access}\r\n");
    assert_eq!(request(server.addr, "POST", "/auth/logout", &logout, "").unwrap().0, 204);
    until(&verifier, &access, "refused after the logout", |answer| answer == &Err(Refusal::Revoked)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_answers_rfc_6750_and_checks_each_routes_scopes() {
    let (_dir, server, secret) = tessera_with_a_service();
    let verifier = Arc::new(TokenVerifier::start(config(&server, &secret)).unwrap());
    let user = login(&server);
    until(&verifier, &user, "ready", Result::is_ok).await;
    let service = service_token(&server, &secret);

    let hello = |token: Verified| async move { format!("hello {}", token.subject()) };
    let app = axum::Router::new()
        .route("/me", get(hello).layer(RequireToken::new(Arc::clone(&verifier))))
        .route("/orders", get(hello).layer(RequireToken::new(Arc::clone(&verifier)).scopes(["orders:read"])))
        .route("/unguarded", get(hello));
    let call = |path: &str, authorization: Option<String>| {
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let challenge = |response: &axum::response::Response| {
        response.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned())
    };

    let answer = call("/me", Some(format!("Bearer {user}"))).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(answer.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "hello alice");

    let none = call("/me", None).await.unwrap();
    assert_eq!((none.status(), challenge(&none).as_deref()), (StatusCode::UNAUTHORIZED, Some("Bearer")));
    let garbage = call("/me", Some("Bearer not.a.token".into())).await.unwrap();
    assert_eq!(
        (garbage.status(), challenge(&garbage).as_deref()),
        (StatusCode::UNAUTHORIZED, Some(r#"Bearer error="invalid_token""#))
    );
    let basic = call("/me", Some("Basic YWxpY2U6cHc=".into())).await.unwrap();
    assert_eq!(basic.status(), StatusCode::BAD_REQUEST);

    // The user's token has no orders:read; the service token has.
    let lacking = call("/orders", Some(format!("Bearer {user}"))).await.unwrap();
    assert_eq!(
        (lacking.status(), challenge(&lacking).as_deref()),
        (StatusCode::FORBIDDEN, Some(r#"Bearer error="insufficient_scope", scope="orders:read""#))
    );
    assert_eq!(call("/orders", Some(format!("Bearer {service}"))).await.unwrap().status(), StatusCode::OK);

    // A handler taking Verified on a route the layer does not guard is a misconfiguration, never a pass.
    let unguarded = call("/unguarded", Some(format!("Bearer {user}"))).await.unwrap();
    assert_eq!(unguarded.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tessera_unreachable_from_the_start_means_unavailable_never_invalid() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let verifier =
        TokenVerifier::start(VerifierConfig::new(format!("http://{closed}"), "tessera", CLIENT, "s")).unwrap();
    let (_dir, server, _) = tessera_with_a_service();
    let token = login(&server);
    assert_eq!(verifier.verify(&token), Err(Refusal::KeysUnknown));
    let app = axum::Router::new()
        .route("/me", get(|_: Verified| async { "hello" }))
        .layer(RequireToken::new(Arc::new(verifier)));
    let request = Request::get("/me").header(header::AUTHORIZATION, format!("Bearer {token}"));
    let answer = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_cut_off_fails_closed_after_stale_after_or_open_when_configured() {
    let (_dir, mut server, secret) = tessera_with_a_service();
    let quick = |policy| VerifierConfig {
        stale_after: Duration::from_secs(2),
        poll_wait: Duration::from_secs(1),
        stale_policy: policy,
        ..config(&server, &secret)
    };
    let closed = TokenVerifier::start(quick(StalePolicy::FailClosed)).unwrap();
    let open = TokenVerifier::start(quick(StalePolicy::FailOpen)).unwrap();
    let token = login(&server);
    until(&closed, &token, "ready", Result::is_ok).await;
    until(&open, &token, "ready", Result::is_ok).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    until(&closed, &token, "refused once stale", |answer| answer == &Err(Refusal::Stale)).await;
    assert!(open.verify(&token).is_ok(), "fail-open keeps accepting what the index does not know revoked");
}

#[tokio::test]
async fn every_configuration_problem_is_reported_at_once() {
    let config = VerifierConfig {
        stale_after: Duration::from_secs(5),
        poll_wait: Duration::from_secs(9),
        ..VerifierConfig::new("http://tessera.example", "", CLIENT, "")
    };
    let problems = match TokenVerifier::start(config) {
        Err(tessera_verify::StartError::Invalid(problems)) => problems,
        other => panic!("{other:?}"),
    };
    assert_eq!(problems.len(), 4, "{problems:?}");
}
