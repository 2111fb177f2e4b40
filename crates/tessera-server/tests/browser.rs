//! The server half of the browser flow (issue #17): a reloaded page gets back into its session from its refresh
//! cookie alone, only from its own (or an allowed) origin; the demo application and its protected API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{claims_of, harness, harness_with, Harness, Reply};
use tessera_server::Settings;

/// `GET /auth/session` as a browser page sends it: the refresh cookie, and the fetch metadata of `site`.
async fn session_of(h: &Harness, cookie: Option<&str>, site: &str, origin: Option<&str>) -> Reply {
    let mut request = Request::get("/auth/session").header("sec-fetch-site", site).header(header::HOST, "tessera.test");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("theme=dark; __Secure-tessera-refresh={cookie}"));
    }
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    h.send(request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn a_reloaded_page_gets_its_csrf_token_from_the_cookie_alone_and_nothing_rotates() {
    let h = harness().await;
    let s = h.login("alice").await;
    let reply = session_of(&h, Some(&s.cookie), "same-origin", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert!(reply.headers.get(header::SET_COOKIE).is_none(), "the refresh token is not rotated");
    assert_eq!(reply.body["session"]["id"], claims_of(&s.access)["sid"]);
    assert_eq!(reply.body["session"]["sub"], "alice");
    assert!(reply.body.get("access_token").is_none(), "no token is issued here");
    assert_eq!(h.generation(&s.access).await, 0);

    // The token it hands back is the one refresh needs: the page is logged in again without the password.
    let csrf = reply.body["csrf_token"].as_str().unwrap();
    let refreshed = h.refresh(&s.cookie, csrf).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(h.generation(&s.access).await, 1);
}

#[tokio::test]
async fn cross_site_and_other_origin_pages_get_no_csrf_token() {
    let settings = Settings { allowed_origins: vec!["https://app.example".into()], ..Settings::default() };
    let h = harness_with(settings).await;
    let s = h.login("alice").await;
    for (site, origin) in [
        ("cross-site", None),
        ("same-site", None),
        ("cross-site", Some("https://evil.example")),
        ("same-origin", Some("https://evil.example")),
        ("same-site", Some("http://tessera.test.evil.example")),
    ] {
        let reply = session_of(&h, Some(&s.cookie), site, origin).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{site} {origin:?}: {}", reply.body);
        assert!(reply.body.get("csrf_token").is_none());
        assert!(reply.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "no CORS for {origin:?}");
    }
    // The configured cross-origin application gets it, with CORS that lets its credentialed fetch read it.
    let allowed = session_of(&h, Some(&s.cookie), "same-site", Some("https://app.example")).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    assert_eq!(allowed.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
    assert_eq!(allowed.headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    // And the server's own origin.
    let own = session_of(&h, Some(&s.cookie), "same-origin", Some("http://tessera.test")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
}

#[tokio::test]
async fn an_ended_foreign_or_replaced_refresh_cookie_gets_no_csrf_token_and_changes_nothing() {
    let h = harness().await;
    assert_eq!(session_of(&h, None, "same-origin", None).await.status, StatusCode::UNAUTHORIZED, "no cookie");
    let garbage = session_of(&h, Some("not-a-token"), "same-origin", None).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.body["error"], "invalid_grant");

    // A rotated cookie: still good inside the grace window (a refresh whose answer was lost), refused after it,
    // and refusing it here does not end the session (theft detection belongs to the refresh endpoint).
    let s = h.login("alice").await;
    let rotated = h.refresh(&s.cookie, &s.csrf).await;
    let live = common::cookie_of(&rotated).unwrap();
    assert_eq!(session_of(&h, Some(&s.cookie), "same-origin", None).await.status, StatusCode::OK, "in grace");
    h.clock.advance_ms(11_000);
    assert_eq!(session_of(&h, Some(&s.cookie), "same-origin", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(session_of(&h, Some(&live), "same-origin", None).await.status, StatusCode::OK, "session lives on");

    // A logged-out session.
    let logout = h.with_bearer("POST", "/auth/logout", rotated.body["access_token"].as_str().unwrap()).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(session_of(&h, Some(&live), "same-origin", None).await.status, StatusCode::UNAUTHORIZED, "ended");
}

#[tokio::test]
async fn the_demo_is_served_under_a_csp_without_inline_script_and_can_be_turned_off() {
    let h = harness().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/demo/app.js", "text/javascript"),
        ("/demo/app.css", "text/css"),
        ("/demo/tessera-browser.js", "text/javascript"),
    ] {
        let reply = h.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(reply.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let off = harness_with(Settings { demo: false, ..Settings::default() }).await;
    for path in ["/", "/demo/app.js", "/demo/api/me"] {
        assert_eq!(off.send(Request::get(path).body(Body::empty()).unwrap()).await.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn the_demo_api_answers_only_a_valid_access_token() {
    let h = harness().await;
    let anonymous = h.send(Request::get("/demo/api/me").body(Body::empty()).unwrap()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");

    let s = h.login("alice").await;
    let me = h.with_bearer("GET", "/demo/api/me", &s.access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["sub"], "alice");
    assert_eq!(me.body["roles"], serde_json::json!(["admin"]));
    assert_eq!(me.body["exp"], claims_of(&s.access)["exp"]);

    assert_eq!(h.with_bearer("POST", "/auth/logout", &s.access).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.with_bearer("GET", "/demo/api/me", &s.access).await.status, StatusCode::UNAUTHORIZED, "revoked");
}
