//! The service in-process: every endpoint driven through the router with `oneshot`, time moved by a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{harness, harness_with, Harness, PASSWORD, START_MS};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tessera_server::clock::Clock as _;
use tessera_server::{Settings, StalePolicy};
use tessera_store::{Provenance, Revocation};
use tower::ServiceExt as _;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

trait Drive {
    async fn send(&self, request: Request<Body>) -> Reply;
    async fn login(&self, user: &str) -> Session;
    async fn refresh(&self, cookie: &str, csrf: &str) -> Reply;
    async fn verify(&self, access: &str) -> StatusCode;
    async fn with_bearer(&self, method: &str, path: &str, access: &str) -> Reply;
    async fn generation(&self, access: &str) -> u64;
}

impl Drive for Harness {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(status.as_u16() < 500, "{status}: a 5xx from a request: {body}");
        Reply { status, headers, body }
    }

    async fn login(&self, user: &str) -> Session {
        let reply = self.send(json_post("/auth/login", &json!({"username": user, "password": PASSWORD}))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        Session {
            access: reply.body["access_token"].as_str().unwrap().to_owned(),
            csrf: reply.body["csrf_token"].as_str().unwrap().to_owned(),
            cookie: cookie_of(&reply).unwrap(),
        }
    }

    async fn refresh(&self, cookie: &str, csrf: &str) -> Reply {
        let request = Request::post("/auth/refresh")
            .header(header::COOKIE, format!("__Secure-tessera-refresh={cookie}"))
            .header("x-csrf-token", csrf)
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    async fn verify(&self, access: &str) -> StatusCode {
        self.send(
            Request::get("/verify")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .status
    }

    async fn with_bearer(&self, method: &str, path: &str, access: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    async fn generation(&self, access: &str) -> u64 {
        let sid = claims_of(access)["sid"].as_str().unwrap().to_owned();
        self.state.store().session(&sid).await.unwrap().unwrap().generation
    }
}

struct Session {
    access: String,
    csrf: String,
    cookie: String,
}

fn json_post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap()
}

fn form_post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn cookie_of(reply: &Reply) -> Option<String> {
    let value = reply.headers.get(header::SET_COOKIE)?.to_str().ok()?;
    let token = value.strip_prefix("__Secure-tessera-refresh=")?.split(';').next()?;
    (!token.is_empty()).then(|| token.to_owned())
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&tessera_jose::base64url::decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn login_issues_an_access_token_and_a_locked_down_cookie() {
    let h = harness().await;
    let reply = h.send(json_post("/auth/login", &json!({"username": "alice", "password": PASSWORD}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert!(reply.body.get("refresh_token").is_none(), "browsers get the refresh token only as a cookie");
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/auth"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let claims = claims_of(reply.body["access_token"].as_str().unwrap());
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "sid"] {
        assert!(claims.get(claim).is_some(), "{claim} missing: {claims}");
    }
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert_eq!(h.verify(reply.body["access_token"].as_str().unwrap()).await, StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_alike() {
    let h = harness().await;
    let wrong = h.send(json_post("/auth/login", &json!({"username": "alice", "password": "nope nope"}))).await;
    let unknown = h.send(json_post("/auth/login", &json!({"username": "mallory", "password": "nope nope"}))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
}

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
    let events = h.state.store().security_events(10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "refresh_token_reuse");
    assert_eq!(events[0].sub, "alice");
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
async fn logout_ends_this_session_and_logout_all_ends_every_session() {
    let h = harness().await;
    let a = h.login("alice").await;
    let b = h.login("alice").await;
    let reply = h.with_bearer("POST", "/auth/logout", &a.access).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(h.verify(&a.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.refresh(&a.cookie, &a.csrf).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.verify(&b.access).await, StatusCode::OK, "the other session lives on");

    let c = h.login("alice").await;
    h.clock.advance_ms(1_000);
    assert_eq!(h.with_bearer("POST", "/auth/logout-all", &c.access).await.status, StatusCode::NO_CONTENT);
    for s in [&b, &c] {
        assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED);
    }
    h.clock.advance_ms(1_000);
    let after = h.login("alice").await;
    assert_eq!(h.verify(&after.access).await, StatusCode::OK, "a login after logout-all works");
    assert_eq!(h.refresh(&after.cookie, &after.csrf).await.status, StatusCode::OK);
}

/// A revocation log that went back (the database restored from an older backup) is read again from the start:
/// a revocation written after the restore reuses a position this node had already passed, and must still apply.
#[tokio::test]
async fn a_revocation_log_that_went_back_is_read_again_from_the_start() {
    let h = harness().await;
    let by = Provenance::new("admin", "before the backup was restored");
    for jti in ["old-1", "old-2"] {
        let revocation = Revocation::Token { jti: jti.into(), expires_at: START_MS + 3_600_000 };
        h.state.store().revoke(revocation, by.clone(), START_MS).await.unwrap();
    }
    tessera_server::sync(&h.state).await.unwrap();
    let db = rusqlite::Connection::open(h.dir.path().join("tessera.db")).unwrap();
    db.execute_batch("DELETE FROM revocation_log; DELETE FROM sqlite_sequence WHERE name = 'revocation_log';").unwrap();

    let s = h.login("alice").await;
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    h.clock.advance_ms(1_000);
    let now = h.clock.now_ms();
    let everything = Revocation::Subject { sub: "alice".into(), not_before: now };
    h.state.store().revoke(everything, Provenance::new("admin", "after the restore"), now).await.unwrap();
    assert_eq!(h.state.store().log_head().await.unwrap(), 1, "the restored log hands out position 1 again");
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED, "the revocation made after the restore applies");
}

/// The verifier remembers tokens it has verified (see `docs/security.md`); a remembered token must still expire
/// on time. (Revocation after a remembered verification is covered by the logout tests above.)
#[tokio::test]
async fn a_remembered_access_token_still_expires_on_time() {
    let h = harness().await;
    let s = h.login("alice").await;
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    let settings = Settings::default();
    let last_valid_ms = (settings.access_ttl_secs + settings.leeway_secs - 1) * 1000;
    h.clock.advance_ms(last_valid_ms);
    // The revocation index is brought up to date at the new instant, so only the token's own `exp` can refuse it.
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(h.verify(&s.access).await, StatusCode::OK, "still inside its lifetime and the leeway");
    h.clock.advance_ms(1_000);
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED);
}

/// A session is forgotten two days after it expires, not before: until then a late refresh is refused as expired;
/// after, the store no longer holds it, and the refresh is still refused.
#[tokio::test]
async fn expired_sessions_are_forgotten_only_a_while_after_they_expire() {
    let h = harness().await;
    let s = h.login("alice").await;
    let sid = claims_of(&s.access)["sid"].as_str().unwrap().to_owned();
    let lifetime_ms = u64::try_from(Settings::default().refresh_ttl.as_millis()).unwrap();
    h.clock.advance_ms(i64::try_from(lifetime_ms).unwrap() + 60_000);
    assert_eq!(tessera_server::forget_expired_sessions(&h.state).await.unwrap(), 0, "kept a while after expiry");
    assert!(h.state.store().session(&sid).await.unwrap().is_some());
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED);
    h.clock.advance_ms(tessera_store::EXPIRED_SESSION_KEPT_MS);
    assert_eq!(tessera_server::forget_expired_sessions(&h.state).await.unwrap(), 1);
    assert_eq!(h.state.store().session(&sid).await.unwrap(), None);
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED, "still refused");
}

#[tokio::test]
async fn logout_by_cookie_needs_the_csrf_token() {
    let h = harness().await;
    let s = h.login("alice").await;
    let without = Request::post("/auth/logout")
        .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(without).await.status, StatusCode::FORBIDDEN);
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    let with = Request::post("/auth/logout")
        .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(with).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_and_ended_one_by_one_by_their_owner_only() {
    let h = harness().await;
    let a1 = h.login("alice").await;
    let a2 = h.login("alice").await;
    let b = h.login("bob").await;
    let list = h.with_bearer("GET", "/auth/sessions", &a1.access).await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    for session in sessions {
        for field in ["id", "created_at", "last_used_at", "expires_at", "client_id"] {
            assert!(!session[field].is_null(), "{field} missing: {session}");
        }
        assert_eq!(session["created_at"], START_MS / 1000);
    }
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let a2_sid = claims_of(&a2.access)["sid"].as_str().unwrap().to_owned();
    let b_sid = claims_of(&b.access)["sid"].as_str().unwrap().to_owned();
    assert_eq!(
        h.with_bearer("DELETE", &format!("/auth/sessions/{b_sid}"), &a1.access).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.verify(&b.access).await, StatusCode::OK);
    assert_eq!(
        h.with_bearer("DELETE", &format!("/auth/sessions/{a2_sid}"), &a1.access).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.verify(&a2.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.with_bearer("GET", "/auth/sessions", &a1.access).await.body["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(h.with_bearer("GET", "/auth/sessions", "junk").await.status, StatusCode::UNAUTHORIZED);

    // A session started later, from a browser that named itself, and used after a while.
    h.clock.advance_ms(60_000);
    let mut request = json_post("/auth/login", &json!({"username": "alice", "password": PASSWORD}));
    request.headers_mut().insert(header::USER_AGENT, "Firefox/140.0".parse().unwrap());
    let firefox = h.send(request).await;
    let (cookie, csrf) = (cookie_of(&firefox).unwrap(), firefox.body["csrf_token"].as_str().unwrap().to_owned());
    h.clock.advance_ms(60_000);
    assert_eq!(h.refresh(&cookie, &csrf).await.status, StatusCode::OK);
    // What a node's background task does every reload interval; without it the index would count as stale.
    tessera_server::sync(&h.state).await.unwrap();
    let list = h.with_bearer("GET", "/auth/sessions", &a1.access).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let session =
        list.body["sessions"].as_array().unwrap().iter().find(|s| s["user_agent"] == "Firefox/140.0").cloned();
    let session = session.unwrap_or_else(|| panic!("no session with the user agent: {}", list.body));
    assert_eq!(
        (session["created_at"].as_i64(), session["last_used_at"].as_i64()),
        (Some(START_MS / 1000 + 60), Some(START_MS / 1000 + 120))
    );
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

#[tokio::test]
async fn the_admin_api_is_off_by_default_and_mints_sessions_with_the_credential() {
    let off = harness().await;
    let reply = off.send(json_post("/admin/v1/sessions", &json!({"sub": "ext-1"}))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let token = "a".repeat(40);
    let h = harness_with(Settings { admin_token: Some(token.clone()), ..Settings::default() }).await;
    let request = |bearer: &str, body: Value| {
        Request::post("/admin/v1/sessions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    assert_eq!(h.send(request("wrong", json!({"sub": "ext-1"}))).await.status, StatusCode::UNAUTHORIZED);
    // Without the credential the body is not even read: a caller learns nothing of its shape.
    let unauthenticated_garbage = Request::post("/admin/v1/sessions")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("not json"))
        .unwrap();
    assert_eq!(h.send(unauthenticated_garbage).await.status, StatusCode::UNAUTHORIZED);
    h.state.store().set_user_disabled("bob", true, START_MS).await.unwrap();
    let disabled = h.send(request(&token, json!({"sub": "bob"}))).await;
    assert_eq!(disabled.status, StatusCode::FORBIDDEN, "{}", disabled.body);
    let reply = h
        .send(request(
            &token,
            json!({"sub": "ext-1", "claims": {"tenant": "t9"}, "roles": ["viewer"], "scope": "read"}),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let claims = claims_of(reply.body["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].as_str(), claims["tenant"].as_str(), claims["scope"].as_str()),
        (Some("ext-1"), Some("t9"), Some("read"))
    );
    assert_eq!(h.verify(reply.body["access_token"].as_str().unwrap()).await, StatusCode::OK);
    // The issuer's claims, and those that say who acted, what a derived token dies with and whose subject it is.
    for claim in ["exp", "act", "orig_jti", "sub_iss", "azp"] {
        let reserved = h.send(request(&token, json!({"sub": "ext-1", "claims": {claim: "x"}}))).await;
        assert_eq!(reserved.status, StatusCode::BAD_REQUEST, "{claim} must be refused");
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let h = harness().await;
    let raw = |content_type: &str, body: &str| {
        Request::post("/auth/login")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let cases = [
        (raw("application/json", "{not json"), StatusCode::BAD_REQUEST),
        (raw("application/json", r#"{"username":"alice"}"#), StatusCode::UNPROCESSABLE_ENTITY),
        (raw("application/json", r#"{"username":"alice","password":"x","extra":1}"#), StatusCode::UNPROCESSABLE_ENTITY),
        (raw("text/plain", r#"{"username":"alice","password":"x"}"#), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (raw("application/json", &"x".repeat(100_000)), StatusCode::PAYLOAD_TOO_LARGE),
        (raw("application/json", r#"{"username":"","password":"x"}"#), StatusCode::BAD_REQUEST),
    ];
    // What real clients send: a Content-Length the body limit refuses before reading, a wrong method.
    let declared_too_large = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, "100000")
        .body(Body::from("x".repeat(100_000)))
        .unwrap();
    let cases = cases.into_iter().chain([
        (declared_too_large, StatusCode::PAYLOAD_TOO_LARGE),
        (Request::get("/auth/login").body(Body::empty()).unwrap(), StatusCode::METHOD_NOT_ALLOWED),
    ]);
    for (request, status) in cases {
        let reply = h.send(request).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(reply.body["error"].is_string(), "JSON error body: {}", reply.body);
        assert!(reply.body["error_description"].is_string(), "JSON error body: {}", reply.body);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(reply.headers[header::ALLOW], "POST");
        }
    }
    let no_cookie = Request::post("/auth/refresh").body(Body::empty()).unwrap();
    assert_eq!(h.send(no_cookie).await.status, StatusCode::UNAUTHORIZED);
    let stale = h.refresh("AAAA", "x").await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.send(Request::get("/nope").body(Body::empty()).unwrap()).await.status, StatusCode::NOT_FOUND);
    // RFC 6750 §3.1: no token, no error code in the challenge; a bad one is `invalid_token`.
    let verify = h.send(Request::get("/verify").body(Body::empty()).unwrap()).await;
    assert_eq!(verify.status, StatusCode::UNAUTHORIZED);
    assert_eq!(verify.headers[header::WWW_AUTHENTICATE], "Bearer");
    let bad = h.verify("not.a.token").await;
    assert_eq!(bad, StatusCode::UNAUTHORIZED);
    assert!(h
        .state
        .store()
        .live_sessions("alice", START_MS, tessera_store::RefreshRules { grace_ms: 0, idle_timeout_ms: 1 << 40 })
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_username_and_address() {
    let h = harness().await;
    let mut last = None;
    for _ in 0..11 {
        last =
            Some(h.send(json_post("/auth/login", &json!({"username": "alice", "password": "wrong password"}))).await);
    }
    let last = last.unwrap();
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Another user is not affected.
    assert_eq!(
        h.send(json_post("/auth/login", &json!({"username": "bob", "password": PASSWORD}))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn failed_refreshes_are_rate_limited_per_address_and_valid_ones_are_not() {
    let settings = Settings {
        rate_limits: tessera_server::RateLimits { failed_refresh_per_ip: 3, ..Settings::default().rate_limits },
        ..Settings::default()
    };
    let h = harness_with(settings).await;
    let s = h.login("alice").await;
    // In-process requests all come from one address, as users behind one NAT do.
    for _ in 0..3 {
        assert_eq!(h.refresh("AAAA", "x").await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = h.refresh("AAAA", "x").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let form = format!("grant_type=refresh_token&refresh_token={}", "B".repeat(43));
    assert_eq!(h.send(form_post("/oauth2/token", &form)).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Another user's valid refresh from the same address goes through.
    let valid = h.refresh(&s.cookie, &s.csrf).await;
    assert_eq!(valid.status, StatusCode::OK, "{}", valid.body);
}

#[tokio::test]
async fn failed_refreshes_of_one_users_sessions_are_limited_across_addresses_and_valid_ones_are_not() {
    let settings = Settings {
        rate_limits: tessera_server::RateLimits { failed_refresh_per_user: 3, ..Settings::default().rate_limits },
        // In-process requests come from 0.0.0.0: trusted as a proxy, each request names its own client address.
        trusted_proxies: vec!["0.0.0.0/32".parse().unwrap()],
        ..Settings::default()
    };
    let h = harness_with(settings).await;
    let stolen = h.login("alice").await;
    let own = h.login("alice").await;
    let bob = h.login("bob").await;
    let refresh_from = |address: &str, session: &Session, csrf: &str| {
        Request::post("/auth/refresh")
            .header(header::COOKIE, format!("__Secure-tessera-refresh={}", session.cookie))
            .header("x-csrf-token", csrf)
            .header("x-forwarded-for", address)
            .body(Body::empty())
            .unwrap()
    };
    // Someone holding one of alice's cookies, but not its CSRF token, tries from a new address each time.
    for i in 0..3 {
        let reply = h.send(refresh_from(&format!("203.0.113.{i}"), &stolen, "wrong")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    }
    let limited = h.send(refresh_from("203.0.113.9", &stolen, "wrong")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.body);
    assert!(limited.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Alice's own valid refresh is never limited, and another user's failure still gets the plain refusal.
    let valid = h.send(refresh_from("203.0.113.10", &own, &own.csrf)).await;
    assert_eq!(valid.status, StatusCode::OK, "{}", valid.body);
    assert_eq!(h.send(refresh_from("203.0.113.11", &bob, "wrong")).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_login_budget() {
    let limits = tessera_server::RateLimits { login_per_ip: 2, ..Settings::default().rate_limits };
    let login_from = |forwarded_for: &str| {
        Request::post("/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", forwarded_for)
            .body(Body::from(json!({"username": "nobody", "password": "wrong password"}).to_string()))
            .unwrap()
    };
    // In-process requests come from 0.0.0.0: here that is the proxy.
    let proxied = harness_with(Settings {
        rate_limits: limits,
        trusted_proxies: vec!["0.0.0.0/32".parse().unwrap()],
        ..Settings::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(proxied.send(login_from("203.0.113.1")).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(proxied.send(login_from("203.0.113.1")).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(proxied.send(login_from("203.0.113.2")).await.status, StatusCode::UNAUTHORIZED, "another client");
    // Without the proxy trusted, the header is the client's own words: everyone shares the peer's budget.
    let direct = harness_with(Settings { rate_limits: limits, ..Settings::default() }).await;
    for _ in 0..2 {
        assert_eq!(direct.send(login_from("203.0.113.1")).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(direct.send(login_from("203.0.113.2")).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_hsts_only_with_tls() {
    let h = harness().await;
    for request in [
        Request::get("/healthz").body(Body::empty()).unwrap(),
        json_post("/auth/login", &json!({"username": "alice", "password": "wrong password"})),
    ] {
        let reply = h.send(request).await;
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(reply.headers[header::CONTENT_SECURITY_POLICY], "default-src 'none'; frame-ancestors 'none'");
        assert_eq!(reply.headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(reply.headers.get(header::STRICT_TRANSPORT_SECURITY).is_none(), "no HSTS over plain HTTP");
    }
}

#[tokio::test]
async fn cors_answers_only_the_allowed_origins() {
    let h = harness_with(Settings { allowed_origins: vec!["https://app.example".into()], ..Settings::default() }).await;
    let preflight = |origin: &str| {
        Request::options("/auth/refresh")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "x-csrf-token")
            .body(Body::empty())
            .unwrap()
    };
    let allowed = h.send(preflight("https://app.example")).await;
    assert_eq!(allowed.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
    assert_eq!(allowed.headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(allowed.headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().contains("x-csrf-token"));
    let refused = h.send(preflight("https://evil.example")).await;
    assert!(refused.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{:?}", refused.headers);
}

#[tokio::test]
async fn a_request_that_outlasts_the_timeout_gets_a_json_408() {
    let h =
        harness_with(Settings { request_timeout: std::time::Duration::from_millis(200), ..Settings::default() }).await;
    // A body that never arrives: the handler waits for it until the timeout answers.
    let stalled = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let request = Request::post("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stalled))
        .unwrap();
    let reply = h.send(request).await;
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(reply.body["error"], "invalid_request", "{}", reply.body);
}

#[tokio::test]
async fn jwks_and_metadata_are_public_and_cacheable() {
    let h = harness().await;
    let jwks =
        h.app.clone().oneshot(Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    assert_eq!(jwks.headers()[header::CACHE_CONTROL], "public, max-age=3600");
    let body: Value = serde_json::from_slice(&jwks.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(keys[0].get(member).is_none(), "private member {member} published");
    }
    let meta = h.send(Request::get("/.well-known/oauth-authorization-server").body(Body::empty()).unwrap()).await;
    assert_eq!(meta.body["issuer"], "http://127.0.0.1:8080");
    assert_eq!(meta.body["token_endpoint"], "http://127.0.0.1:8080/oauth2/token");
    assert_eq!(meta.body["revocation_endpoint"], "http://127.0.0.1:8080/oauth2/revoke");
    let methods = meta.body["token_endpoint_auth_methods_supported"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "private_key_jwt"), "{methods:?}");
    assert_eq!(h.send(Request::get("/healthz").body(Body::empty()).unwrap()).await.status, StatusCode::OK);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_directly_in_the_store_reach_the_running_server() {
    let h =
        harness_with(Settings { reload_interval: std::time::Duration::from_millis(20), ..Settings::default() }).await;
    let background = tessera_server::start_background(&h.state).await.unwrap();
    let s = h.login("bob").await;
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    // What `tessera user disable bob` does, from another process: only the store changes.
    h.state.store().set_user_disabled("bob", true, h.clock.now_ms()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.verify(&s.access).await == StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "the disable never reached /verify");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED);
    let login = h.send(json_post("/auth/login", &json!({"username": "bob", "password": PASSWORD}))).await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.send(Request::get("/readyz").body(Body::empty()).unwrap()).await.status, StatusCode::OK);
    background.abort();
}

#[tokio::test]
async fn a_stale_revocation_index_fails_closed_by_default_and_open_when_configured() {
    for (policy, while_stale) in
        [(StalePolicy::FailClosed, StatusCode::UNAUTHORIZED), (StalePolicy::FailOpen, StatusCode::OK)]
    {
        let settings = Settings {
            revocations_stale_after: std::time::Duration::from_secs(60),
            stale_revocations: policy,
            ..Settings::default()
        };
        let h = harness_with(settings).await;
        let s = h.login("alice").await;
        h.clock.advance_ms(59_000);
        assert_eq!(h.verify(&s.access).await, StatusCode::OK, "{policy:?}: synced 59 s ago is current");
        h.clock.advance_ms(2_000);
        assert_eq!(h.verify(&s.access).await, while_stale, "{policy:?}: no sync for 61 s");
        // Not ready either way, and /readyz says why in plain text (orchestrators show it).
        let readyz = h.app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
        let reason = readyz.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&reason[..], b"revocation index not synced");
        tessera_server::sync(&h.state).await.unwrap();
        assert_eq!(h.verify(&s.access).await, StatusCode::OK, "{policy:?}: current again after a sync");
    }
    assert_eq!(Settings::default().stale_revocations, StalePolicy::FailClosed, "the safe default");
}

/// A login in the very second of a logout-everywhere would carry that second as `iat` and be born revoked (tokens
/// carry whole seconds, and a token of the revocation's second counts as before it): it waits for the next second
/// instead, and lives.
#[tokio::test]
async fn a_login_in_the_second_of_a_logout_everywhere_waits_for_the_next_second() {
    let h = harness().await;
    h.clock.advance_ms(300);
    let before = h.login("alice").await;
    assert_eq!(h.with_bearer("POST", "/auth/logout-all", &before.access).await.status, StatusCode::NO_CONTENT);
    // A login 100 ms later, in the revocation's second (its session, kept in milliseconds, is after it). The clock
    // does not move during the login: only waiting for the next second can make its access token live.
    h.clock.advance_ms(100);
    let after = h.login("alice").await;
    assert_eq!(h.clock.now_ms(), START_MS + 400);
    assert_eq!(claims_of(&after.access)["iat"].as_i64().unwrap(), START_MS / 1000 + 1, "the next second");
    // The time the login waited, which a manual clock does not see pass.
    h.clock.advance_ms(600);
    assert_eq!(h.verify(&before.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.verify(&after.access).await, StatusCode::OK, "not born revoked");
    assert_eq!(h.refresh(&after.cookie, &after.csrf).await.status, StatusCode::OK);
}

/// `/readyz` says "not ready" after 20 reload intervals (at least 5 s) without a sync, well before the index is
/// stale and tokens are refused, so load balancers move traffic away first.
#[tokio::test]
async fn readyz_turns_503_well_before_the_revocation_index_is_stale() {
    let settings = Settings {
        reload_interval: std::time::Duration::from_secs(1),
        revocations_stale_after: std::time::Duration::from_secs(60),
        ..Settings::default()
    };
    let h = harness_with(settings).await;
    let s = h.login("alice").await;
    let readyz = || async {
        let reply = h.app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        let status = reply.status();
        (status, String::from_utf8(reply.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    };
    h.clock.advance_ms(20_000);
    assert_eq!(readyz().await.0, StatusCode::OK, "20 reload intervals without a sync");
    h.clock.advance_ms(1);
    assert_eq!(readyz().await, (StatusCode::SERVICE_UNAVAILABLE, "revocation index not synced".to_owned()));
    assert_eq!(h.verify(&s.access).await, StatusCode::OK, "40 s before the stale bound, tokens still verify");
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(readyz().await.0, StatusCode::OK, "ready again after a sync");
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
