//! PostgreSQL, shared by several Tessera nodes: every node reads and writes the same authoritative state, each
//! change commits (and is durable) before it is acknowledged, and refresh rotation is one transaction holding the
//! session's row lock, so concurrent presentations of one token — on any node — produce exactly one rotation.
//!
//! The revocation log is read by position. PostgreSQL assigns `bigserial` ids at insert time but transactions
//! commit in any order, so a reader could see id 11 before id 10 commits and skip 10 for ever. Log writers
//! therefore take one transaction-scoped advisory lock: ids are assigned and committed in order. Revocations are
//! rare next to refreshes (a rotation logs nothing), so the serialisation costs little ([`revocations`]).
//!
//! Nodes learn of log growth by LISTEN/NOTIFY ([`listen`]). Rows are read back through the shared
//! [`crate::codec`]; the schema is the migrations in `migrations/`.

use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Row};

use self::revocations::{client_changed, revoke_in, theft_in, write_revocations};
use crate::batch::{PendingRevocation, REVOCATION_BATCH};
use crate::codec::{self, to_json, Column, Record, CLIENT_COLUMNS, REVOCATION_COLUMNS, SESSION_COLUMNS, USER_COLUMNS};
use crate::model::{
    decide, AutomaticRevocation, Client, Decision, Document, Millis, NewSecurityEvent, NewSession, Provenance,
    RefreshOutcome, RefreshRules, Refusal, Revocation, SecurityEventQuery, Session,
};
use crate::{LogCursor, RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User};

mod events;
mod listen;
mod revocations;

/// Schema migrations, applied in order under an advisory lock (nodes starting together do not race);
/// `tessera_schema` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/01_initial.sql"),
    include_str!("migrations/02_used_assertions.sql"),
    include_str!("migrations/03_documents.sql"),
    include_str!("migrations/04_token_by_id.sql"),
    include_str!("migrations/05_sessions_by_expiry.sql"),
    include_str!("migrations/06_security_event_actor.sql"),
    include_str!("migrations/07_sign_in.sql"),
];

/// Advisory lock key (an arbitrary constant, namespaced by its value) held while migrating.
const MIGRATION_LOCK: i64 = 0x7465_7373_0001;

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        match err.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                Self::AlreadyExists(err.to_string())
            }
            _ => Self::Backend(Box::new(err)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::backend_because("PostgreSQL connection pool", err)
    }
}

impl Record for Row {
    fn text(&self, column: Column) -> Result<String, StoreError> {
        Ok(self.try_get(column.index)?)
    }

    fn optional_text(&self, column: Column) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column.index)?)
    }

    fn integer(&self, column: Column) -> Result<i64, StoreError> {
        Ok(self.try_get(column.index)?)
    }

    fn optional_integer(&self, column: Column) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column.index)?)
    }

    fn flag(&self, column: Column) -> Result<bool, StoreError> {
        Ok(self.try_get(column.index)?)
    }

    fn bytes(&self, column: Column) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(column.index)?)
    }
}

async fn load_subject(db: &impl GenericClient, sub: &str) -> Result<SubjectState, StoreError> {
    let row = db
        .query_one(
            &prepared(db, "SELECT (SELECT not_before FROM subjects WHERE sub = $1), (SELECT disabled FROM users WHERE username = $1)").await?,
            &[&sub],
        )
        .await?;
    Ok(SubjectState { not_before: row.try_get(0)?, disabled: row.try_get::<_, Option<bool>>(1)?.unwrap_or(false) })
}

/// `sql` prepared once per connection and then reused: sent as text, a statement is prepared again on every
/// call, which costs a second round trip and a parse.
pub(super) async fn prepared(db: &impl GenericClient, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
    Ok(db.prepare_cached(sql).await?)
}

/// Runs an UPDATE that must change exactly one existing row.
async fn update_one(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    if db.execute(&prepared(db, sql).await?, params).await? == 0 {
        return Err(StoreError::NotFound(what()));
    }
    Ok(())
}

