//! The PostgreSQL backend passes the conformance suite against a PostgreSQL server this test starts itself (its
//! own data directory, a free loopback port), and two stores on one database — two Tessera nodes — see each
//! other's changes and rotate a session exactly once between them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::sync::Arc;

use tessera_store::{conformance, PostgresStore, Store};
use tessera_test_support::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_conformance_suite_and_serves_two_nodes() {
    let pg = Postgres::start();
    let url = pg.database("conformance").await;
    let store = Arc::new(PostgresStore::connect(&url, 8).await.unwrap());
    conformance::run_all(Arc::clone(&store) as Arc<dyn Store>).await;
    conformance::expired_sessions_are_forgotten_on_request(&*store).await;

    // Two nodes on one database, started together: migrations run once, state is shared, rotation happens once.
    let url = pg.database("nodes").await;
    let (a, b) = tokio::join!(PostgresStore::connect(&url, 8), PostgresStore::connect(&url, 8));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    conformance::two_nodes_share_one_store(Arc::clone(&a), Arc::clone(&b)).await;

    conformance::many_revocations_at_once_on_two_nodes(a, b, true).await;
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
