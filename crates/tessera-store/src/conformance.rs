//! The behaviour every [`Store`] backend must show — each backend's tests call [`run_all`] on a fresh store — and
//! throwaway servers for the tests that need one: [`Postgres`], [`Redis`] and [`RedisCluster`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Map;

use crate::{
    Client, NewFamily, Provenance, RefreshOutcome, RefreshRules, Refusal, Revocation, Store, StoreError, User,
};

const RULES: RefreshRules = RefreshRules { grace_ms: 10_000, idle_timeout_ms: 86_400_000 };

/// A session of `sub` created at `created_at`, valid for a week: the tests' usual session.
#[must_use]
pub fn family(sid: &str, sub: &str, created_at: i64) -> NewFamily {
    NewFamily {
        sid: sid.into(),
        sub: sub.into(),
        client_id: "web".into(),
        scope: Some("read".into()),
        roles: vec!["admin".into()],
        claims: Map::new(),
        user_agent: Some("test".into()),
        created_at,
        expires_at: created_at + 7 * 86_400_000,
    }
}

/// Two nodes on one store: 32 concurrent presentations of one generation, half on each, rotate it once; a
/// revocation on one node wakes the other's log subscription.
pub async fn two_nodes_share_one_store(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let rules = RefreshRules { grace_ms: 10_000, idle_timeout_ms: 86_400_000 };
    a.create_family(family("shared", "u", 1_000)).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let node = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tokio::spawn(async move { node.refresh("shared", 0, 2_000, rules).await.unwrap() })
        })
        .collect();
    let mut rotated = 0;
    for task in tasks {
        match task.await.unwrap() {
            RefreshOutcome::Rotated(_) => rotated += 1,
            RefreshOutcome::Replayed(f) => assert_eq!(f.generation, 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1, "one rotation across both nodes");
    assert_eq!(b.family("shared").await.unwrap().unwrap().generation, 1);

    let mut changes = b.log_changes().expect("Redis pushes log growth");
    // The subscription signals once it is up; then the other node's revocation must signal again.
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.unwrap().unwrap();
    changes.borrow_and_update();
    let revocation = Revocation::Session { sid: "shared".into() };
    assert!(a.revoke(revocation.clone(), Provenance::new("admin", "test"), 3_000).await.unwrap());
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("no notification").unwrap();
    let log = b.revocations_after(0, 0, 100).await.unwrap();
    assert!(log.iter().any(|e| e.revocation == revocation));
}

/// Sessions expired before the instant are forgotten, a batch at a time; live ones stay. For the backends that
/// forget on request (SQLite, PostgreSQL, and so tiered); Redis expires its keys by itself.
pub async fn expired_sessions_are_forgotten_on_request(store: &dyn Store) {
    const DAY: i64 = 86_400_000;
    // Later than every session the store held before (so their forgetting does not blur the counts).
    let start = 1_000 * DAY;
    while store.forget_sessions_expired_before(start, 1_000).await.unwrap() > 0 {}
    for sid in ["gone-1", "gone-2", "gone-3"] {
        store.create_family(family(sid, "forgetful", start)).await.unwrap();
    }
    store.create_family(family("kept", "forgetful", start + 2 * DAY)).await.unwrap();
    // The first three expire at 7 days; the fourth lives until 9 days.
    let later = start + 8 * DAY;
    assert_eq!(store.forget_sessions_expired_before(later, 2).await.unwrap(), 2, "a batch of at most 2");
    assert_eq!(store.forget_sessions_expired_before(later, 2).await.unwrap(), 1);
    assert_eq!(store.forget_sessions_expired_before(later, 2).await.unwrap(), 0);
    for sid in ["gone-1", "gone-2", "gone-3"] {
        assert_eq!(store.family(sid).await.unwrap(), None);
        assert_eq!(
            store.refresh(sid, 0, later, RULES).await.unwrap(),
            RefreshOutcome::Refused(Refusal::Unknown),
            "still refused"
        );
    }
    assert!(store.family("kept").await.unwrap().is_some());
}

/// Many revocations in flight at once on two nodes of one store (backends batch them): each still answers for
/// itself — a session revoked twice concurrently, on both nodes, changes once — a subject's instant only moves
/// forward, every token is logged and the log stays gap-free. With `logs_only_changes`, exactly the revocations
/// that changed something are logged; without, a revocation that lost a race to an identical one may be logged
/// too (harmless: merging is idempotent).
pub async fn many_revocations_at_once_on_two_nodes(a: Arc<dyn Store>, b: Arc<dyn Store>, logs_only_changes: bool) {
    for n in 0..20 {
        a.create_family(family(&format!("batch-s{n}"), "u", 1_000)).await.unwrap();
    }
    // Each session goes to both nodes, in opposite orders.
    let mut revocations = Vec::new();
    for n in 0..20 {
        revocations.push((0, Revocation::Session { sid: format!("batch-s{n}") }));
        revocations.push((1, Revocation::Session { sid: format!("batch-s{}", 19 - n) }));
    }
    for n in 0..100 {
        revocations.push((n % 2, Revocation::Token { jti: format!("batch-j{n}"), expires_at: 9_000_000 }));
    }
    for i in 1..=30 {
        revocations.push((i % 2, Revocation::Subject { sub: "batched".into(), not_before: 5_000 + i * 10 }));
    }
    let before = a.revocations_after(0, 0, 100_000).await.unwrap().len();
    let tasks: Vec<_> = revocations
        .into_iter()
        .map(|(node, revocation)| {
            let node = if node == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            let session = matches!(revocation, Revocation::Session { .. });
            tokio::spawn(async move {
                (session, node.revoke(revocation, Provenance::new("test", "batch"), 4_000).await.unwrap())
            })
        })
        .collect();
    let (mut changed, mut sessions_changed) = (0, 0);
    for task in tasks {
        let (session, did) = task.await.unwrap();
        changed += usize::from(did);
        sessions_changed += usize::from(session && did);
    }
    assert_eq!(sessions_changed, 20, "each session revoked twice at once changed once");
    let log = a.revocations_after(0, 0, 100_000).await.unwrap();
    let ids: Vec<i64> = log.iter().map(|entry| entry.id).collect();
    assert_eq!(ids, (1..=i64::try_from(log.len()).unwrap()).collect::<Vec<_>>(), "gap-free, in order");
    if logs_only_changes {
        assert_eq!(log.len() - before, changed, "exactly the revocations that changed something are logged");
    } else {
        assert!(log.len() - before >= changed, "every change is logged");
    }
    for n in 0..20 {
        let sid = format!("batch-s{n}");
        assert!(log.iter().any(|e| e.revocation == Revocation::Session { sid: sid.clone() }), "{sid} logged");
        assert!(b.family(&sid).await.unwrap().unwrap().revoked_at.is_some());
    }
    let tokens =
        log.iter().filter(|e| matches!(&e.revocation, Revocation::Token { jti, .. } if jti.starts_with("batch-j")));
    assert_eq!(tokens.count(), 100);
    assert_eq!(b.subject("batched").await.unwrap().not_before, Some(5_300), "the latest instant wins");
}

/// Runs every conformance check against `store`, which must be empty.
pub async fn run_all(store: Arc<dyn Store>) {
    users(&*store).await;
    clients(&*store).await;
    rotation(&*store).await;
    concurrent_presentations_have_one_winner(Arc::clone(&store)).await;
    logout_and_logout_everywhere(&*store).await;
    disabling_a_user_ends_their_sessions(&*store).await;
    token_revocations_are_logged(&*store).await;
    client_assertions_are_used_once(&*store).await;
    documents_are_replaced_only_at_the_version_read(Arc::clone(&store)).await;
    store.ping().await.unwrap();
}

/// The keyring and the server secrets are documents that several nodes may write at once: a write names the
/// version it read, and only one writer of each version wins.
async fn documents_are_replaced_only_at_the_version_read(store: Arc<dyn Store>) {
    assert_eq!(store.document("keyring").await.unwrap(), None);
    assert!(!store.replace_document("keyring", Some(1), "never".into()).await.unwrap(), "no version 1 yet");
    assert!(store.replace_document("keyring", None, "first".into()).await.unwrap());
    assert!(!store.replace_document("keyring", None, "again".into()).await.unwrap(), "it exists now");
    let first = store.document("keyring").await.unwrap().unwrap();
    assert_eq!((first.version, first.contents.as_str()), (1, "first"));

    // Sixteen writers all read version 1: exactly one replaces it.
    let writers = (0..16).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.replace_document("keyring", Some(1), format!("writer {i}")).await.unwrap() })
    });
    let won: Vec<bool> = futures_util::future::join_all(writers).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(won.iter().filter(|won| **won).count(), 1, "{won:?}");
    let second = store.document("keyring").await.unwrap().unwrap();
    assert_eq!(second.version, 2);
    let winner = won.iter().position(|won| *won).unwrap();
    assert_eq!(second.contents, format!("writer {winner}"));

    // Names are independent, and text (JSON: escapes, non-ASCII, braces) survives the round trip.
    let text = "{\"k\": \"\u{e9}\\n\"}\n{tag}";
    assert!(store.replace_document("secrets", None, text.into()).await.unwrap());
    assert_eq!(store.document("secrets").await.unwrap().unwrap().contents, text);
    assert_eq!(store.document("keyring").await.unwrap().unwrap().version, 2);
}

