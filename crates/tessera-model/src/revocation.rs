//! The revocation log: what a revocation revokes, who made it and why, and its position in the log.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// A change verifiers must apply to their revocation index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// Every token of this session is dead.
    Session {
        /// The `sid`.
        sid: String,
    },
    /// Every token of this subject issued at or before the instant is dead.
    Subject {
        /// The `sub`.
        sub: String,
        /// The instant.
        not_before: Millis,
    },
    /// One access token, by `jti`, and every token derived from it by token exchange (which carries it as
    /// `orig_jti`). Verifiers may forget it once the token has expired.
    Token {
        /// The `jti`.
        jti: String,
        /// When the token expires (or a later instant): after it, the entry matches nothing.
        expires_at: Millis,
    },
    /// One access token named by its `jti` alone, its expiry unknown (an operator's revocation), and every token
    /// derived from it. Matched like [`Token`](Self::Token), but `expires_at` is only a bound — the longest
    /// lifetime from the revocation — so compact mode cannot file it under its expiry and keeps it exactly.
    TokenById {
        /// The `jti`.
        jti: String,
        /// A bound on when the token expires: after it, the entry matches nothing.
        expires_at: Millis,
    },
    /// The client changed (added, disabled, re-enabled, secret rotated): verifiers reload it, and every token
    /// issued to it at or before the instant is dead — a leaked secret is rotated to cut its tokens off too.
    Client {
        /// The `client_id`.
        client_id: String,
        /// The instant.
        not_before: Millis,
    },
}

impl Revocation {
    /// How backends store it: a kind, the identifier, and the instant (an expiry for tokens), if any. The store reads
    /// it back strictly: a kind it never wrote, or a missing instant, is corrupt, never guessed.
    #[must_use]
    pub fn to_columns(&self) -> (&'static str, &str, Option<Millis>) {
        match self {
            Self::Session { sid } => ("session", sid, None),
            Self::Subject { sub, not_before } => ("subject", sub, Some(*not_before)),
            Self::Token { jti, expires_at } => ("token", jti, Some(*expires_at)),
            Self::TokenById { jti, expires_at } => ("token_by_id", jti, Some(*expires_at)),
            Self::Client { client_id, not_before } => ("client", client_id, Some(*not_before)),
        }
    }
}

/// Who revoked, and why: kept with every revocation for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// Who: `admin`, `cli`, `user:<sub>`, `client:<client_id>`, `tessera` for the server's own decisions
    /// ([`Provenance::automatic`]).
    pub actor: String,
    /// Why, in a few words (`logout`, an [`AutomaticRevocation`], an operator's note).
    pub reason: String,
}

impl Provenance {
    /// A provenance from its two parts.
    #[must_use]
    pub fn new(actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { actor: actor.into(), reason: reason.into() }
    }

    /// Tessera's own revocation (actor `tessera`), for `reason`.
    #[must_use]
    pub fn automatic(reason: AutomaticRevocation) -> Self {
        Self::new("tessera", reason.as_str())
    }
}

/// Why Tessera wrote a revocation-log entry by itself (actor `tessera`): the reasons those entries carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutomaticRevocation {
    /// A rotated refresh token came back: its session is revoked (also the refresh metric's label for it).
    ReuseDetected,
    /// A user was disabled: its tokens end.
    UserDisabled,
    /// A client was disabled: its tokens end.
    ClientDisabled,
    /// A client was enabled again (its tokens from before stay dead).
    ClientEnabled,
    /// A client was registered: nothing ends, verifiers learn that it exists.
    ClientAdded,
    /// A client's secret was rotated: its tokens end.
    ClientSecretRotated,
    /// A client's keys were replaced: its tokens end.
    ClientKeysReplaced,
    /// An authorization code came back a second time: the tokens issued for it end (RFC 6749 §4.1.2).
    CodeReplayed,
}

impl AutomaticRevocation {
    /// The reason as logged.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReuseDetected => "reuse_detected",
            Self::UserDisabled => "user_disabled",
            Self::ClientDisabled => "client_disabled",
            Self::ClientEnabled => "client_enabled",
            Self::ClientAdded => "client_added",
            Self::ClientSecretRotated => "client_secret_rotated",
            Self::ClientKeysReplaced => "client_keys_replaced",
            Self::CodeReplayed => "code_replayed",
        }
    }
}

