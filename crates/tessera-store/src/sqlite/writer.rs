//! The SQLite group-commit writer: one thread owns the write connection and runs every change it is sent, each in
//! its own savepoint, inside one transaction per batch — whatever queued while the previous batch committed — so a
//! whole batch shares one commit and one fsync. A change is answered only once its batch's commit is known.

use std::sync::{mpsc, Arc};

use rusqlite::Connection;

use super::SqliteStore;
use crate::StoreError;

/// Changes committed together at most.
const MAX_BATCH: usize = 512;

/// A change run by the writer thread inside the batch transaction. It gets the connection (or why the batch could
/// not start) and returns what to do once the batch's commit is known.
pub(super) type Job = Box<dyn FnOnce(Result<&Connection, &BatchFailure>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), BatchFailure>) + Send>;
/// Why a batch failed, shared by every change in it.
type BatchFailure = Arc<rusqlite::Error>;

/// Starts the writer thread on `conn`; it runs until every sender of `jobs` is gone.
pub(super) fn spawn(conn: Connection, jobs: mpsc::Receiver<Job>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("tessera-sqlite-writer".into())
        .spawn(move || {
            // Woken by a change, the writer no longer preempts a request handler in the middle of its work (a
            // token signature) but runs when a core frees up: at once on an idle machine; under load, changes
            // queue meanwhile and more of them share one commit's fsync. Without it, it merely preempts more.
            if let Err(why) = crate::sched_batch_for_this_thread() {
                tracing::debug!(error = %why, "the SQLite writer keeps the default scheduling policy");
            }
            write_loop(&conn, &jobs);
        })
        .map(drop)
        .map_err(|err| StoreError::backend_because("cannot start the writer thread", err))
}

impl SqliteStore {
    /// Runs a change on the writer thread; returns once its batch is committed.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        change: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => in_savepoint(conn, change),
                Err(why) => Err(StoreError::Backend(Box::new(Arc::clone(why)))),
            };
            Box::new(move |commit| {
                let _ = reply.send(commit.map_err(|why| StoreError::Backend(Box::new(why))).and(result));
            })
        });
        self.writer.send(job).map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }
}

fn write_loop(conn: &Connection, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(Arc::new);
        let completions: Vec<Completion> = match &began {
            Ok(()) => batch.into_iter().map(|job| job(Ok(conn))).collect(),
            Err(why) => batch.into_iter().map(|job| job(Err(why))).collect(),
        };
        let outcome = began.and_then(|()| conn.execute_batch("COMMIT").map_err(Arc::new));
        if let Err(why) = &outcome {
            tracing::error!(error = %why, size = completions.len(), "commit failed; nothing in the batch was acknowledged");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for complete in completions {
            complete(outcome.clone());
        }
    }
}

/// Runs one change in a savepoint, so a failed change leaves nothing behind in the shared batch transaction.
fn in_savepoint<T>(
    conn: &Connection,
    change: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: every change runs these, and parsing them each time shows in the writer's profile.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut statement| statement.execute([]));
    run("SAVEPOINT change")?;
    match change(conn) {
        Ok(value) => {
            run("RELEASE change")?;
            Ok(value)
        }
        Err(err) => {
            run("ROLLBACK TO change")?;
            run("RELEASE change")?;
            Err(err)
        }
    }
}