async fn users(store: &dyn Store) {
    let user = User {
        username: "ann".into(),
        password_hash: "h".into(),
        roles: vec!["r".into()],
        disabled: false,
        created_at: 1,
    };
    store.create_user(user.clone()).await.unwrap();
    assert!(matches!(store.create_user(user.clone()).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.user("ann").await.unwrap(), Some(user));
    assert_eq!(store.user("nobody").await.unwrap(), None);
    store.set_password("ann", "h2".into()).await.unwrap();
    assert_eq!(store.user("ann").await.unwrap().unwrap().password_hash, "h2");
    assert!(matches!(store.set_password("nobody", "x".into()).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.set_user_disabled("nobody", true, 5).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.users().await.unwrap().len(), 1);
}

async fn clients(store: &dyn Store) {
    let client = Client {
        client_id: "svc".into(),
        secret_hash: vec![1; 32],
        scopes: vec!["read".into()],
        audiences: vec!["api".into()],
        grants: vec!["client_credentials".into()],
        disabled: false,
        created_at: 1,
        jwks: None,
    };
    store.create_client(client.clone()).await.unwrap();
    assert!(matches!(store.create_client(client.clone()).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.client("svc").await.unwrap(), Some(client.clone()));
    let before = store.revocations_after(0, 0, 100).await.unwrap().len();
    store.set_client_secret("svc", vec![2; 32], 7_000).await.unwrap();
    store.set_client_disabled("svc", true, 8_000).await.unwrap();
    let changed = store.client("svc").await.unwrap().unwrap();
    assert_eq!((changed.secret_hash, changed.disabled), (vec![2; 32], true));
    assert!(matches!(store.set_client_disabled("nope", true, 9).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.set_client_secret("nope", vec![], 9).await, Err(StoreError::NotFound(_))));
    assert!(
        matches!(store.set_client_jwks("svc", "{}".into(), 9).await, Err(StoreError::NotFound(_))),
        "a secret client"
    );
    let keyed = Client { client_id: "keyed".into(), secret_hash: vec![], jwks: Some("{\"keys\":[]}".into()), ..client };
    store.create_client(keyed).await.unwrap();
    store.set_client_jwks("keyed", "{\"keys\":[1]}".into(), 8_500).await.unwrap();
    assert!(matches!(store.set_client_secret("keyed", vec![3; 32], 9).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.client("keyed").await.unwrap().unwrap().jwks.as_deref(), Some("{\"keys\":[1]}"));
    assert_eq!(store.clients().await.unwrap().len(), 2);
    // Every change reaches verifiers through the log: the creation, the rotation and the disabling.
    let log = store.revocations_after(0, 0, 100).await.unwrap();
    let client_entries: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.revocation {
            Revocation::Client { client_id, not_before } => Some((client_id.as_str(), *not_before)),
            _ => None,
        })
        .collect();
    assert_eq!(client_entries, [("svc", 0), ("svc", 7_000), ("svc", 8_000), ("keyed", 0), ("keyed", 8_500)]);
    assert_eq!(log.len(), before + 4);
}

async fn rotation(store: &dyn Store) {
    store.create_family(family("f1", "bob", 1_000)).await.unwrap();
    assert!(matches!(store.create_family(family("f1", "bob", 1_000)).await, Err(StoreError::AlreadyExists(_))));
    let taken = store.create_family(family("f1", "mallory", 1_000)).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists(_))), "a sid is unique across subjects");
    assert!(store.live_families("mallory", 1_500, RULES).await.unwrap().is_empty(), "and lists nowhere else");
    let RefreshOutcome::Rotated(f) = store.refresh("f1", 0, 2_000, RULES).await.unwrap() else { panic!("rotate") };
    assert_eq!(f.generation, 1);
    // The previous generation inside the grace window gets the same live generation, without a new one.
    let RefreshOutcome::Replayed(f) = store.refresh("f1", 0, 3_000, RULES).await.unwrap() else { panic!("replay") };
    assert_eq!(f.generation, 1);
    assert_eq!(store.family("f1").await.unwrap().unwrap().generation, 1);
    let RefreshOutcome::Rotated(f) = store.refresh("f1", 1, 4_000, RULES).await.unwrap() else { panic!("rotate") };
    assert_eq!(f.generation, 2);
    // Generation 0 is now two behind: theft. The family is revoked, logged, and the event recorded.
    assert!(matches!(store.refresh("f1", 0, 5_000, RULES).await.unwrap(), RefreshOutcome::TheftDetected(_)));
    assert_eq!(store.refresh("f1", 2, 5_001, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Revoked));
    let event = &store.security_events(10).await.unwrap()[0];
    assert_eq!((event.kind.as_str(), event.sid.as_str(), event.sub.as_str()), ("refresh_token_reuse", "f1", "bob"));
    let log = store.revocations_after(0, 0, 100).await.unwrap();
    assert!(log.iter().any(|e| e.revocation == Revocation::Session { sid: "f1".into() }));
    assert_eq!(store.refresh("nope", 0, 1, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Unknown));
    // Expiry is absolute; idleness is measured from the last use.
    store.create_family(family("f2", "bob", 10_000)).await.unwrap();
    let expired = 10_000 + 7 * 86_400_000;
    assert_eq!(store.refresh("f2", 0, expired, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Expired));
    let idle = 10_000 + RULES.idle_timeout_ms;
    assert_eq!(store.refresh("f2", 0, idle, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Idle));
    assert_eq!(store.family("f2").await.unwrap().unwrap().generation, 0, "refusals change nothing");
}

