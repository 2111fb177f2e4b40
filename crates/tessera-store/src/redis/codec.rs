//! How records are laid out in Redis: hashes of text fields (numbers in decimal, flags `1`/`0`, the secret hash in
//! hex, lists and claims as JSON, optional fields absent), read back through the shared
//! [`crate::codec`]; log entries and security events as JSON; the refresh script's answers.

use std::collections::HashMap;

use ::redis::Value;
use serde::{Deserialize, Serialize};

use crate::codec::{self, to_json, Column, Record};
use crate::model::{Client, Millis, NewSecurityEvent, Provenance, Refusal, Revocation, SecurityEvent, Session, User};
use crate::{RevocationEntry, StoreError};

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn unhex(what: &'static str, text: &str) -> Result<Vec<u8>, StoreError> {
    if !text.len().is_multiple_of(2) {
        return Err(StoreError::corrupt(what, "odd-length hex"));
    }
    (0..text.len())
        .step_by(2)
        .map(|at| {
            text.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| StoreError::corrupt(what, "bad hex"))
        })
        .collect()
}

pub(super) fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

/// A stored hash, as its fields.
pub(super) struct Fields(HashMap<String, String>);

impl Fields {
    pub(super) fn from_value(value: Value) -> Result<Option<Self>, StoreError> {
        let map: HashMap<String, String> = ::redis::from_redis_value(value)?;
        Ok((!map.is_empty()).then_some(Self(map)))
    }

    pub(super) fn text(&self, name: &'static str) -> Result<String, StoreError> {
        self.0.get(name).cloned().ok_or_else(|| StoreError::corrupt(name, "field missing"))
    }

    fn optional(&self, name: &'static str) -> Option<String> {
        self.0.get(name).cloned()
    }

    pub(super) fn parsed<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, StoreError> {
        parse(name, self.0.get(name).ok_or_else(|| StoreError::corrupt(name, "field missing"))?)
    }

    fn optional_parsed<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, StoreError> {
        self.0.get(name).map(|text| parse(name, text)).transpose()
    }

    fn flag(&self, name: &'static str) -> Result<bool, StoreError> {
        Ok(self.text(name)? == "1")
    }
}

impl Record for Fields {
    fn text(&self, column: Column) -> Result<String, StoreError> {
        self.text(column.name)
    }

    fn optional_text(&self, column: Column) -> Result<Option<String>, StoreError> {
        Ok(self.optional(column.name))
    }

    fn integer(&self, column: Column) -> Result<i64, StoreError> {
        self.parsed(column.name)
    }

    fn optional_integer(&self, column: Column) -> Result<Option<i64>, StoreError> {
        self.optional_parsed(column.name)
    }

    fn flag(&self, column: Column) -> Result<bool, StoreError> {
        self.flag(column.name)
    }

    fn bytes(&self, column: Column) -> Result<Vec<u8>, StoreError> {
        unhex(column.name, &self.text(column.name)?)
    }
}

/// Field/value pairs, flattened for `HSET`.
pub(super) fn pairs<'a>(fields: impl IntoIterator<Item = (&'a str, String)>) -> Vec<String> {
    fields.into_iter().flat_map(|(name, value)| [name.to_owned(), value]).collect()
}

pub(super) fn user_fields(user: &User) -> Result<Vec<String>, StoreError> {
    Ok(pairs([
        ("username", user.username.clone()),
        ("password_hash", user.password_hash.clone()),
        ("roles", to_json(&user.roles)?),
        ("disabled", flag(user.disabled)),
        ("created_at", user.created_at.to_string()),
        ("profile", to_json(&user.profile)?),
    ]))
}

pub(super) fn client_fields(client: &Client) -> Result<Vec<String>, StoreError> {
    let mut fields = vec![
        ("client_id", client.client_id.clone()),
        ("secret_hash", hex(&client.secret_hash)),
        ("scopes", to_json(&client.scopes)?),
        ("audiences", to_json(&client.audiences)?),
        ("grants", to_json(&client.grants)?),
        ("disabled", flag(client.disabled)),
        ("created_at", client.created_at.to_string()),
    ];
    fields.extend(client.jwks.clone().map(|jwks| ("jwks", jwks)));
    fields.extend(client.code_flow.as_ref().map(to_json).transpose()?.map(|flow| ("code_flow", flow)));
    Ok(pairs(fields))
}

