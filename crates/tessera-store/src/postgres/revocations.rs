//! Revocations in PostgreSQL: applying one and logging it inside a transaction, in log order (under
//! [`LOG_LOCK`]), with a NOTIFY on commit; the batch writer that commits whatever queued together; and reuse
//! detection's revocation with its security event.

use deadpool_postgres::{GenericClient, Pool};

use super::listen::LOG_CHANNEL;
use super::prepared;
use crate::batch::{PendingRevocation, REVOCATION_BATCH};
use crate::model::{AutomaticRevocation, Millis, Provenance, Revocation, SecurityEventKind, Session, SessionState};
use crate::StoreError;

/// Advisory lock key (an arbitrary constant, namespaced by its value) taken by every log writer: ids are assigned
/// and committed in order (see the module documentation of `postgres`).
pub(super) const LOG_LOCK: i64 = 0x7465_7373_0002;

/// Applies a revocation and logs it, in the caller's transaction (see [`Store::revoke`](crate::Store::revoke)).
pub(super) async fn revoke_in(
    db: &impl GenericClient,
    revocation: &Revocation,
    provenance: &Provenance,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = apply_revocation(db, revocation, provenance, now).await?;
    if changed {
        db.execute(&prepared(db, "SELECT pg_advisory_xact_lock($1)").await?, &[&LOG_LOCK]).await?;
        log_revocation(db, revocation, provenance, now).await?;
        // Delivered to every listening node when (and only if) the transaction commits.
        db.execute(&prepared(db, "SELECT pg_notify($1, '')").await?, &[&LOG_CHANNEL]).await?;
    }
    Ok(changed)
}

/// Revokes `family`, whose rotated generation `presented` came back, with its log entry and security event, in the
/// caller's transaction; `family` then says so.
pub(super) async fn theft_in(
    db: &impl GenericClient,
    family: &mut Session,
    presented: u64,
    now: Millis,
) -> Result<(), StoreError> {
    let sid = family.sid.clone();
    let provenance = Provenance::automatic(AutomaticRevocation::ReuseDetected);
    revoke_in(db, &Revocation::Session { sid: sid.clone() }, &provenance, now).await?;
    let detail = format!("generation {presented} presented while generation {} is live", family.generation);
    db.execute(
        &prepared(db, "INSERT INTO security_events (at, kind, sub, sid, detail) VALUES ($1, $2, $3, $4, $5)").await?,
        &[&now, &SecurityEventKind::RefreshTokenReuse.as_str(), &family.sub, &sid, &detail],
    )
    .await?;
    family.state = SessionState::Revoked { at: now, reason: provenance.reason };
    Ok(())
}

const REVOKE_SESSION: &str =
    "UPDATE families SET revoked_at = $2, revoked_reason = $3 WHERE sid = $1 AND revoked_at IS NULL";
const RAISE_SUBJECT_INSTANT: &str = "INSERT INTO subjects (sub, not_before) VALUES ($1, $2)
     ON CONFLICT (sub) DO UPDATE SET not_before = excluded.not_before
     WHERE excluded.not_before > subjects.not_before";
const LOG_REVOCATION: &str =
    "INSERT INTO revocation_log (at, kind, value, instant, actor, reason) VALUES ($1, $2, $3, $4, $5, $6)";

/// Applies a revocation to the state it changes; whether it changed anything (and so must be logged).
async fn apply_revocation(
    db: &impl GenericClient,
    revocation: &Revocation,
    provenance: &Provenance,
    now: Millis,
) -> Result<bool, StoreError> {
    Ok(match revocation {
        Revocation::Session { sid } => {
            db.execute(&prepared(db, REVOKE_SESSION).await?, &[sid, &now, &provenance.reason]).await? > 0
        }
        // Instants only move forward: an older instant arriving late never un-revokes anything.
        Revocation::Subject { sub, not_before } => {
            db.execute(&prepared(db, RAISE_SUBJECT_INSTANT).await?, &[sub, not_before]).await? > 0
        }
        Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => true,
    })
}