async fn concurrent_presentations_have_one_winner(store: Arc<dyn Store>) {
    for round in 0..5 {
        let sid = format!("race-{round}");
        store.create_family(family(&sid, "carl", 1_000)).await.unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (store, sid) = (Arc::clone(&store), sid.clone());
                tokio::spawn(async move { store.refresh(&sid, 0, 2_000, RULES).await.unwrap() })
            })
            .collect();
        let mut rotated = 0;
        for task in tasks {
            match task.await.unwrap() {
                RefreshOutcome::Rotated(f) => {
                    rotated += 1;
                    assert_eq!(f.generation, 1);
                }
                RefreshOutcome::Replayed(f) => assert_eq!(f.generation, 1),
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(rotated, 1, "round {round}: exactly one rotation");
        assert_eq!(store.family(&sid).await.unwrap().unwrap().generation, 1);
    }
}

async fn logout_and_logout_everywhere(store: &dyn Store) {
    store.create_family(family("d1", "dora", 1_000)).await.unwrap();
    store.create_family(family("d2", "dora", 2_000)).await.unwrap();
    assert_eq!(store.live_families("dora", 3_000, RULES).await.unwrap().len(), 2);
    let logout = || Provenance::new("user:dora", "logout");
    let d1 = || Revocation::Session { sid: "d1".into() };
    assert!(store.revoke(d1(), logout(), 3_000).await.unwrap());
    assert!(!store.revoke(d1(), logout(), 3_001).await.unwrap(), "revocation is sticky and idempotent");
    let live = store.live_families("dora", 3_000, RULES).await.unwrap();
    assert_eq!(live.iter().map(|f| f.session.sid.as_str()).collect::<Vec<_>>(), ["d2"]);

    let everywhere = |at| Revocation::Subject { sub: "dora".into(), not_before: at };
    assert!(store.revoke(everywhere(4_000), logout(), 4_000).await.unwrap());
    // Late and older: must not move the instant back.
    assert!(!store.revoke(everywhere(3_500), logout(), 4_100).await.unwrap());
    assert_eq!(store.subject("dora").await.unwrap().not_before, Some(4_000));
    assert_eq!(
        store.refresh("d2", 0, 4_500, RULES).await.unwrap(),
        RefreshOutcome::Refused(Refusal::LoggedOutEverywhere)
    );
    assert!(store.live_families("dora", 4_500, RULES).await.unwrap().is_empty());
    // A login after the instant is unaffected.
    store.create_family(family("d3", "dora", 4_001)).await.unwrap();
    assert!(matches!(store.refresh("d3", 0, 4_500, RULES).await.unwrap(), RefreshOutcome::Rotated(_)));
    let log = store.revocations_after(0, 0, 100).await.unwrap();
    assert!(log.windows(2).all(|w| w[0].id < w[1].id), "the log is ordered");
    assert!(log.iter().any(|e| e.revocation == Revocation::Subject { sub: "dora".into(), not_before: 4_000 }));
    let session_entry = log.iter().find(|e| e.revocation == d1()).unwrap();
    assert_eq!((session_entry.at, &session_entry.provenance), (3_000, &logout()), "who, when and why are kept");
    assert_eq!(log.iter().filter(|e| e.revocation == d1()).count(), 1, "a no-op revocation is not logged");
    let after = log.last().unwrap().id;
    assert!(store.revocations_after(after, 0, 100).await.unwrap().is_empty());
    assert!(store.revocations_after(0, 3_001, 100).await.unwrap().iter().all(|e| e.at >= 3_001), "since filters");
}

