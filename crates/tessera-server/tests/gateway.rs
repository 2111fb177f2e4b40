//! `/verify` against a hostile client behind the gateway: forwarded headers it injects, spellings of a protected
//! path, the audience and scopes of the gateway's auth URL, and the identity of trusted external issuers' users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use common::clients::{admin_post, basic_auth, ADMIN, SECRET};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tessera_jose::{encode_jwt, Algorithm, Audience, Claims, KeySet, RsaBits, SigningKey};
use tessera_server::clock::Clock as _;
use tessera_server::{ForwardedHeaders, RouteRule, Settings, TrustedIssuer};
use tower::ServiceExt as _;

fn rule(prefix: &str, method: Option<&str>, scopes: &[&str]) -> RouteRule {
    RouteRule {
        path_prefix: prefix.into(),
        case_insensitive: false,
        method: method.map(str::to_owned),
        audience: None,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A server whose `/admin` needs scope `admin`, `DELETE /orders` scope `orders:delete`, and `/Reports` (any
/// case) scope `reports`.
async fn harness(base: Settings) -> common::Harness {
    let mut reports = rule("/Reports", None, &["reports"]);
    reports.case_insensitive = true;
    let settings = Settings {
        admin_token: Some(ADMIN.into()),
        routes: vec![rule("/admin", None, &["admin"]), rule("/orders", Some("DELETE"), &["orders:delete"]), reports],
        ..base
    };
    common::harness_with(settings).await
}

/// A session token for `carol` (role `staff`) with `scope`, minted through the admin API.
async fn session(h: &common::Harness, scope: &str) -> String {
    let (status, body) = mint(h, serde_json::json!({"sub": "carol", "scope": scope, "roles": ["staff"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn mint(h: &common::Harness, request: Value) -> (StatusCode, Value) {
    admin_post(h, "/admin/v1/sessions", request, ADMIN).await
}

/// `/verify` (with `query`) for `token`, with the given forwarded headers: status and response headers.
async fn verify(h: &common::Harness, query: &str, token: &str, forwarded: &[(&str, &str)]) -> (StatusCode, HeaderMap) {
    let mut request = Request::get(format!("/verify{query}")).header(header::AUTHORIZATION, format!("Bearer {token}"));
    for (name, value) in forwarded {
        request = request.header(*name, *value);
    }
    let response = h.app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    (response.status(), response.headers().clone())
}

/// The status of `/verify` for `METHOD uri` as nginx sends it (`X-Original-*`).
async fn nginx(h: &common::Harness, token: &str, method: &str, uri: &str) -> StatusCode {
    verify(h, "", token, &[("x-original-method", method), ("x-original-uri", uri)]).await.0
}

#[tokio::test]
async fn forwarded_headers_injected_by_the_client_are_refused_not_preferred() {
    let h = harness(Settings::default()).await;
    let user = session(&h, "read").await;
    // The attack: nginx sets X-Original-*, the client adds X-Forwarded-* naming a harmless request.
    let injected = [
        ("x-original-method", "DELETE"),
        ("x-original-uri", "/admin/users/7"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public"),
    ];
    assert_eq!(verify(&h, "", &user, &injected).await.0, StatusCode::BAD_REQUEST);
    // Only the URI disagreeing is enough; agreeing styles are one request.
    let uri_only = [("x-original-uri", "/admin/users/7"), ("x-forwarded-uri", "/public")];
    assert_eq!(verify(&h, "", &user, &uri_only).await.0, StatusCode::BAD_REQUEST);
    let agreeing = [
        ("x-original-method", "GET"),
        ("x-forwarded-method", "GET"),
        ("x-original-uri", "/admin/users"),
        ("x-forwarded-uri", "/admin/users"),
    ];
    assert_eq!(verify(&h, "", &user, &agreeing).await.0, StatusCode::FORBIDDEN);

    // A server set to nginx's style reads only X-Original-*: the injected headers change nothing.
    let nginx_style = harness(Settings { forwarded_headers: ForwardedHeaders::Nginx, ..Settings::default() }).await;
    let user = session(&nginx_style, "read").await;
    assert_eq!(verify(&nginx_style, "", &user, &injected).await.0, StatusCode::FORBIDDEN);
    let traefik_style = harness(Settings { forwarded_headers: ForwardedHeaders::Traefik, ..Settings::default() }).await;
    let user = session(&traefik_style, "read").await;
    let spoofed = [("x-original-uri", "/public"), ("x-forwarded-method", "GET"), ("x-forwarded-uri", "/admin/x")];
    assert_eq!(verify(&traefik_style, "", &user, &spoofed).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn with_route_rules_a_request_without_the_original_method_and_uri_is_refused() {
    let h = harness(Settings::default()).await;
    let user = session(&h, "read").await;
    assert_eq!(verify(&h, "", &user, &[]).await.0, StatusCode::BAD_REQUEST, "not matched as /");
    assert_eq!(verify(&h, "", &user, &[("x-original-uri", "/public")]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(verify(&h, "", &user, &[("x-forwarded-method", "GET")]).await.0, StatusCode::BAD_REQUEST);
    let twice = [("x-original-method", "GET"), ("x-original-uri", "/public"), ("x-original-uri", "/admin")];
    assert_eq!(verify(&h, "", &user, &twice).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(nginx(&h, &user, "GET", "/public").await, StatusCode::OK);
    // Envoy's style reads no header: a plain /verify names no request at all.
    let envoy = harness(Settings { forwarded_headers: ForwardedHeaders::Envoy, ..Settings::default() }).await;
    let user = session(&envoy, "read").await;
    assert_eq!(nginx(&envoy, &user, "GET", "/public").await, StatusCode::BAD_REQUEST);

    // Without rules nothing depends on the original request: a plain /verify only checks the token.
    let plain = common::harness_with(Settings { admin_token: Some(ADMIN.into()), ..Settings::default() }).await;
    let user = session(&plain, "read").await;
    assert_eq!(verify(&plain, "", &user, &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_spelling_of_a_protected_path_meets_its_rule_and_ambiguous_ones_are_refused() {
    let h = harness(Settings::default()).await;
    let user = session(&h, "read").await;
    let admin = session(&h, "read admin").await;
    // The last two resolve to /public, but a server that keeps dot segments routes them under /admin.
    for spelling in [
        "/admin/users",
        "/%61dmin/users",
        "/x/../admin/users",
        "//admin/users",
        "/admin/./users",
        "/%2e/admin/users",
        "/admin/../public",
        "/admin/%2E%2E/public/x",
    ] {
        assert_eq!(nginx(&h, &user, "GET", spelling).await, StatusCode::FORBIDDEN, "{spelling}");
        assert_eq!(nginx(&h, &admin, "GET", spelling).await, StatusCode::OK, "{spelling}");
    }
    for ambiguous in [
        "/admin%2Fusers",
        "/admin%2fusers",
        "/admin%5Cusers",
        "/admin\\users",
        "/admin/users%00",
        "/admin/%zz",
        "/../admin/users",
        "/x/..//..//admin",
        "/public//../admin",
        "/admin;x/users",
        "/%2561dmin",
        "admin/users",
    ] {
        assert_eq!(nginx(&h, &admin, "GET", ambiguous).await, StatusCode::BAD_REQUEST, "{ambiguous}");
    }
    // Prefixes match whole segments; case only where the rule says so.
    assert_eq!(nginx(&h, &user, "GET", "/administrator").await, StatusCode::OK);
    assert_eq!(nginx(&h, &user, "GET", "/ADMIN/users").await, StatusCode::OK, "case-sensitive rule");
    assert_eq!(nginx(&h, &user, "GET", "/reports/q1").await, StatusCode::FORBIDDEN);
    assert_eq!(nginx(&h, &user, "GET", "/REPORTS").await, StatusCode::FORBIDDEN);
    assert_eq!(nginx(&h, &user, "GET", "/%52eports").await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn methods_match_exactly_and_a_lower_case_method_is_refused() {
    let h = harness(Settings::default()).await;
    let user = session(&h, "read").await;
    assert_eq!(nginx(&h, &user, "DELETE", "/orders/7").await, StatusCode::FORBIDDEN);
    assert_eq!(nginx(&h, &user, "GET", "/orders/7").await, StatusCode::OK);
    assert_eq!(nginx(&h, &user, "delete", "/orders/7").await, StatusCode::BAD_REQUEST);
    assert_eq!(nginx(&h, &user, "Delete", "/orders/7").await, StatusCode::BAD_REQUEST);
    let deleter = session(&h, "orders:delete").await;
    assert_eq!(nginx(&h, &deleter, "DELETE", "/orders/7").await, StatusCode::OK);
}

/// Traefik's `X-Forwarded-Method`/`X-Forwarded-Uri` name the request the rules match, in the automatic style and
/// in Traefik's, with the same normalisation as nginx's headers; nginx's style does not read them.
#[tokio::test]
async fn traefiks_forwarded_method_and_uri_meet_the_route_rules() {
    let traefik = |method: &'static str, uri: &'static str| [("x-forwarded-method", method), ("x-forwarded-uri", uri)];
    for style in [ForwardedHeaders::Auto, ForwardedHeaders::Traefik] {
        let h = harness(Settings { forwarded_headers: style.clone(), ..Settings::default() }).await;
        let (user, deleter) = (session(&h, "read").await, session(&h, "orders:delete").await);
        for (token, method, uri, expected) in [
            (&user, "DELETE", "/orders/7", StatusCode::FORBIDDEN),
            (&user, "GET", "/orders/7", StatusCode::OK),
            (&deleter, "DELETE", "/orders/7", StatusCode::OK),
            (&user, "GET", "/%61dmin/users", StatusCode::FORBIDDEN),
            (&user, "GET", "/admin%2Fusers", StatusCode::BAD_REQUEST),
            (&user, "delete", "/orders/7", StatusCode::BAD_REQUEST),
        ] {
            let status = verify(&h, "", token, &traefik(method, uri)).await.0;
            assert_eq!(status, expected, "{style:?}: {method} {uri}");
        }
    }
    let nginx_style = harness(Settings { forwarded_headers: ForwardedHeaders::Nginx, ..Settings::default() }).await;
    let user = session(&nginx_style, "read").await;
    let status = verify(&nginx_style, "", &user, &traefik("GET", "/public")).await.0;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nginx's style names no request without X-Original-*");
}

#[tokio::test]
async fn envoy_checks_are_normalised_and_only_served_in_envoy_or_auto_style() {
    let h = harness(Settings::default()).await;
    let user = session(&h, "read").await;
    let check = |app: axum::Router, method: &'static str, path: &'static str, token: String| async move {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap().status()
    };
    assert_eq!(check(h.app.clone(), "GET", "/verify/%61dmin/users", user.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(check(h.app.clone(), "GET", "/verify/x/../admin", user.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(check(h.app.clone(), "GET", "/verify/admin%2Fusers", user.clone()).await, StatusCode::BAD_REQUEST);
    assert_eq!(check(h.app.clone(), "GET", "/verify/", user.clone()).await, StatusCode::OK);
    // The check request's query is the client's: it names no requirement.
    assert_eq!(check(h.app.clone(), "GET", "/verify/orders?audience=x&scope=y", user.clone()).await, StatusCode::OK);
    let nginx_style = harness(Settings { forwarded_headers: ForwardedHeaders::Nginx, ..Settings::default() }).await;
    let user = session(&nginx_style, "read").await;
    assert_eq!(check(nginx_style.app.clone(), "GET", "/verify/public", user).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_auth_url_names_the_audience_and_scopes_the_gateway_requires() {
    let h = harness(Settings::default()).await;
    common::register_client(&h, "billing", SECRET, &["read"], &["ledger"], &["client_credentials"]).await;
    tessera_server::start_background(&h.state).await.unwrap().abort();
    let request = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic_auth("billing", SECRET))
        .body(Body::from("grant_type=client_credentials&scope=read"))
        .unwrap();
    let bytes = h.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let service = serde_json::from_slice::<Value>(&bytes).unwrap()["access_token"].as_str().unwrap().to_owned();
    let user = session(&h, "read").await;
    let public = [("x-original-method", "GET"), ("x-original-uri", "/public")];

    // A user token (audience "tessera") does not open the ledger's gateway, though it verifies elsewhere.
    assert_eq!(verify(&h, "?audience=ledger", &user, &public).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&h, "?audience=ledger", &service, &public).await.0, StatusCode::OK);
    assert_eq!(verify(&h, "", &user, &public).await.0, StatusCode::OK);
    assert_eq!(verify(&h, "?audience=tessera&scope=read", &user, &public).await.0, StatusCode::OK);
    assert_eq!(verify(&h, "?scope=read&scope=write", &user, &public).await.0, StatusCode::FORBIDDEN);
    for bad in ["?audience=a&audience=b", "?aud=ledger", "?audience=ledger&path=/x", "?audience="] {
        assert_eq!(verify(&h, bad, &service, &public).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }

    // A server-wide audience for /verify, and refusing a gateway that names none.
    let settings = Settings { verify_audience: Some("ledger".into()), ..Settings::default() };
    let ledger_only = harness(settings).await;
    let user = session(&ledger_only, "read").await;
    assert_eq!(verify(&ledger_only, "", &user, &public).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&ledger_only, "?audience=tessera", &user, &public).await.0, StatusCode::OK);
    let strict = harness(Settings { require_verify_audience: true, ..Settings::default() }).await;
    let user = session(&strict, "read").await;
    assert_eq!(verify(&strict, "", &user, &public).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(verify(&strict, "?audience=tessera", &user, &public).await.0, StatusCode::OK);
}

#[tokio::test]
async fn roles_outside_the_safe_set_are_refused_when_a_session_is_minted() {
    let h = harness(Settings::default()).await;
    for role in ["admin,staff", "a b", "", "ünicode", &"r".repeat(65)] {
        let (status, body) = mint(&h, serde_json::json!({"sub": "carol", "roles": [role]})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{role:?}");
    }
    let (status, _) = mint(&h, serde_json::json!({"sub": "carol", "roles": ["team.lead", "ns:role-1"]})).await;
    assert_eq!(status, StatusCode::CREATED);
}

const PARTNER: &str = "https://partner.test";

/// A trusted issuer serving one key's JWKS on a loopback port; its tokens name audience `api`.
fn partner(key: &SigningKey) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let set = KeySet::from_keys([key.verifying_key().clone()]).unwrap();
    let body = serde_json::to_string(&set.to_public_jwks()).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.read(&mut [0u8; 4096]);
            let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_users_are_named_apart_and_carry_only_mapped_roles_and_scopes() {
    let key = SigningKey::generate(Algorithm::ES256, RsaBits::Bits2048).unwrap();
    let settings = Settings {
        trusted_issuers: vec![TrustedIssuer {
            issuer: PARTNER.into(),
            jwks_url: partner(&key),
            audiences: vec!["api".into()],
            role_map: [("partner-admin".to_owned(), "partner_admin".to_owned())].into(),
            scope_map: [("orders.read".to_owned(), "orders:read".to_owned())].into(),
            ..TrustedIssuer::default()
        }],
        ..Settings::default()
    };
    let h = harness(settings).await;
    let background = tessera_server::start_background(&h.state).await.unwrap();
    let now = h.clock.now_secs();
    let mut claims = Claims {
        iss: Some(PARTNER.into()),
        sub: Some("alice".into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(now + 600),
        iat: Some(now),
        jti: Some("partner-1".into()),
        client_id: Some("partner-app".into()),
        scope: Some("admin orders.read".into()),
        ..Claims::default()
    };
    claims.extra.insert("roles".into(), serde_json::json!(["admin", "partner-admin"]));
    let token = encode_jwt(&key, Some("at+jwt"), &claims).unwrap();
    let public = [("x-original-method", "GET"), ("x-original-uri", "/public")];
    let deadline = Instant::now() + Duration::from_secs(5);
    let headers = loop {
        let (status, headers) = verify(&h, "", &token, &public).await;
        if status == StatusCode::OK {
            break headers;
        }
        assert!(Instant::now() < deadline, "the partner's token never verified: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let value = |name: &str| headers[name].to_str().unwrap().to_owned();
    assert_eq!(value("x-user-id"), "", "a partner's alice is not the local alice");
    assert_eq!(value("x-external-subject"), "alice");
    assert_eq!(value("x-token-issuer"), PARTNER);
    assert_eq!(value("x-user-roles"), "partner_admin", "their admin role is not ours");
    assert_eq!(value("x-scope"), "orders:read");
    // Their `admin` scope does not meet a local rule asking for `admin`; the mapped scope meets one asking for it.
    assert_eq!(nginx(&h, &token, "GET", "/admin/users").await, StatusCode::FORBIDDEN);
    assert_eq!(verify(&h, "?scope=orders:read", &token, &public).await.0, StatusCode::OK);
    assert_eq!(verify(&h, "?scope=orders.read", &token, &public).await.0, StatusCode::FORBIDDEN);

    // A local token names this server as its issuer and its subject as the user.
    let local = session(&h, "read").await;
    let (status, headers) = verify(&h, "", &local, &public).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-token-issuer"], h.state.settings().issuer.as_str());
    assert_eq!(
        (&headers["x-user-id"], &headers["x-external-subject"]),
        (&"carol".parse().unwrap(), &"".parse().unwrap())
    );
    assert_eq!(headers["x-user-roles"], "staff");
    background.abort();
}
