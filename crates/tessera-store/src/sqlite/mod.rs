//! The embedded default: SQLite in WAL mode, `synchronous=FULL`, one writer thread that commits concurrent
//! changes together (group commit: one fsync for a whole batch, see [`writer`]), and a few reader connections.
//! Rows are read back through the shared [`crate::codec`]; the schema is the migrations in `migrations/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension as _};

use self::statements::{all, client_changed, decoded, load_family, load_subject, optional, revoke_in, update_one};
use self::writer::Job;
use crate::codec::{self, to_json, CLIENT_COLUMNS, REVOCATION_COLUMNS, SESSION_COLUMNS, USER_COLUMNS};
use crate::model::{
    decide, AutomaticRevocation, Client, Decision, Document, Millis, NewSecurityEvent, NewSession, Provenance,
    RefreshOutcome, RefreshRules, Refusal, Revocation, SecurityEventKind, SecurityEventQuery, Session, SessionState,
};
use crate::{LogCursor, RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User};

mod events;
mod statements;
mod writer;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/01_initial.sql"),
    include_str!("migrations/02_clients.sql"),
    include_str!("migrations/03_revocation_provenance.sql"),
    include_str!("migrations/04_client_keys.sql"),
    include_str!("migrations/05_used_assertions.sql"),
    include_str!("migrations/06_documents.sql"),
    include_str!("migrations/07_token_by_id.sql"),
    include_str!("migrations/08_sessions_by_expiry.sql"),
    include_str!("migrations/09_security_event_actor.sql"),
    include_str!("migrations/10_sign_in.sql"),
];

/// Reader connections.
const READERS: usize = 4;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Room for every statement this module prepares (rusqlite keeps 16): a mixed load never evicts and reparses.
    conn.set_prepared_statement_cache_capacity(64);
    // WAL lets readers run beside the writer; FULL fsyncs every commit, so an acknowledged change survives a
    // power cut, and group commit makes that one fsync per batch instead of per request.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::backend(format!(
            "database schema version {applied} is newer than this Tessera ({}); upgrade Tessera",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}

