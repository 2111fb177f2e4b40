//! # tessera-revocation
//!
//! The revocation index every Tessera verifier consults in process — no network on the hot path. It holds the
//! revoked token ids (`jti`), the revoked sessions (`sid`), and per-subject and per-client "not before" instants,
//! fed from the store's revocation log.
//!
//! - **Conflict-free merging.** A revoked token or session stays revoked and instants only move forward, so the
//!   order in which a node sees updates, and how often, never matters.
//! - **Bounded memory.** An entry is dropped once no token it could match can still be valid: a token entry after
//!   its token's expiry, the others after the longest token lifetime (plus leeway). Memory grows with the
//!   revocations made per token lifetime, not with the number of users.
//! - **Staleness is visible.** The index records the last log position it applied and when it last synced, so a
//!   node can tell — and report — that it may be behind.
//!
//! For long-lived tokens, whose revoked ids run into the tens of millions, compact mode
//! ([`RevocationIndex::compact`]) holds them in a time-bucketed probabilistic prefilter instead
//! ([`compact::Prefilter`]); [`RevocationIndex::check`] then names the ids the exact store must confirm.
#![warn(missing_docs)]

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

use tessera_model::{LogCursor, Millis, Revocation, RevocationEntry};

pub mod compact;

use compact::{CompactError, Prefilter, PrefilterConfig, Verdict};

/// How long entries matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The longest lifetime of any token this index guards (access tokens, service tokens), in milliseconds.
    pub max_token_lifetime_ms: Millis,
    /// The clock leeway verifiers allow on `exp`, in milliseconds.
    pub leeway_ms: Millis,
}

impl Retention {
    /// How far back in the log an entry can still matter at `now`.
    #[must_use]
    pub fn horizon(self, now: Millis) -> Millis {
        now.saturating_sub(self.max_token_lifetime_ms.saturating_add(self.leeway_ms))
    }
}

/// Why an operator's revocation request (admin API, `tessera revoke`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// None or several of `jti`, `sid`, `sub`.
    #[error("name exactly one of jti, sid, sub")]
    NotExactlyOne,
    /// An empty or oversized identifier.
    #[error("the identifier must be 1 to {MAX_ID_LEN} bytes")]
    BadIdentifier,
    /// `before` without `sub`.
    #[error("an instant applies to a subject (sub) only")]
    InstantWithoutSubject,
    /// `before` in the future would lock the subject out of tokens not yet issued.
    #[error("the instant is in the future")]
    InstantInFuture,
}

/// Longest identifier accepted: anything longer was never issued here.
pub const MAX_ID_LEN: usize = 512;

/// The revocation an operator asked for: exactly one of a token id, a session id or a subject (with an optional
/// instant in Unix seconds, not in the future; default `now`). A token id is kept until the longest token
/// lifetime has passed, since its token's expiry is not known here.
///
/// # Errors
/// See [`RequestError`].
pub fn operator_request(
    jti: Option<String>,
    sid: Option<String>,
    sub: Option<String>,
    before_secs: Option<i64>,
    now: Millis,
    retention: Retention,
) -> Result<Revocation, RequestError> {
    let id_ok = |id: &String| !id.is_empty() && id.len() <= MAX_ID_LEN;
    if [&jti, &sid, &sub].iter().any(|id| id.as_ref().is_some_and(|id| !id_ok(id))) {
        return Err(RequestError::BadIdentifier);
    }
    match (jti, sid, sub, before_secs) {
        (_, _, None, Some(_)) => Err(RequestError::InstantWithoutSubject),
        (Some(jti), None, None, None) => {
            let expires_at = now.saturating_add(retention.max_token_lifetime_ms).saturating_add(retention.leeway_ms);
            Ok(Revocation::TokenById { jti, expires_at })
        }
        (None, Some(sid), None, None) => Ok(Revocation::Session { sid }),
        (None, None, Some(sub), before) => {
            let not_before = before.map_or(now, |secs| secs.saturating_mul(1000));
            if not_before > now {
                return Err(RequestError::InstantInFuture);
            }
            Ok(Revocation::Subject { sub, not_before })
        }
        _ => Err(RequestError::NotExactlyOne),
    }
}

