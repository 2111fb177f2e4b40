//! Records kept for their owners: named documents and security events.

use serde::Serialize;

use crate::{Millis, SecurityEventKind};

/// A small named document kept for its owner (the keyring, the server secrets), versioned for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 1 for the first write, one more for each replacement.
    pub version: u64,
    /// Text (JSON), opaque to the store.
    pub contents: String,
}

/// A security event kept for audit and sent to the webhook: what happened, to whom, by whom. Never a token, a
/// cookie, a secret or a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityEvent {
    /// Its place in the store's sequence: unique, larger for a later recording (not necessarily a later `at`, which
    /// is the recording node's clock).
    pub id: u64,
    /// When.
    pub at: Millis,
    /// What: a [`SecurityEventKind`] name (kept as stored, so an unknown one still reads).
    pub kind: String,
    /// Whose (the subject), when it concerns one.
    pub sub: Option<String>,
    /// Which session, when it concerns one.
    pub sid: Option<String>,
    /// Who did it (`admin`, `user`, `client:ID`, `tessera`), when known.
    pub actor: Option<String>,
    /// Detail for the reviewer.
    pub detail: String,
}

/// A security event to record; the store gives it its [`id`](SecurityEvent::id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecurityEvent {
    /// When.
    pub at: Millis,
    /// What.
    pub kind: SecurityEventKind,
    /// Whose (the subject), when it concerns one.
    pub sub: Option<String>,
    /// Which session, when it concerns one.
    pub sid: Option<String>,
    /// Who did it, when known.
    pub actor: Option<String>,
    /// Detail for the reviewer.
    pub detail: String,
}

impl NewSecurityEvent {
    /// An event of `kind` at `at`, about nobody in particular, with `detail`; the builders below add the rest.
    #[must_use]
    pub fn new(kind: SecurityEventKind, at: Millis, detail: impl Into<String>) -> Self {
        Self { at, kind, sub: None, sid: None, actor: None, detail: detail.into() }
    }

    /// Concerning subject `sub`.
    #[must_use]
    pub fn about(self, sub: impl Into<String>) -> Self {
        Self { sub: Some(sub.into()), ..self }
    }

    /// Concerning session `sid`.
    #[must_use]
    pub fn in_session(self, sid: impl Into<String>) -> Self {
        Self { sid: Some(sid.into()), ..self }
    }

    /// Done by `actor`.
    #[must_use]
    pub fn by(self, actor: impl Into<String>) -> Self {
        Self { actor: Some(actor.into()), ..self }
    }

    /// The event as recorded under `id`.
    #[must_use]
    pub fn recorded(self, id: u64) -> SecurityEvent {
        let Self { at, kind, sub, sid, actor, detail } = self;
        SecurityEvent { id, at, kind: kind.as_str().to_owned(), sub, sid, actor, detail }
    }
}

/// Which security events to read: those matching every filter given, newest (highest id) first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityEventQuery {
    /// Of this kind only.
    pub kind: Option<SecurityEventKind>,
    /// About this subject only.
    pub sub: Option<String>,
    /// At or after this instant.
    pub since: Option<Millis>,
    /// Before this instant.
    pub until: Option<Millis>,
    /// With an id below this one: the cursor of the next page, the last id of the page before.
    pub before: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

impl SecurityEventQuery {
    /// The latest `limit` events, whatever they are.
    #[must_use]
    pub fn latest(limit: usize) -> Self {
        Self { limit, ..Self::default() }
    }

    /// Whether `event` passes every filter (the limit aside): what a backend that cannot filter as it reads checks.
    #[must_use]
    pub fn matches(&self, event: &SecurityEvent) -> bool {
        self.kind.is_none_or(|kind| event.kind == kind.as_str())
            && self.sub.as_ref().is_none_or(|sub| event.sub.as_ref() == Some(sub))
            && self.since.is_none_or(|since| event.at >= since)
            && self.until.is_none_or(|until| event.at < until)
            && self.before.is_none_or(|before| event.id < before)
    }
}
