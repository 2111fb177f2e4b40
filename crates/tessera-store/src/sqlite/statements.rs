//! What several SQLite calls share: reading rows through the shared [`crate::codec`], and the statements
//! that load a session or a subject, change one row, and apply and log a revocation inside the caller's
//! transaction.

use rusqlite::{params, Connection, OptionalExtension as _, Row};

use crate::codec::{self, Column, Record};
use crate::model::{AutomaticRevocation, Millis, Provenance, Revocation, Session};
use crate::{StoreError, SubjectState};

impl Record for Row<'_> {
    fn text(&self, column: Column) -> Result<String, StoreError> {
        Ok(self.get(column.index)?)
    }

    fn optional_text(&self, column: Column) -> Result<Option<String>, StoreError> {
        Ok(self.get(column.index)?)
    }

    fn integer(&self, column: Column) -> Result<i64, StoreError> {
        Ok(self.get(column.index)?)
    }

    fn optional_integer(&self, column: Column) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column.index)?)
    }

    fn flag(&self, column: Column) -> Result<bool, StoreError> {
        Ok(self.get(column.index)?)
    }

    fn bytes(&self, column: Column) -> Result<Vec<u8>, StoreError> {
        Ok(self.get(column.index)?)
    }
}

/// Decodes a row with `decode` inside rusqlite's row callback, keeping a decoding error apart from rusqlite's.
pub(super) fn decoded<T>(
    decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> impl FnMut(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>> {
    move |row| Ok(decode(row))
}

/// Every row a query returned, decoded.
pub(super) fn all<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    rows.map(|row| row?).collect()
}

/// The one row a query returned, if any, decoded.
pub(super) fn optional<T>(row: rusqlite::Result<Result<T, StoreError>>) -> Result<Option<T>, StoreError> {
    row.optional()?.transpose()
}

pub(super) fn load_family(conn: &Connection, sid: &str) -> Result<Option<Session>, StoreError> {
    let sql = format!("SELECT {} FROM families WHERE sid = ?1", codec::SESSION_COLUMNS);
    optional(conn.prepare_cached(&sql)?.query_row([sid], decoded(|row| codec::session_from(row))))
}

pub(super) fn load_subject(conn: &Connection, sub: &str) -> Result<SubjectState, StoreError> {
    let (not_before, disabled) = conn
        .prepare_cached(
            "SELECT (SELECT not_before FROM subjects WHERE sub = ?1), (SELECT disabled FROM users WHERE username = ?1)",
        )?
        .query_row([sub], |row| Ok((row.get(0)?, row.get::<_, Option<bool>>(1)?)))?;
    Ok(SubjectState { not_before, disabled: disabled.unwrap_or(false) })
}

/// Runs an UPDATE that must change exactly one existing row.
pub(super) fn update_one(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    what: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    if conn.prepare_cached(sql)?.execute(params)? == 0 {
        return Err(StoreError::NotFound(what()));
    }
    Ok(())
}

fn log_revocation(
    conn: &Connection,
    now: Millis,
    revocation: &Revocation,
    provenance: &Provenance,
) -> Result<(), StoreError> {
    let (kind, value, instant) = revocation.to_columns();
    conn.prepare_cached(
        "INSERT INTO revocation_log (at, kind, value, instant, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now, kind, value, instant, provenance.actor, provenance.reason])?;
    Ok(())
}

/// Applies a revocation and logs it, in the caller's transaction. Whether it changed anything: a session that
/// was live, a subject instant that moved forward, a token or client entry (always new).
pub(super) fn revoke_in(
    conn: &Connection,
    revocation: &Revocation,
    provenance: &Provenance,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = match revocation {
        Revocation::Session { sid } => {
            conn.prepare_cached(
                "UPDATE families SET revoked_at = ?2, revoked_reason = ?3 WHERE sid = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![sid, now, provenance.reason])?
                > 0
        }
        // Instants only move forward: an older instant arriving late never un-revokes anything.
        Revocation::Subject { sub, not_before } => {
            conn.prepare_cached(
                "INSERT INTO subjects (sub, not_before) VALUES (?1, ?2)
                 ON CONFLICT (sub) DO UPDATE SET not_before = excluded.not_before
                 WHERE excluded.not_before > not_before",
            )?
            .execute(params![sub, not_before])?
                > 0
        }
        Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => true,
    };
    if changed {
        log_revocation(conn, now, revocation, provenance)?;
    }
    Ok(changed)
}

/// Logs a client change at `now` (see [`Revocation::Client`]), ending its tokens issued up to `not_before`.
pub(super) fn client_changed(
    conn: &Connection,
    client_id: &str,
    now: Millis,
    not_before: Millis,
    reason: AutomaticRevocation,
) -> Result<(), StoreError> {
    let revocation = Revocation::Client { client_id: client_id.to_owned(), not_before };
    revoke_in(conn, &revocation, &Provenance::automatic(reason), now).map(drop)
}
