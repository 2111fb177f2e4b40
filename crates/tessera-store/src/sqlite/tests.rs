//! The SQLite backend's own properties, beside the conformance suite it passes (`tests/sqlite.rs`): the
//! writer's scheduling, migrations, file modes, and rows that cannot be read back.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a panic here is a failed test
use super::*;

/// The writer must not preempt request handlers (see `SqliteStore::open`): its thread is
/// `SCHED_BATCH` (policy 3, field 41 of `/proc/<tid>/stat`) while the opener's thread keeps the default (0).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_writer_thread_runs_under_sched_batch_and_leaves_other_threads_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("tessera.db")).unwrap();
    // The thread names itself and sets its policy once it runs: a committed change shows it has.
    let user = User {
        username: "u".into(),
        password_hash: "h".into(),
        roles: vec![],
        disabled: false,
        created_at: 0,
        profile: Default::default(),
    };
    store.create_user(user).await.unwrap();
    let policy_of = |task: &std::path::Path| {
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        let after_name = stat.rsplit_once(')').unwrap().1;
        // Fields after the name start at field 3.
        after_name.split_whitespace().nth(41 - 3).unwrap().parse::<u32>().unwrap()
    };
    let tasks: Vec<(String, u32)> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|task| {
            let task = task.unwrap().path();
            (std::fs::read_to_string(task.join("comm")).unwrap().trim().to_owned(), policy_of(&task))
        })
        .collect();
    let writer = tasks.iter().find(|(name, _)| name == "tessera-sqlite-").expect("no writer thread");
    assert_eq!(writer.1, 3, "writer thread policy (3 = SCHED_BATCH); threads: {tasks:?}");
    assert_eq!(policy_of(Path::new("/proc/thread-self")), 0, "the opening thread must keep SCHED_OTHER");
}

#[tokio::test]
async fn the_revocation_log_survives_the_migration_that_adds_token_and_client_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO revocation_log (at, kind, value, not_before) VALUES (10, 'session', 's1', NULL);
             INSERT INTO revocation_log (at, kind, value, not_before) VALUES (20, 'subject', 'u1', 20);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let log = store.revocations_after(&LogCursor::default(), 0, 10).await.unwrap();
    let kept: Vec<_> = log.iter().map(|e| (e.id, e.at, e.revocation.clone())).collect();
    assert_eq!(
        kept,
        [
            (1, 10, Revocation::Session { sid: "s1".into() }),
            (2, 20, Revocation::Subject { sub: "u1".into(), not_before: 20 })
        ]
    );
    let token = Revocation::Token { jti: "j".into(), expires_at: 99 };
    store.revoke(token.clone(), Provenance::new("cli", "test"), 30).await.unwrap();
    let next = store.revocations_after(&LogCursor::at(vec![2]), 0, 10).await.unwrap();
    assert_eq!((next[0].id, &next[0].revocation), (3, &token), "positions continue after the migrated ones");
}

#[tokio::test]
async fn security_events_recorded_before_they_had_an_actor_keep_their_ids_and_read_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..8] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        conn.execute_batch(
            "INSERT INTO security_events (at, kind, sub, sid, detail)
             VALUES (10, 'refresh_token_reuse', 'ann', 's1', 'generation 0 presented while generation 2 is live');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let event = NewSecurityEvent::new(SecurityEventKind::KeyRotated, 20, "now signing with k2").by("tessera");
    let recorded = store.record_security_event(event).await.unwrap();
    let events = store.security_events(&SecurityEventQuery::latest(10)).await.unwrap();
    let old = SecurityEvent {
        id: 1,
        at: 10,
        kind: "refresh_token_reuse".into(),
        sub: Some("ann".into()),
        sid: Some("s1".into()),
        actor: None,
        detail: "generation 0 presented while generation 2 is live".into(),
    };
    assert_eq!(recorded.id, 2, "ids continue after the migrated ones");
    assert_eq!(events, [recorded, old]);
}

/// The database, its write-ahead log and its shared-memory file are the owner's alone, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_and_shm_files_are_created_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    let store = SqliteStore::open(&path).unwrap();
    store.revoke(Revocation::Session { sid: "s".into() }, Provenance::new("cli", "test"), 1).await.unwrap();
    for file in ["tessera.db", "tessera.db-wal", "tessera.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
}

/// A stored row is read back as written or not at all: a kind this store never writes, or an instant missing
/// where the kind has one, is corrupt — not a client revocation, not instant 0.
#[tokio::test]
async fn a_logged_revocation_of_unknown_kind_or_without_its_instant_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    let store = SqliteStore::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    let log = "INSERT INTO revocation_log (at, kind, value, instant, actor, reason) VALUES (1, ?1, 'x', ?2, 'cli', '')";
    conn.execute(log, params!["subject", None::<i64>]).unwrap();
    let err = store.revocations_after(&LogCursor::default(), 0, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { what: "revocation instant", .. }), "{err}");
    // The schema refuses unknown kinds; a damaged file need not.
    conn.execute_batch("DELETE FROM revocation_log; PRAGMA ignore_check_constraints = ON").unwrap();
    conn.execute(log, params!["cleint", 5]).unwrap();
    let err = store.revocations_after(&LogCursor::default(), 0, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { what: "revocation kind", .. }), "{err}");
}
