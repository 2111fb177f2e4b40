//! How stored rows and records become the model again, written once for every backend: each backend only says
//! how to read one typed column of its rows ([`Record`]: a SQLite row, a PostgreSQL row, a Redis hash), and the
//! decoders here put users, clients, sessions, revocation-log entries and security events together from them.
//! What cannot be decoded as written — an unknown revocation kind, a missing instant, malformed JSON, a negative
//! generation — is [`StoreError::Corrupt`], never a guess.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{Client, Millis, Revocation, Session, SessionState, User};
use crate::StoreError;

/// One column of a stored record: its position in the SQL backends' column lists (below) and its field name in
/// a Redis hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))] // Redis reads by name
    pub(crate) index: usize,
    pub(crate) name: &'static str,
}

const fn column(index: usize, name: &'static str) -> Column {
    Column { index, name }
}

/// A stored row or record, read one typed column at a time. A missing required column, or one of another type,
/// is an error; an absent optional one is `None`.
pub(crate) trait Record {
    fn text(&self, column: Column) -> Result<String, StoreError>;
    fn optional_text(&self, column: Column) -> Result<Option<String>, StoreError>;
    fn integer(&self, column: Column) -> Result<i64, StoreError>;
    fn optional_integer(&self, column: Column) -> Result<Option<i64>, StoreError>;
    fn flag(&self, column: Column) -> Result<bool, StoreError>;
    fn bytes(&self, column: Column) -> Result<Vec<u8>, StoreError>;
}

/// JSON text of a value, for the columns that hold lists and claims.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(Box::new(err)))
}

/// The value JSON text in `what` holds; malformed text is corrupt.
pub(crate) fn from_json<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::corrupt(what, format!("malformed JSON: {err}")))
}

fn json<T: DeserializeOwned>(record: &impl Record, column: Column) -> Result<T, StoreError> {
    from_json(column.name, &record.text(column)?)
}

fn optional_json<T: DeserializeOwned>(record: &impl Record, column: Column) -> Result<Option<T>, StoreError> {
    record.optional_text(column)?.map(|text| from_json(column.name, &text)).transpose()
}

/// A stored generation (a signed integer in SQL).
pub(crate) fn generation(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored).map_err(|_| StoreError::corrupt("generation", format!("negative generation {stored}")))
}

/// A generation as PostgreSQL stores it.
#[cfg(feature = "postgres")]
pub(crate) fn stored_generation(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::backend(format!("generation {value} out of range")))
}

/// A stored document version (a signed integer in SQL).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn document_version(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored).map_err(|_| StoreError::corrupt("document version", format!("negative version {stored}")))
}

/// A document version as SQL stores it: one the store handed out, so a larger one is the caller's mistake.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn stored_document_version(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::backend("document version out of range"))
}

/// The user columns, in this order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const USER_COLUMNS: &str = "username, password_hash, roles, disabled, created_at, profile";

/// A user.
pub(crate) fn user_from(record: &impl Record) -> Result<User, StoreError> {
    Ok(User {
        username: record.text(column(0, "username"))?,
        password_hash: record.text(column(1, "password_hash"))?,
        roles: json(record, column(2, "roles"))?,
        disabled: record.flag(column(3, "disabled"))?,
        created_at: record.integer(column(4, "created_at"))?,
        // Absent from records written before profiles existed: nothing released.
        profile: optional_json(record, column(5, "profile"))?.unwrap_or_default(),
    })
}

/// The client columns, in this order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const CLIENT_COLUMNS: &str =
    "client_id, secret_hash, scopes, audiences, grants, disabled, created_at, jwks, code_flow";

/// A client.
pub(crate) fn client_from(record: &impl Record) -> Result<Client, StoreError> {
    Ok(Client {
        client_id: record.text(column(0, "client_id"))?,
        secret_hash: record.bytes(column(1, "secret_hash"))?,
        scopes: json(record, column(2, "scopes"))?,
        audiences: json(record, column(3, "audiences"))?,
        grants: json(record, column(4, "grants"))?,
        disabled: record.flag(column(5, "disabled"))?,
        created_at: record.integer(column(6, "created_at"))?,
        jwks: record.optional_text(column(7, "jwks"))?,
        code_flow: optional_json(record, column(8, "code_flow"))?,
    })
}

