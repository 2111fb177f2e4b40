//! Security events in SQLite: recorded by the writer thread (so ids follow commit order), read with only the
//! filters asked for.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter};

use super::statements::{all, decoded};
use super::SqliteStore;
use crate::codec::{self, SqlValue};
use crate::model::{NewSecurityEvent, SecurityEvent, SecurityEventQuery};
use crate::StoreError;

impl SqliteStore {
    pub(super) async fn record_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        self.write(move |conn| {
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO security_events (at, kind, sub, sid, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     RETURNING id",
                )?
                .query_row(
                    params![
                        event.at,
                        event.kind.as_str(),
                        event.sub.as_deref().unwrap_or_default(),
                        event.sid.as_deref().unwrap_or_default(),
                        event.actor.as_deref().unwrap_or_default(),
                        event.detail,
                    ],
                    |row| row.get(0),
                )?;
            Ok(event.recorded(codec::event_id(id)?))
        })
        .await
    }

    pub(super) async fn query_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        let (sql, values) = codec::event_query_sql(query, '?');
        self.read(move |conn| {
            let values = values.into_iter().map(|value| match value {
                SqlValue::Integer(n) => Value::Integer(n),
                SqlValue::Text(text) => Value::Text(text),
            });
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = all(statement.query_map(params_from_iter(values), decoded(|row| codec::event_from(row)))?);
            rows
        })
        .await
    }
}
