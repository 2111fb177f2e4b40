//! PostgreSQL, shared by several Tessera nodes: every node reads and writes the same authoritative state, each
//! change commits (and is durable) before it is acknowledged, and refresh rotation is one transaction holding the
//! session's row lock, so concurrent presentations of one token — on any node — produce exactly one rotation.
//!
//! The revocation log is read by position. PostgreSQL assigns `bigserial` ids at insert time but transactions
//! commit in any order, so a reader could see id 11 before id 10 commits and skip 10 for ever. Log writers
//! therefore take one transaction-scoped advisory lock: ids are assigned and committed in order. Revocations are
//! rare next to refreshes (a rotation logs nothing), so the serialisation costs little.

use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::{Map, Value};
use tokio_postgres::{NoTls, Row};

use crate::batch::{PendingRevocation, REVOCATION_BATCH};
use crate::model::{
    decide, Client, Decision, Document, Family, Millis, NewFamily, Provenance, RefreshOutcome, RefreshRules, Refusal,
    Revocation,
};
use crate::{RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User};

/// Schema migrations, applied in order under an advisory lock (nodes starting together do not race);
/// `tessera_schema` records how many ran.
const MIGRATIONS: &[&str] = &[
    r"
    CREATE TABLE users (
        username      TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        roles         TEXT NOT NULL,
        disabled      BOOLEAN NOT NULL DEFAULT FALSE,
        created_at    BIGINT NOT NULL
    );
    CREATE TABLE subjects (
        sub        TEXT PRIMARY KEY,
        not_before BIGINT NOT NULL
    );
    CREATE TABLE families (
        sid                  TEXT PRIMARY KEY,
        sub                  TEXT NOT NULL,
        client_id            TEXT NOT NULL,
        scope                TEXT,
        roles                TEXT NOT NULL,
        claims               TEXT NOT NULL,
        user_agent           TEXT,
        created_at           BIGINT NOT NULL,
        expires_at           BIGINT NOT NULL,
        last_used_at         BIGINT NOT NULL,
        generation           BIGINT NOT NULL,
        generation_issued_at BIGINT NOT NULL,
        revoked_at           BIGINT,
        revoked_reason       TEXT
    );
    CREATE INDEX families_by_sub ON families (sub, created_at);
    CREATE TABLE revocation_log (
        id      BIGSERIAL PRIMARY KEY,
        at      BIGINT NOT NULL,
        kind    TEXT NOT NULL CHECK (kind IN ('session', 'subject', 'token', 'client')),
        value   TEXT NOT NULL,
        instant BIGINT,
        actor   TEXT NOT NULL,
        reason  TEXT NOT NULL
    );
    CREATE INDEX revocation_log_by_time ON revocation_log (at);
    CREATE TABLE security_events (
        id     BIGSERIAL PRIMARY KEY,
        at     BIGINT NOT NULL,
        kind   TEXT NOT NULL,
        sub    TEXT NOT NULL,
        sid    TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE clients (
        client_id   TEXT PRIMARY KEY,
        secret_hash BYTEA NOT NULL,
        scopes      TEXT NOT NULL,
        audiences   TEXT NOT NULL,
        grants      TEXT NOT NULL,
        disabled    BOOLEAN NOT NULL DEFAULT FALSE,
        created_at  BIGINT NOT NULL,
        jwks        TEXT
    );
",
    r"
    CREATE TABLE used_assertions (
        client_id  TEXT NOT NULL,
        jti        TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (client_id, jti)
    );
    CREATE INDEX used_assertions_by_expiry ON used_assertions (expires_at);
",
    r"
    CREATE TABLE documents (
        name     TEXT PRIMARY KEY,
        version  BIGINT NOT NULL,
        contents TEXT NOT NULL
    );
",
    // Revocations of a token by `jti` alone (its expiry unknown), and an index by identifier: compact mode
    // confirms its prefilter's positives by looking a `jti` up in the log.
    r"
    ALTER TABLE revocation_log DROP CONSTRAINT revocation_log_kind_check;
    ALTER TABLE revocation_log ADD CONSTRAINT revocation_log_kind_check
        CHECK (kind IN ('session', 'subject', 'token', 'token_by_id', 'client'));
    CREATE INDEX revocation_log_by_value ON revocation_log (value, kind);
",
    // Expired sessions are forgotten in batches.
    r"
    CREATE INDEX families_by_expiry ON families (expires_at);
",
];

/// The channel nodes LISTEN on for revocation-log growth.
const LOG_CHANNEL: &str = "tessera_log";
/// Wait before reconnecting a lost LISTEN connection.
const RELISTEN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Advisory lock keys (arbitrary constants, namespaced by their value).
const MIGRATION_LOCK: i64 = 0x7465_7373_0001;
const LOG_LOCK: i64 = 0x7465_7373_0002;

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        match err.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                Self::AlreadyExists(err.to_string())
            }
            _ => Self::Backend(err.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Backend(format!("PostgreSQL connection pool: {err}"))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(err.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Backend(format!("corrupt JSON column: {err}")))
}