/// Appends to the log; the caller holds [`LOG_LOCK`] for the rest of its transaction.
async fn log_revocation(
    db: &impl GenericClient,
    revocation: &Revocation,
    provenance: &Provenance,
    now: Millis,
) -> Result<(), StoreError> {
    let (kind, value, instant) = revocation.to_columns();
    db.execute(
        &prepared(db, LOG_REVOCATION).await?,
        &[&now, &kind, &value, &instant, &provenance.actor, &provenance.reason],
    )
    .await?;
    Ok(())
}

/// Writes revocations in batches: whatever has queued while the previous batch committed (up to
/// [`REVOCATION_BATCH`]) goes into one transaction, its statements pipelined, with one commit and one take of the
/// log lock. One transaction per revocation serialised every revocation on the log lock and a WAL flush; nothing
/// waits for a batch to fill, so a lone revocation costs no more than before.
pub(super) async fn write_revocations(pool: Pool, mut queue: tokio::sync::mpsc::Receiver<PendingRevocation>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < REVOCATION_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match revoke_batch(&pool, &batch).await {
            Ok(changed) => {
                for (pending, changed) in batch.into_iter().zip(changed) {
                    let _ = pending.reply.send(Ok(changed));
                }
            }
            Err(err) => {
                // Nothing in the batch committed: every caller gets the error, none is acknowledged.
                let err = std::sync::Arc::new(err);
                tracing::warn!(error = %err, size = batch.len(), "revocation batch failed; none acknowledged");
                for pending in batch {
                    let _ = pending.reply.send(Err(StoreError::Backend(Box::new(std::sync::Arc::clone(&err)))));
                }
            }
        }
    }
}

/// One transaction for a batch of revocations: every change, then the log entries of those that changed
/// something, in batch order, under the log lock; whether each changed anything.
async fn revoke_batch(pool: &Pool, batch: &[PendingRevocation]) -> Result<Vec<bool>, StoreError> {
    // Rows are locked in one global order (kind, then identifier), so two nodes' batches touching the same
    // sessions or subjects wait for each other instead of deadlocking.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch.get(i).map(|pending| pending.revocation.to_columns()));
    let ordered: Vec<&PendingRevocation> = order.iter().filter_map(|&i| batch.get(i)).collect();
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    // Prepared first, one after the other: a statement still to be prepared would wait a round trip while cached
    // ones went ahead, and the rows would no longer be locked in the order above.
    for sql in [REVOKE_SESSION, RAISE_SUBJECT_INSTANT, LOG_REVOCATION] {
        prepared(&tx, sql).await?;
    }
    // Issued together, the statements are pipelined on the connection and run in this order on the server: a
    // second revocation of the same session in the batch finds it revoked and logs nothing.
    let changed = futures_util::future::try_join_all(
        ordered.iter().map(|pending| apply_revocation(&tx, &pending.revocation, &pending.provenance, pending.now)),
    )
    .await?;
    if changed.contains(&true) {
        tx.execute(&prepared(&tx, "SELECT pg_advisory_xact_lock($1)").await?, &[&LOG_LOCK]).await?;
        let logged = ordered.iter().zip(&changed).filter(|(_, &changed)| changed);
        futures_util::future::try_join_all(
            logged.map(|(pending, _)| log_revocation(&tx, &pending.revocation, &pending.provenance, pending.now)),
        )
        .await?;
        tx.execute(&prepared(&tx, "SELECT pg_notify($1, '')").await?, &[&LOG_CHANNEL]).await?;
    }
    tx.commit().await?;
    // Back in the callers' order.
    let mut answers = vec![false; batch.len()];
    for (&i, changed) in order.iter().zip(changed) {
        if let Some(answer) = answers.get_mut(i) {
            *answer = changed;
        }
    }
    Ok(answers)
}

/// Logs a client change at `now`, ending its tokens issued up to `not_before`.
pub(super) async fn client_changed(
    db: &impl GenericClient,
    client_id: &str,
    now: Millis,
    not_before: Millis,
    reason: AutomaticRevocation,
) -> Result<(), StoreError> {
    let revocation = Revocation::Client { client_id: client_id.to_owned(), not_before };
    revoke_in(db, &revocation, &Provenance::automatic(reason), now).await.map(drop)
}
