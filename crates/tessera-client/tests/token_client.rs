//! `TokenClient` and `ServiceAuth` against a scripted token endpoint and destination on loopback: one token
//! request however many callers wait, bounded retries on transient failures and none on refusals, garbage
//! answers as typed errors, derived tokens cached per user, `private_key_jwt` assertions a server can verify,
//! and the middleware's routing, context propagation, refusal handling and circuit breaker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine as _;
use tessera_client::{
    BreakerConfig, CallError, Credentials, Destination, OnBehalfOf, RequestContext, ServiceAuth, TokenClient,
    TokenClientConfig, TokenError,
};

type Answer = Arc<dyn Fn(usize, &HashMap<String, String>) -> (u16, String) + Send + Sync>;
/// A request as the token endpoint saw it: its `Authorization` header and its form.
type Seen = (Option<String>, HashMap<String, String>);

/// A token endpoint that records each request and answers as `answer` says for the n-th (from 0).
struct Fake {
    seen: Mutex<Vec<Seen>>,
    answer: Answer,
    delay: Duration,
}

async fn token_endpoint(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let n = {
        let mut seen = fake.seen.lock().unwrap();
        let authorization = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
        seen.push((authorization, form.clone()));
        seen.len() - 1
    };
    tokio::time::sleep(fake.delay).await;
    let (status, body) = (fake.answer)(n, &form);
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn token_answer(n: usize, expires_in: u64) -> (u16, String) {
    (200, format!(r#"{{"access_token":"token-{n}","token_type":"Bearer","expires_in":{expires_in}}}"#))
}

async fn fake_tessera(delay: Duration, answer: Answer) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake { seen: Mutex::new(Vec::new()), answer, delay });
    let app = Router::new().route("/oauth2/token", post(token_endpoint)).with_state(Arc::clone(&fake));
    let addr = serve(app).await;
    (fake, format!("http://{addr}"))
}

fn client(url: &str, credentials: Credentials) -> TokenClient {
    TokenClient::new(TokenClientConfig::new(url, credentials)).unwrap()
}

fn requests(fake: &Fake) -> usize {
    fake.seen.lock().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callers_cause_one_token_request() {
    let (fake, url) = fake_tessera(Duration::from_millis(100), Arc::new(|n, _| token_answer(n, 60))).await;
    let tokens = client(&url, Credentials::secret("billing:job", "s3cret/+"));
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.service_token("payments", Some("payments:reconcile")).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().secret(), "token-0");
    }
    assert_eq!(requests(&fake), 1);
    let (authorization, form) = fake.seen.lock().unwrap()[0].clone();
    // client_secret_basic, id and secret form-encoded first (RFC 6749 §2.3.1).
    let credentials = authorization.unwrap().strip_prefix("Basic ").unwrap().to_owned();
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "billing%3Ajob:s3cret%2F%2B");
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!((form["audience"].as_str(), form["scope"].as_str()), ("payments", "payments:reconcile"));

    // Another audience or scope is another token; the same one comes from the cache.
    assert_eq!(tokens.service_token("ledger", None).await.unwrap().secret(), "token-1");
    assert!(!fake.seen.lock().unwrap()[1].1.contains_key("scope"));
    assert_eq!(tokens.service_token("payments", Some("payments:reconcile")).await.unwrap().secret(), "token-0");
    assert_eq!(requests(&fake), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_replaced_a_margin_before_it_expires() {
    // 8-second tokens: the margin is capped at half the lifetime, so each serves 4 s.
    let (fake, url) = fake_tessera(Duration::ZERO, Arc::new(|n, _| token_answer(n, 8))).await;
    let tokens = client(&url, Credentials::secret("job", "secret"));
    assert_eq!(tokens.service_token("payments", None).await.unwrap().secret(), "token-0");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(tokens.service_token("payments", None).await.unwrap().secret(), "token-0");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(tokens.service_token("payments", None).await.unwrap().secret(), "token-1");
    assert_eq!(requests(&fake), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_a_bounded_number_of_times_and_refusals_never() {
    let (fake, url) = fake_tessera(
        Duration::ZERO,
        Arc::new(|n, form| match (form["audience"].as_str(), n) {
            ("flaky", 0 | 1) => (503, "{}".into()),
            ("flaky", _) => token_answer(n, 60),
            ("down", _) => (502, "<html>bad gateway</html>".into()),
            _ => (400, r#"{"error":"invalid_target","error_description":"the audience is not allowed"}"#.into()),
        }),
    )
    .await;
    let tokens = client(&url, Credentials::secret("job", "secret"));
    assert_eq!(tokens.service_token("flaky", None).await.unwrap().secret(), "token-2");
    assert_eq!(requests(&fake), 3);
    assert_eq!(tokens.service_token("down", None).await.unwrap_err(), TokenError::Unavailable(502));
    assert_eq!(requests(&fake), 6, "three attempts, then the error");
    let refused = tokens.service_token("elsewhere", None).await.unwrap_err();
    assert_eq!(
        refused,
        TokenError::Refused {
            status: 400,
            error: "invalid_target".into(),
            description: Some("the audience is not allowed".into())
        }
    );
    assert_eq!(requests(&fake), 7, "a refusal is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_token_endpoint_is_a_typed_error_and_never_a_panic() {
    let huge = format!(r#"{{"access_token":"{}","token_type":"Bearer","expires_in":60}}"#, "a".repeat(100_000));
    let (fake, url) = fake_tessera(
        Duration::ZERO,
        Arc::new(move |_, form| match form["audience"].as_str() {
            "html" => (200, "<html>login page</html>".into()),
            "mac" => (200, r#"{"access_token":"t","token_type":"mac","expires_in":60}"#.into()),
            "negative" => (200, r#"{"access_token":"t","token_type":"Bearer","expires_in":-1}"#.into()),
            "huge" => (200, huge.clone()),
            "forever" => {
                (200, r#"{"access_token":"t","token_type":"Bearer","expires_in":18446744073709551615}"#.into())
            }
            _ => (200, r#"{"access_token":"t\u0000x","token_type":"Bearer","expires_in":60}"#.into()),
        }),
    )
    .await;
    let tokens = client(&url, Credentials::secret("job", "secret"));
    for audience in ["html", "mac", "negative", "control"] {
        let error = tokens.service_token(audience, None).await.unwrap_err();
        assert!(matches!(error, TokenError::BadAnswer(_)), "{audience}: {error:?}");
    }
    // An absurd lifetime is not an error (nor an overflow): the token is cached a day at most.
    assert_eq!(tokens.service_token("forever", None).await.unwrap().secret(), "t");
    let error = tokens.service_token("huge", None).await.unwrap_err();
    assert!(matches!(&error, TokenError::BadAnswer(why) if why.contains("longer than")), "{error:?}");
    assert_eq!(requests(&fake), 6, "an unusable answer is not asked for again");

    // Nothing listening: unreachable, after the bounded attempts.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let nowhere = client(&format!("http://{closed}"), Credentials::secret("job", "secret"));
    assert!(matches!(nowhere.service_token("payments", None).await, Err(TokenError::Unreachable(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_tokens_are_cached_per_user_and_audience() {
    let (fake, url) = fake_tessera(Duration::ZERO, Arc::new(|n, _| token_answer(n, 300))).await;
    let tokens = client(&url, Credentials::secret("orders", "secret"));
    let alice = tokens.exchange("alice-token", "payments", Some("payments:charge")).await.unwrap();
    let bob = tokens.exchange("bob-token", "payments", Some("payments:charge")).await.unwrap();
    assert_ne!(alice.secret(), bob.secret());
    let again = tokens.exchange("alice-token", "payments", Some("payments:charge")).await.unwrap();
    assert_eq!(again.secret(), alice.secret());
    let ledger = tokens.exchange("alice-token", "ledger", None).await.unwrap();
    assert_ne!(ledger.secret(), alice.secret());
    assert_eq!(requests(&fake), 3);
    let form = fake.seen.lock().unwrap()[0].1.clone();
    assert_eq!(form["grant_type"], "urn:ietf:params:oauth:grant-type:token-exchange");
    assert_eq!(form["subject_token"], "alice-token");
    assert_eq!(form["subject_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!((form["audience"].as_str(), form["scope"].as_str()), ("payments", "payments:charge"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_sends_an_assertion_the_server_can_verify() {
    let (fake, url) = fake_tessera(Duration::ZERO, Arc::new(|n, _| token_answer(n, 60))).await;
    let key =
        tessera_jose::SigningKey::generate(tessera_jose::Algorithm::ES256, tessera_jose::RsaBits::Bits2048).unwrap();
    let public = key.verifying_key().clone();
    let tokens = client(&url, Credentials::private_key("signer", key));
    tokens.service_token("payments", None).await.unwrap();
    let (authorization, form) = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(authorization, None, "no secret travels");
    assert_eq!(form["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    let assertion = &form["client_assertion"];
    let (message, signature) = assertion.rsplit_once('.').unwrap();
    assert!(public.verify_signature(message.as_bytes(), &tessera_jose::base64url::decode(signature).unwrap()));
    let claims = tessera_jose::decode_unverified(assertion, 8192).unwrap().payload.claims().cloned().unwrap();
    assert_eq!((claims.iss.as_deref(), claims.sub.as_deref()), (Some("signer"), Some("signer")));
    assert!(claims.aud.unwrap().contains(&format!("{url}/oauth2/token")));
}

#[test]
fn every_configuration_problem_is_reported_at_once() {
    let mut config = TokenClientConfig::new("http://auth.example.com", Credentials::secret("", ""));
    config.attempts = 0;
    let problems = TokenClient::new(config).unwrap_err().0;
    assert_eq!(problems.len(), 4, "{problems:?}");
}

/// A destination that answers 200 with what it received, 500 on `/fail`, and 401 `invalid_token` to the token
/// named `revoked`.
async fn destination(hits: Arc<AtomicUsize>, revoked: Arc<Mutex<Option<String>>>) -> String {
    let echo = move |headers: HeaderMap| {
        let (hits, revoked) = (Arc::clone(&hits), Arc::clone(&revoked));
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            let authorization = header("authorization");
            if authorization.is_some()
                && authorization == revoked.lock().unwrap().as_ref().map(|t| format!("Bearer {t}"))
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", r#"Bearer error="invalid_token""#)],
                    String::new(),
                )
                    .into_response();
            }
            let seen = serde_json::json!({
                "authorization": authorization,
                "request_id": header("x-request-id"),
                "traceparent": header("traceparent"),
            });
            axum::Json(seen).into_response()
        }
    };
    let app = Router::new()
        .route("/charges", post(echo.clone()))
        .route("/reconcile", post(echo))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
    format!("http://{}", serve(app).await)
}

fn middleware_client(
    tokens: TokenClient,
    payments: &str,
    breaker: BreakerConfig,
) -> reqwest_middleware::ClientWithMiddleware {
    let destinations = [
        Destination::new(payments, "payments").for_users(Some("payments:charge")).as_service(None).breaker(breaker),
        Destination::new(format!("{payments}/users-only/"), "payments").for_users(None),
    ];
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ServiceAuth::new(tokens, destinations).unwrap())
        .build()
}

/// The JSON body of `response`.
async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn call_error(error: reqwest_middleware::Error) -> CallError {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast::<CallError>().unwrap(),
        other => panic!("not the middleware's refusal: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_carries_its_destinations_token_and_the_request_context() {
    let (fake, url) = fake_tessera(Duration::ZERO, Arc::new(|n, _| token_answer(n, 300))).await;
    let (hits, revoked) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(None)));
    let payments = destination(Arc::clone(&hits), Arc::clone(&revoked)).await;
    let client =
        middleware_client(client(&url, Credentials::secret("orders", "secret")), &payments, BreakerConfig::default());

    // On a user's behalf, within a request's context: the derived token, the request id and traceparent.
    let mut incoming = HeaderMap::new();
    incoming.insert("x-request-id", "req-1234".parse().unwrap());
    incoming.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
    let context = RequestContext::from_headers(&incoming);
    let call = client
        .post(format!("{payments}/charges"))
        .header("authorization", "Bearer the-users-own-token")
        .with_extension(OnBehalfOf::new("alice-token"))
        .send();
    let seen: serde_json::Value = json(context.scope(call).await.unwrap()).await;
    assert_eq!(seen["authorization"], "Bearer token-0", "the derived token replaces the user's own");
    assert_eq!(seen["request_id"], "req-1234");
    assert_eq!(seen["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_eq!(fake.seen.lock().unwrap()[0].1["subject_token"], "alice-token");

    // As the service, outside any request: the service token and a fresh request id.
    let seen = json(client.post(format!("{payments}/reconcile")).send().await.unwrap()).await;
    assert_eq!(seen["authorization"], "Bearer token-1");
    assert!(seen["request_id"].as_str().is_some_and(|id| !id.is_empty() && id != "req-1234"));
    assert_eq!(fake.seen.lock().unwrap()[1].1["grant_type"], "client_credentials");

    // Deny by default: an unknown destination, and a user-only one without a user, get nothing.
    let elsewhere = client.get("http://127.0.0.1:9/anything").send().await.unwrap_err();
    assert!(matches!(call_error(elsewhere), CallError::UnknownDestination(_)));
    let no_user = client.post(format!("{payments}/users-only/charges")).send().await.unwrap_err();
    assert!(matches!(call_error(no_user), CallError::NoUser(_)));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(requests(&fake), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_forgotten_and_the_call_tried_once_with_a_new_one() {
    let (fake, url) = fake_tessera(Duration::ZERO, Arc::new(|n, _| token_answer(n, 300))).await;
    let (hits, revoked) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(None)));
    let payments = destination(Arc::clone(&hits), Arc::clone(&revoked)).await;
    let client =
        middleware_client(client(&url, Credentials::secret("job", "secret")), &payments, BreakerConfig::default());
    let first = json(client.post(format!("{payments}/reconcile")).send().await.unwrap()).await;
    assert_eq!(first["authorization"], "Bearer token-0");
    *revoked.lock().unwrap() = Some("token-0".into());
    let second = client.post(format!("{payments}/reconcile")).body("replayable").send().await.unwrap();
    assert_eq!(second.status(), 200);
    let second = json(second).await;
    assert_eq!(second["authorization"], "Bearer token-1");
    assert_eq!((hits.load(Ordering::SeqCst), requests(&fake)), (3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_opens_its_circuit_and_calls_fail_fast() {
    let (_fake, url) = fake_tessera(Duration::ZERO, Arc::new(|n, _| token_answer(n, 300))).await;
    let (hits, revoked) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(None)));
    let payments = destination(Arc::clone(&hits), revoked).await;
    let breaker = BreakerConfig { failures: 5, open_for: Duration::from_millis(500) };
    let client = middleware_client(client(&url, Credentials::secret("job", "secret")), &payments, breaker);
    for _ in 0..5 {
        assert_eq!(client.get(format!("{payments}/fail")).send().await.unwrap().status(), 500);
    }
    let open = client.get(format!("{payments}/fail")).send().await.unwrap_err();
    assert!(matches!(call_error(open), CallError::CircuitOpen { .. }));
    let open = client.post(format!("{payments}/reconcile")).send().await.unwrap_err();
    assert!(matches!(call_error(open), CallError::CircuitOpen { .. }), "the whole destination, not one path");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The trial call succeeds and closes the circuit.
    assert_eq!(client.post(format!("{payments}/reconcile")).send().await.unwrap().status(), 200);
    assert_eq!(client.post(format!("{payments}/reconcile")).send().await.unwrap().status(), 200);
}