/// What the index looks at in a verified token.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRef<'a> {
    /// `jti`.
    pub jti: Option<&'a str>,
    /// `orig_jti`: the token a token-exchange result was derived from.
    pub orig_jti: Option<&'a str>,
    /// `sid`.
    pub sid: Option<&'a str>,
    /// `sub`.
    pub sub: Option<&'a str>,
    /// `client_id`.
    pub client_id: Option<&'a str>,
    /// `iat`, in seconds.
    pub iat_secs: i64,
    /// `exp`, in seconds: where compact mode looks the `jti` up.
    pub exp_secs: i64,
}

/// What the index says about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Check<'a> {
    /// Not revoked.
    Valid,
    /// Revoked.
    Revoked,
    /// Compact mode: the prefilter may hold these `jti`s (the token's own, the one it was derived from), and
    /// nothing else revokes the token. The exact store decides (`Store::token_revoked` in `tessera-store`); when it
    /// cannot answer, the token must be refused.
    Confirm([Option<&'a str>; 2]),
}

/// The in-process index, with the log position applied so far.
#[derive(Debug)]
pub struct RevocationIndex {
    retention: Retention,
    /// Compact mode: whether `entries` has a prefilter (fixed at construction; read without the lock).
    compact: bool,
    keys: RandomState,
    entries: RwLock<Entries>,
    /// How far the log was applied, in each partition.
    applied: std::sync::Mutex<LogCursor>,
    last_sync_ms: AtomicI64,
    last_prune_ms: AtomicI64,
}

/// Entries removed per hold of the write lock while pruning (about half a millisecond's work).
const PRUNE_CHUNK: usize = 10_000;

/// The maps of [`Entries`], by what they key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token,
    Session,
    Subject,
    Client,
}

impl Kind {
    const ALL: [Self; 4] = [Self::Token, Self::Session, Self::Subject, Self::Client];

    /// Entries of this kind whose instant is before this bound match nothing valid at `now`: a token's expiry
    /// plus the leeway has passed, or a session's, subject's or client's instant is older than any token that
    /// can still be valid.
    fn bound(self, retention: Retention, now: Millis) -> Millis {
        match self {
            Self::Token => now.saturating_sub(retention.leeway_ms),
            Self::Session | Self::Subject | Self::Client => retention.horizon(now),
        }
    }
}

/// How often [`RevocationIndex::prune_if_due`] prunes. A prune visits every entry (about 5 ms at 1 million entries
/// on a slow VM), so it runs rarely; expired entries only cost memory meanwhile.
pub const PRUNE_EVERY_MS: Millis = 60_000;

/// Entries keyed by a 64-bit keyed hash of the identifier rather than the identifier itself: a probe compares two
/// integers in the table instead of following a pointer to a string (one cache miss fewer, at 1 million entries
/// out of cache), and an entry takes 16 bytes instead of about 80. The key is SipHash with per-process keys from
/// the OS, so nobody outside can aim a collision; a collision could only make an unrevoked token look revoked
/// (never the reverse), at odds of about one in 2^64 / entries per check.
#[derive(Debug, Default)]
struct Entries {
    /// `jti` → when the token expires.
    tokens: HashMap<u64, Millis, PreHashed>,
    /// `sid` → when it was revoked.
    sessions: HashMap<u64, Millis, PreHashed>,
    /// `sub` → tokens issued at or before this instant are dead.
    subjects: HashMap<u64, Millis, PreHashed>,
    /// `client_id` → tokens issued at or before this instant are dead.
    clients: HashMap<u64, Millis, PreHashed>,
    /// Compact mode: revoked `jti`s, filed by their tokens' expiry, instead of `tokens`.
    prefilter: Option<Prefilter>,
}

/// The table's own hash of a key that is already a keyed hash: one multiplication spreads it over the bits the
/// table uses for bucket and tag.
type PreHashed = BuildHasherDefault<MixU64>;

#[derive(Debug, Default)]
struct MixU64(u64);

