//! The reference design's services (`examples/reference-design`) against a real `tessera serve`: a user's order
//! reaches payments with a token derived for payments and narrowed to `payments:charge`, the request id passed
//! along; the reconciliation job calls payments with its own service token (`private_key_jwt`, no secret);
//! revoking the user's session stops the user's calls at orders and the derived token at payments within the
//! propagation time; the service token is refused once its lifetime is over, and the job carries on with a new
//! one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{add_user, http, request, tessera, Server, PASSWORD};
use serde_json::Value;
use tessera_client::{Credentials, TokenClient, TokenClientConfig};
use tessera_verify::{TokenVerifier, VerifierConfig};

/// The lifetime of service tokens here: long enough to use, short enough to see end.
const SERVICE_TTL_SECS: u64 = 3;
/// Within how long a revocation must reach both services here: the feed brings it in milliseconds (p99 under
/// 10 ms on loopback, BENCHMARKS.md); the bound leaves room for a loaded CI machine, and the feed's fallback (a
/// long poll of at most 9 s) would exceed it.
const PROPAGATION_BOUND: Duration = Duration::from_secs(5);

fn add_client(dir: &std::path::Path, id: &str, audience: &str, scope: &str, extra: &[&str]) -> Option<String> {
    let added = tessera(dir)
        .args(["client", "add", id, "--audience", audience, "--scope", scope, "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().map(str::to_owned)
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// `POST {url}` with a bearer token and a request id: (status, JSON body or null).
async fn post(url: String, token: String, request_id: &str) -> (u16, Value) {
    let answer =
        reqwest::Client::new().post(url).bearer_auth(token).header("x-request-id", request_id).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap_or(Value::Null))
}

/// How long until `call` answers `status` (10 s at most).
async fn until_status<F, Fut>(what: &str, status: u16, mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let start = Instant::now();
    loop {
        let answered = call().await;
        if answered == status {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: still {answered} after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn login(addr: SocketAddr) -> String {
    let body = serde_json::json!({"username": "alice", "password": PASSWORD}).to_string();
    let (status, answer) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str::<Value>(&answer).unwrap()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_design_runs_behind_tessera() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("tessera.toml"),
        format!(
            r#"
[tokens]
audience = "orders"
user_scope = "orders:write payments:charge payments:refund"
service_ttl = "{SERVICE_TTL_SECS}s"

[[token_exchange]]
client = "orders"
audience = "payments"
scopes = ["payments:charge"]
"#
        ),
    )
    .unwrap();
    add_user(d, "alice");
    let orders_secret = add_client(d, "orders", "orders", "revocations:read", &["--grant", "token_exchange"]).unwrap();
    let payments_secret = add_client(d, "payments", "payments", "revocations:read", &[]).unwrap();
    // The job authenticates with private_key_jwt: Tessera holds only its public key.
    let job_key =
        tessera_jose::SigningKey::generate(tessera_jose::Algorithm::EdDSA, tessera_jose::RsaBits::Bits2048).unwrap();
    let jwks = serde_json::json!({"keys": [job_key.verifying_key().public_jwk().unwrap()]});
    std::fs::write(d.join("job.jwks.json"), jwks.to_string()).unwrap();
    let no_secret = add_client(d, "reconciler", "payments", "payments:reconcile", &["--jwks", "job.jwks.json"]);
    assert_eq!(no_secret, None);
    let tessera_server = Server::start(d);
    let tessera_url = format!("http://{}", tessera_server.addr);

    let verifier = |audience: &str, client: &str, secret: &str| {
        let mut config = VerifierConfig::new(&tessera_url, audience, client, secret);
        // Service tokens here live seconds: the default 30 s of leeway would outlive them.
        config.leeway = Duration::from_secs(1);
        Arc::new(TokenVerifier::start(config).unwrap())
    };
    let payments_url = serve(tessera_example::payments(verifier("payments", "payments", &payments_secret))).await;
    let orders_tokens =
        TokenClient::new(TokenClientConfig::new(&tessera_url, Credentials::secret("orders", &orders_secret))).unwrap();
    let orders_payments = tessera_example::payments_client(orders_tokens.clone(), &payments_url).unwrap();
    let orders_verifier = verifier("orders", "orders", &orders_secret);
    let orders_url = serve(tessera_example::orders(orders_verifier, orders_payments, &payments_url)).await;
    let job_tokens =
        TokenClient::new(TokenClientConfig::new(&tessera_url, Credentials::private_key("reconciler", job_key)))
            .unwrap();
    let job_payments = tessera_example::payments_client(job_tokens.clone(), &payments_url).unwrap();

    // The user's order: payments sees alice, through orders, with payments:charge only; the request id came along.
    let user_token = login(tessera_server.addr);
    let order = || post(format!("{orders_url}/orders"), user_token.clone(), "order-1");
    until_status("the first order (keys and feed fetched)", 200, || async { order().await.0 }).await;
    let (_, answer) = order().await;
    assert_eq!(answer["payment"]["charged"], "alice");
    assert_eq!(answer["payment"]["through"], "orders");
    assert_eq!(answer["payment"]["scope"], "payments:charge", "narrowed from the user's three scopes");
    assert_eq!(answer["payment"]["request_id"], "order-1");
    // The user's own token is not accepted at payments: it is for orders.
    assert_eq!(post(format!("{payments_url}/charges"), user_token.clone(), "direct").await.0, 401);

    // The job, as itself.
    let (status, answer) = tessera_example::reconcile_once(&job_payments, &payments_url).await.unwrap();
    assert_eq!((status.as_u16(), answer["reconciled_by"].as_str()), (200, Some("reconciler")));
    assert!(answer["request_id"].as_str().is_some_and(|id| !id.is_empty()), "a fresh request id per job call");

    // The derived token, as orders holds it, and the job's service token, kept to try after they should stop.
    let derived = orders_tokens.exchange(&user_token, "payments", Some("payments:charge")).await.unwrap();
    let service = job_tokens.service_token("payments", Some("payments:reconcile")).await.unwrap();
    assert_eq!(post(format!("{payments_url}/charges"), derived.secret().to_owned(), "derived").await.0, 200);

    // Revoking the user's session: both the user's calls at orders and the derived token at payments stop.
    let logout = format!("authorization: Bearer {user_token}\r\n");
    assert_eq!(request(tessera_server.addr, "POST", "/auth/logout", &logout, "").unwrap().0, 204);
    let at_orders = until_status("the user's order refused", 401, || async { order().await.0 });
    let at_payments = until_status("the derived token refused at payments", 401, || async {
        post(format!("{payments_url}/charges"), derived.secret().to_owned(), "derived").await.0
    });
    let (at_orders, at_payments) = tokio::join!(at_orders, at_payments);
    assert!(at_orders <= PROPAGATION_BOUND && at_payments <= PROPAGATION_BOUND, "{at_orders:?}, {at_payments:?}");

    // The service token ends with its lifetime (plus the verifier's leeway); the job simply gets a new one.
    let reconcile = || post(format!("{payments_url}/reconcile"), service.secret().to_owned(), "old");
    assert_eq!(reconcile().await.0, 200);
    let ended =
        until_status("the service token refused after its lifetime", 401, || async { reconcile().await.0 }).await;
    assert!(ended <= Duration::from_secs(SERVICE_TTL_SECS + 2), "{ended:?}");
    let (status, answer) = tessera_example::reconcile_once(&job_payments, &payments_url).await.unwrap();
    assert_eq!((status.as_u16(), answer["reconciled_by"].as_str()), (200, Some("reconciler")));
}
