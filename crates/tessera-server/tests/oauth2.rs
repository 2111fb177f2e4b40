//! Service clients: client authentication, the client-credentials grant, introspection, token exchange, revocation
//! (RFC 7009 and the admin API), and /verify route rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tessera_server::clock::Clock as _;
use tessera_store::{Client, Revocation};
use tower::ServiceExt as _;

const SECRET: &str = "s3cr3t-generated-with-256-bits-of-entropy-xyz";

async fn post(
    h: &common::Harness,
    path: &str,
    body: &str,
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        request = request.header(header::AUTHORIZATION, basic_auth(id, secret));
    }
    let response = h.app.clone().oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.as_u16() < 500, "{status}");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
}

const ADMIN: &str = "admin-credential-for-tests-0123456789abcdef";

async fn setup() -> common::Harness {
    setup_with(tessera_server::Settings::default()).await
}

/// The clients and rules of these tests, on `base` settings.
async fn setup_with(base: tessera_server::Settings) -> common::Harness {
    let settings = tessera_server::Settings {
        admin_token: Some(ADMIN.into()),
        exchange_rules: vec![
            tessera_server::ExchangeRule {
                client_id: "exchanger".into(),
                audience: "ledger".into(),
                scopes: vec!["read".into()],
            },
            // The ledger service passes the user's derived token on to reports: a second level of exchange.
            tessera_server::ExchangeRule {
                client_id: "ledger-service".into(),
                audience: "reports".into(),
                scopes: vec!["read".into()],
            },
        ],
        routes: vec![
            tessera_server::RouteRule {
                path_prefix: "/admin".into(),
                case_insensitive: false,
                method: None,
                audience: None,
                scopes: vec!["admin".into()],
            },
            tessera_server::RouteRule {
                path_prefix: "/ledger".into(),
                case_insensitive: false,
                method: None,
                audience: Some("ledger".into()),
                scopes: vec![],
            },
        ],
        ..base
    };
    let h = common::harness_with(settings).await;
    for (id, grants, audiences) in [
        ("billing", vec!["client_credentials"], vec!["ledger"]),
        ("gateway", vec![], vec!["ledger", "tessera"]),
        ("multi", vec!["client_credentials"], vec!["ledger", "reports"]),
        ("exchanger", vec!["token_exchange"], vec!["tessera"]),
        ("ledger-service", vec!["token_exchange"], vec!["ledger"]),
    ] {
        h.state
            .store()
            .create_client(Client {
                client_id: id.into(),
                secret_hash: tessera_server::client_secret_hash(SECRET),
                scopes: vec!["read".into(), "write".into()],
                audiences: audiences.into_iter().map(str::to_owned).collect(),
                grants: grants.into_iter().map(str::to_owned).collect(),
                disabled: false,
                created_at: h.clock.now_ms(),
                jwks: None,
            })
            .await
            .unwrap();
    }
    // Registers the clients' audiences with the verifier, as the running server does.
    tessera_server::start_background(&h.state).await.unwrap().abort();
    h
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&tessera_jose::base64url::decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn client_credentials_issues_a_short_lived_token_for_one_audience() {
    let h = setup().await;
    let (status, body, headers) =
        post(&h, "/oauth2/token", "grant_type=client_credentials&scope=read", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!((body["expires_in"].as_i64(), body["scope"].as_str()), (Some(60), Some("read")));
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str(), claims["client_id"].as_str()),
        (Some("billing"), Some("ledger"), Some("billing"))
    );
    assert!(claims["jti"].is_string());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);
    assert!(body.get("refresh_token").is_none());

    // client_secret_post works the same; RFC 8707 resource picks the audience.
    let (status, body, _) = post(
        &h,
        "/oauth2/token",
        &format!("grant_type=client_credentials&client_id=multi&client_secret={SECRET}&resource=reports"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims_of(body["access_token"].as_str().unwrap())["aud"], "reports");
}

