//! The revocation log in Redis: entries appended (with the security events) and then committed once the replicas
//! have them, growth published on [`LOG_CHANNEL`] and followed by one subscription per store, and revocations
//! written in batches — logged first, then applied (see the [module documentation](super)).

use ::redis::{RedisError, Value};
use futures_util::StreamExt as _;

use super::codec::{EventRecord, Fields, LogRecord};
use super::keys::{family_key, live_sessions_key, log_partition, subject_key, LogKeys, EVENTS_KEY, EVENTS_SEQ_KEY};
use super::{RedisStore, CONNECTION_TIMEOUT, LOG_CHANNEL, LOG_PAGE, RESUBSCRIBE_DELAY};
use crate::batch::{PendingRevocation, REVOCATION_BATCH};
use crate::codec::{self, from_json, to_json};
use crate::model::{AutomaticRevocation, LogCursor, Millis, Provenance, Revocation, Session};
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

/// One partition of the revocation log: its keys, and the revocations queued for it with the turn to write them —
/// one queue and turn per partition, so each partition's writes go on whatever another partition's master is
/// doing (slow, failing over).
pub(super) struct Partition {
    pub(super) keys: LogKeys,
    pub(super) queue: std::sync::Mutex<Vec<PendingRevocation>>,
    turn: tokio::sync::Mutex<()>,
}

impl Partition {
    pub(super) fn new(keys: LogKeys) -> Self {
        Self { keys, queue: std::sync::Mutex::default(), turn: tokio::sync::Mutex::default() }
    }
}

impl RedisStore {
    /// Partition `partition` of the revocation log (every partition a caller names comes from
    /// [`log_partition`], below the count).
    pub(super) fn partition(&self, partition: usize) -> Result<&Partition, StoreError> {
        self.log.get(partition).ok_or_else(|| StoreError::corrupt("revocation log partition", partition.to_string()))
    }

    /// The partition of the revocation log that holds `revocation`.
    pub(super) fn partition_of(&self, revocation: &Revocation) -> usize {
        log_partition(revocation.to_columns().1, self.log_partitions)
    }

    /// Appends to the revocation log (and the security events), publishing the growth. A revocation logged with a
    /// security event goes to partition 0, where the events live, so that both are written in one step.
    pub(super) async fn append(
        &self,
        revocation: &Revocation,
        provenance: &Provenance,
        now: Millis,
        event: Option<&EventRecord>,
    ) -> Result<(), StoreError> {
        let partition = if event.is_some() { 0 } else { self.partition_of(revocation) };
        self.append_to(partition, &[(revocation, provenance, now)], event).await
    }

