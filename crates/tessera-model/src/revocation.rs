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
        }
    }
}

/// A revocation with its position in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationEntry {
    /// Monotonic position: readers ask for entries after the last one they applied.
    pub id: i64,
    /// When it was recorded.
    pub at: Millis,
    /// What it revokes.
    pub revocation: Revocation,
    /// Who and why.
    pub provenance: Provenance,
}
