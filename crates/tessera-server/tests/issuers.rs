//! Tokens of a trusted external issuer: its JWKS fetched in the background, refetched on an unknown kid at most
//! once per 30 s, and the last good key set kept when the issuer serves errors or garbage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tessera_jose::{encode_jwt, Algorithm, Audience, Claims, KeySet, RsaBits, SigningKey};
use tessera_server::clock::Clock as _;
use tessera_server::{Settings, TrustedIssuer};
use tower::ServiceExt as _;

const IDP: &str = "https://idp.test";

/// What the fake issuer serves at /jwks.json: status and body, changeable by the test; counts fetches.
struct Idp {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
}

fn idp() -> Idp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let answer = Arc::new(Mutex::new((200u16, String::from(r#"{"keys":[]}"#))));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counter) = (Arc::clone(&answer), Arc::clone(&fetches));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = served.lock().unwrap().clone();
            let _ = write!(stream, "HTTP/1.1 {status} X\r\ncache-control: max-age=600\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    Idp { url, answer, fetches }
}

fn serve_keys(idp: &Idp, keys: &[&SigningKey]) {
    let set = KeySet::from_keys(keys.iter().map(|k| k.verifying_key().clone())).unwrap();
    *idp.answer.lock().unwrap() = (200, serde_json::to_string(&set.to_public_jwks()).unwrap());
}

fn external_token(key: &SigningKey, now: i64) -> String {
    let claims = Claims {
        iss: Some(IDP.into()),
        sub: Some("ext-user".into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(now + 600),
        iat: Some(now),
        jti: Some(format!("{}-{now}", key.kid())),
        client_id: Some("spa".into()),
        ..Claims::default()
    };
    encode_jwt(key, Some("at+jwt"), &claims).unwrap()
}

async fn verify(h: &common::Harness, token: &str) -> StatusCode {
    let request =
        Request::get("/verify").header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap();
    h.app.clone().oneshot(request).await.unwrap().status()
}

async fn eventually_ok(h: &common::Harness, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while verify(h, token).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "the token never verified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tokens_verify_through_the_issuers_jwks_and_survive_its_failures() {
    let idp = idp();
    let first = SigningKey::generate(Algorithm::ES256, RsaBits::Bits2048).unwrap();
    serve_keys(&idp, &[&first]);
    let settings = Settings {
        trusted_issuers: vec![TrustedIssuer {
            issuer: IDP.into(),
            jwks_url: idp.url.clone(),
            audiences: vec!["api".into()],
        }],
        // The manual clock jumps 31 s at a time here, faster than the background sync can follow it: staleness
        // is not what this test is about.
        revocations_stale_after: Duration::from_secs(3_600),
        ..Settings::default()
    };
    let h = common::harness_with(settings).await;
    let background = tessera_server::start_background(&h.state).await.unwrap();
    let now = h.clock.now_secs();
    eventually_ok(&h, &external_token(&first, now)).await;

    // A token for another audience, or from an issuer nobody trusts, is refused.
    let untrusted = SigningKey::generate(Algorithm::ES256, RsaBits::Bits2048).unwrap();
    let mut other = Claims { iss: Some("https://evil.test".into()), ..Claims::default() };
    other.sub = Some("x".into());
    assert_eq!(verify(&h, &encode_jwt(&untrusted, Some("at+jwt"), &other).unwrap()).await, StatusCode::UNAUTHORIZED);

    // The issuer rotates. A token with the new kid triggers a refetch, but only 30 s after the last one.
    let second = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    serve_keys(&idp, &[&first, &second]);
    let fetched = idp.fetches.load(Ordering::SeqCst);
    let rotated = external_token(&second, now);
    assert_eq!(verify(&h, &rotated).await, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idp.fetches.load(Ordering::SeqCst), fetched, "no refetch within 30 s of the last");
    h.clock.advance_ms(31_000);
    assert_eq!(verify(&h, &rotated).await, StatusCode::UNAUTHORIZED);
    eventually_ok(&h, &rotated).await;
    assert_eq!(idp.fetches.load(Ordering::SeqCst), fetched + 1, "exactly one refetch");

    // Errors, private members and huge key sets are refused; the last good set stays in service.
    for (status, body) in [
        (500, "oops".to_owned()),
        (200, r#"{"keys":[{"kty":"oct","alg":"HS256","k":"AAAA"}]}"#.to_owned()),
        (200, format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(2 * 1024 * 1024))),
    ] {
        *idp.answer.lock().unwrap() = (status, body);
        let before = idp.fetches.load(Ordering::SeqCst);
        h.clock.advance_ms(31_000);
        let unknown = external_token(&SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap(), now);
        assert_eq!(verify(&h, &unknown).await, StatusCode::UNAUTHORIZED);
        let deadline = Instant::now() + Duration::from_secs(5);
        while idp.fetches.load(Ordering::SeqCst) == before {
            assert!(Instant::now() < deadline, "no refetch happened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            verify(&h, &rotated).await,
            StatusCode::OK,
            "the last good key set is kept after a bad fetch ({status})"
        );
    }
    background.abort();
}