/// The PostgreSQL backend: a pool of connections to one database.
pub struct PostgresStore {
    pool: Pool,
    log_changes: tokio::sync::watch::Receiver<u64>,
    listener: tokio::task::JoinHandle<()>,
    revocations: tokio::sync::mpsc::Sender<PendingRevocation>,
    revocation_writer: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.revocation_writer.abort();
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, plain TCP on a trusted network or a local socket) with up
    /// to `pool_size` connections, and runs pending migrations.
    ///
    /// # Errors
    /// A bad URL, an unreachable server, or a failed migration.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|err| StoreError::backend_because("PostgreSQL URL", err))?;
        let (changes, log_changes) = tokio::sync::watch::channel(0);
        let listener = tokio::spawn(listen::listen(config.clone(), changes));
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|err| StoreError::backend_because("PostgreSQL connection pool", err))?;
        let (revocations, queue) = tokio::sync::mpsc::channel(4 * REVOCATION_BATCH);
        let revocation_writer = tokio::spawn(write_revocations(pool.clone(), queue));
        let store = Self { pool, log_changes, listener, revocations, revocation_writer };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS tessera_schema (version INTEGER NOT NULL)").await?;
        let applied: i64 = tx.query_one("SELECT count(*) FROM tessera_schema", &[]).await?.try_get(0)?;
        let applied = usize::try_from(applied).unwrap_or(usize::MAX);
        if applied > MIGRATIONS.len() {
            return Err(StoreError::backend(format!(
                "database schema version {applied} is newer than this Tessera ({}); upgrade Tessera",
                MIGRATIONS.len()
            )));
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            tx.batch_execute(sql).await?;
            let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
            tx.execute("INSERT INTO tessera_schema (version) VALUES ($1)", &[&version]).await?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Session `sid` as recorded here (who, when, whether revoked) and its subject's state, in one round trip:
    /// what the tiered store checks before Redis rotates the session.
    #[cfg(feature = "redis")] // for the tiered store
    pub(crate) async fn session_and_subject(&self, sid: &str) -> Result<Option<(Session, SubjectState)>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS},
                    (SELECT s.not_before FROM subjects s WHERE s.sub = f.sub),
                    (SELECT u.disabled FROM users u WHERE u.username = f.sub)
             FROM families f WHERE f.sid = $1"
        );
        let Some(row) = db.query_opt(&prepared(&db, &sql).await?, &[&sid]).await? else { return Ok(None) };
        let subject = SubjectState {
            not_before: row.try_get(codec::SESSION_COLUMN_COUNT)?,
            disabled: row.try_get::<_, Option<bool>>(codec::SESSION_COLUMN_COUNT + 1)?.unwrap_or(false),
        };
        Ok(Some((codec::session_from(&row)?, subject)))
    }

    /// Records that `family`'s rotated generation `presented` came back — reuse found where the rotation state
    /// lives (tiered mode's Redis): the session is revoked and logged with its security event; `family` then says
    /// so.
    #[cfg(feature = "redis")] // for the tiered store
    pub(crate) async fn record_theft(
        &self,
        family: &mut Session,
        presented: u64,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        theft_in(&tx, family, presented, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING");
        let (roles, profile) = (to_json(&user.roles)?, to_json(&user.profile)?);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&user.username, &user.password_hash, &roles, &user.disabled, &user.created_at, &profile];
        if db.execute(&prepared(&db, &sql).await?, &params).await? == 0 {
            return Err(StoreError::AlreadyExists(format!("user {:?}", user.username)));
        }
        Ok(())
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        db.query_opt(&prepared(&db, &sql).await?, &[&username]).await?.as_ref().map(codec::user_from).transpose()
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        db.query(&prepared(&db, &sql).await?, &[]).await?.iter().map(codec::user_from).collect()
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        update_one(&tx, "UPDATE users SET disabled = $2 WHERE username = $1", &[&username, &disabled], || {
            format!("user {username:?}")
        })
        .await?;
        if disabled {
            let revocation = Revocation::Subject { sub: username.to_owned(), not_before: now };
            revoke_in(&tx, &revocation, &Provenance::automatic(AutomaticRevocation::UserDisabled), now).await?;
        }
        Ok(tx.commit().await?)
    }

    async fn set_password(&self, username: &str, password_hash: String) -> Result<(), StoreError> {
        let db = self.pool.get().await?;
        update_one(&db, "UPDATE users SET password_hash = $2 WHERE username = $1", &[&username, &password_hash], || {
            format!("user {username:?}")
        })
        .await
    }

    async fn create_client(&self, client: Client) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let sql = format!(
            "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        );
        let (scopes, audiences, grants) =
            (to_json(&client.scopes)?, to_json(&client.audiences)?, to_json(&client.grants)?);
        let code_flow = client.code_flow.as_ref().map(to_json).transpose()?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &client.client_id,
            &client.secret_hash,
            &scopes,
            &audiences,
            &grants,
            &client.disabled,
            &client.created_at,
            &client.jwks,
            &code_flow,
        ];
        if tx.execute(&prepared(&tx, &sql).await?, &params).await? == 0 {
            return Err(StoreError::AlreadyExists(format!("client {:?}", client.client_id)));
        }
        // Instant 0: a new client has no tokens to cut off; verifiers only learn that it exists.
        client_changed(&tx, &client.client_id, client.created_at, 0, AutomaticRevocation::ClientAdded).await?;
        Ok(tx.commit().await?)
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1");
        db.query_opt(&prepared(&db, &sql).await?, &[&client_id]).await?.as_ref().map(codec::client_from).transpose()
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id");
        db.query(&prepared(&db, &sql).await?, &[]).await?.iter().map(codec::client_from).collect()
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        update_one(&tx, "UPDATE clients SET disabled = $2 WHERE client_id = $1", &[&client_id, &disabled], || {
            format!("client {client_id:?}")
        })
        .await?;
        // Re-enabling revives nothing: the tokens from before the disabling stay dead.
        let (instant, reason) =
            if disabled { (now, AutomaticRevocation::ClientDisabled) } else { (0, AutomaticRevocation::ClientEnabled) };
        client_changed(&tx, client_id, now, instant, reason).await?;
        Ok(tx.commit().await?)
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        update_one(
            &tx,
            "UPDATE clients SET secret_hash = $2 WHERE client_id = $1 AND jwks IS NULL",
            &[&client_id, &secret_hash],
            || format!("client {client_id:?}"),
        )
        .await?;
        client_changed(&tx, client_id, now, now, AutomaticRevocation::ClientSecretRotated).await?;
        Ok(tx.commit().await?)
    }

    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        update_one(
            &tx,
            "UPDATE clients SET jwks = $2 WHERE client_id = $1 AND jwks IS NOT NULL",
            &[&client_id, &jwks],
            || format!("private_key_jwt client {client_id:?}"),
        )
        .await?;
        client_changed(&tx, client_id, now, now, AutomaticRevocation::ClientKeysReplaced).await?;
        Ok(tx.commit().await?)
    }

    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let db = self.pool.get().await?;
        db.execute(&prepared(&db, "DELETE FROM used_assertions WHERE expires_at < $1").await?, &[&now]).await?;
        let inserted = db
            .execute(
                &prepared(&db, "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING").await?,
                &[&client_id, &jti, &expires_at],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn create_session(&self, session: NewSession) -> Result<Session, StoreError> {
        let db = self.pool.get().await?;
        let session = Session::new(session);
        let sql = format!(
            "INSERT INTO families ({SESSION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING"
        );
        let s = &session;
        let (roles, claims, generation) =
            (to_json(&s.roles)?, to_json(&s.claims)?, codec::stored_generation(s.generation)?);
        let (revoked_at, revoked_reason) = s.state.to_columns();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 14] = [
            &s.sid,
            &s.sub,
            &s.client_id,
            &s.scope,
            &roles,
            &claims,
            &s.user_agent,
            &s.created_at,
            &s.expires_at,
            &s.last_used_at,
            &generation,
            &s.generation_issued_at,
            &revoked_at,
            &revoked_reason,
        ];
        if db.execute(&prepared(&db, &sql).await?, &params).await? == 0 {
            return Err(StoreError::AlreadyExists(format!("session {:?}", s.sid)));
        }
        Ok(session)
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM families WHERE sid = $1");
        db.query_opt(&prepared(&db, &sql).await?, &[&sid]).await?.as_ref().map(codec::session_from).transpose()
    }

    async fn refresh(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut db = self.pool.get().await?;
        // The common case in one statement (one round trip, committed on its own): the presented generation is
        // live and every condition of `decide`'s rotation holds. Concurrent presentations queue on the row lock
        // and re-check `generation = $2` on the new row, so only one matches. Anything else — replay, theft,
        // refusal — takes the transaction below, which applies `decide` itself.
        let generation_presented = codec::stored_generation(presented)?;
        let fast = format!(
            "UPDATE families AS f SET generation = generation + 1, generation_issued_at = $3, last_used_at = $3
             WHERE f.sid = $1 AND f.generation = $2 AND f.revoked_at IS NULL AND $3 < f.expires_at
               AND $3 - f.last_used_at < $4
               AND NOT EXISTS (SELECT 1 FROM subjects s WHERE s.sub = f.sub AND f.created_at <= s.not_before)
               AND NOT EXISTS (SELECT 1 FROM users u WHERE u.username = f.sub AND u.disabled)
             RETURNING {SESSION_COLUMNS}"
        );
        let fast = prepared(&db, &fast).await?;
        if let Some(row) = db.query_opt(&fast, &[&sid, &generation_presented, &now, &rules.idle_timeout_ms]).await? {
            return Ok(RefreshOutcome::Rotated(codec::session_from(&row)?));
        }
        let tx = db.transaction().await?;
        // The row lock serialises concurrent presentations of this session on every node: only the first sees
        // its generation live.
        let sql = format!("SELECT {SESSION_COLUMNS} FROM families WHERE sid = $1 FOR UPDATE");
        let Some(row) = tx.query_opt(&prepared(&tx, &sql).await?, &[&sid]).await? else {
            return Ok(RefreshOutcome::Refused(Refusal::Unknown));
        };
        let mut family = codec::session_from(&row)?;
        let subject = load_subject(&tx, &family.sub).await?;
        let outcome = match decide(&family, presented, &subject, now, rules) {
            Decision::Rotate => {
                tx.execute(
                    &prepared(
                        &tx,
                        "UPDATE families SET generation = generation + 1, generation_issued_at = $2, last_used_at = $2
                     WHERE sid = $1",
                    )
                    .await?,
                    &[&sid, &now],
                )
                .await?;
                family.generation += 1;
                family.generation_issued_at = now;
                family.last_used_at = now;
                RefreshOutcome::Rotated(family)
            }
            Decision::Replay => RefreshOutcome::Replayed(family),
            Decision::Theft => {
                theft_in(&tx, &mut family, presented, now).await?;
                RefreshOutcome::TheftDetected(family)
            }
            Decision::Refuse(refusal) => return Ok(RefreshOutcome::Refused(refusal)),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = PendingRevocation { revocation, provenance, now, reply };
        self.revocations.send(pending).await.map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    async fn live_sessions(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Session>, StoreError> {
        let db = self.pool.get().await?;
        let not_before = load_subject(&db, sub).await?.not_before.unwrap_or(Millis::MIN);
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM families
             WHERE sub = $1 AND created_at > $2 AND revoked_at IS NULL AND expires_at > $3 AND last_used_at > $4
             ORDER BY created_at DESC"
        );
        let idle_since = now.saturating_sub(rules.idle_timeout_ms);
        db.query(&prepared(&db, &sql).await?, &[&sub, &not_before, &now, &idle_since])
            .await?
            .iter()
            .map(codec::session_from)
            .collect()
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        let db = self.pool.get().await?;
        load_subject(&db, sub).await
    }

    async fn revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        // One partition.
        let after_id = after.position(0);
        let db = self.pool.get().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql =
            format!("SELECT {REVOCATION_COLUMNS} FROM revocation_log WHERE id > $1 AND at >= $2 ORDER BY id LIMIT $3");
        db.query(&prepared(&db, &sql).await?, &[&after_id, &since, &limit])
            .await?
            .iter()
            .map(codec::revocation_entry_from)
            .collect()
    }

    async fn forget_sessions_expired_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        let db = self.pool.get().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "DELETE FROM families WHERE sid IN (SELECT sid FROM families WHERE expires_at < $1 LIMIT $2)";
        let deleted = db.execute(&prepared(&db, sql).await?, &[&before, &limit]).await?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn forget_revocations_recorded_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        let db = self.pool.get().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "DELETE FROM revocation_log WHERE id IN (
                       SELECT id FROM revocation_log
                       WHERE at < $1 AND id < (SELECT max(id) FROM revocation_log) ORDER BY id LIMIT $2)";
        let deleted = db.execute(&prepared(&db, sql).await?, &[&before, &limit]).await?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let db = self.pool.get().await?;
        let sql = "SELECT EXISTS (SELECT 1 FROM revocation_log WHERE value = $1 AND kind IN ('token', 'token_by_id'))";
        Ok(db.query_one(&prepared(&db, sql).await?, &[&jti]).await?.try_get(0)?)
    }

    async fn log_head(&self) -> Result<LogCursor, StoreError> {
        let db = self.pool.get().await?;
        let head = db
            .query_one(&prepared(&db, "SELECT coalesce(max(id), 0) FROM revocation_log").await?, &[])
            .await?
            .try_get(0)?;
        Ok(LogCursor::at(vec![head]))
    }

    async fn record_security_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        self.record_event(event).await
    }

    async fn security_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        self.query_events(query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let db = self.pool.get().await?;
        db.execute(&prepared(&db, "SELECT 1").await?, &[]).await?;
        Ok(())
    }

    async fn live_session_count(&self, now: Millis) -> Result<Option<u64>, StoreError> {
        let db = self.pool.get().await?;
        let sql = "SELECT count(*) FROM families WHERE expires_at > $1 AND revoked_at IS NULL";
        let count: i64 = db.query_one(&prepared(&db, sql).await?, &[&now]).await?.try_get(0)?;
        Ok(Some(u64::try_from(count).unwrap_or(0)))
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        let db = self.pool.get().await?;
        let row = db
            .query_opt(&prepared(&db, "SELECT version, contents FROM documents WHERE name = $1").await?, &[&name])
            .await?;
        row.map(|row| {
            let version = codec::document_version(row.try_get(0)?)?;
            Ok(Document { version, contents: row.try_get(1)? })
        })
        .transpose()
    }

    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError> {
        let db = self.pool.get().await?;
        let written = match expected {
            None => {
                db.execute(
                    &prepared(&db, "INSERT INTO documents (name, version, contents) VALUES ($1, 1, $2) ON CONFLICT (name) DO NOTHING").await?,
                    &[&name, &contents],
                )
                .await?
            }
            Some(version) => {
                let version = codec::stored_document_version(version)?;
                db.execute(
                    &prepared(&db, "UPDATE documents SET version = version + 1, contents = $3 WHERE name = $1 AND version = $2").await?,
                    &[&name, &version, &contents],
                )
                .await?
            }
        };
        Ok(written == 1)
    }

    fn log_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.log_changes.clone())
    }
}
