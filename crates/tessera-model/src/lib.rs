//! # tessera-model
//!
//! Tessera's shared data model: the plain types every other crate speaks — [`User`] and [`Client`], sessions
//! ([`NewSession`], the stored [`Session`] and its [`SessionState`]) and the refresh-rotation state machine [`decide`] every store backend applies inside
//! its own atomic step, the revocation log ([`Revocation`], [`Provenance`], [`RevocationEntry`]), stored
//! [`Document`]s and [`SecurityEvent`]s — and the [`clock`] that time is read from, passed in as a value everywhere
//! else.
//!
//! It depends on serde alone (and `serde_json` for a session's extra claims): no storage, no network, no async
//! runtime, so a crate that needs the types — the in-process revocation index — does not compile a database
//! driver to get them. `tessera-store` re-exports it as `tessera_store::model`.
#![warn(missing_docs)]

mod account;
pub mod clock;
mod record;
mod revocation;
mod session;

pub use account::{is_safe_role, Client, CodeFlow, IdTokenSigning, Profile, User, MAX_ROLE_LEN};
pub use record::{Document, NewSecurityEvent, SecurityEvent, SecurityEventQuery};
pub use revocation::{
    AutomaticRevocation, BadLogCursor, LogCursor, Provenance, Revocation, RevocationEntry, MAX_LOG_PARTITIONS,
};
pub use session::{
    decide, Decision, NewSession, RefreshOutcome, RefreshRules, Refusal, SecurityEventKind, Session, SessionState,
    SubjectState,
};

/// The `tracing` target of the spans and events that make a request's trace (exported over OTLP when configured).
/// Logs never show them: the log filter turns this target off, so without an exporter these callsites are
/// disabled and cost nothing. Their fields name tokens by `jti`, `sid`, `sub` and `client_id`, never a token.
pub const SPAN_TARGET: &str = "tessera::span";

/// The scope a client needs to read the revocation feed (`/gateway/v1/revocations`), the log that services
/// verifying tokens in process follow as Tessera's own nodes do.
pub const REVOCATION_FEED_SCOPE: &str = "revocations:read";

/// Milliseconds since the epoch: storage keeps sub-second order so that a login right after a logout-everywhere
/// in the same second survives it.
pub type Millis = i64;