fn generation(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Backend(format!("negative generation {value}")))
}

fn db_generation(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("generation {value} out of range")))
}

const USER_COLUMNS: &str = "username, password_hash, roles, disabled, created_at";

fn user_from_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        username: row.try_get(0)?,
        password_hash: row.try_get(1)?,
        roles: from_json(row.try_get(2)?)?,
        disabled: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

const CLIENT_COLUMNS: &str = "client_id, secret_hash, scopes, audiences, grants, disabled, created_at, jwks";

fn client_from_row(row: &Row) -> Result<Client, StoreError> {
    Ok(Client {
        client_id: row.try_get(0)?,
        secret_hash: row.try_get(1)?,
        scopes: from_json(row.try_get(2)?)?,
        audiences: from_json(row.try_get(3)?)?,
        grants: from_json(row.try_get(4)?)?,
        disabled: row.try_get(5)?,
        created_at: row.try_get(6)?,
        jwks: row.try_get(7)?,
    })
}

const FAMILY_COLUMNS: &str = "sid, sub, client_id, scope, roles, claims, user_agent, created_at, expires_at, \
     last_used_at, generation, generation_issued_at, revoked_at, revoked_reason";

fn family_from_row(row: &Row) -> Result<Family, StoreError> {
    Ok(Family {
        session: NewFamily {
            sid: row.try_get(0)?,
            sub: row.try_get(1)?,
            client_id: row.try_get(2)?,
            scope: row.try_get(3)?,
            roles: from_json(row.try_get(4)?)?,
            claims: from_json::<Map<String, Value>>(row.try_get(5)?)?,
            user_agent: row.try_get(6)?,
            created_at: row.try_get(7)?,
            expires_at: row.try_get(8)?,
        },
        last_used_at: row.try_get(9)?,
        generation: generation(row.try_get(10)?)?,
        generation_issued_at: row.try_get(11)?,
        revoked_at: row.try_get(12)?,
        revoked_reason: row.try_get(13)?,
    })
}