#[tokio::test]
async fn nothing_is_minted_beyond_policy() {
    let h = setup().await;
    let cases = [
        (
            "grant_type=client_credentials&scope=admin",
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&audience=payroll",
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        ("grant_type=client_credentials", Some(("multi", SECRET)), StatusCode::BAD_REQUEST, "invalid_target"),
        (
            "grant_type=client_credentials&resource=ledger&audience=ledger",
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("grant_type=client_credentials", Some(("gateway", SECRET)), StatusCode::BAD_REQUEST, "unauthorized_client"),
        ("grant_type=client_credentials", Some(("billing", "wrong")), StatusCode::UNAUTHORIZED, "invalid_client"),
        ("grant_type=client_credentials", Some(("nobody", "wrong")), StatusCode::UNAUTHORIZED, "invalid_client"),
        ("grant_type=client_credentials", None, StatusCode::UNAUTHORIZED, "invalid_client"),
        (
            &format!("grant_type=client_credentials&client_id=billing&client_secret={SECRET}"),
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, auth, status, error) in cases {
        let (got, reply, headers) = post(&h, "/oauth2/token", body, auth).await;
        assert_eq!((got, reply["error"].as_str().unwrap()), (status, error), "{body} {auth:?}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Basic realm="tessera""#);
        }
    }
    h.state.store().set_client_disabled("billing", true, h.state.clock().now_ms()).await.unwrap();
    tessera_server::sync(&h.state).await.unwrap(); // what every node does each reload interval
    let (status, _, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a disabled client cannot authenticate");
}

#[tokio::test]
async fn introspection_answers_active_only_for_valid_tokens_meant_for_the_caller() {
    let h = setup().await;
    let (_, body, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    let service_token = body["access_token"].as_str().unwrap().to_owned();

    let (status, active, _) =
        post(&h, "/oauth2/introspect", &format!("token={service_token}"), Some(("gateway", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (active["active"].as_bool(), active["sub"].as_str(), active["aud"].as_str()),
        (Some(true), Some("billing"), Some("ledger"))
    );
    // A user's token (audience "tessera") is active for a client holding that audience, inactive for others.
    let login = Request::post("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::json!({"username": "alice", "password": common::PASSWORD}).to_string()))
        .unwrap();
    let login = h.app.clone().oneshot(login).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let user_token = serde_json::from_slice::<Value>(&login).unwrap()["access_token"].as_str().unwrap().to_owned();
    let (_, for_gateway, _) =
        post(&h, "/oauth2/introspect", &format!("token={user_token}"), Some(("gateway", SECRET))).await;
    assert_eq!((for_gateway["active"].as_bool(), for_gateway["sub"].as_str()), (Some(true), Some("alice")));
    let (_, for_billing, _) =
        post(&h, "/oauth2/introspect", &format!("token={user_token}"), Some(("billing", SECRET))).await;
    assert_eq!(for_billing, serde_json::json!({"active": false}), "not meant for billing's audiences");
    for token in ["garbage", "a.b.c", ""] {
        let (status, reply, _) =
            post(&h, "/oauth2/introspect", &format!("token={token}"), Some(("gateway", SECRET))).await;
        assert_eq!((status, reply), (StatusCode::OK, serde_json::json!({"active": false})), "{token:?}");
    }
    let (status, _, _) = post(&h, "/oauth2/introspect", &format!("token={service_token}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An expired token is inactive, with no further detail.
    h.clock.advance_ms(120_000);
    let (_, expired, _) =
        post(&h, "/oauth2/introspect", &format!("token={service_token}"), Some(("gateway", SECRET))).await;
    assert_eq!(expired, serde_json::json!({"active": false}));
}

async fn admin_session(h: &common::Harness, scope: &str) -> String {
    let request = Request::post("/admin/v1/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from(serde_json::json!({"sub": "carol", "scope": scope, "roles": ["staff"]}).to_string()))
        .unwrap();
    let bytes = h.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&bytes).unwrap()["access_token"].as_str().unwrap().to_owned()
}

fn bearer_request(method: &str, path: &str, token: &str) -> Request<Body> {
    let authorization = format!("Bearer {token}");
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .unwrap()
}

async fn verify(h: &common::Harness, token: &str, uri: &str) -> (StatusCode, axum::http::HeaderMap) {
    let request = Request::get("/verify")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", uri)
        .header("x-request-id", "req-42")
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

const EXCHANGE: &str = "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token_type=urn:ietf:params:oauth:token-type:access_token";

/// The token endpoint's answer to the `exchanger` client exchanging `subject` for the `ledger` audience.
async fn exchanged_for_the_ledger(h: &common::Harness, subject: &str) -> Value {
    let exchange = format!("{EXCHANGE}&subject_token={subject}&audience=ledger");
    let (status, body, _) = post(h, "/oauth2/token", &exchange, Some(("exchanger", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn token_exchange_narrows_the_subject_token_for_one_audience() {
    let h = setup().await;
    let subject = admin_session(&h, "read write").await;
    let body = exchanged_for_the_ledger(&h, &subject).await;
    assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    let derived = body["access_token"].as_str().unwrap().to_owned();
    let (claims, original) = (claims_of(&derived), claims_of(&subject));
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str(), claims["scope"].as_str()),
        (Some("carol"), Some("ledger"), Some("read"))
    );
    assert_eq!(claims["act"], serde_json::json!({"sub": "exchanger"}));
    assert_eq!((&claims["sid"], &claims["orig_jti"]), (&original["sid"], &original["jti"]));
    assert!(claims["exp"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap() + 300);
    assert!(claims["exp"].as_i64().unwrap() <= original["exp"].as_i64().unwrap());

    let refused = [
        (format!("{EXCHANGE}&subject_token={subject}&audience=ledger&scope=write"), ("exchanger", SECRET), "invalid_scope"),
        (format!("{EXCHANGE}&subject_token={subject}&audience=payroll"), ("exchanger", SECRET), "invalid_target"),
        (format!("{EXCHANGE}&subject_token={subject}"), ("exchanger", SECRET), "invalid_target"),
        (format!("{EXCHANGE}&subject_token={subject}&audience=ledger"), ("billing", SECRET), "unauthorized_client"),
        (format!("{EXCHANGE}&subject_token=forged.token.here&audience=ledger"), ("exchanger", SECRET), "invalid_grant"),
        (format!("grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token={subject}&subject_token_type=urn:ietf:params:oauth:token-type:jwt&audience=ledger"), ("exchanger", SECRET), "invalid_request"),
    ];
    for (body, auth, error) in refused {
        let (status, reply, _) = post(&h, "/oauth2/token", &body, Some(auth)).await;
        assert_eq!((status, reply["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, error), "{body}");
    }

    // Revoking the user's session kills the derived token too (it carries the session's sid).
    assert_eq!(verify(&h, &derived, "/ledger/1").await.0, StatusCode::OK);
    let logout = Request::post("/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {subject}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.app.clone().oneshot(logout).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(verify(&h, &derived, "/ledger/1").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn verify_applies_route_rules_and_passes_a_request_id() {
    let h = setup().await;
    let user = admin_session(&h, "read").await;
    let (status, headers) = verify(&h, &user, "/reports?x=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((headers["x-user-id"].to_str().unwrap(), headers["x-user-roles"].to_str().unwrap()), ("carol", "staff"));
    assert_eq!((headers["x-scope"].to_str().unwrap(), headers["x-request-id"].to_str().unwrap()), ("read", "req-42"));

    let (status, headers) = verify(&h, &user, "/admin/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Bearer error="insufficient_scope""#);
    let admin = admin_session(&h, "read admin").await;
    assert_eq!(verify(&h, &admin, "/admin/users").await.0, StatusCode::OK);
    // A user token (audience "tessera") is refused where the route wants the ledger audience.
    assert_eq!(verify(&h, &user, "/ledger/entries").await.0, StatusCode::UNAUTHORIZED);
    let (_, body, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    assert_eq!(verify(&h, body["access_token"].as_str().unwrap(), "/ledger/entries").await.0, StatusCode::OK);
}

#[tokio::test]
async fn envoy_ext_authz_sends_the_original_method_and_path_behind_the_prefix() {
    let h = setup().await;
    let user = admin_session(&h, "read").await;
    let admin = admin_session(&h, "read admin").await;
    let check = |token: String, method: &'static str, path: &'static str| {
        let app = h.app.clone();
        async move {
            let response = app.oneshot(bearer_request(method, path, &token)).await.unwrap();
            (response.status(), response.headers().get("x-user-id").map(|v| v.to_str().unwrap().to_owned()))
        }
    };
    assert_eq!(check(user.clone(), "POST", "/verify/orders/7?x=1").await, (StatusCode::OK, Some("carol".into())));
    assert_eq!(
        check(user.clone(), "DELETE", "/verify/admin/users/3").await.0,
        StatusCode::FORBIDDEN,
        "the /admin rule applies"
    );
    assert_eq!(check(admin, "DELETE", "/verify/admin/users/3").await.0, StatusCode::OK);
    assert_eq!(check("garbage".into(), "GET", "/verify/orders").await.0, StatusCode::UNAUTHORIZED);
}

async fn admin_revoke(h: &common::Harness, body: Value, credential: &str) -> (StatusCode, Value) {
    let request = Request::post("/admin/v1/revocations")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {credential}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn service_token(h: &common::Harness, client: &str) -> String {
    let (status, body, _) = post(h, "/oauth2/token", "grant_type=client_credentials", Some((client, SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// These tests' clients and rules, with the compact revocation index (one-minute buckets).
async fn compact_setup() -> common::Harness {
    let compact =
        tessera_server::CompactRevocations { bucket_width: std::time::Duration::from_secs(60), bucket_capacity: 100 };
    setup_with(tessera_server::Settings { compact_revocations: Some(compact), ..tessera_server::Settings::default() })
        .await
}

/// Compact mode: revoked `jti`s are held in a prefilter, and what it may hold is looked up in the store. Tokens
/// revoked through RFC 7009 (their expiry known) and by an operator (by `jti` alone) are refused; a positive the
/// store does not confirm — which is all a false positive is — is accepted.
#[tokio::test]
async fn compact_mode_refuses_revoked_tokens_and_accepts_what_the_store_does_not_confirm() {
    let h = compact_setup().await;
    let by_client = service_token(&h, "billing").await;
    let by_operator = service_token(&h, "billing").await;
    let kept = service_token(&h, "billing").await;
    let lookalike = service_token(&h, "billing").await;
    for token in [&by_client, &by_operator, &kept, &lookalike] {
        assert_eq!(verify(&h, token, "/ledger/1").await.0, StatusCode::OK);
    }
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={by_client}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    let jti = claims_of(&by_operator)["jti"].as_str().unwrap().to_owned();
    assert_eq!(admin_revoke(&h, serde_json::json!({ "jti": jti }), ADMIN).await.0, StatusCode::OK);
    // In the index but not in the store: the prefilter answers "maybe", the store "no".
    let claims = claims_of(&lookalike);
    let planted = Revocation::Token {
        jti: claims["jti"].as_str().unwrap().to_owned(),
        expires_at: claims["exp"].as_i64().unwrap() * 1000,
    };
    h.state.revocations().apply_local(&planted, h.clock.now_ms());
    assert_eq!(verify(&h, &by_client, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "revoked by its client");
    assert_eq!(verify(&h, &by_operator, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "revoked by jti alone");
    assert_eq!(verify(&h, &kept, "/ledger/1").await.0, StatusCode::OK);
    assert_eq!(verify(&h, &lookalike, "/ledger/1").await.0, StatusCode::OK, "the store's answer stands");
    // A "revoked" from the store is remembered: the index now refuses that token by itself.
    let revoked = claims_of(&by_client);
    let presented = tessera_revocation::TokenRef {
        jti: revoked["jti"].as_str(),
        exp_secs: revoked["exp"].as_i64().unwrap(),
        ..tessera_revocation::TokenRef::default()
    };
    assert_eq!(h.state.revocations().check(&presented), tessera_revocation::Check::Revoked);
}

/// Compact mode, with the store unable to answer the confirming read (its revocation log gone from under it): a
/// token the prefilter may hold is neither accepted nor called revoked or inactive — every entry point answers 503,
/// so callers retry instead of acting on a guess.
#[tokio::test]
async fn compact_mode_answers_503_when_the_store_cannot_confirm() {
    let h = compact_setup().await;
    let revoked = service_token(&h, "billing").await;
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={revoked}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    let db = rusqlite::Connection::open(h.dir.path().join("tessera.db")).unwrap();
    db.execute_batch("ALTER TABLE revocation_log RENAME TO revocation_log_elsewhere;").unwrap();

    let send = |request: Request<Body>| async { h.app.clone().oneshot(request).await.unwrap().status() };
    let verify = Request::get("/verify")
        .header(header::AUTHORIZATION, format!("Bearer {revoked}"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/ledger/1");
    assert_eq!(send(verify.body(Body::empty()).unwrap()).await, StatusCode::SERVICE_UNAVAILABLE);
    for (path, client) in [("/oauth2/introspect", "gateway"), ("/oauth2/revoke", "billing")] {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic_auth(client, SECRET))
            .body(Body::from(format!("token={revoked}")))
            .unwrap();
        assert_eq!(send(request).await, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
}

fn basic_auth(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

#[tokio::test]
async fn rfc7009_revokes_a_clients_own_tokens_and_nothing_else() {
    let h = setup().await;
    let token = service_token(&h, "billing").await;
    let other = service_token(&h, "billing").await;
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::OK);

    // Another client may not revoke billing's token: refused, and the token keeps working.
    let (status, reply, _) = post(&h, "/oauth2/revoke", &format!("token={token}"), Some(("multi", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::OK);
    // Bad client credentials, a missing token, the wrong content type.
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={token}"), Some(("billing", "wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply, _) =
        post(&h, "/oauth2/revoke", "token_type_hint=access_token", Some(("billing", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::OK, "refused requests change nothing");

    let (status, _, headers) =
        post(&h, "/oauth2/revoke", &format!("token={token}&token_type_hint=refresh_token"), Some(("billing", SECRET)))
            .await;
    assert_eq!(status, StatusCode::OK, "a wrong hint does not matter");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::UNAUTHORIZED);
    let (_, introspected, _) =
        post(&h, "/oauth2/introspect", &format!("token={token}"), Some(("gateway", SECRET))).await;
    assert_eq!(introspected, serde_json::json!({"active": false}));
    assert_eq!(verify(&h, &other, "/ledger/1").await.0, StatusCode::OK, "only that token, by its jti");
    // Revoking again, or revoking garbage, is a quiet 200 (RFC 7009 §2.2).
    for token in [token.as_str(), "garbage", "a.b.c"] {
        let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={token}"), Some(("billing", SECRET))).await;
        assert_eq!(status, StatusCode::OK, "{token}");
    }
    let log = h.state.store().revocations_after(0, 0, 100).await.unwrap();
    let entry = log.iter().find(|e| matches!(e.revocation, tessera_store::Revocation::Token { .. })).unwrap();
    assert_eq!((entry.provenance.actor.as_str(), entry.provenance.reason.as_str()), ("client:billing", "rfc7009"));
}

#[tokio::test]
async fn rfc7009_revoking_a_refresh_token_ends_the_session_and_its_access_tokens() {
    let h = setup().await;
    let request = Request::post("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"username": "bob", "password": common::PASSWORD, "refresh_token_delivery": "body"})
                .to_string(),
        ))
        .unwrap();
    let bytes = h.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let login: Value = serde_json::from_slice(&bytes).unwrap();
    let (access, refresh) = (login["access_token"].as_str().unwrap(), login["refresh_token"].as_str().unwrap());
    assert_eq!(verify(&h, access, "/").await.0, StatusCode::OK);
    // A confidential client cannot revoke the first-party session's token; the public client names itself.
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={refresh}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={refresh}&client_id=tessera"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify(&h, access, "/").await.0, StatusCode::UNAUTHORIZED, "the session's access token died too");
    let (status, reply, _) =
        post(&h, "/oauth2/token", &format!("grant_type=refresh_token&refresh_token={refresh}"), None).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // Without any client identification the request is refused.
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={refresh}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_revocations_by_jti_sid_and_sub_reach_derived_tokens_and_are_kept_for_audit() {
    let h = setup().await;
    // By jti: the token and the token derived from it by exchange; a sibling token of the session lives on.
    let subject = admin_session(&h, "read").await;
    let (_, body, _) = post(
        &h,
        "/oauth2/token",
        &format!("{EXCHANGE}&subject_token={subject}&audience=ledger"),
        Some(("exchanger", SECRET)),
    )
    .await;
    let derived = body["access_token"].as_str().unwrap().to_owned();
    let jti = claims_of(&subject)["jti"].as_str().unwrap().to_owned();
    let (status, reply) = admin_revoke(&h, serde_json::json!({"jti": jti, "reason": "leaked in a log"}), ADMIN).await;
    assert_eq!((status, reply["changed"].as_bool()), (StatusCode::OK, Some(true)), "{reply}");
    assert_eq!(verify(&h, &subject, "/").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&h, &derived, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "derived tokens die with it");

    // By sid.
    let second = admin_session(&h, "read").await;
    let sid = claims_of(&second)["sid"].as_str().unwrap().to_owned();
    assert_eq!(admin_revoke(&h, serde_json::json!({"sid": sid}), ADMIN).await.0, StatusCode::OK);
    assert_eq!(verify(&h, &second, "/").await.0, StatusCode::UNAUTHORIZED);
    let (_, again) = admin_revoke(&h, serde_json::json!({"sid": sid}), ADMIN).await;
    assert_eq!(again["changed"].as_bool(), Some(false), "revoking twice changes nothing");

    // By sub, up to an instant: tokens issued before it die, tokens issued after it live.
    let early = admin_session(&h, "read").await;
    h.clock.advance_ms(5_000);
    let late = admin_session(&h, "read").await;
    let instant = claims_of(&early)["iat"].as_i64().unwrap() + 1;
    let (status, _) = admin_revoke(&h, serde_json::json!({"sub": "carol", "before": instant}), ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify(&h, &early, "/").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&h, &late, "/").await.0, StatusCode::OK);

    // Bad requests are refused and change nothing.
    let before = h.state.store().revocations_after(0, 0, 1_000).await.unwrap().len();
    let future = h.clock.now_ms() / 1000 + 60;
    for body in [
        serde_json::json!({}),
        serde_json::json!({"jti": "a", "sid": "b"}),
        serde_json::json!({"sub": "carol", "before": future}),
        serde_json::json!({"jti": "a", "before": 1}),
        serde_json::json!({"jti": ""}),
        serde_json::json!({"jti": "a", "unknown": 1}),
        serde_json::json!({"jti": 5}),
    ] {
        let (status, reply) = admin_revoke(&h, body.clone(), ADMIN).await;
        // 400 for a request that names the wrong things, 422 for one that does not parse as a revocation.
        assert!(matches!(status.as_u16(), 400 | 422), "{body} -> {status} {reply}");
        assert_eq!(reply["error"], "invalid_request");
    }
    assert_eq!(admin_revoke(&h, serde_json::json!({"sub": "carol"}), "wrong").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&h, &late, "/").await.0, StatusCode::OK);
    let log = h.state.store().revocations_after(0, 0, 1_000).await.unwrap();
    assert_eq!(log.len(), before, "nothing was recorded");
    let by_jti = log.iter().find(|e| matches!(&e.revocation, Revocation::TokenById { jti: j, .. } if *j == jti));
    let provenance = &by_jti.unwrap().provenance;
    assert_eq!((provenance.actor.as_str(), provenance.reason.as_str()), ("admin", "leaked in a log"));
}

#[tokio::test]
async fn rotating_a_client_secret_cuts_off_the_old_secret_and_its_tokens() {
    let h = setup().await;
    let token = service_token(&h, "billing").await;
    h.clock.advance_ms(2_000);
    let rotated = "a-new-secret-with-256-bits-of-entropy-0123456789";
    let hash = tessera_server::client_secret_hash(rotated);
    h.state.store().set_client_secret("billing", hash, h.clock.now_ms()).await.unwrap();
    tessera_server::sync(&h.state).await.unwrap(); // what every node does each reload interval
    let (status, _, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old secret is refused");
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "and its tokens are dead");
    h.clock.advance_ms(1_000);
    let (status, body, _) =
        post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", rotated))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify(&h, body["access_token"].as_str().unwrap(), "/ledger/1").await.0, StatusCode::OK);
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `claims` with `name` set to `value`.
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn assertion(key: &tessera_jose::SigningKey, claims: Value) -> String {
    tessera_jose::encode_jwt(key, None, &claims).unwrap()
}

#[tokio::test]
async fn private_key_jwt_accepts_each_fresh_assertion_once() {
    let h = setup().await;
    let key =
        tessera_jose::SigningKey::generate(tessera_jose::Algorithm::ES256, tessera_jose::RsaBits::Bits2048).unwrap();
    let stranger =
        tessera_jose::SigningKey::generate(tessera_jose::Algorithm::ES256, tessera_jose::RsaBits::Bits2048).unwrap();
    let jwks = serde_json::json!({"keys": [key.verifying_key().public_jwk().unwrap()]}).to_string();
    h.state
        .store()
        .create_client(Client {
            client_id: "signer".into(),
            secret_hash: vec![],
            scopes: vec!["read".into()],
            audiences: vec!["ledger".into()],
            grants: vec!["client_credentials".into()],
            disabled: false,
            created_at: h.clock.now_ms(),
            jwks: Some(jwks),
        })
        .await
        .unwrap();
    tessera_server::sync(&h.state).await.unwrap();
    let now = h.clock.now_ms() / 1000;
    let issuer = h.state.settings().issuer.clone();
    let claims = |jti: &str| serde_json::json!({"iss": "signer", "sub": "signer", "aud": format!("{issuer}/oauth2/token"), "exp": now + 60, "iat": now, "jti": jti});
    let grant = |assertion: &str, extra: &str| {
        format!(
            "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}{extra}"
        )
    };

    let good = assertion(&key, claims("a-1"));
    let (status, body, _) = post(&h, "/oauth2/token", &grant(&good, "&client_id=signer"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims_of(body["access_token"].as_str().unwrap())["client_id"], "signer");
    let (status, _, _) = post(&h, "/oauth2/token", &grant(&good, ""), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a replayed assertion is refused");
    let with_issuer_audience = assertion(&key, with(claims("a-2"), "aud", serde_json::json!(issuer)));
    assert_eq!(post(&h, "/oauth2/token", &grant(&with_issuer_audience, ""), None).await.0, StatusCode::OK);

    let mut refused = vec![
        ("signed by another key", assertion(&stranger, claims("b-1"))),
        ("wrong audience", assertion(&key, with(claims("b-2"), "aud", serde_json::json!("https://elsewhere")))),
        ("expired", assertion(&key, with(claims("b-3"), "exp", serde_json::json!(now - 120)))),
        ("too long-lived", assertion(&key, with(claims("b-4"), "exp", serde_json::json!(now + 3_600)))),
        ("no exp", assertion(&key, serde_json::json!({"iss": "signer", "sub": "signer", "aud": issuer, "jti": "b-5"}))),
        (
            "no jti",
            assertion(&key, serde_json::json!({"iss": "signer", "sub": "signer", "aud": issuer, "exp": now + 60})),
        ),
        ("sub is not the client", assertion(&key, with(claims("b-6"), "sub", serde_json::json!("someone")))),
        (
            "unknown client",
            assertion(
                &key,
                with(with(claims("b-7"), "iss", serde_json::json!("nobody")), "sub", serde_json::json!("nobody")),
            ),
        ),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    let header = tessera_jose::base64url::encode(br#"{"alg":"none"}"#);
    let payload = tessera_jose::base64url::encode(claims("b-8").to_string().as_bytes());
    refused.push(("alg none", format!("{header}.{payload}.")));
    for (why, assertion) in refused {
        let (status, reply, _) = post(&h, "/oauth2/token", &grant(&assertion, ""), None).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{why}");
    }
    let fresh = assertion(&key, claims("c-1"));
    let (status, _, _) = post(&h, "/oauth2/token", &grant(&fresh, "&client_id=billing"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "client_id must name the assertion's client");
    let (status, _, _) = post(&h, "/oauth2/token", &grant(&fresh, &format!("&client_secret={SECRET}")), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "two methods at once");
    let other_type = format!("grant_type=client_credentials&client_assertion_type=urn:x&client_assertion={fresh}");
    assert_eq!(post(&h, "/oauth2/token", &other_type, None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(post(&h, "/oauth2/token", &grant(&fresh, ""), None).await.0, StatusCode::OK, "c-1 was never used");
}

/// A user-session access token as this server signs them, with `act` added: a service acting for the user.
fn acting_for_the_user(h: &common::Harness, session_token: &str) -> String {
    let session = claims_of(session_token);
    let text = |name: &str| session[name].as_str().map(str::to_owned);
    let mut extra = serde_json::Map::new();
    extra.insert("act".into(), serde_json::json!({"sub": "exchanger"}));
    let claims = tessera_jose::Claims {
        iss: text("iss"),
        sub: text("sub"),
        aud: text("aud").map(tessera_jose::Audience::One),
        exp: session["exp"].as_i64(),
        iat: session["iat"].as_i64(),
        jti: Some("acting-1".into()),
        client_id: Some("exchanger".into()),
        scope: None,
        sid: text("sid"),
        nbf: None,
        extra,
    };
    tessera_jose::encode_jwt(&h.state.keys().signing_key(), Some(tessera_jose::ACCESS_TOKEN_TYP), &claims).unwrap()
}

#[tokio::test]
async fn session_routes_take_only_the_users_own_session_tokens() {
    let h = setup().await;
    let subject = admin_session(&h, "read write").await;
    let body = exchanged_for_the_ledger(&h, &subject).await;
    let exchanged = body["access_token"].as_str().unwrap().to_owned();
    let acting = acting_for_the_user(&h, &subject);
    let service = service_token(&h, "billing").await;
    let send = |method: &str, path: &str, token: &str| {
        let (app, request) = (h.app.clone(), bearer_request(method, path, token));
        async move { app.oneshot(request).await.unwrap().status() }
    };
    // Each is a valid token: gateways accept it.
    assert_eq!(verify(&h, &exchanged, "/ledger/1").await.0, StatusCode::OK);
    assert_eq!(verify(&h, &acting, "/orders/1").await.0, StatusCode::OK);
    assert_eq!(verify(&h, &service, "/ledger/1").await.0, StatusCode::OK);
    for (token, what) in [(&exchanged, "exchanged"), (&acting, "acting for the user"), (&service, "service")] {
        for (method, path) in [("GET", "/auth/sessions"), ("POST", "/auth/logout-all"), ("POST", "/auth/logout")] {
            assert_eq!(send(method, path, token).await, StatusCode::UNAUTHORIZED, "{what} token on {method} {path}");
        }
        let sid = claims_of(&subject)["sid"].as_str().unwrap().to_owned();
        assert_eq!(send("DELETE", &format!("/auth/sessions/{sid}"), token).await, StatusCode::UNAUTHORIZED, "{what}");
    }
    // None of it touched the user's session.
    assert_eq!(verify(&h, &subject, "/orders/1").await.0, StatusCode::OK);
    assert_eq!(send("GET", "/auth/sessions", &subject).await, StatusCode::OK);
}

/// The token endpoint's answer to a refresh grant of `refresh_token`, with `extra` form parameters.
async fn refresh_with(
    h: &common::Harness,
    refresh_token: &str,
    extra: &str,
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    post(h, "/oauth2/token", &format!("grant_type=refresh_token&refresh_token={refresh_token}{extra}"), basic).await
}

/// A session minted through the admin API for `client_id` (`None`: the browser login's client): its refresh
/// token.
async fn session_of(h: &common::Harness, client_id: Option<&str>) -> String {
    let mut body = serde_json::json!({"sub": "carol", "scope": "read"});
    if let Some(client_id) = client_id {
        body["client_id"] = client_id.into();
    }
    let request = Request::post("/admin/v1/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let bytes = h.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&bytes).unwrap()["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_confidential_clients_session_is_refreshed_only_by_that_client_authenticated() {
    let h = setup().await;
    let token = session_of(&h, Some("billing")).await;
    // No credential, a bare client_id, a wrong secret: invalid_client (RFC 6749 §5.2), and nothing consumed.
    for (extra, basic) in [
        ("", None),
        ("&client_id=billing", None),
        ("", Some(("billing", "wrong"))),
        ("&client_id=billing&client_secret=wrong", None),
    ] {
        let (status, reply, headers) = refresh_with(&h, &token, extra, basic).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{extra}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Basic realm="tessera""#);
    }
    // Another client, authenticated: the token is not its own.
    let (status, reply, _) = refresh_with(&h, &token, "", Some(("multi", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // The client itself, by either method: the refused attempts consumed nothing.
    let (status, reply, _) = refresh_with(&h, &token, "", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let next = reply["refresh_token"].as_str().unwrap().to_owned();
    let (status, reply, _) = refresh_with(&h, &next, &format!("&client_id=billing&client_secret={SECRET}"), None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    // Public clients stay as they were: the browser login's, and a client id nobody registered.
    for client_id in [None, Some("mobile-app")] {
        let token = session_of(&h, client_id).await;
        let (status, reply, _) = refresh_with(&h, &token, "", None).await;
        assert_eq!(status, StatusCode::OK, "{client_id:?}: {reply}");
        let next = reply["refresh_token"].as_str().unwrap().to_owned();
        // Naming another client, or authenticating as one, is still refused.
        let (status, _, _) = refresh_with(&h, &next, "&client_id=billing", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id:?}");
        let (status, _, _) = refresh_with(&h, &next, "", Some(("billing", SECRET))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id:?}");
    }
}

#[tokio::test]
async fn a_confidential_clients_session_needs_authentication_on_a_node_that_never_saw_it() {
    let h = setup().await;
    let token = session_of(&h, Some("billing")).await;
    // A second node on the same store has not seen the session start: it reads the session's client.
    let other = common::another_node(&h, tessera_server::Settings::default()).await;
    let refresh = |basic: Option<&str>| {
        let mut request =
            Request::post("/oauth2/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(secret) = basic {
            request = request.header(header::AUTHORIZATION, basic_auth("billing", secret));
        }
        let body = format!("grant_type=refresh_token&refresh_token={token}");
        other.clone().oneshot(request.body(Body::from(body)).unwrap())
    };
    assert_eq!(refresh(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(Some("wrong")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(Some(SECRET)).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn exchange_refuses_subject_tokens_not_meant_for_the_client() {
    let h = setup().await;
    // A service token billing holds for the ledger is neither issued to the exchanger nor meant for it.
    let billing = service_token(&h, "billing").await;
    let exchange = format!("{EXCHANGE}&subject_token={billing}&audience=ledger");
    let (status, reply, _) = post(&h, "/oauth2/token", &exchange, Some(("exchanger", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{reply}");
    // A user's token (audience "tessera") is not meant for the ledger service, whose audience is "ledger".
    let user = admin_session(&h, "read").await;
    let exchange = format!("{EXCHANGE}&subject_token={user}&audience=reports");
    let (status, reply, _) = post(&h, "/oauth2/token", &exchange, Some(("ledger-service", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{reply}");
}

#[tokio::test]
async fn a_chain_of_exchanges_nests_act_and_dies_with_the_users_original_token() {
    let h = setup().await;
    let original = admin_session(&h, "read write").await;
    let first = exchanged_for_the_ledger(&h, &original).await["access_token"].as_str().unwrap().to_owned();
    // The ledger service received `first` (audience "ledger") and exchanges it for reports.
    let exchange = format!("{EXCHANGE}&subject_token={first}&audience=reports");
    let (status, body, _) = post(&h, "/oauth2/token", &exchange, Some(("ledger-service", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["access_token"].as_str().unwrap().to_owned();
    let (claims, original_claims) = (claims_of(&second), claims_of(&original));
    assert_eq!(claims["act"], serde_json::json!({"sub": "ledger-service", "act": {"sub": "exchanger"}}));
    assert_eq!(
        (&claims["sub"], &claims["aud"], &claims["scope"]),
        (&original_claims["sub"], &"reports".into(), &"read".into())
    );
    assert_eq!((&claims["sid"], &claims["orig_jti"]), (&original_claims["sid"], &original_claims["jti"]));

    let introspect = || async {
        let (_, reply, _) = post(&h, "/oauth2/introspect", &format!("token={second}"), Some(("multi", SECRET))).await;
        reply["active"].as_bool()
    };
    assert_eq!(verify(&h, &second, "/reports/1").await.0, StatusCode::OK);
    assert_eq!(introspect().await, Some(true));
    // Revoking the user's access token (by its jti alone, not the session) ends the second level too.
    let jti = original_claims["jti"].as_str().unwrap();
    assert_eq!(admin_revoke(&h, serde_json::json!({"jti": jti}), ADMIN).await.0, StatusCode::OK);
    assert_eq!(verify(&h, &second, "/reports/1").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect().await, Some(false));
}

#[tokio::test]
async fn a_client_added_to_the_store_authenticates_before_the_next_sync() {
    let h = setup().await;
    h.state
        .store()
        .create_client(Client {
            client_id: "newcomer".into(),
            secret_hash: tessera_server::client_secret_hash(SECRET),
            scopes: vec!["read".into()],
            audiences: vec!["ledger".into()],
            grants: vec!["client_credentials".into()],
            disabled: false,
            created_at: h.clock.now_ms(),
            jwks: None,
        })
        .await
        .unwrap();
    // No sync has run since: the unknown id makes the directory reload once.
    let (status, body, _) =
        post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("newcomer", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Unknown ids arriving together share one reload, and are still refused.
    let unknown = |id: &'static str| post(&h, "/oauth2/token", "grant_type=client_credentials", Some((id, SECRET)));
    let answers = tokio::join!(unknown("nobody"), unknown("no-one"), unknown("none"));
    for (status, reply, _) in [answers.0, answers.1, answers.2] {
        assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    }
}

/// RFC 8693 §4.1: with an `actor_token`, the derived token's `act` names the actor, with the calling client
/// nested inside. The actor token must be a live access token of this server, given with its type.
#[tokio::test]
async fn an_actor_token_is_named_in_act_with_the_calling_client_nested_and_must_be_valid() {
    let h = setup().await;
    let subject = admin_session(&h, "read").await;
    let actor = service_token(&h, "billing").await;
    const ACTOR_TYPE: &str = "actor_token_type=urn:ietf:params:oauth:token-type:access_token";
    let exchange = |actor: &str, actor_type: &str| {
        format!("{EXCHANGE}&subject_token={subject}&audience=ledger&actor_token={actor}{actor_type}")
    };
    let (status, body, _) =
        post(&h, "/oauth2/token", &exchange(&actor, &format!("&{ACTOR_TYPE}")), Some(("exchanger", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["act"], serde_json::json!({"sub": "billing", "act": {"sub": "exchanger"}}));
    assert_eq!(claims["sub"], claims_of(&subject)["sub"], "the subject stays the subject");

    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={actor}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    let jwt_type = "&actor_token_type=urn:ietf:params:oauth:token-type:jwt";
    for (body, error) in [
        (exchange(&service_token(&h, "billing").await, ""), "invalid_request"),
        (exchange(&service_token(&h, "billing").await, jwt_type), "invalid_request"),
        (exchange("forged.token.here", &format!("&{ACTOR_TYPE}")), "invalid_grant"),
        (exchange(&actor, &format!("&{ACTOR_TYPE}")), "invalid_grant"),
    ] {
        let (status, reply, _) = post(&h, "/oauth2/token", &body, Some(("exchanger", SECRET))).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some(error)), "{body}: {reply}");
    }
}
