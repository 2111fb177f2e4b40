//! How many partitions the revocation log has: recorded in the store, checked on connect, and changed by moving
//! every entry (see the [module documentation](super)).

use super::keys::{LogKeys, LOG_PARTITIONS_KEY, LOG_REPARTITION_KEY};
use super::log::log_member;
use super::{RedisSettings, RedisStore};
use crate::StoreError;

/// Entries moved per round trip when the partition count changes.
const MOVED_PER_PAGE: isize = 500;

impl RedisStore {
    /// The number of partitions the store records (`None`: never recorded, the log is one partition).
    async fn recorded_partitions(&self) -> Result<Option<usize>, StoreError> {
        let recorded: Option<String> = self.read(::redis::cmd("GET").arg(LOG_PARTITIONS_KEY)).await?;
        recorded
            .map(|text| text.parse().map_err(|_| StoreError::corrupt("revocation log partitions", format!("{text:?}"))))
            .transpose()
    }

    /// Refuses a configured number of partitions other than the store's. A store whose log was never written takes
    /// the configured number; one written before partitions existed has one.
    pub(super) async fn check_partitions(&self) -> Result<(), StoreError> {
        if self.read::<bool>(::redis::cmd("EXISTS").arg(LOG_REPARTITION_KEY)).await? {
            return Err(StoreError::backend(
                "a change of the revocation log's partitions was interrupted: run `tessera store repartition` again",
            ));
        }
        let recorded = match self.recorded_partitions().await? {
            Some(recorded) => recorded,
            None if self.log_partitions == 1 => return Ok(()),
            None if self.read::<bool>(::redis::cmd("EXISTS").arg(&self.partition(0)?.keys.seq)).await? => 1,
            None => {
                // A fresh log: the first node records its number; one racing it with another number loses.
                let set = ::redis::cmd("SET").arg(LOG_PARTITIONS_KEY).arg(self.log_partitions).arg("NX").clone();
                self.command::<Option<String>>(set).await?;
                self.recorded_partitions().await?.unwrap_or(1)
            }
        };
        if recorded == self.log_partitions {
            return Ok(());
        }
        Err(StoreError::backend(format!(
            "the revocation log in Redis has {recorded} partition(s), but {configured} are configured \
             (store.redis_log_partitions): configure {recorded}, or stop every node and run \
             `tessera store repartition` to change it to {configured}",
            configured = self.log_partitions,
        )))
    }

    /// Changes the number of partitions of the revocation log to `settings.log_partitions`, moving every entry to
    /// the partition its target belongs to in the new number; how many entries moved. Every node must be stopped
    /// meanwhile: one still writing with the old number would log where readers no longer look.
    ///
    /// Moved entries get new positions in their new partition: partition 0 keeps counting up, the others are new
    /// slots (their hash tags depend on the number of partitions) whose positions start again, which readers take
    /// for a partition gone back and read from the start. Either way a verifier that follows the log over the
    /// change reads the moved entries again rather than missing any. The security events stay where they are. Interrupted, it refuses every node's
    /// connection until run again, and then carries on where it stopped.
    ///
    /// # Errors
    /// As [`connect_with`](Self::connect_with); a change to another number that was interrupted; backend failures
    /// (what moved stays moved).
    pub async fn repartition(urls: &[String], settings: RedisSettings) -> Result<usize, StoreError> {
        let store = Self::open(urls, settings).await?;
        let to = store.log_partitions;
        let interrupted: Option<usize> = store.read(::redis::cmd("GET").arg(LOG_REPARTITION_KEY)).await?;
        let from = store.recorded_partitions().await?.unwrap_or(1);
        match interrupted {
            Some(earlier) if earlier != to => {
                return Err(StoreError::backend(format!(
                    "a change of the revocation log to {earlier} partitions was interrupted: finish it first"
                )))
            }
            Some(_) => {}
            None if from == to => return Ok(0),
            None => store.set_aside(from, to).await?,
        }
        let mut moved = 0;
        for partition in 0..from {
            moved += store.move_set_aside(partition, from).await?;
        }
        let record = if to == 1 {
            ::redis::cmd("DEL").arg(LOG_PARTITIONS_KEY).clone()
        } else {
            ::redis::cmd("SET").arg(LOG_PARTITIONS_KEY).arg(to).clone()
        };
        store.command::<::redis::Value>(record).await?;
        store.command::<i64>(::redis::cmd("DEL").arg(LOG_REPARTITION_KEY).clone()).await?;
        tracing::info!(from, to, moved, "revocation log repartitioned");
        Ok(moved)
    }

    /// Sets the entries of each of the `from` partitions aside (a rename within its slot) and drops the indexes
    /// built from them, which the moved entries rebuild; then records that a change to `to` is under way.
    async fn set_aside(&self, from: usize, to: usize) -> Result<(), StoreError> {
        for partition in 0..from {
            let log = LogKeys::of(partition, from);
            if self.read::<bool>(::redis::cmd("EXISTS").arg(&log.moving)).await? {
                return Err(StoreError::corrupt(
                    "revocation log",
                    format!("partition {partition} has entries set aside with no change under way"),
                ));
            }
            if self.read::<bool>(::redis::cmd("EXISTS").arg(&log.entries)).await? {
                self.command::<String>(::redis::cmd("RENAME").arg(&log.entries).arg(&log.moving).clone()).await?;
            }
            self.command::<i64>(::redis::cmd("DEL").arg(&log.by_time).arg(&log.revoked_tokens).clone()).await?;
        }
        self.command::<String>(::redis::cmd("SET").arg(LOG_REPARTITION_KEY).arg(to).clone()).await.map(drop)
    }

    /// Appends the entries set aside from `partition` of `from` to their partitions, oldest first, a page at a time, each
    /// page forgotten from the set-aside ones once appended; how many.
    async fn move_set_aside(&self, partition: usize, from: usize) -> Result<usize, StoreError> {
        let moving = LogKeys::of(partition, from).moving;
        let mut moved = 0;
        loop {
            let members: Vec<String> =
                self.read(::redis::cmd("ZRANGE").arg(&moving).arg(0).arg(MOVED_PER_PAGE - 1)).await?;
            if members.is_empty() {
                return Ok(moved);
            }
            let mut entries = Vec::with_capacity(members.len());
            for member in &members {
                let (id, record) = log_member(member)?;
                entries.push(record.into_entry(partition, id)?);
            }
            let mut by_partition = std::collections::BTreeMap::<usize, Vec<_>>::new();
            for entry in &entries {
                let to = by_partition.entry(self.partition_of(&entry.revocation)).or_default();
                to.push((&entry.revocation, &entry.provenance, entry.at));
            }
            for (to, entries) in &by_partition {
                self.append_to(*to, entries, None).await?;
            }
            self.command::<i64>(::redis::cmd("ZREM").arg(&moving).arg(&members).clone()).await?;
            moved += members.len();
        }
    }
}
