//! Service clients for the OAuth tests: their secret, the admin credential, the clients and rules they are set up
//! with, and the requests they make (the token, introspection and revocation endpoints, `/verify` behind a
//! gateway, the admin API).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use super::Harness;

pub const SECRET: &str = "s3cr3t-generated-with-256-bits-of-entropy-xyz";

pub const ADMIN: &str = "admin-credential-for-tests-0123456789abcdef";

pub async fn post(
    h: &Harness,
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

pub fn basic_auth(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

pub async fn setup() -> Harness {
    setup_with(tessera_server::Settings::default()).await
}

/// The clients and rules of these tests, on `base` settings.
pub async fn setup_with(base: tessera_server::Settings) -> Harness {
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
    let h = super::harness_with(settings).await;
    for (id, grants, audiences) in [
        ("billing", vec!["client_credentials"], vec!["ledger"]),
        ("gateway", vec![], vec!["ledger", "tessera"]),
        ("multi", vec!["client_credentials"], vec!["ledger", "reports"]),
        ("exchanger", vec!["token_exchange"], vec!["tessera"]),
        ("ledger-service", vec!["token_exchange"], vec!["ledger"]),
    ] {
        super::register_client(&h, id, SECRET, &["read", "write"], &audiences, &grants).await;
    }
    // Registers the clients' audiences with the verifier, as the running server does.
    tessera_server::start_background(&h.state).await.unwrap().abort();
    h
}

pub async fn admin_session(h: &Harness, scope: &str) -> String {
    let request = Request::post("/admin/v1/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from(serde_json::json!({"sub": "carol", "scope": scope, "roles": ["staff"]}).to_string()))
        .unwrap();
    let bytes = h.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&bytes).unwrap()["access_token"].as_str().unwrap().to_owned()
}

pub fn bearer_request(method: &str, path: &str, token: &str) -> Request<Body> {
    let authorization = format!("Bearer {token}");
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .unwrap()
}

pub async fn verify(h: &Harness, token: &str, uri: &str) -> (StatusCode, axum::http::HeaderMap) {
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

pub const EXCHANGE: &str = "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token_type=urn:ietf:params:oauth:token-type:access_token";

/// The token endpoint's answer to the `exchanger` client exchanging `subject` for the `ledger` audience.
pub async fn exchanged_for_the_ledger(h: &Harness, subject: &str) -> Value {
    let exchange = format!("{EXCHANGE}&subject_token={subject}&audience=ledger");
    let (status, body, _) = post(h, "/oauth2/token", &exchange, Some(("exchanger", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub async fn admin_revoke(h: &Harness, body: Value, credential: &str) -> (StatusCode, Value) {
    admin_post(h, "/admin/v1/revocations", body, credential).await
}

/// A JSON POST to the admin API's `path` with `credential`: the status and the body (`Null` when it is not JSON).
pub async fn admin_post(h: &Harness, path: &str, body: Value, credential: &str) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {credential}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub async fn service_token(h: &Harness, client: &str) -> String {
    let (status, body, _) = post(h, "/oauth2/token", "grant_type=client_credentials", Some((client, SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}