/// A revocation with its position in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationEntry {
    /// The log partition it was written to: 0 unless the store spreads its log over several (Redis Cluster).
    pub partition: usize,
    /// Monotonic position within its partition: readers ask for entries after the last one they applied.
    pub id: i64,
    /// When it was recorded.
    pub at: Millis,
    /// What it revokes.
    pub revocation: Revocation,
    /// Who and why.
    pub provenance: Provenance,
}

/// Partitions a log may have at most: a cursor names one position per partition.
pub const MAX_LOG_PARTITIONS: usize = 1024;

/// Where a reader stands in the revocation log: for each partition, the position of the last entry it applied
/// (0: none yet). A log with one partition — every SQL store, a Redis store by default — has one position, and a
/// cursor reads as that number; with several, the numbers joined by dots (`"12.0.7"`), partition 0 first.
///
/// Positions only move forward within a partition; partitions are independent, so a reader keeps one position
/// for each, and tells for each whether the log went back there (see [`LogCursor::restarted_where_behind`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCursor(Vec<i64>);

impl LogCursor {
    /// The cursor at `positions`, partition 0 first.
    #[must_use]
    pub fn at(positions: Vec<i64>) -> Self {
        Self(positions)
    }

    /// The position applied in `partition` (0 when none).
    #[must_use]
    pub fn position(&self, partition: usize) -> i64 {
        self.0.get(partition).copied().unwrap_or(0)
    }

    /// How many partitions it names positions for (0 for a fresh cursor).
    #[must_use]
    pub fn partitions(&self) -> usize {
        self.0.len()
    }

    /// Moves past `entry` (never back).
    pub fn advance(&mut self, entry: &RevocationEntry) {
        self.advance_to(entry.partition, entry.id);
    }

    /// Moves `partition` to `position`, if that is forward. A partition beyond [`MAX_LOG_PARTITIONS`] is no
    /// partition of any log, and is ignored (it would take room for every partition before it).
    pub fn advance_to(&mut self, partition: usize, position: i64) {
        if partition >= MAX_LOG_PARTITIONS {
            return;
        }
        if partition >= self.0.len() {
            self.0.resize(partition + 1, 0);
        }
        if let Some(applied) = self.0.get_mut(partition) {
            *applied = (*applied).max(position);
        }
    }

    /// Moves every partition at least as far as `other` has.
    pub fn catch_up(&mut self, other: &Self) {
        for (partition, &position) in other.0.iter().enumerate() {
            self.advance_to(partition, position);
        }
    }

    /// Whether the reader has passed, in some partition, what the log now holds (`head`): the log went back there
    /// — a restore from an older backup, a Redis shard lost with its replica — or its partitions were changed.
    #[must_use]
    pub fn is_past(&self, head: &Self) -> bool {
        self.restarted_where_behind(head) != *self
    }

    /// This cursor with each partition the log went back in (its position beyond `head`'s) started again from 0,
    /// and the others kept: a reader reads again only what it may have missed. A partition the cursor has no
    /// position for is read from the start; one `head` does not have is gone (the log has fewer partitions now,
    /// its entries moved to the others), and starts again too.
    #[must_use]
    pub fn restarted_where_behind(&self, head: &Self) -> Self {
        Self(
            self.0
                .iter()
                .enumerate()
                .map(|(partition, &mine)| if mine > head.position(partition) { 0 } else { mine })
                .collect(),
        )
    }
}

impl std::fmt::Display for LogCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((first, rest)) = self.0.split_first() else { return f.write_str("0") };
        write!(f, "{first}")?;
        rest.iter().try_for_each(|position| write!(f, ".{position}"))
    }
}

/// A log cursor that is not one: not dot-separated whole numbers, or more of them than a log has partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLogCursor;

impl std::fmt::Display for BadLogCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a log cursor is a position (a whole number, 0 to start), or positions joined by dots, one per partition"
        )
    }
}

