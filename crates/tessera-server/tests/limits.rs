//! Limits on what a client can make the service spend: oversized forms, login floods, failed logins in someone
//! else's name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{harness_with, Harness, PASSWORD};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tessera_server::{RateLimits, Settings};
use tower::ServiceExt as _;

async fn send(h: &Harness, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = h.app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn form_post(path: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// `count` distinct parameter names of three characters, without values: `aaa&aab&...`.
fn distinct_parameters(count: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let name = |i: usize| [i / 1296, i / 36 % 36, i % 36].map(|digit| char::from(ALPHABET[digit])).iter().collect();
    (0..count).map(name).collect::<Vec<String>>().join("&")
}

#[tokio::test]
async fn a_form_of_thousands_of_parameters_is_refused_before_client_authentication() {
    let h = harness_with(Settings::default()).await;
    let flood = distinct_parameters(16_000);
    for (path, start) in [
        ("/oauth2/token", "grant_type=client_credentials&client_id=billing&client_secret=wrong&"),
        ("/oauth2/introspect", "token=x&client_id=billing&client_secret=wrong&"),
        ("/oauth2/revoke", "token=x&client_id=billing&client_secret=wrong&"),
    ] {
        let body = format!("{start}{flood}");
        assert!(body.len() <= Settings::default().max_body_bytes, "{} bytes: within the body limit", body.len());
        let (status, _, reply) = send(&h, form_post(path, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {reply}");
        assert_eq!(reply["error"], "invalid_request", "{path}");
        assert_eq!(reply["error_description"], "too many parameters", "{path}");
    }
}

#[tokio::test]
async fn a_repeated_parameter_is_refused_and_a_form_up_to_the_cap_is_read() {
    let h = harness_with(Settings::default()).await;
    let (status, _, reply) =
        send(&h, form_post("/oauth2/token", "grant_type=client_credentials&grant_type=refresh_token".into())).await;
    assert_eq!(
        (status, reply["error_description"].as_str()),
        (StatusCode::BAD_REQUEST, Some("a parameter is repeated"))
    );
    // Parameters that differ only in their encoding are the same parameter.
    let (status, _, reply) = send(&h, form_post("/oauth2/token", "scope=a&%73cope=b".into())).await;
    assert_eq!(
        (status, reply["error_description"].as_str()),
        (StatusCode::BAD_REQUEST, Some("a parameter is repeated"))
    );
    // 32 parameters are read (and the client, unknown, refused); 33 are not; empty pieces are no parameter.
    let at_cap = format!("grant_type=client_credentials&client_id=nobody&client_secret=x&&{}", distinct_parameters(29));
    let (status, _, reply) = send(&h, form_post("/oauth2/token", at_cap.clone())).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{reply}");
    let (status, _, reply) = send(&h, form_post("/oauth2/token", format!("{at_cap}&one-more"))).await;
    assert_eq!((status, reply["error_description"].as_str()), (StatusCode::BAD_REQUEST, Some("too many parameters")));
}

/// In-process requests come from 0.0.0.0: trusted as a proxy here, so each request names its client address.
async fn behind_a_proxy(rate_limits: RateLimits) -> Harness {
    harness_with(Settings { rate_limits, trusted_proxies: vec!["0.0.0.0/32".parse().unwrap()], ..Settings::default() })
        .await
}

fn login_from(address: &str, user: &str, password: &str) -> Request<Body> {
    Request::post("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", address)
        .body(Body::from(json!({"username": user, "password": password}).to_string()))
        .unwrap()
}

#[tokio::test]
async fn ten_bad_passwords_for_alice_from_one_address_stop_that_address_but_not_alice_elsewhere() {
    let h = behind_a_proxy(RateLimits::default()).await;
    for _ in 0..10 {
        let (status, _, _) = send(&h, login_from("203.0.113.1", "alice", "wrong password")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, _) = send(&h, login_from("203.0.113.1", "alice", PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the failing address is stopped, even with the right password");
    assert!(headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let (status, _, reply) = send(&h, login_from("198.51.100.7", "alice", PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "alice from another address: {reply}");
    let (status, _, _) = send(&h, login_from("203.0.113.1", "bob", PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "another user from the failing address");
}

#[tokio::test]
async fn past_the_users_ceiling_only_the_addresses_that_failed_for_her_are_refused() {
    let h = behind_a_proxy(RateLimits { failed_login_per_user: 5, ..RateLimits::default() }).await;
    // A guesser spread over five addresses spends alice's ceiling.
    for n in 1..=5 {
        let (status, _, _) = send(&h, login_from(&format!("203.0.113.{n}"), "alice", "wrong password")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = send(&h, login_from("203.0.113.1", "alice", "another guess")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a guessing address, past the ceiling");
    let (status, _, reply) = send(&h, login_from("198.51.100.7", "alice", PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "alice, from an address that never failed: {reply}");
}

#[tokio::test]
async fn right_passwords_spend_nothing_of_the_failure_budget() {
    let h = behind_a_proxy(RateLimits { failed_login_per_user_and_ip: 2, ..RateLimits::default() }).await;
    for _ in 0..5 {
        let (status, _, reply) = send(&h, login_from("203.0.113.1", "alice", PASSWORD)).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    for _ in 0..2 {
        let (status, _, _) = send(&h, login_from("203.0.113.1", "alice", "wrong password")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = send(&h, login_from("203.0.113.1", "alice", "wrong password")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_beyond_the_hashing_queue_is_answered_503_with_retry_after() {
    // No queue: one check per core, any login beyond them refused at once.
    let flood = std::thread::available_parallelism().unwrap().get() * 2 + 8;
    let h = harness_with(Settings {
        password_hash_queue: 0,
        // Each login in flight holds one of the failure budget until its password is found right: large enough.
        rate_limits: RateLimits { login_per_ip: 1_000, failed_login_per_user_and_ip: 1_000, ..RateLimits::default() },
        ..Settings::default()
    })
    .await;
    let logins: Vec<_> = (0..flood)
        .map(|_| {
            let app = h.app.clone();
            tokio::spawn(async move {
                let request = Request::post("/auth/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(json!({"username": "alice", "password": PASSWORD}).to_string()))
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                let (status, headers) = (response.status(), response.headers().clone());
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                (status, headers, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
            })
        })
        .collect();
    let (mut served, mut busy) = (0, 0);
    for login in logins {
        let (status, headers, body) = login.await.unwrap();
        match status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                assert_eq!(headers[header::RETRY_AFTER], "1");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(served >= 1 && busy >= 1, "{served} served, {busy} refused as busy");
    // Busy refusals tested no password: alice's failure budget is untouched, and the queue is free again.
    let (status, _, reply) = send(
        &h,
        Request::post("/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"username": "alice", "password": PASSWORD}).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}
