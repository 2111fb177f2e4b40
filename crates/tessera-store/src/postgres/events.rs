//! Security events in PostgreSQL. `bigserial` ids are assigned at insert but transactions commit in any order, so
//! an event is recorded under the revocation log's advisory lock (which reuse detection holds when it records
//! its event): ids are assigned and committed in order, and a reader that has seen an id has seen every smaller
//! one — what a receiver reconciling by id relies on.

use tokio_postgres::types::ToSql;

use super::revocations::LOG_LOCK;
use super::{prepared, PostgresStore};
use crate::codec::{self, SqlValue};
use crate::model::{NewSecurityEvent, SecurityEvent, SecurityEventQuery};
use crate::StoreError;

impl PostgresStore {
    pub(super) async fn record_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        tx.execute(&prepared(&tx, "SELECT pg_advisory_xact_lock($1)").await?, &[&LOG_LOCK]).await?;
        let insert = "INSERT INTO security_events (at, kind, sub, sid, actor, detail) VALUES ($1, $2, $3, $4, $5, $6)
                      RETURNING id";
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let (sub, sid, actor) = (text(&event.sub), text(&event.sid), text(&event.actor));
        let params: [&(dyn ToSql + Sync); 6] = [&event.at, &event.kind.as_str(), &sub, &sid, &actor, &event.detail];
        let id: i64 = tx.query_one(&prepared(&tx, insert).await?, &params).await?.try_get(0)?;
        tx.commit().await?;
        Ok(event.recorded(codec::event_id(id)?))
    }

    pub(super) async fn query_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        let db = self.pool.get().await?;
        let (sql, values) = codec::event_query_sql(query, '$');
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|value| -> &(dyn ToSql + Sync) {
                match value {
                    SqlValue::Integer(n) => n,
                    SqlValue::Text(text) => text,
                }
            })
            .collect();
        db.query(&prepared(&db, &sql).await?, &params).await?.iter().map(codec::event_from).collect()
    }
}
