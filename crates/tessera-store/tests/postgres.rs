//! The PostgreSQL backend passes the conformance suite against a PostgreSQL server this test starts itself (its
//! own data directory, a free loopback port), and two stores on one database — two Tessera nodes — see each
//! other's changes and rotate a session exactly once between them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::sync::Arc;

use tessera_store::conformance::Postgres;
use tessera_store::{conformance, PostgresStore, Provenance, Revocation, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_conformance_suite_and_serves_two_nodes() {
    let pg = Postgres::start();
    let url = pg.database("conformance").await;
    let store = PostgresStore::connect(&url, 8).await.unwrap();
    conformance::run_all(Arc::new(store)).await;

    // Two nodes on one database, started together: migrations run once, state is shared, rotation happens once.
    let url = pg.database("nodes").await;
    let (a, b) = tokio::join!(PostgresStore::connect(&url, 8), PostgresStore::connect(&url, 8));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    conformance::two_nodes_share_one_store(Arc::clone(&a), Arc::clone(&b)).await;

    // Many revocations in flight at once, from both nodes: they are written in batches, and each still answers
    // for itself — a session revoked twice concurrently changes (and is logged) once, a subject's instant only
    // moves forward, every token is logged, and the log stays gap-free.
    for n in 0..20 {
        a.create_family(conformance::family(&format!("s{n}"), "u", 1_000)).await.unwrap();
    }
    // Each session goes to both nodes, in opposite orders (batches lock rows in one global order, so two nodes'
    // overlapping batches wait for each other rather than deadlock).
    let mut revocations = Vec::new();
    for n in 0..20 {
        revocations.push((0, Revocation::Session { sid: format!("s{n}") }));
        revocations.push((1, Revocation::Session { sid: format!("s{}", 19 - n) }));
    }
    for n in 0..100 {
        revocations.push((n % 2, Revocation::Token { jti: format!("j{n}"), expires_at: 9_000_000 }));
    }
    for i in 1..=30 {
        revocations.push((i % 2, Revocation::Subject { sub: "batched".into(), not_before: 5_000 + i * 10 }));
    }
    let before = a.revocations_after(0, 0, 10_000).await.unwrap().len();
    let tasks: Vec<_> = revocations
        .into_iter()
        .map(|(node, revocation)| {
            let node = if node == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tokio::spawn(async move { node.revoke(revocation, Provenance::new("test", "batch"), 4_000).await.unwrap() })
        })
        .collect();
    let mut changed = 0;
    for task in tasks {
        changed += usize::from(task.await.unwrap());
    }
    let log = a.revocations_after(0, 0, 10_000).await.unwrap();
    let ids: Vec<i64> = log.iter().map(|entry| entry.id).collect();
    assert_eq!(ids, (1..=i64::try_from(log.len()).unwrap()).collect::<Vec<_>>(), "gap-free, in order");
    assert_eq!(log.len() - before, changed, "exactly the revocations that changed something are logged");
    for n in 0..20 {
        let sid = format!("s{n}");
        let logged = log.iter().filter(|e| e.revocation == Revocation::Session { sid: sid.clone() }).count();
        assert_eq!(logged, 1, "session {sid} revoked twice at once is logged once");
        assert!(b.family(&sid).await.unwrap().unwrap().revoked_at.is_some());
    }
    assert_eq!(log.iter().filter(|e| matches!(e.revocation, Revocation::Token { .. })).count(), 100);
    assert_eq!(b.subject("batched").await.unwrap().not_before, Some(5_300), "the latest instant wins");
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Err(err) = PostgresStore::connect(&format!("postgres://tessera@127.0.0.1:{port}/x"), 1).await else {
        panic!("connected to nothing")
    };
    assert!(err.to_string().contains("storage backend failed"), "{err}");
    let Err(err) = PostgresStore::connect("not a url", 1).await else { panic!("parsed garbage") };
    assert!(err.to_string().contains("PostgreSQL URL"), "{err}");
}
