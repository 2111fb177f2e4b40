//! The SQLite backend passes the conformance suite, survives a reopen, and commits concurrent changes durably.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::sync::Arc;

use tessera_store::{conformance, NewSession, RefreshOutcome, RefreshRules, SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("tessera.db")).unwrap();
    let store = Arc::new(store);
    conformance::run_all(Arc::clone(&store) as Arc<dyn Store>).await;
    conformance::expired_sessions_are_forgotten_on_request(&*store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_rotations_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    let rules = RefreshRules { grace_ms: 0, idle_timeout_ms: i64::MAX / 2 };
    {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        for i in 0..200 {
            store
                .create_session(NewSession {
                    expires_at: i64::MAX / 2,
                    ..conformance::new_session(&format!("s{i}"), "u", 1)
                })
                .await
                .unwrap();
        }
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.refresh(&format!("s{i}"), 0, 2, rules).await.unwrap() })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await.unwrap(), RefreshOutcome::Rotated(_)));
        }
    }
    let reopened = SqliteStore::open(&path).unwrap();
    for i in 0..200 {
        assert_eq!(reopened.session(&format!("s{i}")).await.unwrap().unwrap().generation, 1);
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("newer than this Tessera"), "{err}");
}
