//! The behaviour every [`Store`] backend must show — each backend's tests call [`run_all`] on a fresh store. The
//! throwaway servers those tests run the shared backends on are in the `tessera-test-support` crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code

use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;

use crate::{
    Client, LogCursor, Millis, NewSecurityEvent, NewSession, Provenance, RefreshOutcome, RefreshRules, Refusal,
    Revocation, RevocationEntry, SecurityEventKind, SecurityEventQuery, Store, StoreError, User,
};

const RULES: RefreshRules = RefreshRules { grace_ms: 10_000, idle_timeout_ms: 86_400_000 };

/// A session of `sub` created at `created_at`, valid for a week: the tests' usual session.
#[must_use]
pub fn new_session(sid: &str, sub: &str, created_at: i64) -> NewSession {
    NewSession {
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
    a.create_session(new_session("shared", "u", 1_000)).await.unwrap();
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
    assert_eq!(b.session("shared").await.unwrap().unwrap().generation, 1);

    let mut changes = b.log_changes().expect("Redis pushes log growth");
    // The subscription signals once it is up; then the other node's revocation must signal again.
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.unwrap().unwrap();
    changes.borrow_and_update();
    let revocation = Revocation::Session { sid: "shared".into() };
    assert!(a.revoke(revocation.clone(), Provenance::new("admin", "test"), 3_000).await.unwrap());
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("no notification").unwrap();
    let log = b.revocations_after(&LogCursor::default(), 0, 100).await.unwrap();
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
        store.create_session(new_session(sid, "forgetful", start)).await.unwrap();
    }
    store.create_session(new_session("kept", "forgetful", start + 2 * DAY)).await.unwrap();
    // The first three expire at 7 days; the fourth lives until 9 days.
    let later = start + 8 * DAY;
    assert_eq!(store.forget_sessions_expired_before(later, 2).await.unwrap(), 2, "a batch of at most 2");
    assert_eq!(store.forget_sessions_expired_before(later, 2).await.unwrap(), 1);
    assert_eq!(store.forget_sessions_expired_before(later, 2).await.unwrap(), 0);
    for sid in ["gone-1", "gone-2", "gone-3"] {
        assert_eq!(store.session(sid).await.unwrap(), None);
        assert_eq!(
            store.refresh(sid, 0, later, RULES).await.unwrap(),
            RefreshOutcome::Refused(Refusal::Unknown),
            "still refused"
        );
    }
    assert!(store.session("kept").await.unwrap().is_some());
}

/// Live sessions are counted: not the expired ones, not the revoked ones.
async fn live_sessions_are_counted(store: &dyn Store) {
    const DAY: i64 = 86_400_000;
    // Later than every session the store held before: only these three can be live.
    let start = 2_000 * DAY;
    for sid in ["counted-1", "counted-2", "counted-revoked"] {
        store.create_session(new_session(sid, "counted", start)).await.unwrap();
    }
    let revoked = Revocation::Session { sid: "counted-revoked".into() };
    store.revoke(revoked, Provenance::new("test", "counting"), start).await.unwrap();
    assert_eq!(store.live_session_count(start + DAY).await.unwrap(), Some(2));
    assert_eq!(store.live_session_count(start + 7 * DAY).await.unwrap(), Some(0), "all expired");
}

