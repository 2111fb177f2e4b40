//! The service assembled for tests: a temporary data directory, two users, a manual clock.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;

use axum::Router;
use tessera_jose::{KeySet, Policy, Verifier};
use tessera_keys::{KeyStore, RotationPolicy};
use tessera_server::clock::{Clock as _, ManualClock};
use tessera_server::keys::KeyService;
use tessera_server::{app, AppState, Settings};
use tessera_store::{SqliteStore, Store, User};

pub const START_MS: i64 = 1_800_000_000_000;
pub const PASSWORD: &str = "correct horse battery";

pub struct Harness {
    pub app: Router,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
}

pub async fn harness_with(settings: Settings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("tessera.db")).unwrap());
    let hash = tessera_server::password::hash_password(PASSWORD).unwrap();
    for (name, roles) in [("alice", vec!["admin".to_owned()]), ("bob", vec![])] {
        let user = User { username: name.into(), password_hash: hash.clone(), roles, disabled: false, created_at: 0 };
        store.create_user(user).await.unwrap();
    }
    let clock = Arc::new(ManualClock::new(START_MS));
    let state = node(dir.path(), store, &clock, settings).await;
    Harness { app: app(state.clone()), state, clock, dir }
}

/// A serving node on the keyring in `dir` and on `store`, with its own memory (caches, client directory,
/// revocation index).
async fn node(dir: &std::path::Path, store: Arc<dyn Store>, clock: &Arc<ManualClock>, settings: Settings) -> AppState {
    let keystore = KeyStore::open(dir, None).unwrap();
    let policy = Policy::access(settings.issuer.clone(), vec![settings.audience.clone()]);
    // Remembering, as `tessera serve` is by default: every test that verifies a token twice, then revokes it or
    // lets it expire, also proves that a remembered verification does not outlive either.
    let verifier = Verifier::remembering(KeySet::new(), policy, settings.remembered_verifications);
    let keys = KeyService::load(keystore, RotationPolicy::default(), verifier, clock.now_secs()).unwrap();
    let state = AppState::new(settings, store, keys, clock.clone(), None);
    // What a serving node does before it answers: load the revocation log and the clients.
    tessera_server::sync(&state).await.unwrap();
    state
}

/// A second node sharing `h`'s store, keys and clock, as another `tessera serve` on the same data would.
pub async fn another_node(h: &Harness, settings: Settings) -> Router {
    app(node(h.dir.path(), Arc::clone(h.state.store()), &h.clock, settings).await)
}

pub async fn harness() -> Harness {
    harness_with(Settings::default()).await
}