async fn client_assertions_are_used_once(store: &dyn Store) {
    assert!(store.use_assertion("svc", "a-1", 10_000, 1_000).await.unwrap());
    assert!(!store.use_assertion("svc", "a-1", 10_000, 2_000).await.unwrap(), "a replay");
    assert!(store.use_assertion("other", "a-1", 10_000, 2_000).await.unwrap(), "ids are per client");
    // Once expired, the record is dropped (an expired assertion never verifies anyway).
    assert!(store.use_assertion("svc", "a-1", 30_000, 20_000).await.unwrap());
}

/// A token revocation is logged with who and why, and the exact lookup compact mode relies on finds it — that
/// `jti` only, not one that differs by a character nor a session with the same identifier.
async fn token_revocations_are_logged(store: &dyn Store) {
    let token = Revocation::Token { jti: "j-1".into(), expires_at: 90_000 };
    let by = Provenance::new("admin", "leaked in a log file");
    assert!(!store.token_revoked("j-1").await.unwrap());
    assert!(store.revoke(token.clone(), by.clone(), 60_000).await.unwrap());
    assert!(store.revoke(Revocation::Session { sid: "j-2".into() }, by.clone(), 60_000).await.is_ok());
    assert!(store.token_revoked("j-1").await.unwrap());
    assert!(!store.token_revoked("j-").await.unwrap());
    assert!(!store.token_revoked("j-2").await.unwrap(), "a session of that name is not a token");
    // By `jti` alone, as an operator revokes: logged as such, and found.
    let by_id = Revocation::TokenById { jti: "j-3".into(), expires_at: 1_020_000 };
    assert!(store.revoke(by_id.clone(), by.clone(), 60_000).await.unwrap());
    assert!(store.token_revoked("j-3").await.unwrap());
    let log = store.revocations_after(0, 60_000, 100).await.unwrap();
    assert!(log.iter().any(|e| e.revocation == by_id), "{log:?}");
    let entry = log.iter().find(|e| e.revocation == token).unwrap();
    assert_eq!((entry.at, &entry.provenance), (60_000, &by));
    // The head is the newest position a reader sees: the whole log's last entry.
    let everything = store.revocations_after(0, i64::MIN, 100_000).await.unwrap();
    assert_eq!(store.log_head().await.unwrap(), everything.last().unwrap().id);
}

