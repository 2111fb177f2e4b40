//! The MAC keys of refresh and CSRF tokens in service: a rotation loses no session and keeps grace replays
//! identical; an entry planted in the secrets under a master key is refused and the keys in service are kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{harness, Harness, PASSWORD, START_MS};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tessera_jose::{base64url, KeySet, Policy, Verifier};
use tessera_keys::{Activation, KeyStore, KeyringError, MasterKey, RotationPolicy, SecretVersion};
use tessera_server::clock::Clock as _;
use tessera_server::keys::KeyService;
use tessera_server::secrets::TokenSecrets;
use tower::ServiceExt as _;

async fn send(h: &Harness, request: Request<Body>) -> (StatusCode, Value) {
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Logs alice in with the refresh token in the body: (refresh token, CSRF token).
async fn login(h: &Harness) -> (String, String) {
    let body = json!({"username": "alice", "password": PASSWORD, "refresh_token_delivery": "body"});
    let request = Request::post("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, body) = send(h, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body["refresh_token"].as_str().unwrap().to_owned(), body["csrf_token"].as_str().unwrap().to_owned())
}

/// The refresh grant: the status and the successor refresh token.
async fn refresh(h: &Harness, token: &str) -> (StatusCode, Option<String>) {
    let request = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("grant_type=refresh_token&refresh_token={token}&client_id=tessera")))
        .unwrap();
    let (status, body) = send(h, request).await;
    (status, body["refresh_token"].as_str().map(str::to_owned))
}

/// The browser's refresh: cookie and CSRF header; the status and the new CSRF token.
async fn refresh_by_cookie(h: &Harness, token: &str, csrf: &str) -> (StatusCode, Option<String>) {
    let request = Request::post("/auth/refresh")
        .header(header::COOKIE, format!("__Secure-tessera-refresh={token}"))
        .header("x-csrf-token", csrf)
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(h, request).await;
    (status, body["csrf_token"].as_str().map(str::to_owned))
}

/// The key id a refresh token carries (after its version byte).
fn key_id(refresh_token: &str) -> u8 {
    base64url::decode(refresh_token).unwrap()[1]
}

fn rotate_now(h: &Harness) {
    let store = KeyStore::open(h.dir.path(), None).unwrap();
    store.rotate_secrets(h.clock.now_secs(), &RotationPolicy::default(), Activation::Immediate).unwrap();
    assert!(h.state.keys().refresh(h.clock.now_secs()).unwrap(), "the server reloads the rotated secrets");
}

#[tokio::test]
async fn a_rotation_loses_no_session_and_a_grace_replay_across_it_gets_the_same_successor() {
    let h = harness().await;
    let (first, csrf) = login(&h).await;
    let (status, second) = refresh(&h, &first).await;
    assert_eq!(status, StatusCode::OK);
    let second = second.unwrap();
    let old_key = key_id(&second);

    h.clock.advance_ms(1_000);
    rotate_now(&h);

    // Inside the grace window, the previous token gets the very successor it got before the rotation, made with
    // the key that was issuing then — not a different string made with the new key.
    let (status, replayed) = refresh(&h, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replayed.unwrap(), second);

    // The live token, made with the previous key, still refreshes; its successor is made with the new key.
    h.clock.advance_ms(1_000);
    let (status, third) = refresh(&h, &second).await;
    assert_eq!(status, StatusCode::OK);
    let third = third.unwrap();
    assert_ne!(key_id(&third), old_key);
    h.clock.advance_ms(1_000);
    let (status, fourth) = refresh(&h, &third).await;
    assert_eq!(status, StatusCode::OK);

    // The CSRF token from the login, made with the previous key, is still accepted; the new one names the new key.
    let (status, new_csrf) = refresh_by_cookie(&h, &fourth.unwrap(), &csrf).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(base64url::decode(&new_csrf.unwrap()).unwrap()[0], base64url::decode(&csrf).unwrap()[0]);
}

#[tokio::test]
async fn a_planted_secret_is_refused_and_counted_and_the_keys_in_service_are_kept() {
    let metrics = tessera_server::metrics_handle().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let master = || MasterKey::parse(&"ab".repeat(32)).unwrap();
    let now = START_MS / 1000;
    let policy = Policy::access("https://issuer.example", vec!["tessera".to_owned()]);
    let keys = KeyService::load(
        KeyStore::open(dir.path(), Some(master())).unwrap(),
        RotationPolicy::default(),
        Verifier::new(KeySet::new(), policy),
        now,
    )
    .unwrap();
    let sid = tessera_server::secrets::new_session_id().unwrap();
    let genuine = keys.token_secrets().refresh_token(&sid, 0, START_MS).unwrap();

    // Someone who can write the data directory, without the master key, replaces the refresh-token MAC key with
    // one of their own, in clear, to forge refresh tokens.
    let path = dir.path().join("secrets.json");
    let mut secrets: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let planted = [7u8; 32];
    secrets["secrets"]["refresh-token-mac"]["versions"][0]["sealing"] = "none".into();
    secrets["secrets"]["refresh-token-mac"]["versions"][0]["value"] = base64url::encode(planted).into();
    std::fs::write(&path, secrets.to_string()).unwrap();

    let err = keys.refresh(now + 1).unwrap_err();
    assert!(matches!(err, KeyringError::Unsealed { .. }), "{err}");
    assert!(err.to_string().contains("tessera keys seal"), "{err}");
    // Refused again on the next reload, but reported and counted once.
    assert!(keys.refresh(now + 2).is_err());
    assert!(metrics.render().contains("tessera_key_entries_refused_total 1"), "{}", metrics.render());

    // The keys in service are the genuine ones: the attacker's token is refused, the real one still opens.
    let forger = TokenSecrets::new(&[SecretVersion::new(1, now, now, planted)], &[], now);
    let forged = forger.refresh_token(&sid, 0, START_MS).unwrap();
    assert_eq!(keys.token_secrets().open_refresh_token(&forged), None);
    assert!(keys.token_secrets().open_refresh_token(&genuine).is_some());
}
