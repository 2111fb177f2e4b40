//! Records kept for their owners: named documents and security events.

use serde::Serialize;

use crate::Millis;

/// A small named document kept for its owner (the keyring, the server secrets), versioned for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 1 for the first write, one more for each replacement.
    pub version: u64,
    /// Text (JSON), opaque to the store.
    pub contents: String,
}

/// A security event kept for audit (reuse detection, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityEvent {
    /// When.
    pub at: Millis,
    /// What: a [`SecurityEventKind`](crate::SecurityEventKind) name (kept as stored, so an unknown one still reads).
    pub kind: String,
    /// Whose.
    pub sub: String,
    /// Which session.
    pub sid: String,
    /// Detail for the reviewer (never a token).
    pub detail: String,
}