/// The session columns, in this order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const SESSION_COLUMNS: &str = "sid, sub, client_id, scope, roles, claims, user_agent, created_at, \
     expires_at, last_used_at, generation, generation_issued_at, revoked_at, revoked_reason";

/// How many session columns there are: what a query selects after them starts at this position.
#[cfg(all(feature = "postgres", feature = "redis"))]
pub(crate) const SESSION_COLUMN_COUNT: usize = 14;

/// A session.
pub(crate) fn session_from(record: &impl Record) -> Result<Session, StoreError> {
    let revoked_at = record.optional_integer(column(12, "revoked_at"))?;
    let revoked_reason = record.optional_text(column(13, "revoked_reason"))?;
    let state = SessionState::from_columns(revoked_at, revoked_reason)
        .map_err(|missing| StoreError::corrupt(missing, "a revocation is stored with its instant and its reason"))?;
    Ok(Session {
        sid: record.text(column(0, "sid"))?,
        sub: record.text(column(1, "sub"))?,
        client_id: record.text(column(2, "client_id"))?,
        scope: record.optional_text(column(3, "scope"))?,
        roles: json(record, column(4, "roles"))?,
        claims: json(record, column(5, "claims"))?,
        user_agent: record.optional_text(column(6, "user_agent"))?,
        created_at: record.integer(column(7, "created_at"))?,
        expires_at: record.integer(column(8, "expires_at"))?,
        last_used_at: record.integer(column(9, "last_used_at"))?,
        generation: generation(record.integer(column(10, "generation"))?)?,
        generation_issued_at: record.integer(column(11, "generation_issued_at"))?,
        state,
    })
}

/// The revocation-log columns, in this order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const REVOCATION_COLUMNS: &str = "id, at, kind, value, instant, actor, reason";

/// A revocation-log entry.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn revocation_entry_from(record: &impl Record) -> Result<crate::model::RevocationEntry, StoreError> {
    let kind = record.text(column(2, "kind"))?;
    let revocation =
        revocation_from(&kind, record.text(column(3, "value"))?, record.optional_integer(column(4, "instant"))?)?;
    Ok(crate::model::RevocationEntry {
        partition: 0,
        id: record.integer(column(0, "id"))?,
        at: record.integer(column(1, "at"))?,
        revocation,
        provenance: crate::model::Provenance {
            actor: record.text(column(5, "actor"))?,
            reason: record.text(column(6, "reason"))?,
        },
    })
}

/// The inverse of [`Revocation::to_columns`]: a kind this store never writes, or an instant missing where the kind
/// has one, is corrupt.
pub(crate) fn revocation_from(kind: &str, value: String, instant: Option<Millis>) -> Result<Revocation, StoreError> {
    let instant =
        || instant.ok_or_else(|| StoreError::corrupt("revocation instant", format!("a {kind} revocation without one")));
    Ok(match kind {
        "session" => Revocation::Session { sid: value },
        "subject" => Revocation::Subject { sub: value, not_before: instant()? },
        "token" => Revocation::Token { jti: value, expires_at: instant()? },
        "token_by_id" => Revocation::TokenById { jti: value, expires_at: instant()? },
        "client" => Revocation::Client { client_id: value, not_before: instant()? },
        other => return Err(StoreError::corrupt("revocation kind", format!("unknown kind {other:?}"))),
    })
}

/// The security-event columns, in this order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const EVENT_COLUMNS: &str = "id, at, kind, sub, sid, actor, detail";

/// A security event. Its subject, session and actor are stored as empty text when there is none (the columns
/// predate them being optional).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn event_from(record: &impl Record) -> Result<crate::model::SecurityEvent, StoreError> {
    let optional = |column| record.text(column).map(|text| Some(text).filter(|text| !text.is_empty()));
    Ok(crate::model::SecurityEvent {
        id: event_id(record.integer(column(0, "id"))?)?,
        at: record.integer(column(1, "at"))?,
        kind: record.text(column(2, "kind"))?,
        sub: optional(column(3, "sub"))?,
        sid: optional(column(4, "sid"))?,
        actor: optional(column(5, "actor"))?,
        detail: record.text(column(6, "detail"))?,
    })
}

