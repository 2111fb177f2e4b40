//! The service's HTTP surface in-process: bad input, rate limits, security headers, CORS, the request timeout,
//! the discovery documents and the admin API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{claims_of, form_post, harness, harness_with, json_post, Session, PASSWORD, START_MS};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tessera_server::Settings;
use tower::ServiceExt as _;

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
    let types: Vec<&str> = keys.iter().map(|key| key["kty"].as_str().unwrap()).collect();
    assert_eq!(types.len(), 2, "the signing key and the RS256 key of ID tokens");
    assert!(types.contains(&"OKP") && types.contains(&"RSA"), "{types:?}");
    for key in keys {
        for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(member).is_none(), "private member {member} published");
        }
    }
    let meta = h.send(Request::get("/.well-known/oauth-authorization-server").body(Body::empty()).unwrap()).await;
    assert_eq!(meta.body["issuer"], "http://127.0.0.1:8080");
    assert_eq!(meta.body["token_endpoint"], "http://127.0.0.1:8080/oauth2/token");
    assert_eq!(meta.body["revocation_endpoint"], "http://127.0.0.1:8080/oauth2/revoke");
    let methods = meta.body["token_endpoint_auth_methods_supported"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "private_key_jwt"), "{methods:?}");
    assert_eq!(h.send(Request::get("/healthz").body(Body::empty()).unwrap()).await.status, StatusCode::OK);
}