async fn disabling_a_user_ends_their_sessions(store: &dyn Store) {
    let user =
        User { username: "eve".into(), password_hash: "h".into(), roles: vec![], disabled: false, created_at: 1 };
    store.create_user(user).await.unwrap();
    store.create_family(family("e1", "eve", 1_000)).await.unwrap();
    store.set_user_disabled("eve", true, 2_000).await.unwrap();
    let state = store.subject("eve").await.unwrap();
    assert!(state.disabled);
    assert_eq!(state.not_before, Some(2_000));
    assert_eq!(
        store.refresh("e1", 0, 2_500, RULES).await.unwrap(),
        RefreshOutcome::Refused(Refusal::LoggedOutEverywhere)
    );
    store.set_user_disabled("eve", false, 3_000).await.unwrap();
    assert!(!store.subject("eve").await.unwrap().disabled);
}

/// A throwaway PostgreSQL server, stopped and deleted on drop.
pub struct Postgres {
    server: Child,
    data: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

fn server_binaries() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists());
    let debian = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions.filter_map(Result::ok).map(|v| v.path().join("bin")).find(|d| d.join("initdb").exists())
    });
    from_pg_config.or(debian).unwrap_or_else(|| {
        panic!("PostgreSQL server binaries (initdb, postgres) not found: install them with `apt-get install postgresql` (scripts/test does)")
    })
}

