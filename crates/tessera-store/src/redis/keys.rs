//! Where everything lives in Redis: every key starts with `tessera:` and carries a hash tag, so that what one
//! atomic step touches sits in one slot (the table is in the [module documentation](super)).

use ::redis::Cmd;

/// A name inside a hash tag: `%`, `{` and `}` escaped, so the tag ends exactly after the name.
pub(super) fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('{', "%7B").replace('}', "%7D")
}

pub(super) fn user_key(name: &str) -> String {
    format!("tessera:{{user:{}}}", escape(name))
}

pub(super) fn client_key(id: &str) -> String {
    format!("tessera:{{client:{}}}", escape(id))
}

pub(super) fn document_key(name: &str) -> String {
    format!("tessera:{{document:{}}}", escape(name))
}

pub(super) fn assertion_key(client_id: &str, jti: &str) -> String {
    format!("tessera:{{client:{}}}:assertion:{jti}", escape(client_id))
}

pub(super) fn family_key(sid: &str) -> String {
    format!("tessera:{{sid:{}}}", escape(sid))
}

pub(super) fn subject_key(sub: &str) -> String {
    format!("tessera:{{sub:{}}}:state", escape(sub))
}

pub(super) fn set_members(key: &str) -> Cmd {
    ::redis::cmd("SMEMBERS").arg(key).clone()
}

pub(super) fn sessions_key(sub: &str) -> String {
    format!("tessera:{{sub:{}}}:sids", escape(sub))
}

/// The live-session index (which sessions have not expired and are not revoked, for the `tessera_sessions_active`
/// gauge) is spread over this many sorted sets, each under a hash tag of its own, so that no one cluster slot takes
/// every login.
pub(super) const LIVE_SESSION_SHARDS: u64 = 16;

/// Shard `shard` of the live-session index: member the session id, score when the session expires.
pub(super) fn live_sessions_shard(shard: u64) -> String {
    format!("tessera:{{tessera-live-{shard}}}:sessions")
}

/// FNV-1a: the same on every node and in every build (the standard library's hasher promises neither), for
/// spreading keys over shards and partitions.
fn stable_hash(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The shard holding session `sid`.
pub(super) fn live_sessions_key(sid: &str) -> String {
    live_sessions_shard(stable_hash(sid) % LIVE_SESSION_SHARDS)
}

/// The keys of one partition of the revocation log, all under one hash tag: partition 0 is the log as it was
/// before it had partitions (`{tessera-log}`, where the security events also live), partition N > 0 is
/// `{tessera-log-N-K}`, K chosen so that of P partitions, partition N sits in the N-th P-th of the cluster's
/// slots: a cluster's masters hold slots in ranges, so the partitions spread over them evenly (by the hash alone,
/// 16 partitions fell 11, 3 and 2 on three masters).
#[derive(Debug, Clone)]
pub(super) struct LogKeys {
    /// The last position handed out.
    pub(super) seq: String,
    /// The entries (sorted set: score = position, member = '<position> <entry JSON>').
    pub(super) entries: String,
    /// The time index (sorted set: score = the highest `at` up to that position, member = the zero-padded
    /// position).
    pub(super) by_time: String,
    /// The highest `at` so far.
    pub(super) highest_at: String,
    /// The highest position whose write the replicas acknowledged: readers never read past it (`commit.lua`).
    pub(super) committed: String,
    /// The `jti`s of revoked access tokens (a hash, `jti` → 1), written with their log entries.
    pub(super) revoked_tokens: String,
    /// The entries being moved to other partitions by a change of the partition count (see
    /// `RedisStore::repartition`).
    pub(super) moving: String,
}

/// Slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// The slot of a hash tag, as Redis Cluster computes it.
fn slot(tag: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes())) % SLOTS
}

/// The hash tag of partition `partition` of `partitions` (see [`LogKeys`]).
fn log_tag(partition: usize, partitions: usize) -> String {
    if partition == 0 {
        return "tessera-log".to_owned();
    }
    let range = SLOTS / partitions.max(1);
    // A range holds at least 16 slots (at most 1024 partitions): a tag lands in it within a few thousand tries.
    (0..)
        .map(|k| format!("tessera-log-{partition}-{k}"))
        .find(|tag| slot(tag) / range == partition)
        .unwrap_or_else(|| format!("tessera-log-{partition}"))
}

impl LogKeys {
    /// The keys of partition `partition` of a log of `partitions`.
    pub(super) fn of(partition: usize, partitions: usize) -> Self {
        let tag = log_tag(partition, partitions);
        let key = |name: &str| format!("tessera:{{{tag}}}:{name}");
        Self {
            seq: key("seq"),
            entries: key("entries"),
            by_time: key("by-time"),
            highest_at: key("highest-at"),
            committed: key("committed"),
            revoked_tokens: key("revoked-tokens"),
            moving: key("moving"),
        }
    }
}

/// The partition of a log of `partitions` that holds revocations of `target` (a `jti`, `sid`, `sub` or client
/// id): a token's entry is where [`Store::token_revoked`](crate::Store::token_revoked) looks for it.
pub(super) fn log_partition(target: &str, partitions: usize) -> usize {
    // Partitions are at most MAX_LOG_PARTITIONS: the remainder fits.
    usize::try_from(stable_hash(target) % partitions.max(1) as u64).unwrap_or(0)
}

pub(super) const USERS_KEY: &str = "tessera:{tessera-index}:users";
pub(super) const CLIENTS_KEY: &str = "tessera:{tessera-index}:clients";
/// The security events (a sorted set: score = id, member = '<id> <event JSON>').
pub(super) const EVENTS_KEY: &str = "tessera:{tessera-log}:security-events";
/// The last security-event id handed out.
pub(super) const EVENTS_SEQ_KEY: &str = "tessera:{tessera-log}:security-events-seq";
/// The security events as kept before they had ids (a list, newest first), moved to [`EVENTS_KEY`] on connect.
pub(super) const LEGACY_EVENTS_KEY: &str = "tessera:{tessera-log}:events";
/// How many partitions the revocation log has, when more than one (absent: one, the log as it was before it had
/// partitions).
pub(super) const LOG_PARTITIONS_KEY: &str = "tessera:{tessera-log}:partitions";
/// The number of partitions a change of the revocation log's partitions is moving its entries to, while it is.
pub(super) const LOG_REPARTITION_KEY: &str = "tessera:{tessera-log}:repartitioning";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // CLUSTER KEYSLOT values from Redis's documentation and a live cluster.
        assert_eq!(slot("foo"), 12_182);
        assert_eq!(slot("123456789"), 0x31c3);
    }

    #[test]
    fn partitions_spread_evenly_over_the_slots() {
        for partitions in [2, 3, 16, 64, 1024] {
            let range = SLOTS / partitions;
            for partition in 1..partitions {
                let tag = log_tag(partition, partitions);
                assert_eq!(slot(&tag) / range, partition, "{tag} of {partitions}");
            }
        }
        assert_eq!(LogKeys::of(0, 16).entries, "tessera:{tessera-log}:entries", "partition 0 is the log as it was");
    }
}