/// A new session's fields; the optional ones (scope, user agent, revocation) are absent rather than empty.
pub(super) fn session_fields(session: &Session) -> Result<Vec<String>, StoreError> {
    let mut fields = vec![
        ("sid", session.sid.clone()),
        ("sub", session.sub.clone()),
        ("client_id", session.client_id.clone()),
        ("roles", to_json(&session.roles)?),
        ("claims", to_json(&session.claims)?),
        ("created_at", session.created_at.to_string()),
        ("expires_at", session.expires_at.to_string()),
        ("last_used_at", session.last_used_at.to_string()),
        ("generation", session.generation.to_string()),
        ("generation_issued_at", session.generation_issued_at.to_string()),
    ];
    fields.extend(session.scope.clone().map(|scope| ("scope", scope)));
    fields.extend(session.user_agent.clone().map(|agent| ("user_agent", agent)));
    let (revoked_at, revoked_reason) = session.state.to_columns();
    fields.extend(revoked_at.map(|at| ("revoked_at", at.to_string())));
    fields.extend(revoked_reason.map(|reason| ("revoked_reason", reason.to_owned())));
    Ok(pairs(fields))
}

pub(super) fn session_from_value(value: Value) -> Result<Session, StoreError> {
    codec::session_from(
        &Fields::from_value(value)?.ok_or_else(|| StoreError::corrupt("session", "a script returned none"))?,
    )
}

/// A revocation log entry as stored (its position is the member's prefix and the score).
#[derive(Serialize, Deserialize)]
pub(super) struct LogRecord {
    pub(super) at: Millis,
    pub(super) kind: String,
    pub(super) value: String,
    pub(super) instant: Option<Millis>,
    pub(super) actor: String,
    pub(super) reason: String,
}

impl LogRecord {
    pub(super) fn of(revocation: &Revocation, provenance: &Provenance, at: Millis) -> Self {
        let (kind, value, instant) = revocation.to_columns();
        Self {
            at,
            kind: kind.to_owned(),
            value: value.to_owned(),
            instant,
            actor: provenance.actor.clone(),
            reason: provenance.reason.clone(),
        }
    }

    /// The entry at position `id` of `partition`.
    pub(super) fn into_entry(self, partition: usize, id: i64) -> Result<RevocationEntry, StoreError> {
        Ok(RevocationEntry {
            partition,
            id,
            at: self.at,
            revocation: codec::revocation_from(&self.kind, self.value, self.instant)?,
            provenance: Provenance { actor: self.actor, reason: self.reason },
        })
    }
}

/// A security event as stored (its id is the member's prefix and the score). Events kept before they had an actor
/// have none.
#[derive(Serialize, Deserialize)]
pub(super) struct EventRecord {
    pub(super) at: Millis,
    pub(super) kind: String,
    pub(super) sub: Option<String>,
    pub(super) sid: Option<String>,
    #[serde(default)]
    pub(super) actor: Option<String>,
    pub(super) detail: String,
}

impl EventRecord {
    pub(super) fn of(event: &NewSecurityEvent) -> Self {
        Self {
            at: event.at,
            kind: event.kind.as_str().to_owned(),
            sub: event.sub.clone(),
            sid: event.sid.clone(),
            actor: event.actor.clone(),
            detail: event.detail.clone(),
        }
    }

    pub(super) fn with_id(self, id: u64) -> SecurityEvent {
        let Self { at, kind, sub, sid, actor, detail } = self;
        SecurityEvent { id, at, kind, sub, sid, actor, detail }
    }
}

/// The refusal the refresh script answered with, by its name ([`Refusal::as_str`]).
pub(super) fn refusal(reason: &str) -> Result<Refusal, StoreError> {
    Refusal::from_name(reason)
        .ok_or_else(|| StoreError::corrupt("refresh script reply", format!("refused for {reason:?}")))
}

/// A number stored as decimal text.
fn parse<T: std::str::FromStr>(what: &'static str, text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::corrupt(what, format!("not a number: {text:?}")))
}