/// PostgreSQL refuses to run as root: as root, run it as the `postgres` system user.
fn as_server_user(program: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Starts `postgres` on `data` and waits until it accepts sessions.
fn launch_postgres(bin: &Path, data: &Path, socket_dir: &Path, port: u16) -> Child {
    let server = as_server_user(&bin.join("postgres"))
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
        .arg(socket_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Ready means accepting sessions, not just the port: PostgreSQL listens while it is still starting up.
    let ready = || {
        Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "tessera", "-d", "postgres"])
            .status()
            .is_ok_and(|status| status.success())
    };
    while !ready() {
        assert!(Instant::now() < deadline, "PostgreSQL did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// `pid (comm) state ppid ...` from /proc; comm may hold spaces and parentheses, so fields are read after the
/// last ')'.
fn proc_stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

fn parent_of(pid: &str) -> Option<String> {
    proc_stat_fields(pid)?.get(1).cloned()
}

fn process_state(pid: &str) -> Option<char> {
    proc_stat_fields(pid)?.first()?.chars().next()
}

fn signal(pids: &[String], signal: &str) {
    let status = Command::new("kill").arg(signal).args(pids).status().expect("kill");
    assert!(status.success(), "kill {signal} {pids:?}");
}

impl Postgres {
    /// Starts one; panics naming what to install when PostgreSQL is missing.
    #[must_use]
    pub fn start() -> Self {
        let bin = server_binaries();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n")) {
            assert!(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap().success());
        }
        let initdb = as_server_user(&bin.join("initdb"))
            .args(["-U", "tessera", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = launch_postgres(&bin, &data, dir.path(), port);
        Self { server, port, data, dir }
    }

    /// Stops the server (fast shutdown): clients see their connections closed and new ones refused.
    pub fn stop(&mut self) {
        // SIGINT to the postmaster (its pid heads postmaster.pid) is PostgreSQL's fast shutdown. It may run as
        // another user, under `runuser`, which does not pass signals on: ask `kill`, then reap `runuser`.
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned));
        match pid {
            Some(pid) => drop(Command::new("kill").args(["-INT", &pid]).status()),
            None => drop(self.server.kill()),
        }
        let _ = self.server.wait();
    }

    /// Freezes the server — the postmaster and every backend — with SIGSTOP: connections stay up and the kernel
    /// keeps accepting bytes, but nothing answers, as with a stuck or partitioned database.
    pub fn pause(&self) {
        // `runuser` (when PostgreSQL runs as another user) stops itself when it sees its child stop, and later
        // misses the child's continuation: it is stopped first and continued last, so it never sees either.
        signal(&[self.launcher()], "-STOP");
        signal(&self.server_processes(), "-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run on.
    pub fn resume(&self) {
        signal(&self.server_processes(), "-CONT");
        let launcher = self.launcher();
        // Continue the launcher until it stays running, in case it saw the stop after all.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            signal(std::slice::from_ref(&launcher), "-CONT");
            std::thread::sleep(Duration::from_millis(50));
            if process_state(&launcher) != Some('T') || Instant::now() > deadline {
                break;
            }
        }
    }

    /// The process the test started: the postmaster itself, or `runuser` around it.
    fn launcher(&self) -> String {
        self.server.id().to_string()
    }

    /// The postmaster and its children (backends and background workers), from /proc.
    fn server_processes(&self) -> Vec<String> {
        let postmaster = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .expect("postmaster.pid names the server's process");
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid.parse::<u32>().is_ok() && parent_of(&pid).as_deref() == Some(postmaster.as_str()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Starts it again after [`stop`](Self::stop), on the same port with the same data.
    pub fn restart(&mut self) {
        self.server = launch_postgres(&server_binaries(), &self.data, self.dir.path(), self.port);
    }

    /// The URL of its `postgres` database.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://tessera@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh, empty database on this server.
    /// Creates an empty database and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        format!("postgres://tessera@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Panics naming the package to install when a Redis program is missing.
fn redis_program(name: &str) -> Command {
    if Command::new(name).arg("--version").stdout(Stdio::null()).status().is_err() {
        panic!("{name} not found: install the Debian package redis-server (scripts/test does)");
    }
    Command::new(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `redis-cli -p PORT ARGS...` and returns what it printed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One `redis-server` on a loopback port with its files in `dir`: started, killed (SIGKILL) and restarted on the
/// same port with the same files, killed on drop.
struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl RedisProcess {
    /// Starts one on a free port and waits until it answers. Nothing is saved unless `args` say otherwise
    /// (later arguments override earlier ones).
    fn start(dir: &Path, args: &[&str]) -> Self {
        drop(redis_program("redis-cli"));
        std::fs::create_dir_all(dir).unwrap();
        let mut process = Self {
            child: None,
            port: free_port(),
            dir: dir.to_owned(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        process.restart();
        process
    }

    /// Starts it again (after [`kill`](Self::kill)) on its port, with its files; waits until it answers.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server on port {} is running", self.port);
        let child = redis_program("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while redis_cli(self.port, &["PING"]).trim() != "PONG" {
            let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "redis-server did not start on port {}:\n{log}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no final save, connections cut.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the server, if it runs.
    fn signal(&self, signal_name: &str) {
        if let Some(child) = &self.child {
            signal(&[child.id().to_string()], signal_name);
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throwaway single Redis, killed on drop.
pub struct Redis {
    process: RedisProcess,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one; panics naming what to install when Redis is missing.
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self { process: RedisProcess::start(dir.path(), &[]), _dir: dir }
    }

    /// Starts one that writes every change to its append-only file before answering (`appendfsync always`), so
    /// what it acknowledged survives [`kill`](Self::kill) and [`restart`](Self::restart).
    #[must_use]
    pub fn start_durable() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = RedisProcess::start(dir.path(), &["--appendonly", "yes", "--appendfsync", "always"]);
        Self { process, _dir: dir }
    }

    /// Its URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.process.port)
    }

    /// Runs one `redis-cli` command against it; its output.
    #[must_use]
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.process.port, args)
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port with the same files, and waits until it answers.
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// Freezes it (SIGSTOP): connections stay up, nothing answers.
    pub fn pause(&self) {
        self.process.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run on.
    pub fn resume(&self) {
        self.process.signal("-CONT");
    }
}

/// A throwaway Redis Cluster of three masters and three replicas, killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts six `redis-server --cluster-enabled yes`, joins them with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every node reports the cluster ok and every replica is in sync.
    /// Nodes count one as failed after Redis's default 15 s.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with_node_timeout(Duration::from_secs(15))
    }

    /// [`start`](Self::start), with nodes counting one as failed after `node_timeout` (`cluster-node-timeout`):
    /// a replica takes over from a dead master within a few of these.
    #[must_use]
    pub fn start_with_node_timeout(node_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let timeout = node_timeout.as_millis().to_string();
        let nodes = (0..6)
            .map(|node| {
                // The cluster bus gets its own free port (the default, port + 10000, may be taken or out of range).
                let bus = free_port().to_string();
                RedisProcess::start(
                    &dir.path().join(format!("node-{node}")),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        &bus,
                        "--cluster-node-timeout",
                        &timeout,
                    ],
                )
            })
            .collect();
        let cluster = Self { nodes, _dir: dir };
        let addresses: Vec<String> = cluster.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)).collect();
        let created = redis_program("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until_replicated();
        cluster
    }

    /// The URLs of its nodes.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| format!("redis://127.0.0.1:{}/", node.port)).collect()
    }

    fn any_alive(&self) -> u16 {
        self.nodes.iter().find(|node| node.alive()).expect("every node is dead").port
    }

    /// The node (an index into [`urls`](Self::urls)) of the master that owns `key`'s slot now.
    #[must_use]
    pub fn master_of(&self, key: &str) -> usize {
        let port = self.any_alive();
        let slot: u16 = redis_cli(port, &["CLUSTER", "KEYSLOT", key]).trim().parse().unwrap();
        let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
        // `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot or range>...`
        let owner = nodes
            .lines()
            .map(|line| line.split(' ').collect::<Vec<_>>())
            .find(|fields| {
                fields.len() > 8
                    && fields[2].contains("master")
                    && fields[8..].iter().any(|range| {
                        let (from, to) = range.split_once('-').unwrap_or((range, range));
                        matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(from), Ok(to)) if (from..=to).contains(&slot))
                    })
            })
            .unwrap_or_else(|| panic!("no master owns slot {slot}:\n{nodes}"));
        let owner_port: u16 = owner[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
        self.nodes.iter().position(|node| node.port == owner_port).unwrap()
    }

    /// The live nodes that are replicas now.
    #[must_use]
    pub fn replicas(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&node| {
                self.nodes[node].alive()
                    && redis_cli(self.nodes[node].port, &["INFO", "replication"]).contains("role:slave")
            })
            .collect()
    }

    /// Kills node `node` with SIGKILL.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// Starts a killed node again on its port with its files: it rejoins the cluster (as a replica, if its slots
    /// were taken over meanwhile) and resynchronises from its master.
    pub fn restart(&mut self, node: usize) {
        self.nodes[node].restart();
    }

    /// Waits (60 s at most) until every live node reports the cluster ok, every slot is served by a live master
    /// (a replica was promoted in place of a dead one) and every live replica is in sync with its master.
    pub fn wait_until_ok(&self) {
        let dead: Vec<String> =
            self.nodes.iter().filter(|node| !node.alive()).map(|node| format!("127.0.0.1:{}@", node.port)).collect();
        let ready = |port: u16| {
            let info = redis_cli(port, &["CLUSTER", "INFO"]);
            let replication = redis_cli(port, &["INFO", "replication"]);
            let serves_no_dead_slot = redis_cli(port, &["CLUSTER", "NODES"]).lines().all(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                !(fields.len() > 8 && dead.iter().any(|dead| fields[1].starts_with(dead.as_str())))
            });
            info.contains("cluster_state:ok")
                && serves_no_dead_slot
                && (replication.contains("role:master") || replication.contains("master_link_status:up"))
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.nodes.iter().filter(|node| node.alive()).all(|node| ready(node.port)) {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not become ready:\n{}",
                redis_cli(self.any_alive(), &["CLUSTER", "NODES"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (60 s at most) until every master with slots has a replica in sync: writes waiting for one replica
    /// (`WAIT 1`) succeed everywhere again.
    pub fn wait_until_replicated(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let replicated = |port: u16| {
            let replication = redis_cli(port, &["INFO", "replication"]);
            !replication.contains("role:master") || replication.contains("connected_slaves:1")
        };
        while !self.nodes.iter().filter(|node| node.alive()).all(|node| replicated(node.port)) {
            assert!(Instant::now() < deadline, "a Redis master stayed without a replica");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_ok();
    }
}