/// Many revocations in flight at once on two nodes of one store (backends batch them): each still answers for
/// itself — a session revoked twice concurrently, on both nodes, changes once — a subject's instant only moves
/// forward, every token is logged and the log stays gap-free. With `logs_only_changes`, exactly the revocations
/// that changed something are logged; without, a revocation that lost a race to an identical one may be logged
/// too (harmless: merging is idempotent).
pub async fn many_revocations_at_once_on_two_nodes(a: Arc<dyn Store>, b: Arc<dyn Store>, logs_only_changes: bool) {
    for n in 0..20 {
        a.create_session(new_session(&format!("batch-s{n}"), "u", 1_000)).await.unwrap();
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
    let before = a.revocations_after(&LogCursor::default(), 0, 100_000).await.unwrap().len();
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
    let log = a.revocations_after(&LogCursor::default(), 0, 100_000).await.unwrap();
    for ids in positions_by_partition(&log) {
        // From the oldest entry kept (an earlier check may have forgotten the ones before it).
        let first = ids.first().copied().unwrap_or(1);
        assert_eq!(ids, (first..first + i64::try_from(ids.len()).unwrap()).collect::<Vec<_>>(), "gap-free, in order");
    }
    if logs_only_changes {
        assert_eq!(log.len() - before, changed, "exactly the revocations that changed something are logged");
    } else {
        assert!(log.len() - before >= changed, "every change is logged");
    }
    for n in 0..20 {
        let sid = format!("batch-s{n}");
        assert!(log.iter().any(|e| e.revocation == Revocation::Session { sid: sid.clone() }), "{sid} logged");
        assert!(b.session(&sid).await.unwrap().unwrap().revoked_at().is_some());
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
    security_events_are_recorded_filtered_and_paged(Arc::clone(&store)).await;
    live_sessions_are_counted(&*store).await;
    // Last: it forgets every entry the checks above logged.
    the_revocation_log_is_pruned_oldest_first_and_keeps_its_head(&*store).await;
    store.ping().await.unwrap();
}

/// Forgetting old revocation log entries: in batches of at most the limit, oldest first, only those recorded
/// before the time given, a token entry no longer found revoked once forgotten, and the newest entry — the head
/// readers compare their position with — kept whatever its age.
async fn the_revocation_log_is_pruned_oldest_first_and_keeps_its_head(store: &dyn Store) {
    const OLD: Millis = 9_000_000_000_000;
    const NEW: Millis = 9_500_000_000_000;
    let by = Provenance::new("admin", "pruning check");
    for (n, at) in [(1, OLD), (2, OLD + 1), (3, OLD + 2)] {
        let token = Revocation::Token { jti: format!("old-{n}"), expires_at: at + 60_000 };
        assert!(store.revoke(token, by.clone(), at).await.unwrap());
    }
    assert!(store
        .revoke(Revocation::Token { jti: "new".into(), expires_at: NEW + 60_000 }, by.clone(), NEW)
        .await
        .unwrap());
    let everything = store.revocations_after(&LogCursor::default(), i64::MIN, 100_000).await.unwrap();
    let head = store.log_head().await.unwrap();
    let everything_by_partition = positions_by_partition(&everything);

    let mut forgotten = Vec::new();
    loop {
        let batch = store.forget_revocations_recorded_before(NEW - 1, 2).await.unwrap();
        assert!(batch <= 2, "a batch of at most the limit: {batch}");
        if batch == 0 {
            break;
        }
        forgotten.push(batch);
        let left =
            positions_by_partition(&store.revocations_after(&LogCursor::default(), i64::MIN, 100_000).await.unwrap());
        for (partition, left) in left.iter().enumerate() {
            assert!(everything_by_partition[partition].ends_with(left), "oldest first in partition {partition}");
        }
    }
    // Every partition keeps its newest entry, and only that: "new" is the newest of its own.
    let heads: Vec<i64> = everything_by_partition.iter().filter_map(|ids| ids.last().copied()).collect();
    assert_eq!(forgotten.iter().sum::<usize>(), everything.len() - heads.len(), "all but each partition's head");
    let left = store.revocations_after(&LogCursor::default(), i64::MIN, 100_000).await.unwrap();
    assert_eq!(left.len(), heads.len(), "{left:?}");
    for entry in &left {
        assert_eq!(entry.id, head.position(entry.partition), "what is left is the head");
    }
    for entry in &everything {
        if let Revocation::Token { jti, .. } | Revocation::TokenById { jti, .. } = &entry.revocation {
            let kept = left.iter().any(|left| left.revocation == entry.revocation);
            assert_eq!(store.token_revoked(jti).await.unwrap(), kept, "{jti}: a forgotten token entry is no more");
        }
    }
    assert!(store.token_revoked("new").await.unwrap());

    // The head stays even once it is old itself: without it a reader would take the emptied log for one that
    // went back.
    assert_eq!(store.forget_revocations_recorded_before(Millis::MAX, 100).await.unwrap(), 0);
    assert_eq!(store.log_head().await.unwrap(), head);
    let after = Revocation::Token { jti: "after-pruning".into(), expires_at: NEW + 60_000 };
    assert!(store.revoke(after.clone(), by, NEW + 1).await.unwrap());
    let next = store.revocations_after(&head, i64::MIN, 100).await.unwrap();
    assert_eq!(next.iter().map(|e| &e.revocation).collect::<Vec<_>>(), [&after]);
    assert!(next[0].id > head.position(next[0].partition), "positions go on from the head");
}

/// Each partition's positions in `log`, in the order given, partition 0 first.
fn positions_by_partition(log: &[RevocationEntry]) -> Vec<Vec<i64>> {
    let mut partitions: Vec<Vec<i64>> = Vec::new();
    for entry in log {
        if partitions.len() <= entry.partition {
            partitions.resize(entry.partition + 1, Vec::new());
        }
        partitions[entry.partition].push(entry.id);
    }
    partitions
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

/// Security events get increasing ids, shared with the one reuse detection records, come back as recorded, and
/// are read newest first through any combination of filters, a page at a time.
async fn security_events_are_recorded_filtered_and_paged(store: Arc<dyn Store>) {
    use SecurityEventKind::{AdminChange, KeyRotated, LoginLocked, SessionRevoked};
    let everything = || SecurityEventQuery::latest(1_000);
    let reuse = store.security_events(&everything()).await.unwrap()[0].clone();
    let written = [
        NewSecurityEvent::new(SessionRevoked, 10_000, "logout").about("ev-ann").in_session("ev-s1").by("user"),
        NewSecurityEvent::new(LoginLocked, 20_000, "10 failed logins from 192.0.2.1").about("ev-ann"),
        NewSecurityEvent::new(KeyRotated, 30_000, "now signing with kid k2").by("tessera"),
        NewSecurityEvent::new(AdminChange, 40_000, "revoked sub ev-bob: \"quoted\" \u{e9}").about("ev-bob").by("admin"),
        NewSecurityEvent::new(SessionRevoked, 50_000, "rfc7009").about("ev-bob").in_session("ev-s2").by("client:svc"),
    ];
    let mut recorded = Vec::new();
    for event in written.clone() {
        recorded.push(store.record_security_event(event).await.unwrap());
    }
    let ids: Vec<u64> = recorded.iter().map(|event| event.id).collect();
    assert!(reuse.id < ids[0] && ids.windows(2).all(|pair| pair[0] < pair[1]), "increasing: {} then {ids:?}", reuse.id);
    for (event, recorded) in written.into_iter().zip(&recorded) {
        assert_eq!(event.recorded(recorded.id), *recorded);
    }
    let [a, b, c, d, e] = recorded.clone().try_into().unwrap();

    let read = |query: SecurityEventQuery| {
        let store = Arc::clone(&store);
        async move { store.security_events(&query).await.unwrap() }
    };
    let all = read(everything()).await;
    assert_eq!(all[..6], [e.clone(), d.clone(), c.clone(), b.clone(), a.clone(), reuse.clone()], "as recorded");
    let of_kind = |kind| SecurityEventQuery { kind: Some(kind), ..everything() };
    assert_eq!(read(of_kind(SessionRevoked)).await, [e.clone(), a.clone()]);
    assert_eq!(read(of_kind(SecurityEventKind::RefreshTokenReuse)).await, std::slice::from_ref(&reuse));
    let about = |sub: &str| SecurityEventQuery { sub: Some(sub.into()), ..everything() };
    assert_eq!(read(about("ev-ann")).await, [b.clone(), a.clone()]);
    let between = SecurityEventQuery { since: Some(20_000), until: Some(40_000), ..everything() };
    assert_eq!(read(between).await, [c.clone(), b.clone()], "since is inclusive, until exclusive");
    let both = SecurityEventQuery { kind: Some(SessionRevoked), sub: Some("ev-bob".into()), ..everything() };
    assert_eq!(read(both).await, std::slice::from_ref(&e));
    assert!(read(SecurityEventQuery::latest(0)).await.is_empty());

    // Pages of two, each below the last id of the one before, add up to everything.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = read(SecurityEventQuery { before, ..SecurityEventQuery::latest(2) }).await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let below_c = SecurityEventQuery { before: Some(c.id), sub: Some("ev-ann".into()), ..everything() };
    assert_eq!(read(below_c).await, [b, a]);

    // Nodes recording at once: every event its own id.
    let writers = (0..16).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let event = NewSecurityEvent::new(KeyRotated, 60_000, format!("node {i}"));
            store.record_security_event(event).await.unwrap().id
        })
    });
    let mut ids: Vec<u64> = futures_util::future::join_all(writers).await.into_iter().map(Result::unwrap).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 16);
    assert!(ids[0] > e.id);
}