/// Creates the database file readable and writable by its owner only (0600), before SQLite opens it: SQLite
/// gives its `-wal` and `-shm` files the database file's mode, so they are private too. An existing file keeps
/// its mode.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|err| StoreError::backend_because(path.display().to_string(), err))
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) the database at `path` and runs pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let mut writer_conn = open_connection(path)?;
        migrate(&mut writer_conn)?;
        let readers = (0..READERS).map(|_| open_connection(path).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        let (writer, jobs) = mpsc::channel::<Job>();
        writer::spawn(writer_conn, jobs)?;
        Ok(Self { path: path.to_owned(), writer, readers: Arc::new(readers), next_reader: AtomicUsize::new(0) })
    }

    /// Runs a query on a reader connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            // Take the first free connection, starting at a rotating index; wait on one only if all are busy.
            let count = readers.len();
            let free = (0..count).find_map(|i| readers.get((start + i) % count).and_then(|m| m.try_lock().ok()));
            let guard = match free {
                Some(guard) => guard,
                None => readers
                    .get(start % count)
                    .ok_or(StoreError::Unavailable)?
                    .lock()
                    .map_err(|_| StoreError::Unavailable)?,
            };
            query(&guard)
        })
        .await
        .map_err(|_| StoreError::Unavailable)?
    }
}
#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        self.write(move |conn| {
            let roles = to_json(&user.roles)?;
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
                ))?
                .execute(params![
                    user.username,
                    user.password_hash,
                    roles,
                    user.disabled,
                    user.created_at,
                    to_json(&user.profile)?
                ])?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("user {:?}", user.username)));
            }
            Ok(())
        })
        .await
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1");
            optional(conn.prepare_cached(&sql)?.query_row([username], decoded(|row| codec::user_from(row))))
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = all(statement.query_map([], decoded(|row| codec::user_from(row)))?);
            rows
        })
        .await
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        let username = username.to_owned();
        self.write(move |conn| {
            update_one(
                conn,
                "UPDATE users SET disabled = ?2 WHERE username = ?1",
                params![username, disabled],
                || format!("user {username:?}"),
            )?;
            if disabled {
                let revocation = Revocation::Subject { sub: username.clone(), not_before: now };
                revoke_in(conn, &revocation, &Provenance::automatic(AutomaticRevocation::UserDisabled), now)?;
            }
            Ok(())
        })
        .await
    }

    async fn set_password(&self, username: &str, password_hash: String) -> Result<(), StoreError> {
        let username = username.to_owned();
        self.write(move |conn| {
            update_one(
                conn,
                "UPDATE users SET password_hash = ?2 WHERE username = ?1",
                params![username, password_hash],
                || format!("user {username:?}"),
            )
        })
        .await
    }

    async fn create_client(&self, client: Client) -> Result<(), StoreError> {
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING"
                ))?
                .execute(params![
                    client.client_id,
                    client.secret_hash,
                    to_json(&client.scopes)?,
                    to_json(&client.audiences)?,
                    to_json(&client.grants)?,
                    client.disabled,
                    client.created_at,
                    client.jwks,
                    client.code_flow.as_ref().map(to_json).transpose()?
                ])?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("client {:?}", client.client_id)));
            }
            // Instant 0: a new client has no tokens to cut off; verifiers only learn that it exists.
            client_changed(conn, &client.client_id, client.created_at, 0, AutomaticRevocation::ClientAdded)
        })
        .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let client_id = client_id.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?1");
            optional(conn.prepare_cached(&sql)?.query_row([client_id], decoded(|row| codec::client_from(row))))
        })
        .await
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id");
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = all(statement.query_map([], decoded(|row| codec::client_from(row)))?);
            rows
        })
        .await
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        let client_id = client_id.to_owned();
        self.write(move |conn| {
            update_one(
                conn,
                "UPDATE clients SET disabled = ?2 WHERE client_id = ?1",
                params![client_id, disabled],
                || format!("client {client_id:?}"),
            )?;
            // Re-enabling revives nothing: the tokens from before the disabling stay dead.
            let (instant, reason) = if disabled {
                (now, AutomaticRevocation::ClientDisabled)
            } else {
                (0, AutomaticRevocation::ClientEnabled)
            };
            client_changed(conn, &client_id, now, instant, reason)
        })
        .await
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError> {
        let client_id = client_id.to_owned();
        self.write(move |conn| {
            update_one(
                conn,
                "UPDATE clients SET secret_hash = ?2 WHERE client_id = ?1 AND jwks IS NULL",
                params![client_id, secret_hash],
                || format!("client {client_id:?}"),
            )?;
            client_changed(conn, &client_id, now, now, AutomaticRevocation::ClientSecretRotated)
        })
        .await
    }

    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError> {
        let client_id = client_id.to_owned();
        self.write(move |conn| {
            update_one(
                conn,
                "UPDATE clients SET jwks = ?2 WHERE client_id = ?1 AND jwks IS NOT NULL",
                params![client_id, jwks],
                || format!("private_key_jwt client {client_id:?}"),
            )?;
            client_changed(conn, &client_id, now, now, AutomaticRevocation::ClientKeysReplaced)
        })
        .await
    }

    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (client_id, jti) = (client_id.to_owned(), jti.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM used_assertions WHERE expires_at < ?1")?.execute([now])?;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )?
                .execute(params![client_id, jti, expires_at])?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn forget_sessions_expired_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM families WHERE sid IN (SELECT sid FROM families WHERE expires_at < ?1 LIMIT ?2)",
                )?
                .execute(params![before, limit])?)
        })
        .await
    }

    async fn forget_revocations_recorded_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM revocation_log WHERE id IN (
                         SELECT id FROM revocation_log
                         WHERE at < ?1 AND id < (SELECT max(id) FROM revocation_log) ORDER BY id LIMIT ?2)",
                )?
                .execute(params![before, limit])?)
        })
        .await
    }

    async fn create_session(&self, session: NewSession) -> Result<Session, StoreError> {
        self.write(move |conn| {
            let session = Session::new(session);
            let (revoked_at, revoked_reason) = session.state.to_columns();
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO families ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT DO NOTHING"
                ))?
                .execute(params![
                    session.sid,
                    session.sub,
                    session.client_id,
                    session.scope,
                    to_json(&session.roles)?,
                    to_json(&session.claims)?,
                    session.user_agent,
                    session.created_at,
                    session.expires_at,
                    session.last_used_at,
                    session.generation,
                    session.generation_issued_at,
                    revoked_at,
                    revoked_reason,
                ])?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("session {:?}", session.sid)));
            }
            Ok(session)
        })
        .await
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |conn| load_family(conn, &sid)).await
    }

    async fn refresh(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
    ) -> Result<RefreshOutcome, StoreError> {
        let sid = sid.to_owned();
        // On the single writer thread the read, the decision and the update are one atomic step: concurrent
        // presentations of one generation are serialised, and only the first sees it live.
        self.write(move |conn| {
            let Some(mut family) = load_family(conn, &sid)? else {
                return Ok(RefreshOutcome::Refused(Refusal::Unknown));
            };
            let subject = load_subject(conn, &family.sub)?;
            match decide(&family, presented, &subject, now, rules) {
                Decision::Rotate => {
                    let changed = conn
                        .prepare_cached(
                            "UPDATE families SET generation = generation + 1, generation_issued_at = ?3, last_used_at = ?3
                             WHERE sid = ?1 AND generation = ?2 AND revoked_at IS NULL",
                        )?
                        .execute(params![sid, family.generation, now])?;
                    if changed != 1 {
                        return Err(StoreError::backend(format!("session {sid} changed under the writer")));
                    }
                    family.generation += 1;
                    family.generation_issued_at = now;
                    family.last_used_at = now;
                    Ok(RefreshOutcome::Rotated(family))
                }
                Decision::Replay => Ok(RefreshOutcome::Replayed(family)),
                Decision::Theft => {
                    let provenance = Provenance::automatic(AutomaticRevocation::ReuseDetected);
                    revoke_in(conn, &Revocation::Session { sid: sid.clone() }, &provenance, now)?;
                    conn.prepare_cached("INSERT INTO security_events (at, kind, sub, sid, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
                        .execute(params![
                            now,
                            SecurityEventKind::RefreshTokenReuse.as_str(),
                            family.sub,
                            sid,
                            format!("generation {presented} presented while generation {} is live", family.generation)
                        ])?;
                    family.state = SessionState::Revoked { at: now, reason: provenance.reason };
                    Ok(RefreshOutcome::TheftDetected(family))
                }
                Decision::Refuse(refusal) => Ok(RefreshOutcome::Refused(refusal)),
            }
        })
        .await
    }

    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError> {
        self.write(move |conn| revoke_in(conn, &revocation, &provenance, now)).await
    }

    async fn live_sessions(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Session>, StoreError> {
        let sub = sub.to_owned();
        self.read(move |conn| {
            let not_before = load_subject(conn, &sub)?.not_before.unwrap_or(Millis::MIN);
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM families
                 WHERE sub = ?1 AND created_at > ?2 AND revoked_at IS NULL AND expires_at > ?3 AND last_used_at > ?4
                 ORDER BY created_at DESC"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let idle_since = now.saturating_sub(rules.idle_timeout_ms);
            let rows = all(statement
                .query_map(params![sub, not_before, now, idle_since], decoded(|row| codec::session_from(row)))?);
            rows
        })
        .await
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        let sub = sub.to_owned();
        self.read(move |conn| load_subject(conn, &sub)).await
    }

    async fn revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        // One partition.
        let after_id = after.position(0);
        self.read(move |conn| {
            let sql = format!(
                "SELECT {REVOCATION_COLUMNS} FROM revocation_log WHERE id > ?1 AND at >= ?2 ORDER BY id LIMIT ?3"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = all(statement
                .query_map(params![after_id, since, limit], decoded(|row| codec::revocation_entry_from(row)))?);
            rows
        })
        .await
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM revocation_log WHERE value = ?1 AND kind IN ('token', 'token_by_id'))")?
                .query_row([&jti], |row| row.get(0))?)
        })
        .await
    }

    async fn log_head(&self) -> Result<LogCursor, StoreError> {
        let head = self
            .read(|conn| {
                Ok(conn
                    .prepare_cached("SELECT coalesce(max(id), 0) FROM revocation_log")?
                    .query_row([], |row| row.get(0))?)
            })
            .await?;
        Ok(LogCursor::at(vec![head]))
    }

    async fn record_security_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        self.record_event(event).await
    }

    async fn security_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        self.query_events(query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn live_session_count(&self, now: Millis) -> Result<Option<u64>, StoreError> {
        self.read(move |conn| {
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM families WHERE expires_at > ?1 AND revoked_at IS NULL")?
                .query_row([now], |row| row.get(0))?;
            Ok(Some(u64::try_from(count).unwrap_or(0)))
        })
        .await
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let row = conn
                .prepare_cached("SELECT version, contents FROM documents WHERE name = ?1")?
                .query_row([name], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
                .optional()?;
            row.map(|(version, contents)| Ok(Document { version: codec::document_version(version)?, contents }))
                .transpose()
        })
        .await
    }

    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError> {
        let name = name.to_owned();
        let expected = expected.map(codec::stored_document_version).transpose()?;
        self.write(move |conn| {
            let written = match expected {
                None => conn
                    .prepare_cached(
                        "INSERT INTO documents (name, version, contents) VALUES (?1, 1, ?2) ON CONFLICT (name) DO NOTHING",
                    )?
                    .execute(params![name, contents])?,
                Some(version) => conn
                    .prepare_cached(
                        "UPDATE documents SET version = version + 1, contents = ?3 WHERE name = ?1 AND version = ?2",
                    )?
                    .execute(params![name, version, contents])?,
            };
            Ok(written == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
