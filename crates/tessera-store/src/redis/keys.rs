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

/// The shard holding session `sid`: FNV-1a of the id, the same on every node and in every build (the standard
/// library's hasher promises neither).
pub(super) fn live_sessions_key(sid: &str) -> String {
    let hash = sid
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    live_sessions_shard(hash % LIVE_SESSION_SHARDS)
}

pub(super) const USERS_KEY: &str = "tessera:{tessera-index}:users";
pub(super) const CLIENTS_KEY: &str = "tessera:{tessera-index}:clients";
pub(super) const LOG_SEQ_KEY: &str = "tessera:{tessera-log}:seq";
pub(super) const LOG_KEY: &str = "tessera:{tessera-log}:entries";
pub(super) const LOG_TIME_KEY: &str = "tessera:{tessera-log}:by-time";
pub(super) const LOG_HIGHEST_AT_KEY: &str = "tessera:{tessera-log}:highest-at";
/// The security events (a sorted set: score = id, member = '<id> <event JSON>').
pub(super) const EVENTS_KEY: &str = "tessera:{tessera-log}:security-events";
/// The last security-event id handed out.
pub(super) const EVENTS_SEQ_KEY: &str = "tessera:{tessera-log}:security-events-seq";
/// The security events as kept before they had ids (a list, newest first), moved to [`EVENTS_KEY`] on connect.
pub(super) const LEGACY_EVENTS_KEY: &str = "tessera:{tessera-log}:events";
/// The highest log position whose write the replicas acknowledged: readers never read past it (`commit.lua`).
pub(super) const LOG_COMMITTED_KEY: &str = "tessera:{tessera-log}:committed";
/// The `jti`s of revoked access tokens (a hash, `jti` → 1), written with their log entries.
pub(super) const REVOKED_TOKENS_KEY: &str = "tessera:{tessera-log}:revoked-tokens";
