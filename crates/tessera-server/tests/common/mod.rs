//! The service assembled for tests: a temporary data directory, two users, a manual clock; requests driven through
//! its router.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tessera_jose::{KeySet, Policy, Verifier};
use tessera_keys::{KeyStore, RotationPolicy};
use tessera_server::clock::{Clock as _, ManualClock};
use tessera_server::keys::KeyService;
use tessera_server::{app, AppState, Settings};
use tessera_store::{Client, Deadline, SqliteStore, Store, User};
use tower::ServiceExt as _;

pub mod clients;

pub const START_MS: i64 = 1_800_000_000_000;
pub const PASSWORD: &str = "correct horse battery";

pub struct Harness {
    pub app: Router,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
}

pub async fn harness_with(settings: Settings) -> Harness {
    harness_with_keys(settings, RotationPolicy::default()).await
}

/// [`harness_with`] whose keys follow `rotation`.
pub async fn harness_with_keys(settings: Settings, rotation: RotationPolicy) -> Harness {
    // As `tessera serve` does: the recorder before the store, whose series are resolved at its first call.
    tessera_server::metrics_handle();
    let dir = tempfile::tempdir().unwrap();
    // Wrapped as `tessera serve` wraps it: every store call timed and counted.
    let store = Arc::new(Deadline::measured(SqliteStore::open(&dir.path().join("tessera.db")).unwrap(), "sqlite"));
    let hash = tessera_server::password::hash_password(PASSWORD).unwrap();
    for (name, roles) in [("alice", vec!["admin".to_owned()]), ("bob", vec![])] {
        let profile = tessera_store::model::Profile {
            name: Some(format!("{name} Example")),
            email: Some(format!("{name}@example.com")),
            email_verified: name == "alice",
        };
        let user =
            User { username: name.into(), password_hash: hash.clone(), roles, disabled: false, created_at: 0, profile };
        store.create_user(user).await.unwrap();
    }
    let clock = Arc::new(ManualClock::new(START_MS));
    let state = node(dir.path(), store, &clock, settings, rotation).await;
    Harness { app: app(state.clone()), state, clock, dir }
}

/// A serving node on the keyring in `dir` and on `store`, with its own memory (caches, client directory,
/// revocation index).
async fn node(
    dir: &std::path::Path,
    store: Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    settings: Settings,
    rotation: RotationPolicy,
) -> AppState {
    let keystore = KeyStore::open(dir, None).unwrap();
    let policy = Policy::access(settings.issuer.clone(), vec![settings.audience.clone()]);
    // Remembering, as `tessera serve` is by default: every test that verifies a token twice, then revokes it or
    // lets it expire, also proves that a remembered verification does not outlive either.
    let verifier = Verifier::remembering(KeySet::new(), policy, settings.remembered_verifications);
    let keys = KeyService::load(keystore, rotation, verifier, clock.now_secs()).unwrap();
    let state = AppState::new(settings, store, keys, clock.clone(), tessera_server::metrics_handle());
    // What a serving node does before it answers: load the revocation log and the clients.
    tessera_server::sync(&state).await.unwrap();
    state
}

/// A second node sharing `h`'s store, keys and clock, as another `tessera serve` on the same data would.
pub async fn another_node(h: &Harness, settings: Settings) -> Router {
    app(another_node_state(h, settings).await)
}

/// [`another_node`]'s state, for a test that turns more on before serving.
pub async fn another_node_state(h: &Harness, settings: Settings) -> AppState {
    node(h.dir.path(), Arc::clone(h.state.store()), &h.clock, settings, RotationPolicy::default()).await
}

pub async fn harness() -> Harness {
    harness_with(Settings::default()).await
}

/// An answer of the service: status, headers, and the body as JSON (`Null` when it is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

/// A browser session: its access token, CSRF token and refresh cookie.
pub struct Session {
    pub access: String,
    pub csrf: String,
    pub cookie: String,
}

/// Driving the service through its router, as a browser or a script would.
impl Harness {
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(status.as_u16() < 500, "{status}: a 5xx from a request: {body}");
        Reply { status, headers, body }
    }

    pub async fn login(&self, user: &str) -> Session {
        let reply = self.send(json_post("/auth/login", &json!({"username": user, "password": PASSWORD}))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        Session {
            access: reply.body["access_token"].as_str().unwrap().to_owned(),
            csrf: reply.body["csrf_token"].as_str().unwrap().to_owned(),
            cookie: cookie_of(&reply).unwrap(),
        }
    }

    pub async fn refresh(&self, cookie: &str, csrf: &str) -> Reply {
        let request = Request::post("/auth/refresh")
            .header(header::COOKIE, format!("__Secure-tessera-refresh={cookie}"))
            .header("x-csrf-token", csrf)
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    pub async fn verify(&self, access: &str) -> StatusCode {
        self.send(
            Request::get("/verify")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .status
    }

    pub async fn with_bearer(&self, method: &str, path: &str, access: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    pub async fn generation(&self, access: &str) -> u64 {
        let sid = claims_of(access)["sid"].as_str().unwrap().to_owned();
        self.state.store().session(&sid).await.unwrap().unwrap().generation
    }
}

pub fn json_post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap()
}

pub fn form_post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub fn cookie_of(reply: &Reply) -> Option<String> {
    let value = reply.headers.get(header::SET_COOKIE)?.to_str().ok()?;
    let token = value.strip_prefix("__Secure-tessera-refresh=")?.split(';').next()?;
    (!token.is_empty()).then(|| token.to_owned())
}

pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&tessera_jose::base64url::decode(payload).unwrap()).unwrap()
}

/// Registers a confidential client that authenticates with `secret`, as `tessera client add` does.
pub async fn register_client(
    h: &Harness,
    client_id: &str,
    secret: &str,
    scopes: &[&str],
    audiences: &[&str],
    grants: &[&str],
) {
    let owned = |values: &[&str]| values.iter().map(|value| (*value).to_owned()).collect();
    let client = Client {
        client_id: client_id.into(),
        secret_hash: tessera_server::client_secret_hash(secret),
        scopes: owned(scopes),
        audiences: owned(audiences),
        grants: owned(grants),
        disabled: false,
        created_at: h.clock.now_ms(),
        jwks: None,
        code_flow: None,
    };
    h.state.store().create_client(client).await.unwrap();
}