fn revocation_from_row(row: &Row) -> Result<RevocationEntry, StoreError> {
    let revocation = Revocation::from_columns(row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
    Ok(RevocationEntry {
        id: row.try_get(0)?,
        at: row.try_get(1)?,
        revocation,
        provenance: Provenance { actor: row.try_get(5)?, reason: row.try_get(6)? },
    })
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
async fn prepared(db: &impl GenericClient, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
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

/// Applies a revocation and logs it, in the caller's transaction (see [`Store::revoke`]).
async fn revoke_in(
    db: &impl GenericClient,
    revocation: &Revocation,
    provenance: &Provenance,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = apply_revocation(db, revocation, provenance, now).await?;
    if changed {
        db.execute(&prepared(db, "SELECT pg_advisory_xact_lock($1)").await?, &[&LOG_LOCK]).await?;
        log_revocation(db, revocation, provenance, now).await?;
        // Delivered to every listening node when (and only if) the transaction commits.
        db.execute(&prepared(db, "SELECT pg_notify($1, '')").await?, &[&LOG_CHANNEL]).await?;
    }
    Ok(changed)
}

/// Revokes `family`, whose rotated generation `presented` came back, with its log entry and security event, in the
/// caller's transaction; `family` then says so.
async fn theft_in(db: &impl GenericClient, family: &mut Family, presented: u64, now: Millis) -> Result<(), StoreError> {
    let sid = family.session.sid.clone();
    let provenance = Provenance::new("tessera", "reuse_detected");
    revoke_in(db, &Revocation::Session { sid: sid.clone() }, &provenance, now).await?;
    let detail = format!("generation {presented} presented while generation {} is live", family.generation);
    db.execute(
        &prepared(db, "INSERT INTO security_events (at, kind, sub, sid, detail) VALUES ($1, $2, $3, $4, $5)").await?,
        &[&now, &"refresh_token_reuse", &family.session.sub, &sid, &detail],
    )
    .await?;
    family.revoked_at = Some(now);
    family.revoked_reason = Some("reuse_detected".into());
    Ok(())
}

const REVOKE_SESSION: &str =
    "UPDATE families SET revoked_at = $2, revoked_reason = $3 WHERE sid = $1 AND revoked_at IS NULL";
const RAISE_SUBJECT_INSTANT: &str = "INSERT INTO subjects (sub, not_before) VALUES ($1, $2)
     ON CONFLICT (sub) DO UPDATE SET not_before = excluded.not_before
     WHERE excluded.not_before > subjects.not_before";
const LOG_REVOCATION: &str =
    "INSERT INTO revocation_log (at, kind, value, instant, actor, reason) VALUES ($1, $2, $3, $4, $5, $6)";

/// Applies a revocation to the state it changes; whether it changed anything (and so must be logged).
async fn apply_revocation(
    db: &impl GenericClient,
    revocation: &Revocation,
    provenance: &Provenance,
    now: Millis,
) -> Result<bool, StoreError> {
    Ok(match revocation {
        Revocation::Session { sid } => {
            db.execute(&prepared(db, REVOKE_SESSION).await?, &[sid, &now, &provenance.reason]).await? > 0
        }
        // Instants only move forward: an older instant arriving late never un-revokes anything.
        Revocation::Subject { sub, not_before } => {
            db.execute(&prepared(db, RAISE_SUBJECT_INSTANT).await?, &[sub, not_before]).await? > 0
        }
        Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => true,
    })
}

/// Appends to the log; the caller holds [`LOG_LOCK`] for the rest of its transaction.
async fn log_revocation(
    db: &impl GenericClient,
    revocation: &Revocation,
    provenance: &Provenance,
    now: Millis,
) -> Result<(), StoreError> {
    let (kind, value, instant) = revocation.to_columns();
    db.execute(
        &prepared(db, LOG_REVOCATION).await?,
        &[&now, &kind, &value, &instant, &provenance.actor, &provenance.reason],
    )
    .await?;
    Ok(())
}

/// Writes revocations in batches: whatever has queued while the previous batch committed (up to
/// [`REVOCATION_BATCH`]) goes into one transaction, its statements pipelined, with one commit and one take of the
/// log lock. One transaction per revocation serialised every revocation on the log lock and a WAL flush; nothing
/// waits for a batch to fill, so a lone revocation costs no more than before.
async fn write_revocations(pool: Pool, mut queue: tokio::sync::mpsc::Receiver<PendingRevocation>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < REVOCATION_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match revoke_batch(&pool, &batch).await {
            Ok(changed) => {
                for (pending, changed) in batch.into_iter().zip(changed) {
                    let _ = pending.reply.send(Ok(changed));
                }
            }
            Err(err) => {
                // Nothing in the batch committed: every caller gets the error, none is acknowledged.
                let why = err.to_string();
                tracing::warn!(error = %why, size = batch.len(), "revocation batch failed; none acknowledged");
                for pending in batch {
                    let _ = pending.reply.send(Err(StoreError::Backend(why.clone())));
                }
            }
        }
    }
}

/// One transaction for a batch of revocations: every change, then the log entries of those that changed
/// something, in batch order, under the log lock; whether each changed anything.
async fn revoke_batch(pool: &Pool, batch: &[PendingRevocation]) -> Result<Vec<bool>, StoreError> {
    // Rows are locked in one global order (kind, then identifier), so two nodes' batches touching the same
    // sessions or subjects wait for each other instead of deadlocking.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch.get(i).map(|pending| pending.revocation.to_columns()));
    let ordered: Vec<&PendingRevocation> = order.iter().filter_map(|&i| batch.get(i)).collect();
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    // Prepared first, one after the other: a statement still to be prepared would wait a round trip while cached
    // ones went ahead, and the rows would no longer be locked in the order above.
    for sql in [REVOKE_SESSION, RAISE_SUBJECT_INSTANT, LOG_REVOCATION] {
        prepared(&tx, sql).await?;
    }
    // Issued together, the statements are pipelined on the connection and run in this order on the server: a
    // second revocation of the same session in the batch finds it revoked and logs nothing.
    let changed = futures_util::future::try_join_all(
        ordered.iter().map(|pending| apply_revocation(&tx, &pending.revocation, &pending.provenance, pending.now)),
    )
    .await?;
    if changed.contains(&true) {
        tx.execute(&prepared(&tx, "SELECT pg_advisory_xact_lock($1)").await?, &[&LOG_LOCK]).await?;
        let logged = ordered.iter().zip(&changed).filter(|(_, &changed)| changed);
        futures_util::future::try_join_all(
            logged.map(|(pending, _)| log_revocation(&tx, &pending.revocation, &pending.provenance, pending.now)),
        )
        .await?;
        tx.execute(&prepared(&tx, "SELECT pg_notify($1, '')").await?, &[&LOG_CHANNEL]).await?;
    }
    tx.commit().await?;
    // Back in the callers' order.
    let mut answers = vec![false; batch.len()];
    for (&i, changed) in order.iter().zip(changed) {
        if let Some(answer) = answers.get_mut(i) {
            *answer = changed;
        }
    }
    Ok(answers)
}

/// Logs a client change at `now`, ending its tokens issued up to `not_before`.
async fn client_changed(
    db: &impl GenericClient,
    client_id: &str,
    now: Millis,
    not_before: Millis,
    reason: &str,
) -> Result<(), StoreError> {
    let revocation = Revocation::Client { client_id: client_id.to_owned(), not_before };
    revoke_in(db, &revocation, &Provenance::new("tessera", reason), now).await.map(drop)
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

/// Keeps one connection LISTENing on [`LOG_CHANNEL`] and bumps `changes` on every notification, reconnecting
/// when the connection is lost (and bumping then too: notifications may have been missed meanwhile).
async fn listen(config: tokio_postgres::Config, changes: tokio::sync::watch::Sender<u64>) {
    use futures_util::StreamExt as _;
    let changes = std::sync::Arc::new(changes);
    let bump = |changes: &tokio::sync::watch::Sender<u64>| changes.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                // The connection delivers notifications as it is driven; the client issues LISTEN meanwhile.
                let notified = std::sync::Arc::clone(&changes);
                let mut driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => bump(&notified),
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(error = %err, "PostgreSQL LISTEN connection lost; reconnecting");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {LOG_CHANNEL}")).await {
                    Ok(()) => {
                        bump(&changes);
                        let _ = (&mut driver).await;
                    }
                    Err(err) => tracing::warn!(error = %err, "PostgreSQL LISTEN failed; retrying"),
                }
                driver.abort();
            }
            Err(err) => tracing::warn!(error = %err, "PostgreSQL LISTEN connection failed; retrying"),
        }
        bump(&changes);
        tokio::time::sleep(RELISTEN_DELAY).await;
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
            url.parse().map_err(|err| StoreError::Backend(format!("PostgreSQL URL: {err}")))?;
        let (changes, log_changes) = tokio::sync::watch::channel(0);
        let listener = tokio::spawn(listen(config.clone(), changes));
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|err| StoreError::Backend(format!("PostgreSQL connection pool: {err}")))?;
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
            return Err(StoreError::Backend(format!(
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
    pub(crate) async fn session_and_subject(&self, sid: &str) -> Result<Option<(Family, SubjectState)>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!(
            "SELECT {FAMILY_COLUMNS},
                    (SELECT s.not_before FROM subjects s WHERE s.sub = f.sub),
                    (SELECT u.disabled FROM users u WHERE u.username = f.sub)
             FROM families f WHERE f.sid = $1"
        );
        let Some(row) = db.query_opt(&prepared(&db, &sql).await?, &[&sid]).await? else { return Ok(None) };
        let subject = SubjectState {
            not_before: row.try_get(14)?,
            disabled: row.try_get::<_, Option<bool>>(15)?.unwrap_or(false),
        };
        Ok(Some((family_from_row(&row)?, subject)))
    }

    /// Records that `family`'s rotated generation `presented` came back — reuse found where the rotation state
    /// lives (tiered mode's Redis): the session is revoked and logged with its security event; `family` then says
    /// so.
    pub(crate) async fn record_theft(
        &self,
        family: &mut Family,
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
        let sql = format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING");
        let roles = to_json(&user.roles)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&user.username, &user.password_hash, &roles, &user.disabled, &user.created_at];
        if db.execute(&prepared(&db, &sql).await?, &params).await? == 0 {
            return Err(StoreError::AlreadyExists(format!("user {:?}", user.username)));
        }
        Ok(())
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        db.query_opt(&prepared(&db, &sql).await?, &[&username]).await?.as_ref().map(user_from_row).transpose()
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        db.query(&prepared(&db, &sql).await?, &[]).await?.iter().map(user_from_row).collect()
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
            revoke_in(&tx, &revocation, &Provenance::new("tessera", "user_disabled"), now).await?;
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
            "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
        );
        let (scopes, audiences, grants) =
            (to_json(&client.scopes)?, to_json(&client.audiences)?, to_json(&client.grants)?);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &client.client_id,
            &client.secret_hash,
            &scopes,
            &audiences,
            &grants,
            &client.disabled,
            &client.created_at,
            &client.jwks,
        ];
        if tx.execute(&prepared(&tx, &sql).await?, &params).await? == 0 {
            return Err(StoreError::AlreadyExists(format!("client {:?}", client.client_id)));
        }
        // Instant 0: a new client has no tokens to cut off; verifiers only learn that it exists.
        client_changed(&tx, &client.client_id, client.created_at, 0, "client_added").await?;
        Ok(tx.commit().await?)
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1");
        db.query_opt(&prepared(&db, &sql).await?, &[&client_id]).await?.as_ref().map(client_from_row).transpose()
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id");
        db.query(&prepared(&db, &sql).await?, &[]).await?.iter().map(client_from_row).collect()
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        update_one(&tx, "UPDATE clients SET disabled = $2 WHERE client_id = $1", &[&client_id, &disabled], || {
            format!("client {client_id:?}")
        })
        .await?;
        // Re-enabling revives nothing: the tokens from before the disabling stay dead.
        let (instant, reason) = if disabled { (now, "client_disabled") } else { (0, "client_enabled") };
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
        client_changed(&tx, client_id, now, now, "client_secret_rotated").await?;
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
        client_changed(&tx, client_id, now, now, "client_keys_replaced").await?;
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

    async fn create_family(&self, family: NewFamily) -> Result<Family, StoreError> {
        let db = self.pool.get().await?;
        let family = Family::new(family);
        let sql = format!(
            "INSERT INTO families ({FAMILY_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING"
        );
        let s = &family.session;
        let (roles, claims, generation) = (to_json(&s.roles)?, to_json(&s.claims)?, db_generation(family.generation)?);
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
            &family.last_used_at,
            &generation,
            &family.generation_issued_at,
            &family.revoked_at,
            &family.revoked_reason,
        ];
        if db.execute(&prepared(&db, &sql).await?, &params).await? == 0 {
            return Err(StoreError::AlreadyExists(format!("session {:?}", s.sid)));
        }
        Ok(family)
    }

    async fn family(&self, sid: &str) -> Result<Option<Family>, StoreError> {
        let db = self.pool.get().await?;
        let sql = format!("SELECT {FAMILY_COLUMNS} FROM families WHERE sid = $1");
        db.query_opt(&prepared(&db, &sql).await?, &[&sid]).await?.as_ref().map(family_from_row).transpose()
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
        let generation_presented = db_generation(presented)?;
        let fast = format!(
            "UPDATE families AS f SET generation = generation + 1, generation_issued_at = $3, last_used_at = $3
             WHERE f.sid = $1 AND f.generation = $2 AND f.revoked_at IS NULL AND $3 < f.expires_at
               AND $3 - f.last_used_at < $4
               AND NOT EXISTS (SELECT 1 FROM subjects s WHERE s.sub = f.sub AND f.created_at <= s.not_before)
               AND NOT EXISTS (SELECT 1 FROM users u WHERE u.username = f.sub AND u.disabled)
             RETURNING {FAMILY_COLUMNS}"
        );
        let fast = prepared(&db, &fast).await?;
        if let Some(row) = db.query_opt(&fast, &[&sid, &generation_presented, &now, &rules.idle_timeout_ms]).await? {
            return Ok(RefreshOutcome::Rotated(family_from_row(&row)?));
        }
        let tx = db.transaction().await?;
        // The row lock serialises concurrent presentations of this session on every node: only the first sees
        // its generation live.
        let sql = format!("SELECT {FAMILY_COLUMNS} FROM families WHERE sid = $1 FOR UPDATE");
        let Some(row) = tx.query_opt(&prepared(&tx, &sql).await?, &[&sid]).await? else {
            return Ok(RefreshOutcome::Refused(Refusal::Unknown));
        };
        let mut family = family_from_row(&row)?;
        let subject = load_subject(&tx, &family.session.sub).await?;
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

    async fn live_families(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Family>, StoreError> {
        let db = self.pool.get().await?;
        let not_before = load_subject(&db, sub).await?.not_before.unwrap_or(Millis::MIN);
        let sql = format!(
            "SELECT {FAMILY_COLUMNS} FROM families
             WHERE sub = $1 AND created_at > $2 AND revoked_at IS NULL AND expires_at > $3 AND last_used_at > $4
             ORDER BY created_at DESC"
        );
        let idle_since = now.saturating_sub(rules.idle_timeout_ms);
        db.query(&prepared(&db, &sql).await?, &[&sub, &not_before, &now, &idle_since])
            .await?
            .iter()
            .map(family_from_row)
            .collect()
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        let db = self.pool.get().await?;
        load_subject(&db, sub).await
    }

    async fn revocations_after(
        &self,
        after_id: i64,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        let db = self.pool.get().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        db.query(
            &prepared(
                &db,
                "SELECT id, at, kind, value, instant, actor, reason FROM revocation_log
             WHERE id > $1 AND at >= $2 ORDER BY id LIMIT $3",
            )
            .await?,
            &[&after_id, &since, &limit],
        )
        .await?
        .iter()
        .map(revocation_from_row)
        .collect()
    }

    async fn forget_sessions_expired_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        let db = self.pool.get().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "DELETE FROM families WHERE sid IN (SELECT sid FROM families WHERE expires_at < $1 LIMIT $2)";
        let deleted = db.execute(&prepared(&db, sql).await?, &[&before, &limit]).await?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let db = self.pool.get().await?;
        let sql = "SELECT EXISTS (SELECT 1 FROM revocation_log WHERE value = $1 AND kind IN ('token', 'token_by_id'))";
        Ok(db.query_one(&prepared(&db, sql).await?, &[&jti]).await?.try_get(0)?)
    }

    async fn log_head(&self) -> Result<i64, StoreError> {
        let db = self.pool.get().await?;
        Ok(db
            .query_one(&prepared(&db, "SELECT coalesce(max(id), 0) FROM revocation_log").await?, &[])
            .await?
            .try_get(0)?)
    }

    async fn security_events(&self, limit: usize) -> Result<Vec<SecurityEvent>, StoreError> {
        let db = self.pool.get().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = db
            .query(
                &prepared(&db, "SELECT at, kind, sub, sid, detail FROM security_events ORDER BY id DESC LIMIT $1")
                    .await?,
                &[&limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SecurityEvent {
                    at: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    sub: row.try_get(2)?,
                    sid: row.try_get(3)?,
                    detail: row.try_get(4)?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let db = self.pool.get().await?;
        db.execute(&prepared(&db, "SELECT 1").await?, &[]).await?;
        Ok(())
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        let db = self.pool.get().await?;
        let row = db
            .query_opt(&prepared(&db, "SELECT version, contents FROM documents WHERE name = $1").await?, &[&name])
            .await?;
        row.map(|row| {
            let version = u64::try_from(row.try_get::<_, i64>(0)?)
                .map_err(|_| StoreError::Backend("document version out of range".into()))?;
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
                let version =
                    i64::try_from(version).map_err(|_| StoreError::Backend("document version out of range".into()))?;
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