async fn users(store: &dyn Store) {
    let user = User {
        username: "ann".into(),
        password_hash: "h".into(),
        roles: vec!["r".into()],
        disabled: false,
        created_at: 1,
        profile: crate::model::Profile {
            name: Some("Ann Example".into()),
            email: Some("ann@example.com".into()),
            email_verified: true,
        },
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
        code_flow: None,
    };
    store.create_client(client.clone()).await.unwrap();
    assert!(matches!(store.create_client(client.clone()).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.client("svc").await.unwrap(), Some(client.clone()));
    let before = store.revocations_after(&LogCursor::default(), 0, 100).await.unwrap().len();
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
    let code_flow = crate::model::CodeFlow {
        redirect_uris: vec!["https://app.example/cb".into(), "http://127.0.0.1/cb".into()],
        post_logout_redirect_uris: vec!["https://app.example/".into()],
        require_par: true,
        first_party: false,
        id_token_signing: crate::model::IdTokenSigning::Rs256,
    };
    let keyed = Client {
        client_id: "keyed".into(),
        secret_hash: vec![],
        jwks: Some("{\"keys\":[]}".into()),
        code_flow: Some(code_flow.clone()),
        ..client
    };
    store.create_client(keyed).await.unwrap();
    store.set_client_jwks("keyed", "{\"keys\":[1]}".into(), 8_500).await.unwrap();
    assert!(matches!(store.set_client_secret("keyed", vec![3; 32], 9).await, Err(StoreError::NotFound(_))));
    let keyed = store.client("keyed").await.unwrap().unwrap();
    assert_eq!(keyed.jwks.as_deref(), Some("{\"keys\":[1]}"));
    assert_eq!(keyed.code_flow, Some(code_flow), "the authorization-code registration is kept whole");
    assert_eq!(store.clients().await.unwrap().len(), 2);
    // Every change reaches verifiers through the log: the creation, the rotation and the disabling.
    let log = store.revocations_after(&LogCursor::default(), 0, 100).await.unwrap();
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
    store.create_session(new_session("f1", "bob", 1_000)).await.unwrap();
    assert!(matches!(store.create_session(new_session("f1", "bob", 1_000)).await, Err(StoreError::AlreadyExists(_))));
    let taken = store.create_session(new_session("f1", "mallory", 1_000)).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists(_))), "a sid is unique across subjects");
    assert!(store.live_sessions("mallory", 1_500, RULES).await.unwrap().is_empty(), "and lists nowhere else");
    let RefreshOutcome::Rotated(f) = store.refresh("f1", 0, 2_000, RULES).await.unwrap() else { panic!("rotate") };
    assert_eq!(f.generation, 1);
    // The previous generation inside the grace window gets the same live generation, without a new one.
    let RefreshOutcome::Replayed(f) = store.refresh("f1", 0, 3_000, RULES).await.unwrap() else { panic!("replay") };
    assert_eq!(f.generation, 1);
    assert_eq!(store.session("f1").await.unwrap().unwrap().generation, 1);
    let RefreshOutcome::Rotated(f) = store.refresh("f1", 1, 4_000, RULES).await.unwrap() else { panic!("rotate") };
    assert_eq!(f.generation, 2);
    // Generation 0 is now two behind: theft. The family is revoked, logged, and the event recorded.
    assert!(matches!(store.refresh("f1", 0, 5_000, RULES).await.unwrap(), RefreshOutcome::TheftDetected(_)));
    assert_eq!(store.refresh("f1", 2, 5_001, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Revoked));
    let event = &store.security_events(&SecurityEventQuery::latest(10)).await.unwrap()[0];
    assert_eq!(
        (event.kind.as_str(), event.sid.as_deref(), event.sub.as_deref(), event.at),
        ("refresh_token_reuse", Some("f1"), Some("bob"), 5_000)
    );
    let log = store.revocations_after(&LogCursor::default(), 0, 100).await.unwrap();
    assert!(log.iter().any(|e| e.revocation == Revocation::Session { sid: "f1".into() }));
    assert_eq!(store.refresh("nope", 0, 1, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Unknown));
    // Expiry is absolute; idleness is measured from the last use.
    store.create_session(new_session("f2", "bob", 10_000)).await.unwrap();
    let expired = 10_000 + 7 * 86_400_000;
    assert_eq!(store.refresh("f2", 0, expired, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Expired));
    let idle = 10_000 + RULES.idle_timeout_ms;
    assert_eq!(store.refresh("f2", 0, idle, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Idle));
    assert_eq!(store.session("f2").await.unwrap().unwrap().generation, 0, "refusals change nothing");
}