impl Hasher for MixU64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in anyway rather than ignore it.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (self.0 ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Keeps the later of the two instants under `key`.
fn raise(map: &mut HashMap<u64, Millis, PreHashed>, key: u64, instant: Millis) {
    map.entry(key).and_modify(|current| *current = (*current).max(instant)).or_insert(instant);
}

/// Whether a token issued at `iat_secs` is at or before `instant`. Tokens carry whole seconds, so a token from
/// the same second as the instant counts as before it: the safe side.
fn issued_by(iat_secs: i64, instant: Millis) -> bool {
    iat_secs.saturating_mul(1000) <= instant
}

impl RevocationIndex {
    /// An empty index.
    #[must_use]
    pub fn new(retention: Retention) -> Self {
        Self::with_entries(retention, Entries::default())
    }

    /// An empty index in compact mode: revoked `jti`s go into a prefilter with buckets `bucket_width_ms` wide,
    /// each sized for `bucket_capacity` revocations (see [`compact`]); [`Self::check`] may then ask for an exact
    /// confirmation.
    ///
    /// # Errors
    /// A zero width or capacity.
    pub fn compact(
        retention: Retention,
        bucket_width_ms: Millis,
        bucket_capacity: usize,
    ) -> Result<Self, CompactError> {
        let prefilter = Prefilter::new(PrefilterConfig { retention, bucket_width_ms, bucket_capacity })?;
        Ok(Self::with_entries(retention, Entries { prefilter: Some(prefilter), ..Entries::default() }))
    }

    fn with_entries(retention: Retention, entries: Entries) -> Self {
        Self {
            retention,
            compact: entries.prefilter.is_some(),
            keys: RandomState::new(),
            entries: RwLock::new(entries),
            applied: std::sync::Mutex::default(),
            last_sync_ms: AtomicI64::new(0),
            last_prune_ms: AtomicI64::new(0),
        }
    }

    /// The table key of an identifier.
    fn key(&self, id: &str) -> u64 {
        self.keys.hash_one(id)
    }

    /// How long entries matter.
    #[must_use]
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Whether revoked `jti`s are held in the prefilter (compact mode).
    #[must_use]
    pub fn is_compact(&self) -> bool {
        self.compact
    }

    /// Bytes the entries take, roughly: the tables' allocated slots (key, instant and a control byte each) and
    /// the prefilter's filters. Enough to watch the trend and size a node, not an exact heap measurement.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        let Ok(entries) = self.entries.read() else { return 0 };
        let slot = std::mem::size_of::<(u64, Millis)>() + 1;
        let tables = [&entries.tokens, &entries.sessions, &entries.subjects, &entries.clients];
        tables.iter().map(|table| table.capacity() * slot).sum::<usize>()
            + entries.prefilter.as_ref().map_or(0, Prefilter::memory_bytes)
    }

    /// Applies log entries, in any order and any number of times. Entries that can no longer match a valid token
    /// at `now` are skipped.
    pub fn apply(&self, log: &[RevocationEntry], now: Millis) {
        if log.is_empty() {
            return;
        }
        let Ok(mut entries) = self.entries.write() else { return };
        let Ok(mut applied) = self.applied.lock() else { return };
        for entry in log {
            entries.insert(&entry.revocation, entry.at, self.retention, now, &self.keys);
            applied.advance(entry);
        }
    }

    /// Applies one revocation this node recorded itself at `at`, before it answers, so its own next request
    /// already sees it (the log brings it again later; applying twice changes nothing).
    pub fn apply_local(&self, revocation: &Revocation, at: Millis) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(revocation, at, self.retention, at, &self.keys);
        }
    }

    /// Records that the store confirmed `jti`, of a token expiring at `expires_at`, revoked: compact mode then
    /// refuses it from the exact table, without asking the store each time it comes back. Revoked is sticky, so
    /// remembering it can never be wrong; the entry goes at expiry like any other.
    pub fn confirmed_revoked(&self, jti: &str, expires_at: Millis) {
        if let Ok(mut entries) = self.entries.write() {
            raise(&mut entries.tokens, self.key(jti), expires_at);
        }
    }

    /// Whether the token is revoked: by its `jti` or the one it was derived from, its session, its subject's or
    /// its client's instant. In compact mode a `jti` the prefilter may hold is [`Check::Confirm`]ed by the caller.
    /// A poisoned lock answers "revoked": the index fails closed.
    pub fn check<'a>(&self, token: &TokenRef<'a>) -> Check<'a> {
        let Ok(entries) = self.entries.read() else { return Check::Revoked };
        let lookup = |map: &HashMap<u64, Millis, PreHashed>, id: Option<&str>| {
            if map.is_empty() {
                return None;
            }
            id.and_then(|id| map.get(&self.key(id)).copied())
        };
        let revoked = lookup(&entries.tokens, token.jti).is_some()
            || lookup(&entries.tokens, token.orig_jti).is_some()
            || lookup(&entries.sessions, token.sid).is_some()
            || lookup(&entries.subjects, token.sub).is_some_and(|instant| issued_by(token.iat_secs, instant))
            || lookup(&entries.clients, token.client_id).is_some_and(|instant| issued_by(token.iat_secs, instant));
        if revoked {
            return Check::Revoked;
        }
        let Some(prefilter) = &entries.prefilter else { return Check::Valid };
        let exp = token.exp_secs.saturating_mul(1000);
        // A token derived by exchange expires no later than the one it came from, which was issued before it and
        // so expires at most a lifetime after it was: the original's `jti` is filed somewhere in that range.
        let original_exp = exp..=token
            .iat_secs
            .saturating_mul(1000)
            .saturating_add(self.retention.max_token_lifetime_ms)
            .saturating_add(self.retention.leeway_ms)
            .max(exp);
        let maybe = |jti: Option<&'a str>, exp: std::ops::RangeInclusive<Millis>| {
            jti.filter(|jti| prefilter.check(jti, exp) == Verdict::Maybe)
        };
        match [maybe(token.jti, exp..=exp), maybe(token.orig_jti, original_exp)] {
            [None, None] => Check::Valid,
            unconfirmed => Check::Confirm(unconfirmed),
        }
    }

    /// [`Self::check`] without an exact store: a `jti` the prefilter may hold counts as revoked.
    #[must_use]
    pub fn is_revoked(&self, token: &TokenRef<'_>) -> bool {
        self.check(token) != Check::Valid
    }

    /// The latest "not before" instant of the subject or the client, if either has one: a token issued in that
    /// instant's second would be born revoked.
    #[must_use]
    pub fn latest_instant(&self, sub: Option<&str>, client_id: Option<&str>) -> Option<Millis> {
        let entries = self.entries.read().ok()?;
        let of =
            |map: &HashMap<u64, Millis, PreHashed>, id: Option<&str>| id.and_then(|id| map.get(&self.key(id)).copied());
        of(&entries.subjects, sub).max(of(&entries.clients, client_id))
    }

    /// Forgets how far the log was applied in each partition where it went back past `head` (the entries stay):
    /// the next sync reads those partitions again from the start (see `Store::log_head`). Applying entries again
    /// changes nothing.
    pub fn rewind_to(&self, head: &LogCursor) {
        if let Ok(mut applied) = self.applied.lock() {
            *applied = applied.restarted_where_behind(head);
        }
    }

    /// [`Self::prune`], at most once per [`PRUNE_EVERY_MS`]; how many entries were dropped, if it ran.
    pub fn prune_if_due(&self, now: Millis) -> Option<usize> {
        let last = self.last_prune_ms.load(Ordering::SeqCst);
        if now.saturating_sub(last) < PRUNE_EVERY_MS {
            return None;
        }
        // One caller wins the slot; a concurrent one skips.
        self.last_prune_ms.compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst).ok()?;
        Some(self.prune(now))
    }

    /// Drops every entry that can no longer match a valid token at `now`; returns how many.
    ///
    /// Verifications are never held up for the whole sweep: the expired entries are found under the read lock,
    /// which verifications share, and removed under the write lock [`PRUNE_CHUNK`] at a time, each checked again
    /// (an entry applied meanwhile may have moved its instant later). A single write-locked sweep held every
    /// verification of the node for the whole visit: about 5 ms per million entries, 17 ms at the 3.4 million
    /// of `tessera-bench day`.
    pub fn prune(&self, now: Millis) -> usize {
        let expired = self.expired(now);
        let mut dropped = 0;
        for chunk in expired.chunks(PRUNE_CHUNK) {
            let Ok(mut entries) = self.entries.write() else { return dropped };
            dropped += entries.remove_if_expired(chunk, self.retention, now);
        }
        if let Ok(mut entries) = self.entries.write() {
            if let Some(prefilter) = &mut entries.prefilter {
                let before = prefilter.len();
                prefilter.drop_expired(now);
                dropped += before.saturating_sub(prefilter.len());
            }
        }
        dropped
    }

    /// The entries that can no longer match a valid token at `now`, found under the read lock.
    fn expired(&self, now: Millis) -> Vec<(Kind, u64)> {
        let Ok(entries) = self.entries.read() else { return Vec::new() };
        Kind::ALL
            .into_iter()
            .flat_map(|kind| {
                let bound = kind.bound(self.retention, now);
                entries.map(kind).iter().filter(move |(_, at)| **at < bound).map(move |(key, _)| (kind, *key))
            })
            .collect()
    }

    /// The last log position applied in each partition.
    #[must_use]
    pub fn applied(&self) -> LogCursor {
        self.applied.lock().map(|applied| applied.clone()).unwrap_or_default()
    }

    /// Records a successful sync with the store at `now`.
    pub fn mark_synced(&self, now: Millis) {
        self.last_sync_ms.fetch_max(now, Ordering::SeqCst);
    }

    /// When the index last synced with the store.
    #[must_use]
    pub fn last_sync_ms(&self) -> Millis {
        self.last_sync_ms.load(Ordering::SeqCst)
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |entries| entries.len())
    }

    /// Whether nothing is revoked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Entries {
    /// Entries held; in compact mode a `jti` filed under several expiry buckets counts in each.
    fn map(&self, kind: Kind) -> &HashMap<u64, Millis, PreHashed> {
        match kind {
            Kind::Token => &self.tokens,
            Kind::Session => &self.sessions,
            Kind::Subject => &self.subjects,
            Kind::Client => &self.clients,
        }
    }

    fn map_mut(&mut self, kind: Kind) -> &mut HashMap<u64, Millis, PreHashed> {
        match kind {
            Kind::Token => &mut self.tokens,
            Kind::Session => &mut self.sessions,
            Kind::Subject => &mut self.subjects,
            Kind::Client => &mut self.clients,
        }
    }

    /// Removes those of `found` that still match nothing valid at `now`; how many.
    fn remove_if_expired(&mut self, found: &[(Kind, u64)], retention: Retention, now: Millis) -> usize {
        let mut removed = 0;
        for &(kind, key) in found {
            let map = self.map_mut(kind);
            if map.get(&key).is_some_and(|at| *at < kind.bound(retention, now)) {
                map.remove(&key);
                removed += 1;
            }
        }
        removed
    }

    fn len(&self) -> usize {
        let filtered = self.prefilter.as_ref().map_or(0, Prefilter::len);
        self.tokens.len() + self.sessions.len() + self.subjects.len() + self.clients.len() + filtered
    }

    fn insert(&mut self, revocation: &Revocation, at: Millis, retention: Retention, now: Millis, keys: &RandomState) {
        let horizon = retention.horizon(now);
        let key = |id: &str| keys.hash_one(id);
        match revocation {
            // Compact mode files a token under its own expiry. A token revoked by `jti` alone has none known, and
            // any range guessed for it (from this node's clock, from today's lifetimes — not an external
            // issuer's) could miss; operators revoke few that way, so those are kept exactly.
            Revocation::Token { jti, expires_at } | Revocation::TokenById { jti, expires_at }
                if *expires_at >= now.saturating_sub(retention.leeway_ms) =>
            {
                let filed = matches!(revocation, Revocation::Token { .. })
                    && self.prefilter.as_mut().is_some_and(|p| p.insert(jti, *expires_at..=*expires_at).is_ok());
                if !filed {
                    raise(&mut self.tokens, key(jti), *expires_at);
                }
            }
            // A session's tokens were all issued before its revocation, so they are gone a lifetime after it.
            Revocation::Session { sid } if at >= horizon => raise(&mut self.sessions, key(sid), at),
            Revocation::Subject { sub, not_before } if *not_before >= horizon => {
                raise(&mut self.subjects, key(sub), *not_before);
            }
            Revocation::Client { client_id, not_before } if *not_before >= horizon => {
                raise(&mut self.clients, key(client_id), *not_before);
            }
            Revocation::Token { .. }
            | Revocation::TokenById { .. }
            | Revocation::Session { .. }
            | Revocation::Subject { .. }
            | Revocation::Client { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use proptest::prelude::*;
    use tessera_model::Provenance;

    use super::*;

    const RETENTION: Retention = Retention { max_token_lifetime_ms: 900_000, leeway_ms: 60_000 };

    fn entry(id: i64, at: Millis, revocation: Revocation) -> RevocationEntry {
        RevocationEntry { partition: 0, id, at, revocation, provenance: Provenance::new("test", "") }
    }

    fn token<'a>(jti: &'a str, sid: &'a str, sub: &'a str, client_id: &'a str, iat_secs: i64) -> TokenRef<'a> {
        TokenRef {
            jti: Some(jti),
            orig_jti: None,
            sid: Some(sid),
            sub: Some(sub),
            client_id: Some(client_id),
            iat_secs,
            exp_secs: iat_secs + 900,
        }
    }

    #[test]
    fn operator_requests_name_exactly_one_target() {
        let ask = |jti: Option<&str>, sid: Option<&str>, sub: Option<&str>, before: Option<i64>| {
            let owned = |v: Option<&str>| v.map(str::to_owned);
            operator_request(owned(jti), owned(sid), owned(sub), before, 100_000, RETENTION)
        };
        assert_eq!(
            ask(Some("j"), None, None, None),
            Ok(Revocation::TokenById { jti: "j".into(), expires_at: 1_060_000 })
        );
        assert_eq!(ask(None, Some("s"), None, None), Ok(Revocation::Session { sid: "s".into() }));
        assert_eq!(ask(None, None, Some("u"), None), Ok(Revocation::Subject { sub: "u".into(), not_before: 100_000 }));
        assert_eq!(
            ask(None, None, Some("u"), Some(40)),
            Ok(Revocation::Subject { sub: "u".into(), not_before: 40_000 })
        );
        assert_eq!(ask(None, None, Some("u"), Some(101)), Err(RequestError::InstantInFuture));
        assert_eq!(ask(None, None, None, None), Err(RequestError::NotExactlyOne));
        assert_eq!(ask(Some("j"), Some("s"), None, None), Err(RequestError::NotExactlyOne));
        assert_eq!(ask(Some("j"), None, None, Some(1)), Err(RequestError::InstantWithoutSubject));
        assert_eq!(ask(Some(""), None, None, None), Err(RequestError::BadIdentifier));
        assert_eq!(ask(None, Some(&"x".repeat(513)), None, None), Err(RequestError::BadIdentifier));
    }

    #[test]
    fn each_kind_of_entry_matches_its_tokens_only() {
        let index = RevocationIndex::new(RETENTION);
        index.apply(
            &[
                entry(1, 1_000, Revocation::Token { jti: "j1".into(), expires_at: 500_000 }),
                entry(2, 1_000, Revocation::Session { sid: "s1".into() }),
                entry(3, 1_000, Revocation::Subject { sub: "u1".into(), not_before: 5_000 }),
                entry(4, 1_000, Revocation::Client { client_id: "c1".into(), not_before: 7_000 }),
            ],
            1_000,
        );
        assert!(index.is_revoked(&token("j1", "s", "u", "c", 100)));
        assert!(index.is_revoked(&TokenRef { orig_jti: Some("j1"), ..token("j2", "s", "u", "c", 100) }));
        assert!(index.is_revoked(&token("j", "s1", "u", "c", 100)));
        assert!(index.is_revoked(&token("j", "s", "u1", "c", 5)), "iat 5 s is at the 5,000 ms instant");
        assert!(!index.is_revoked(&token("j", "s", "u1", "c", 6)), "issued after the instant");
        assert!(index.is_revoked(&token("j", "s", "u", "c1", 7)));
        assert!(!index.is_revoked(&token("j", "s", "u", "c1", 8)));
        assert!(!index.is_revoked(&token("j", "s", "u", "c", 0)));
        assert!(!index.is_revoked(&TokenRef::default()), "a token without the claims matches nothing");
        assert_eq!(index.applied(), LogCursor::at(vec![4]));
    }

    #[test]
    fn a_prune_keeps_what_was_applied_again_with_a_later_instant_while_it_ran() {
        let index = RevocationIndex::new(RETENTION);
        let revoke = |jti: &str, expires_at| Revocation::Token { jti: jti.into(), expires_at };
        index.apply(&[entry(1, 0, revoke("again", 60_000)), entry(2, 0, revoke("once", 60_000))], 0);
        // The sweep finds both expired at 120.001 s (60 s of leeway past their expiry)...
        let found = index.expired(120_001);
        assert_eq!(found.len(), 2);
        // ...and before it removes them, "again" is revoked as a token living until 600 s.
        index.apply(&[entry(3, 100_000, revoke("again", 600_000))], 100_000);
        assert_eq!(index.entries.write().unwrap().remove_if_expired(&found, RETENTION, 120_001), 1);
        let entries = index.entries.read().unwrap();
        assert!(entries.tokens.contains_key(&index.key("again")) && !entries.tokens.contains_key(&index.key("once")));
    }

    #[test]
    fn entries_are_dropped_once_nothing_they_match_can_be_valid() {
        let index = RevocationIndex::new(RETENTION);
        index.apply(
            &[
                entry(1, 0, Revocation::Token { jti: "short".into(), expires_at: 60_000 }),
                entry(2, 0, Revocation::Session { sid: "s".into() }),
                entry(3, 0, Revocation::Subject { sub: "u".into(), not_before: 0 }),
            ],
            0,
        );
        assert_eq!(index.len(), 3);
        // The token expired at 60 s; with 60 s leeway it matters until 120 s.
        assert_eq!(index.prune(120_000), 0);
        assert_eq!(index.prune(120_001), 1);
        // Session and subject entries matter for a lifetime plus leeway: 960 s.
        assert_eq!(index.prune(960_000), 0);
        assert_eq!(index.prune(960_001), 2);
        // The throttled form runs once per interval.
        index.apply(&[entry(3, 960_001, Revocation::Session { sid: "late".into() })], 960_001);
        assert_eq!(index.prune_if_due(2_000_000), Some(1));
        assert_eq!(index.prune_if_due(2_000_000 + PRUNE_EVERY_MS - 1), None);
        assert!(index.is_empty());
        // Entries already past their use when they arrive are not kept at all.
        index.apply(&[entry(4, 0, Revocation::Session { sid: "old".into() })], 2_000_000);
        assert!(index.is_empty());
        assert_eq!(index.applied(), LogCursor::at(vec![4]), "but their position counts");
    }

    #[test]
    fn a_log_that_went_back_in_one_partition_is_read_again_there_only() {
        let index = RevocationIndex::new(RETENTION);
        let session = |partition, id, sid: &str| RevocationEntry {
            partition,
            ..entry(id, 1_000, Revocation::Session { sid: sid.into() })
        };
        index.apply(&[session(0, 7, "a"), session(1, 3, "b"), session(2, 5, "c")], 1_000);
        assert_eq!(index.applied(), LogCursor::at(vec![7, 3, 5]));
        index.rewind_to(&LogCursor::at(vec![7, 1, 9]));
        assert_eq!(index.applied(), LogCursor::at(vec![7, 0, 5]));
        assert!(index.is_revoked(&token("j", "b", "u", "c", 100)), "what was applied stays");
    }

    /// Compact mode with one-minute buckets, for tokens that live up to 900 s.
    fn compact_index() -> RevocationIndex {
        RevocationIndex::compact(RETENTION, 60_000, 1_000).unwrap()
    }

    #[test]
    fn compact_mode_asks_to_confirm_a_revoked_jti_and_answers_the_rest_itself() {
        let index = compact_index();
        index.apply(
            &[
                entry(1, 1_000, Revocation::Token { jti: "j1".into(), expires_at: 500_000 }),
                entry(2, 1_000, Revocation::Session { sid: "s1".into() }),
            ],
            1_000,
        );
        let revoked = TokenRef { exp_secs: 500, ..token("j1", "s", "u", "c", 100) };
        assert_eq!(index.check(&revoked), Check::Confirm([Some("j1"), None]), "a prefilter never misses");
        let derived = TokenRef { orig_jti: Some("j1"), exp_secs: 500, ..token("j2", "s", "u", "c", 100) };
        assert!(matches!(index.check(&derived), Check::Confirm([_, Some("j1")])));
        assert!(index.is_revoked(&revoked), "without an exact store, a maybe counts as revoked");
        // Another expiry bucket holds nothing: certain, no lookup.
        assert_eq!(index.check(&TokenRef { exp_secs: 700, ..token("j1", "s", "u", "c", 100) }), Check::Valid);
        // Sessions, subjects and clients stay exact.
        assert_eq!(index.check(&TokenRef { exp_secs: 700, ..token("j", "s1", "u", "c", 100) }), Check::Revoked);
        // Once the store has confirmed it, the index answers alone.
        index.confirmed_revoked("j1", 500_000);
        assert_eq!(index.check(&revoked), Check::Revoked);
        // The bucket and the confirmed entry go once their tokens have expired (the bucket ends at 540 s, plus 60 s
        // of leeway).
        assert_eq!(index.len(), 3);
        index.prune(600_001);
        assert_eq!(index.len(), 1, "the session entry stays a lifetime");
        assert_eq!(index.check(&revoked), Check::Valid);
    }

    #[test]
    fn compact_mode_keeps_a_jti_revoked_by_id_exactly_whatever_its_tokens_expiry() {
        let index = compact_index();
        // Revoked at 100 s by an operator: its token's expiry is unknown (an external issuer's may be far off).
        let by_id = operator_request(Some("j1".into()), None, None, None, 100_000, RETENTION).unwrap();
        index.apply(&[entry(1, 100_000, by_id)], 100_000);
        for exp_secs in [40, 100, 500, 1_060, 90_000] {
            let presented = TokenRef { exp_secs, ..token("j1", "s", "u", "c", 0) };
            assert_eq!(index.check(&presented), Check::Revoked, "exp {exp_secs} s");
        }
    }

    /// A token derived by exchange (five minutes at most) carries the original's `jti`, which RFC 7009 filed
    /// under the original's own, later, expiry: the check must find it there.
    #[test]
    fn compact_mode_finds_the_original_of_an_exchanged_token_in_its_own_bucket() {
        let index = compact_index();
        let original = Revocation::Token { jti: "orig".into(), expires_at: 900_000 };
        index.apply(&[entry(1, 10_000, original)], 10_000);
        let exchanged = TokenRef { orig_jti: Some("orig"), exp_secs: 310, ..token("x", "s", "u", "c", 10) };
        assert!(matches!(index.check(&exchanged), Check::Confirm([_, Some("orig")])));
    }

    fn arbitrary_revocation() -> impl Strategy<Value = Revocation> {
        let key = prop::sample::select(vec!["a", "b", "c"]);
        let instant = 0i64..20_000;
        prop_oneof![
            (key.clone(), instant.clone()).prop_map(|(k, t)| Revocation::Token { jti: k.into(), expires_at: t }),
            key.clone().prop_map(|k| Revocation::Session { sid: k.into() }),
            (key.clone(), instant.clone()).prop_map(|(k, t)| Revocation::Subject { sub: k.into(), not_before: t }),
            (key, instant).prop_map(|(k, t)| Revocation::Client { client_id: k.into(), not_before: t }),
        ]
    }

    proptest! {
        /// Conflict-free: any order, any duplication, gives the same answers.
        #[test]
        fn merging_is_order_and_duplicate_independent(
            revocations in prop::collection::vec(arbitrary_revocation(), 0..24),
            order in any::<prop::sample::Index>(),
        ) {
            let log: Vec<_> =
                revocations.iter().enumerate().map(|(i, r)| entry(i as i64 + 1, 1_000, r.clone())).collect();
            let forward = RevocationIndex::new(RETENTION);
            forward.apply(&log, 1_000);
            let shuffled = RevocationIndex::new(RETENTION);
            let mut reordered = log.clone();
            if !reordered.is_empty() {
                let pivot = order.index(reordered.len());
                reordered.rotate_left(pivot);
                reordered.reverse();
            }
            for e in reordered.iter().chain(&log) {
                shuffled.apply(std::slice::from_ref(e), 1_000);
            }
            for key in ["a", "b", "c", "d"] {
                for iat in [0, 5, 10, 15, 20] {
                    let t = token(key, key, key, key, iat);
                    prop_assert_eq!(forward.is_revoked(&t), shuffled.is_revoked(&t));
                }
            }
            prop_assert_eq!(forward.applied(), shuffled.applied());
        }
    }
}
