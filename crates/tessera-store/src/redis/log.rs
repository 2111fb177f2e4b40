//! The revocation log in Redis: entries appended (with the security events) and then committed once the replicas
//! have them, growth published on [`LOG_CHANNEL`] and followed by one subscription per store, and revocations
//! written in batches — logged first, then applied (see the [module documentation](super)).

use ::redis::{RedisError, Value};
use futures_util::StreamExt as _;

use super::codec::{EventRecord, Fields, LogRecord};
use super::keys::{
    family_key, live_sessions_key, subject_key, EVENTS_KEY, EVENTS_SEQ_KEY, LOG_COMMITTED_KEY, LOG_HIGHEST_AT_KEY,
    LOG_KEY, LOG_SEQ_KEY, LOG_TIME_KEY, REVOKED_TOKENS_KEY,
};
use super::{RedisStore, CONNECTION_TIMEOUT, LOG_CHANNEL, LOG_PAGE, RESUBSCRIBE_DELAY};
use crate::batch::{PendingRevocation, REVOCATION_BATCH};
use crate::codec::{self, from_json, to_json};
use crate::model::{AutomaticRevocation, Millis, Provenance, Revocation, Session};
use crate::{RevocationEntry, StoreError};

/// Keeps one subscription to [`LOG_CHANNEL`], on the configured nodes in turn, and bumps `changes` on every
/// message and on every (re)subscription (messages may have been missed meanwhile).
pub(super) async fn subscribe(urls: Vec<String>, changes: tokio::sync::watch::Sender<u64>) {
    let bump = || changes.send_modify(|n| *n = n.wrapping_add(1));
    for url in urls.iter().cycle() {
        let subscribed = async {
            let client = ::redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(LOG_CHANNEL).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECTION_TIMEOUT, subscribed).await {
            Ok(Ok(pubsub)) => {
                bump();
                let mut messages = pubsub.into_on_message();
                while messages.next().await.is_some() {
                    bump();
                }
                tracing::warn!("Redis subscription to the revocation log lost; subscribing again");
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "subscribing to the Redis revocation log failed; retrying"),
            Err(_) => tracing::warn!("subscribing to the Redis revocation log timed out; retrying"),
        }
        bump();
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

impl RedisStore {
    /// Appends to the revocation log (and the security events), publishing the growth.
    pub(super) async fn append(
        &self,
        revocation: &Revocation,
        provenance: &Provenance,
        now: Millis,
        event: Option<&EventRecord>,
    ) -> Result<(), StoreError> {
        self.append_all(&[(revocation, provenance, now)], event).await
    }

    /// Appends entries to the revocation log in one step (and the security event, if any), publishing the growth.
    async fn append_all(
        &self,
        entries: &[(&Revocation, &Provenance, Millis)],
        event: Option<&EventRecord>,
    ) -> Result<(), StoreError> {
        let keys =
            [LOG_SEQ_KEY, LOG_KEY, LOG_TIME_KEY, LOG_HIGHEST_AT_KEY, EVENTS_KEY, REVOKED_TOKENS_KEY, EVENTS_SEQ_KEY]
                .map(str::to_owned);
        let mut args = vec![event.map(to_json).transpose()?.unwrap_or_default()];
        for (revocation, provenance, at) in entries {
            let (kind, value, instant) = revocation.to_columns();
            let record = LogRecord {
                at: *at,
                kind: kind.to_owned(),
                value: value.to_owned(),
                instant,
                actor: provenance.actor.clone(),
                reason: provenance.reason.clone(),
            };
            args.push(at.to_string());
            args.push(to_json(&record)?);
            args.push(match revocation {
                Revocation::Token { jti, .. } | Revocation::TokenById { jti, .. } => jti.clone(),
                _ => String::new(),
            });
        }
        // Two steps, each acknowledged by the replicas: the entries, then the committed position that lets readers
        // see them. A failover can lose entries that were appended but not yet acknowledged, and the next append
        // then reuses their positions; readers never saw them, so they skip nothing.
        let position: i64 = self.script(&self.scripts.append, &keys, &args).await?;
        let commit = [position.to_string(), LOG_CHANNEL.to_owned()];
        self.script::<i64>(&self.scripts.commit, &[LOG_COMMITTED_KEY.to_owned()], &commit).await.map(drop)
    }

    /// The subject's "not before" instant.
    pub(super) async fn not_before(&self, sub: &str) -> Result<Option<Millis>, StoreError> {
        let value: Option<String> = self.read(::redis::cmd("HGET").arg(subject_key(sub)).arg("not_before")).await?;
        value
            .map(|text| text.parse().map_err(|_| StoreError::corrupt("not_before", format!("not a number: {text:?}"))))
            .transpose()
    }

    /// Marks a family revoked (sticky): whether it changed, and the family after (`None` when unknown).
    pub(super) async fn mark_revoked(
        &self,
        sid: &str,
        now: Millis,
        reason: &str,
    ) -> Result<(bool, Option<Session>), StoreError> {
        let (changed, family): (i64, Value) =
            self.script(&self.scripts.revoke_family, &[family_key(sid)], &[now.to_string(), reason.to_owned()]).await?;
        let family = Fields::from_value(family)?.as_ref().map(codec::session_from).transpose()?;
        if changed == 1 {
            // No longer live. The revocation stands whatever happens here: a failure only leaves the session
            // counted by the gauge until it expires.
            let unlisted = ::redis::cmd("ZREM").arg(live_sessions_key(sid)).arg(sid).clone();
            if let Err(err) = self.unwaited(&unlisted).await {
                tracing::warn!(error = %err, "a revoked session stays in the live-session count until it expires");
            }
        }
        Ok((changed == 1, family))
    }

    /// Waits for the turn to write queued revocations and writes them until `answer` has come: `None` when it was
    /// dropped unanswered (the turn that took it was cancelled).
    pub(super) async fn take_turns(
        &self,
        mut answer: tokio::sync::oneshot::Receiver<Result<bool, StoreError>>,
    ) -> Result<Option<Result<bool, StoreError>>, StoreError> {
        let _turn = self.revocation_turn.lock().await;
        loop {
            match answer.try_recv() {
                Ok(answered) => return Ok(Some(answered)),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Ok(None),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<PendingRevocation> = {
                let mut queue = self.revocations.lock().map_err(|_| StoreError::Unavailable)?;
                let take = queue.len().min(REVOCATION_BATCH);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                // Taken by a turn that is still writing it (answers arrive before a turn ends, so this turn
                // only comes after that one was cancelled): wait for the answer or its loss.
                return Ok(answer.await.ok());
            }
            self.revoke_batch(batch).await;
        }
    }

    /// Whether a revocation would change anything: a live session, an instant that moves forward, or a token or
    /// client entry (always added).
    async fn would_change(&self, revocation: &Revocation) -> Result<bool, StoreError> {
        Ok(match revocation {
            Revocation::Session { sid } => {
                let state: (Option<String>, Option<String>) =
                    self.read(::redis::cmd("HMGET").arg(family_key(sid)).arg("sid").arg("revoked_at")).await?;
                matches!(state, (Some(_), None))
            }
            // Instants only move forward: an older instant arriving late never un-revokes anything.
            Revocation::Subject { sub, not_before } => {
                self.not_before(sub).await?.is_none_or(|current| current < *not_before)
            }
            Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => true,
        })
    }

    /// Applies a logged revocation to the state it changes; whether it changed it.
    async fn apply(&self, revocation: &Revocation, provenance: &Provenance, now: Millis) -> Result<bool, StoreError> {
        match revocation {
            Revocation::Session { sid } => Ok(self.mark_revoked(sid, now, &provenance.reason).await?.0),
            Revocation::Subject { sub, not_before } => {
                let moved: i64 =
                    self.script(&self.scripts.not_before, &[subject_key(sub)], &[not_before.to_string()]).await?;
                Ok(moved == 1)
            }
            Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => Ok(true),
        }
    }

    /// [`Store::revoke`](crate::Store::revoke) for a batch: log first (every revocation that would change something, in one append),
    /// then apply (see the module documentation); each caller gets its own answer.
    async fn revoke_batch(&self, batch: Vec<PendingRevocation>) {
        let wanted = futures_util::future::join_all(batch.iter().map(|p| self.would_change(&p.revocation))).await;
        let mut logged = Vec::new();
        for (pending, wanted) in batch.into_iter().zip(wanted) {
            match wanted {
                Ok(true) => logged.push(pending),
                Ok(false) => drop(pending.reply.send(Ok(false))),
                Err(err) => drop(pending.reply.send(Err(err))),
            }
        }
        if logged.is_empty() {
            return;
        }
        let entries: Vec<_> = logged.iter().map(|p| (&p.revocation, &p.provenance, p.now)).collect();
        if let Err(err) = self.append_all(&entries, None).await {
            // Nothing acknowledged: every caller in the batch gets the error and may retry.
            let err = std::sync::Arc::new(err);
            for pending in logged {
                let _ = pending.reply.send(Err(StoreError::Backend(Box::new(std::sync::Arc::clone(&err)))));
            }
            return;
        }
        let applied =
            futures_util::future::join_all(logged.iter().map(|p| self.apply(&p.revocation, &p.provenance, p.now)))
                .await;
        for (pending, applied) in logged.into_iter().zip(applied) {
            let _ = pending.reply.send(applied);
        }
    }

    /// Logs a client change at `now`, ending its tokens issued up to `not_before` — after the change is applied.
    pub(super) async fn client_changed(
        &self,
        client_id: &str,
        now: Millis,
        not_before: Millis,
        reason: AutomaticRevocation,
    ) -> Result<(), StoreError> {
        let revocation = Revocation::Client { client_id: client_id.to_owned(), not_before };
        self.append(&revocation, &Provenance::automatic(reason), now, None).await
    }

    /// [`Store::revocations_after`](crate::Store::revocations_after): committed entries only, found from the
    /// time index, read a page at a time.
    pub(super) async fn read_log(
        &self,
        after_id: i64,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Only what the replicas acknowledged (see `commit.lua`).
        let committed: Option<i64> = self.read(::redis::cmd("GET").arg(LOG_COMMITTED_KEY)).await?;
        let Some(committed) = committed.filter(|&committed| committed > after_id) else {
            return Ok(Vec::new());
        };
        // The first position whose running highest `at` reaches `since` bounds every match from below.
        let first: Vec<String> = self
            .read(::redis::cmd("ZRANGEBYSCORE").arg(LOG_TIME_KEY).arg(since).arg("+inf").arg("LIMIT").arg(0).arg(1))
            .await?;
        let Some(first) = first.first() else {
            return Ok(Vec::new());
        };
        let first: i64 =
            first.parse().map_err(|_| StoreError::corrupt("revocation log time index", format!("{first:?}")))?;
        let mut cursor = after_id.max(first.saturating_sub(1));
        let page = limit.min(LOG_PAGE);
        let mut entries = Vec::new();
        loop {
            let members: Vec<String> = self
                .read(
                    ::redis::cmd("ZRANGEBYSCORE")
                        .arg(LOG_KEY)
                        .arg(format!("({cursor}"))
                        .arg(committed)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(page),
                )
                .await?;
            for member in &members {
                let (id, json) =
                    member.split_once(' ').ok_or_else(|| StoreError::corrupt("revocation log entry", "no position"))?;
                let id: i64 =
                    id.parse().map_err(|_| StoreError::corrupt("revocation log position", format!("{id:?}")))?;
                cursor = id;
                let record: LogRecord = from_json("revocation log entry", json)?;
                if record.at >= since {
                    entries.push(RevocationEntry {
                        id,
                        at: record.at,
                        revocation: codec::revocation_from(&record.kind, record.value, record.instant)?,
                        provenance: Provenance { actor: record.actor, reason: record.reason },
                    });
                    if entries.len() == limit {
                        return Ok(entries);
                    }
                }
            }
            if members.len() < page {
                return Ok(entries);
            }
        }
    }
}
