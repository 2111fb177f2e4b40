//! Refresh rotation in-process: the grace window, reuse detection, the absolute and idle lifetimes, CSRF and origin
//! checks, concurrent refreshes, and the OAuth refresh grant for non-browser clients; time moved by a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{cookie_of, form_post, harness, harness_with, json_post, Reply, PASSWORD};
use serde_json::json;
use tessera_server::Settings;
use tower::ServiceExt as _;

#[tokio::test]
async fn refresh_rotates_and_a_replay_within_grace_gets_the_same_successor() {
    let h = harness().await;
    let s = h.login("alice").await;
    let first = h.refresh(&s.cookie, &s.csrf).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let successor = cookie_of(&first).unwrap();
    assert_ne!(successor, s.cookie);
    assert_eq!(h.generation(&s.access).await, 1);

    h.clock.advance_ms(5_000);
    let replay = h.refresh(&s.cookie, &s.csrf).await;
    assert_eq!(replay.status, StatusCode::OK, "second tab inside the grace window");
    assert_eq!(cookie_of(&replay).unwrap(), successor, "the same successor, not a new branch");
    assert_eq!(h.generation(&s.access).await, 1);
    let next = h.refresh(&successor, &s.csrf).await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(h.generation(&s.access).await, 2);
}

#[tokio::test]
async fn rotation_never_extends_the_absolute_lifetime_and_an_idle_session_ends() {
    const HOUR_MS: i64 = 3_600_000;
    let h = harness().await;
    // Refreshed every 12 hours (inside the 1-day idle timeout) for the whole 7-day lifetime.
    let s = h.login("alice").await;
    let mut cookie = s.cookie.clone();
    for _ in 0..13 {
        h.clock.advance_ms(12 * HOUR_MS);
        let reply = h.refresh(&cookie, &s.csrf).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        cookie = cookie_of(&reply).unwrap();
    }
    h.clock.advance_ms(12 * HOUR_MS + 1_000);
    let expired = h.refresh(&cookie, &s.csrf).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "7 days after login, however recently used");

    let idle = h.login("bob").await;
    h.clock.advance_ms(24 * HOUR_MS + 1_000);
    assert_eq!(h.refresh(&idle.cookie, &idle.csrf).await.status, StatusCode::UNAUTHORIZED, "idle for a day");
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_whole_family_and_its_access_tokens() {
    let h = harness().await;
    let s = h.login("alice").await;
    let rotated = h.refresh(&s.cookie, &s.csrf).await;
    let live_cookie = cookie_of(&rotated).unwrap();
    let live_access = rotated.body["access_token"].as_str().unwrap().to_owned();

    h.clock.advance_ms(10_000);
    let theft = h.refresh(&s.cookie, &s.csrf).await;
    assert_eq!(theft.status, StatusCode::UNAUTHORIZED);
    assert!(cookie_of(&theft).is_none());
    // Every token of the family is dead: the live refresh token and every access token with its sid.
    assert_eq!(h.refresh(&live_cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.verify(&live_access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED);
    let events = h.state.store().security_events(&tessera_store::SecurityEventQuery::latest(10)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "refresh_token_reuse");
    assert_eq!(events[0].sub.as_deref(), Some("alice"));
    // Other sessions are untouched.
    let other = h.login("alice").await;
    assert_eq!(h.verify(&other.access).await, StatusCode::OK);
}

#[tokio::test]
async fn csrf_and_origin_failures_are_403_and_change_nothing() {
    let settings = Settings { allowed_origins: vec!["https://app.example".into()], ..Settings::default() };
    let h = harness_with(settings).await;
    let s = h.login("alice").await;
    let other = h.login("bob").await;
    for csrf in ["", "garbage", other.csrf.as_str()] {
        let reply = h.refresh(&s.cookie, csrf).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    let cross = Request::post("/auth/refresh")
        .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
        .header("x-csrf-token", &s.csrf)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::HOST, "tessera.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(cross).await.status, StatusCode::FORBIDDEN);
    let cross_site = Request::post("/auth/refresh")
        .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
        .header("x-csrf-token", &s.csrf)
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(cross_site).await.status, StatusCode::FORBIDDEN);
    assert_eq!(h.generation(&s.access).await, 0, "nothing changed");

    for origin in ["https://app.example", "http://tessera.example"] {
        let allowed = Request::post("/auth/refresh")
            .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
            .header("x-csrf-token", &s.csrf)
            .header(header::ORIGIN, origin)
            .header(header::HOST, "tessera.example")
            .body(Body::empty())
            .unwrap();
        let reply = h.send(allowed).await;
        assert_eq!(reply.status, StatusCode::OK, "{origin}: {}", reply.body);
    }
}

#[tokio::test]
async fn over_http2_the_origin_is_compared_with_the_authority() {
    // HTTP/2 requests carry `:authority` (the URI's) and no Host header.
    let h = harness().await;
    let s = h.login("alice").await;
    let refresh = |origin: &str, csrf: &str| {
        Request::post("https://tessera.example/auth/refresh")
            .version(axum::http::Version::HTTP_2)
            .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
            .header("x-csrf-token", csrf)
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(h.send(refresh("https://evil.example", &s.csrf)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(h.generation(&s.access).await, 0);
    let same_origin = h.send(refresh("https://tessera.example", &s.csrf)).await;
    assert_eq!(same_origin.status, StatusCode::OK, "{}", same_origin.body);
    assert_eq!(h.generation(&s.access).await, 1);
}

#[tokio::test]
async fn non_browser_clients_refresh_through_the_oauth_token_endpoint() {
    let h = harness().await;
    let login = h
        .send(json_post(
            "/auth/login",
            &json!({"username": "bob", "password": PASSWORD, "refresh_token_delivery": "body"}),
        ))
        .await;
    assert!(login.headers.get(header::SET_COOKIE).is_none());
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
    let reply =
        h.send(form_post("/oauth2/token", &format!("grant_type=refresh_token&refresh_token={refresh_token}"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let next = reply.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, refresh_token);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");

    let cases = [
        ("grant_type=password&username=a&password=b", StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        ("refresh_token=x", StatusCode::BAD_REQUEST, "invalid_request"),
        ("grant_type=refresh_token", StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "grant_type=refresh_token&grant_type=refresh_token&refresh_token=x",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("grant_type=refresh_token&refresh_token=forged", StatusCode::BAD_REQUEST, "invalid_grant"),
        ("%%%", StatusCode::BAD_REQUEST, "invalid_request"),
    ];
    for (body, status, error) in cases {
        let reply = h.send(form_post("/oauth2/token", body)).await;
        assert_eq!((reply.status, reply.body["error"].as_str().unwrap()), (status, error), "{body}");
        assert!(reply.body["error_description"].is_string());
    }
    let json_body =
        h.send(json_post("/oauth2/token", &json!({"grant_type": "refresh_token", "refresh_token": next}))).await;
    assert_eq!(json_body.body["error"], "invalid_request", "form encoding is required");
    let wrong_client = h
        .send(form_post("/oauth2/token", &format!("grant_type=refresh_token&refresh_token={next}&client_id=other")))
        .await;
    assert_eq!(wrong_client.body["error"], "invalid_grant");
    // None of the bad requests consumed the live token.
    let reply = h
        .send(form_post("/oauth2/token", &format!("grant_type=refresh_token&refresh_token={next}&client_id=tessera")))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_with_one_token_leave_exactly_one_live_successor() {
    let h = harness().await;
    for round in 0..5 {
        let s = h.login("alice").await;
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (app, cookie, csrf) = (h.app.clone(), s.cookie.clone(), s.csrf.clone());
                tokio::spawn(async move {
                    let request = Request::post("/auth/refresh")
                        .header(header::COOKIE, format!("__Secure-tessera-refresh={cookie}"))
                        .header("x-csrf-token", csrf)
                        .body(Body::empty())
                        .unwrap();
                    let response = app.oneshot(request).await.unwrap();
                    let cookie = response.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_owned());
                    (response.status(), cookie)
                })
            })
            .collect();
        let mut successors = std::collections::HashSet::new();
        for task in tasks {
            let (status, cookie) = task.await.unwrap();
            assert!(status == StatusCode::OK || status == StatusCode::UNAUTHORIZED, "round {round}: {status}");
            if status == StatusCode::OK {
                successors.insert(cookie.unwrap());
            }
        }
        assert_eq!(successors.len(), 1, "round {round}: every caller got the same successor");
        assert_eq!(h.generation(&s.access).await, 1, "round {round}: exactly one rotation");
        let successor = successors.into_iter().next().unwrap();
        let token = successor.strip_prefix("__Secure-tessera-refresh=").unwrap().split(';').next().unwrap();
        assert_eq!(h.refresh(token, &s.csrf).await.status, StatusCode::OK, "round {round}: the successor is live");
    }
}

/// The refresh cookie lives as long as the session may: `Max-Age` is the whole absolute lifetime at login, and what
/// is left of it at each refresh (rotation never extends it).
#[tokio::test]
async fn the_refresh_cookie_max_age_is_the_sessions_remaining_lifetime() {
    let h = harness().await;
    let max_age = |reply: &Reply| {
        let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        let value = cookie.split("; ").find_map(|attribute| attribute.strip_prefix("Max-Age=")).unwrap();
        value.parse::<i64>().unwrap()
    };
    let login = h.send(json_post("/auth/login", &json!({"username": "alice", "password": PASSWORD}))).await;
    let lifetime = i64::try_from(Settings::default().refresh_ttl.as_secs()).unwrap();
    assert_eq!(max_age(&login), lifetime);
    let csrf = login.body["csrf_token"].as_str().unwrap().to_owned();
    h.clock.advance_ms(3_600_000);
    let refreshed = h.refresh(&cookie_of(&login).unwrap(), &csrf).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(max_age(&refreshed), lifetime - 3_600, "an hour into the session");
    h.clock.advance_ms(3_600_000);
    let again = h.refresh(&cookie_of(&refreshed).unwrap(), &csrf).await;
    assert_eq!(max_age(&again), lifetime - 7_200, "two hours into the session");
}