/// A stored security-event id (a signed integer in SQL and Redis scores).
pub(crate) fn event_id(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored).map_err(|_| StoreError::corrupt("security event id", format!("negative id {stored}")))
}

/// A value bound to a placeholder of [`event_query_sql`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) enum SqlValue {
    Integer(i64),
    Text(String),
}

/// The SQL backends' query for `query`, its placeholders numbered and written as `{marker}N` (`?` for SQLite, `$`
/// for PostgreSQL), and the values to bind to them in order. Only the filters given become conditions, so each
/// combination is a statement of its own that can use the indexes (`kind`, `sub`) and the id order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn event_query_sql(query: &crate::model::SecurityEventQuery, marker: char) -> (String, Vec<SqlValue>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut condition = |text: &str, value: SqlValue| {
        values.push(value);
        conditions.push(format!("{text} {marker}{}", values.len()));
    };
    if let Some(kind) = query.kind {
        condition("kind =", SqlValue::Text(kind.as_str().to_owned()));
    }
    if let Some(sub) = &query.sub {
        condition("sub =", SqlValue::Text(sub.clone()));
    }
    if let Some(since) = query.since {
        condition("at >=", SqlValue::Integer(since));
    }
    if let Some(until) = query.until {
        condition("at <", SqlValue::Integer(until));
    }
    if let Some(before) = query.before {
        condition("id <", SqlValue::Integer(i64::try_from(before).unwrap_or(i64::MAX)));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    values.push(SqlValue::Integer(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    let sql =
        format!("SELECT {EVENT_COLUMNS} FROM security_events{filter} ORDER BY id DESC LIMIT {marker}{}", values.len());
    (sql, values)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a panic here is a failed test

    use super::*;

    fn is_corrupt(result: Result<Revocation, StoreError>, expected: &str) -> bool {
        matches!(result, Err(StoreError::Corrupt { what, .. }) if what == expected)
    }

    #[test]
    fn every_revocation_reads_back_as_written() {
        let written = [
            Revocation::Session { sid: "s".into() },
            Revocation::Subject { sub: "u".into(), not_before: 5 },
            Revocation::Token { jti: "j".into(), expires_at: 6 },
            Revocation::TokenById { jti: "k".into(), expires_at: 7 },
            Revocation::Client { client_id: "c".into(), not_before: 0 },
        ];
        for revocation in written {
            let (kind, value, instant) = revocation.to_columns();
            assert_eq!(revocation_from(kind, value.to_owned(), instant).unwrap(), revocation);
        }
    }

    #[test]
    fn an_unknown_revocation_kind_is_corrupt_not_a_client_revocation() {
        assert!(is_corrupt(revocation_from("cleint", "c".into(), Some(1)), "revocation kind"));
        assert!(is_corrupt(revocation_from("", "c".into(), None), "revocation kind"));
    }

    #[test]
    fn a_missing_instant_is_corrupt_not_zero() {
        for kind in ["subject", "token", "token_by_id", "client"] {
            assert!(is_corrupt(revocation_from(kind, "x".into(), None), "revocation instant"), "{kind}");
        }
    }

    /// A stored session, every column plausible, with these revocation columns.
    struct StoredSession {
        revoked_at: Option<Millis>,
        revoked_reason: Option<&'static str>,
    }

    impl Record for StoredSession {
        fn text(&self, column: Column) -> Result<String, StoreError> {
            Ok(match column.name {
                "roles" => "[]".into(),
                "claims" => "{}".into(),
                _ => "x".into(),
            })
        }
        fn optional_text(&self, column: Column) -> Result<Option<String>, StoreError> {
            Ok(self.revoked_reason.filter(|_| column.name == "revoked_reason").map(str::to_owned))
        }
        fn integer(&self, _: Column) -> Result<i64, StoreError> {
            Ok(1)
        }
        fn optional_integer(&self, column: Column) -> Result<Option<i64>, StoreError> {
            Ok(self.revoked_at.filter(|_| column.name == "revoked_at"))
        }
        fn flag(&self, _: Column) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn bytes(&self, _: Column) -> Result<Vec<u8>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_session_revoked_without_a_reason_or_with_a_reason_alone_is_corrupt() {
        let state = |revoked_at, revoked_reason| session_from(&StoredSession { revoked_at, revoked_reason });
        assert_eq!(state(None, None).unwrap().state, SessionState::Active);
        assert_eq!(
            state(Some(5), Some("logout")).unwrap().state,
            SessionState::Revoked { at: 5, reason: "logout".into() }
        );
        assert!(matches!(state(Some(5), None), Err(StoreError::Corrupt { what: "revoked_reason", .. })));
        assert!(matches!(state(None, Some("logout")), Err(StoreError::Corrupt { what: "revoked_at", .. })));
    }

    #[test]
    fn a_negative_generation_and_malformed_json_are_corrupt() {
        assert!(matches!(generation(-1), Err(StoreError::Corrupt { what: "generation", .. })));
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        assert!(matches!(document_version(-1), Err(StoreError::Corrupt { what: "document version", .. })));
        let roles: Result<Vec<String>, _> = from_json("roles", "[\"admin\"");
        assert!(matches!(roles, Err(StoreError::Corrupt { what: "roles", .. })));
    }

    /// Reads every column a decoder asks for, answering with a plausible value, and remembers which it was asked.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[derive(Default)]
    struct Asked(std::cell::RefCell<Vec<(usize, &'static str)>>);

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    impl Asked {
        fn note(&self, column: Column) {
            self.0.borrow_mut().push((column.index, column.name));
        }
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    impl Record for Asked {
        fn text(&self, column: Column) -> Result<String, StoreError> {
            self.note(column);
            Ok(match column.name {
                "roles" | "scopes" | "audiences" | "grants" => "[]".into(),
                "claims" => "{}".into(),
                "kind" => "session".into(),
                _ => String::new(),
            })
        }
        fn optional_text(&self, column: Column) -> Result<Option<String>, StoreError> {
            self.note(column);
            Ok(None)
        }
        fn integer(&self, column: Column) -> Result<i64, StoreError> {
            self.note(column);
            Ok(0)
        }
        fn optional_integer(&self, column: Column) -> Result<Option<i64>, StoreError> {
            self.note(column);
            Ok(None)
        }
        fn flag(&self, column: Column) -> Result<bool, StoreError> {
            self.note(column);
            Ok(false)
        }
        fn bytes(&self, column: Column) -> Result<Vec<u8>, StoreError> {
            self.note(column);
            Ok(Vec::new())
        }
    }

    /// The SQL backends select the column lists and the decoders read by position: position and name agree.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn each_decoder_reads_its_column_list_in_order() {
        fn asked<T>(decode: impl Fn(&Asked) -> Result<T, StoreError>) -> Vec<(usize, &'static str)> {
            let record = Asked::default();
            decode(&record).unwrap();
            let mut asked = record.0.into_inner();
            asked.sort_unstable();
            asked
        }
        let listed = |columns: &str| -> Vec<(usize, String)> {
            columns.split(',').map(|name| name.trim().to_owned()).enumerate().collect()
        };
        let cases: [(&str, Vec<(usize, &str)>); 5] = [
            (USER_COLUMNS, asked(user_from)),
            (CLIENT_COLUMNS, asked(client_from)),
            (SESSION_COLUMNS, asked(session_from)),
            (REVOCATION_COLUMNS, asked(revocation_entry_from)),
            (EVENT_COLUMNS, asked(event_from)),
        ];
        for (columns, asked) in cases {
            let asked: Vec<(usize, String)> = asked.into_iter().map(|(i, name)| (i, name.to_owned())).collect();
            assert_eq!(asked, listed(columns), "{columns}");
        }
    }
}