    /// Appends entries to one partition of the revocation log in one step (and the security event, if any: only
    /// to partition 0), publishing the growth.
    pub(super) async fn append_to(
        &self,
        partition: usize,
        entries: &[(&Revocation, &Provenance, Millis)],
        event: Option<&EventRecord>,
    ) -> Result<(), StoreError> {
        let log = self.partition(partition)?.keys.clone();
        let mut keys = vec![log.seq, log.entries, log.by_time, log.highest_at, log.revoked_tokens];
        if event.is_some() {
            debug_assert_eq!(partition, 0, "the security events live with partition 0");
            keys.extend([EVENTS_SEQ_KEY, EVENTS_KEY].map(str::to_owned));
        }
        let mut args = vec![event.map(to_json).transpose()?.unwrap_or_default()];
        for (revocation, provenance, at) in entries {
            args.push(at.to_string());
            args.push(to_json(&LogRecord::of(revocation, provenance, *at))?);
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
        self.script::<i64>(&self.scripts.commit, &[log.committed], &commit).await.map(drop)
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

    /// Waits for the turn to write revocations queued for `partition` and writes them until `answer` has come:
    /// `None` when it was dropped unanswered (the turn that took it was cancelled).
    pub(super) async fn take_turns(
        &self,
        partition: usize,
        mut answer: tokio::sync::oneshot::Receiver<Result<bool, StoreError>>,
    ) -> Result<Option<Result<bool, StoreError>>, StoreError> {
        let partition_log = self.partition(partition)?;
        let _turn = partition_log.turn.lock().await;
        loop {
            match answer.try_recv() {
                Ok(answered) => return Ok(Some(answered)),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Ok(None),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<PendingRevocation> = {
                let mut queue = partition_log.queue.lock().map_err(|_| StoreError::Unavailable)?;
                let take = queue.len().min(REVOCATION_BATCH);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                // Taken by a turn that is still writing it (answers arrive before a turn ends, so this turn
                // only comes after that one was cancelled): wait for the answer or its loss.
                return Ok(answer.await.ok());
            }
            self.revoke_batch(partition, batch).await;
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

    /// [`Store::revoke`](crate::Store::revoke) for a batch of one partition: log first (every revocation that
    /// would change something, in one append), then apply (see the module documentation); each caller gets its
    /// own answer.
    async fn revoke_batch(&self, partition: usize, batch: Vec<PendingRevocation>) {
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
        if let Err(err) = self.append_to(partition, &entries, None).await {
            // Nothing acknowledged in this partition: each of its callers gets the error and may retry.
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

    /// [`Store::revocations_after`](crate::Store::revocations_after): each partition read at once, up to its
    /// committed position (`committed`'s, when the caller has just read them), then merged by record time, each
    /// partition's entries staying in their order.
    pub(super) async fn read_log(
        &self,
        after: &LogCursor,
        committed: Option<&LogCursor>,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        let read_one = |partition| {
            let committed = committed.map(|committed| committed.position(partition));
            self.read_partition(partition, after.position(partition), committed, since, limit)
        };
        if self.log_partitions == 1 {
            return read_one(0).await;
        }
        let read = (0..self.log_partitions).map(read_one);
        let partitions = futures_util::future::try_join_all(read).await?;
        Ok(merge_by_time(partitions, limit))
    }

    /// The positions each partition's readers may read up to.
    pub(super) async fn committed_positions(&self) -> Result<LogCursor, StoreError> {
        let read = self.log.iter().map(|partition| async move {
            let committed: Option<i64> = self.read(::redis::cmd("GET").arg(&partition.keys.committed)).await?;
            Ok::<_, StoreError>(committed.unwrap_or(0))
        });
        Ok(LogCursor::at(futures_util::future::try_join_all(read).await?))
    }

    /// One partition's committed entries after `after_id` and recorded at or after `since`, found from the time
    /// index, read a page at a time; up to `committed` when the caller read it, else to the committed position
    /// read here.
    async fn read_partition(
        &self,
        partition: usize,
        after_id: i64,
        committed: Option<i64>,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let log = &self.partition(partition)?.keys;
        // Only what the replicas acknowledged (see `commit.lua`).
        let committed: Option<i64> = match committed {
            Some(committed) => Some(committed),
            None => self.read(::redis::cmd("GET").arg(&log.committed)).await?,
        };
        let Some(committed) = committed.filter(|&committed| committed > after_id) else {
            return Ok(Vec::new());
        };
        // The first position whose running highest `at` reaches `since` bounds every match from below.
        let first: Vec<String> = self
            .read(::redis::cmd("ZRANGEBYSCORE").arg(&log.by_time).arg(since).arg("+inf").arg("LIMIT").arg(0).arg(1))
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
                        .arg(&log.entries)
                        .arg(format!("({cursor}"))
                        .arg(committed)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(page),
                )
                .await?;
            for member in &members {
                let (id, record) = log_member(member)?;
                cursor = id;
                if record.at >= since {
                    entries.push(record.into_entry(partition, id)?);
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

/// A log entry as stored: `<position> <entry JSON>`.
pub(super) fn log_member(member: &str) -> Result<(i64, LogRecord), StoreError> {
    let (id, json) =
        member.split_once(' ').ok_or_else(|| StoreError::corrupt("revocation log entry", "no position"))?;
    let id: i64 = id.parse().map_err(|_| StoreError::corrupt("revocation log position", format!("{id:?}")))?;
    Ok((id, from_json("revocation log entry", json)?))
}

/// The first `limit` entries of several partitions' pages, by record time: always the earliest of the partitions'
/// next entries, so each partition contributes a prefix of its page in its own order (a reader advancing past
/// each entry skips none), whatever the nodes' clocks did.
fn merge_by_time(partitions: Vec<Vec<RevocationEntry>>, limit: usize) -> Vec<RevocationEntry> {
    let mut heads: Vec<_> = partitions.into_iter().map(|page| page.into_iter().peekable()).collect();
    let mut merged = Vec::new();
    while merged.len() < limit {
        let earliest = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(partition, page)| page.peek().map(|entry| (entry.at, partition)))
            .min();
        let Some(next) = earliest.and_then(|(_, partition)| heads.get_mut(partition)?.next()) else { break };
        merged.push(next);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(partition: usize, id: i64, at: Millis) -> RevocationEntry {
        RevocationEntry {
            partition,
            id,
            at,
            revocation: Revocation::Session { sid: format!("{partition}-{id}") },
            provenance: Provenance { actor: "test".into(), reason: String::new() },
        }
    }

    #[test]
    fn merging_keeps_each_partitions_order_and_takes_a_prefix_of_each() {
        // Partition 1's clock ran behind: its second entry is older than its first.
        let pages = vec![
            vec![entry(0, 1, 10), entry(0, 2, 30), entry(0, 3, 50)],
            vec![entry(1, 1, 20), entry(1, 2, 5), entry(1, 3, 40)],
        ];
        let merged = merge_by_time(pages.clone(), 4);
        let order: Vec<_> = merged.iter().map(|e| (e.partition, e.id)).collect();
        assert_eq!(order, [(0, 1), (1, 1), (1, 2), (0, 2)]);
        let mut cursor = LogCursor::default();
        merged.iter().for_each(|entry| cursor.advance(entry));
        assert_eq!(cursor, LogCursor::at(vec![2, 2]), "what a reader passed is exactly what it was given");
        assert_eq!(merge_by_time(pages, 100).len(), 6);
    }
}