async fn concurrent_presentations_have_one_winner(store: Arc<dyn Store>) {
    for round in 0..5 {
        let sid = format!("race-{round}");
        store.create_session(new_session(&sid, "carl", 1_000)).await.unwrap();
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
        assert_eq!(store.session(&sid).await.unwrap().unwrap().generation, 1);
    }
}

async fn logout_and_logout_everywhere(store: &dyn Store) {
    store.create_session(new_session("d1", "dora", 1_000)).await.unwrap();
    store.create_session(new_session("d2", "dora", 2_000)).await.unwrap();
    assert_eq!(store.live_sessions("dora", 3_000, RULES).await.unwrap().len(), 2);
    let logout = || Provenance::new("user:dora", "logout");
    let d1 = || Revocation::Session { sid: "d1".into() };
    assert!(store.revoke(d1(), logout(), 3_000).await.unwrap());
    assert!(!store.revoke(d1(), logout(), 3_001).await.unwrap(), "revocation is sticky and idempotent");
    let live = store.live_sessions("dora", 3_000, RULES).await.unwrap();
    assert_eq!(live.iter().map(|f| f.sid.as_str()).collect::<Vec<_>>(), ["d2"]);

    let everywhere = |at| Revocation::Subject { sub: "dora".into(), not_before: at };
    assert!(store.revoke(everywhere(4_000), logout(), 4_000).await.unwrap());
    // Late and older: must not move the instant back.
    assert!(!store.revoke(everywhere(3_500), logout(), 4_100).await.unwrap());
    assert_eq!(store.subject("dora").await.unwrap().not_before, Some(4_000));
    assert_eq!(
        store.refresh("d2", 0, 4_500, RULES).await.unwrap(),
        RefreshOutcome::Refused(Refusal::LoggedOutEverywhere)
    );
    assert!(store.live_sessions("dora", 4_500, RULES).await.unwrap().is_empty());
    // A login after the instant is unaffected.
    store.create_session(new_session("d3", "dora", 4_001)).await.unwrap();
    assert!(matches!(store.refresh("d3", 0, 4_500, RULES).await.unwrap(), RefreshOutcome::Rotated(_)));
    let log = store.revocations_after(&LogCursor::default(), 0, 100).await.unwrap();
    assert!(positions_by_partition(&log).iter().all(|ids| ids.windows(2).all(|w| w[0] < w[1])), "the log is ordered");
    assert!(log.iter().any(|e| e.revocation == Revocation::Subject { sub: "dora".into(), not_before: 4_000 }));
    let session_entry = log.iter().find(|e| e.revocation == d1()).unwrap();
    assert_eq!((session_entry.at, &session_entry.provenance), (3_000, &logout()), "who, when and why are kept");
    assert_eq!(log.iter().filter(|e| e.revocation == d1()).count(), 1, "a no-op revocation is not logged");
    let mut after = LogCursor::default();
    log.iter().for_each(|entry| after.advance(entry));
    assert!(store.revocations_after(&after, 0, 100).await.unwrap().is_empty());
    assert!(
        store.revocations_after(&LogCursor::default(), 3_001, 100).await.unwrap().iter().all(|e| e.at >= 3_001),
        "since filters"
    );
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
    let log = store.revocations_after(&LogCursor::default(), 60_000, 100).await.unwrap();
    assert!(log.iter().any(|e| e.revocation == by_id), "{log:?}");
    let entry = log.iter().find(|e| e.revocation == token).unwrap();
    assert_eq!((entry.at, &entry.provenance), (60_000, &by));
    // The head is the newest position a reader sees: the whole log's last entry.
    let everything = store.revocations_after(&LogCursor::default(), i64::MIN, 100_000).await.unwrap();
    let mut seen = LogCursor::default();
    everything.iter().for_each(|entry| seen.advance(entry));
    let head = store.log_head().await.unwrap();
    assert!(head.partitions() >= 1, "a head for each partition");
    let (read_with, entries) =
        store.head_and_revocations_after(&LogCursor::default(), i64::MIN, 100_000).await.unwrap();
    assert_eq!((read_with, entries), (head.clone(), everything.clone()), "the head and the entries read together");
    for partition in 0..head.partitions() {
        assert_eq!(head.position(partition), seen.position(partition), "partition {partition}");
    }
}

async fn disabling_a_user_ends_their_sessions(store: &dyn Store) {
    let user = User {
        username: "eve".into(),
        password_hash: "h".into(),
        roles: vec![],
        disabled: false,
        created_at: 1,
        profile: Default::default(),
    };
    store.create_user(user).await.unwrap();
    store.create_session(new_session("e1", "eve", 1_000)).await.unwrap();
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