impl std::error::Error for BadLogCursor {}

impl std::str::FromStr for LogCursor {
    type Err = BadLogCursor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut positions = Vec::new();
        for part in text.split('.') {
            if positions.len() == MAX_LOG_PARTITIONS || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadLogCursor);
            }
            positions.push(part.parse::<i64>().map_err(|_| BadLogCursor)?);
        }
        Ok(Self(positions))
    }
}

/// A one-partition cursor is a JSON number, as positions always were; several, a string.
impl Serialize for LogCursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [] => serializer.serialize_i64(0),
            [position] => serializer.serialize_i64(*position),
            _ => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for LogCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(position) => {
                i64::try_from(position).map(|position| Self(vec![position])).map_err(serde::de::Error::custom)
            }
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written() {
        for text in ["0", "12", "12.0.7", "0.0.0.0"] {
            assert_eq!(text.parse::<LogCursor>().unwrap().to_string(), text);
        }
        assert_eq!(LogCursor::default().to_string(), "0");
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let too_many = vec!["1"; MAX_LOG_PARTITIONS + 1].join(".");
        for text in ["", ".", "1.", ".1", "1..2", "-1", "+1", "1.a", " 1", "99999999999999999999", too_many.as_str()] {
            assert_eq!(text.parse::<LogCursor>(), Err(BadLogCursor), "{text:?}");
        }
    }

    #[test]
    fn one_partition_is_a_json_number_and_several_a_string() {
        let one = LogCursor::at(vec![12]);
        let several = LogCursor::at(vec![12, 0, 7]);
        assert_eq!(serde_json::to_string(&one).unwrap(), "12");
        assert_eq!(serde_json::to_string(&several).unwrap(), r#""12.0.7""#);
        assert_eq!(serde_json::from_str::<LogCursor>("12").unwrap(), one);
        assert_eq!(serde_json::from_str::<LogCursor>(r#""12.0.7""#).unwrap(), several);
        assert!(serde_json::from_str::<LogCursor>("-1").is_err());
    }

    #[test]
    fn only_the_partitions_that_went_back_start_again() {
        let reader = LogCursor::at(vec![5, 9, 3]);
        assert_eq!(reader.restarted_where_behind(&LogCursor::at(vec![6, 9, 3])), reader);
        assert!(!reader.is_past(&LogCursor::at(vec![5, 9, 3])));
        let head = LogCursor::at(vec![6, 4, 3]);
        assert!(reader.is_past(&head));
        assert_eq!(reader.restarted_where_behind(&head), LogCursor::at(vec![5, 0, 3]));
    }

    #[test]
    fn a_cursor_of_fewer_partitions_reads_the_others_from_the_start() {
        let reader = LogCursor::at(vec![5]);
        assert!(!reader.is_past(&LogCursor::at(vec![9, 9])), "partition 0 kept counting up");
        assert_eq!(reader.restarted_where_behind(&LogCursor::at(vec![9, 9])), reader);
        assert_eq!(reader.restarted_where_behind(&LogCursor::at(vec![9, 9])).position(1), 0);
        let gone = LogCursor::at(vec![5, 3]);
        assert!(gone.is_past(&LogCursor::at(vec![9])), "a partition that is gone is passed");
        assert_eq!(gone.restarted_where_behind(&LogCursor::at(vec![9])), LogCursor::at(vec![5, 0]));
    }

    #[test]
    fn advancing_never_moves_back() {
        let mut cursor = LogCursor::default();
        cursor.advance_to(2, 7);
        cursor.advance_to(2, 3);
        cursor.advance_to(0, 1);
        assert_eq!(cursor, LogCursor::at(vec![1, 0, 7]));
        cursor.catch_up(&LogCursor::at(vec![0, 4, 9]));
        assert_eq!(cursor, LogCursor::at(vec![1, 4, 9]));
        cursor.advance_to(usize::MAX, 5);
        cursor.advance_to(MAX_LOG_PARTITIONS, 5);
        assert_eq!(cursor, LogCursor::at(vec![1, 4, 9]), "no log has such a partition");
    }
}
