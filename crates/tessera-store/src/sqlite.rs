//! The embedded default: SQLite in WAL mode, `synchronous=FULL`, one writer thread that commits concurrent
//! changes together (group commit: one fsync for a whole batch), and a few reader connections.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension as _, Row};
use serde_json::{Map, Value};

use crate::model::{
    decide, Client, Decision, Document, Family, Millis, NewFamily, Provenance, RefreshOutcome, RefreshRules, Refusal,
    Revocation,
};
use crate::{RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r"
    CREATE TABLE users (
        username      TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        roles         TEXT NOT NULL,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE subjects (
        sub        TEXT PRIMARY KEY NOT NULL,
        not_before INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE families (
        sid                  TEXT PRIMARY KEY NOT NULL,
        sub                  TEXT NOT NULL,
        client_id            TEXT NOT NULL,
        scope                TEXT,
        roles                TEXT NOT NULL,
        claims               TEXT NOT NULL,
        user_agent           TEXT,
        created_at           INTEGER NOT NULL,
        expires_at           INTEGER NOT NULL,
        last_used_at         INTEGER NOT NULL,
        generation           INTEGER NOT NULL,
        generation_issued_at INTEGER NOT NULL,
        revoked_at           INTEGER,
        revoked_reason       TEXT
    ) STRICT;
    CREATE INDEX families_by_sub ON families (sub, created_at);
    CREATE TABLE revocation_log (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('session', 'subject')),
        value      TEXT NOT NULL,
        not_before INTEGER
    ) STRICT;
    CREATE INDEX revocation_log_by_time ON revocation_log (at);
    CREATE TABLE security_events (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        kind   TEXT NOT NULL,
        sub    TEXT NOT NULL,
        sid    TEXT NOT NULL,
        detail TEXT NOT NULL
    ) STRICT;
",
    r"
    CREATE TABLE clients (
        client_id   TEXT PRIMARY KEY NOT NULL,
        secret_hash BLOB NOT NULL,
        scopes      TEXT NOT NULL,
        audiences   TEXT NOT NULL,
        grants      TEXT NOT NULL,
        disabled    INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL
    ) STRICT;
",
    // Revocations by token (`jti`) and by client, and who revoked and why, kept for audit.
    r"
    CREATE TABLE revocation_log_v3 (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        kind    TEXT NOT NULL CHECK (kind IN ('session', 'subject', 'token', 'client')),
        value   TEXT NOT NULL,
        instant INTEGER,
        actor   TEXT NOT NULL,
        reason  TEXT NOT NULL
    ) STRICT;
    INSERT INTO revocation_log_v3 (id, at, kind, value, instant, actor, reason)
        SELECT id, at, kind, value, not_before, 'tessera', '' FROM revocation_log;
    DROP TABLE revocation_log;
    ALTER TABLE revocation_log_v3 RENAME TO revocation_log;
    CREATE INDEX revocation_log_by_time ON revocation_log (at);
",
    // Clients that authenticate with private_key_jwt keep their public keys.
    r"
    ALTER TABLE clients ADD COLUMN jwks TEXT;
",
    // Client assertions (private_key_jwt) already used, until they expire.
    r"
    CREATE TABLE used_assertions (
        client_id  TEXT NOT NULL,
        jti        TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (client_id, jti)
    ) STRICT;
    CREATE INDEX used_assertions_by_expiry ON used_assertions (expires_at);
",
    // Named documents kept for their owners: the keyring and the server secrets, when a deployment keeps them
    // in the store rather than in the data directory.
    r"
    CREATE TABLE documents (
        name     TEXT PRIMARY KEY,
        version  INTEGER NOT NULL,
        contents TEXT NOT NULL
    ) STRICT;
",
    // Revocations of a token by `jti` alone (its expiry unknown), and an index by identifier: compact mode
    // confirms its prefilter's positives by looking a `jti` up in the log.
    r"
    CREATE TABLE revocation_log_next (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        kind    TEXT NOT NULL CHECK (kind IN ('session', 'subject', 'token', 'token_by_id', 'client')),
        value   TEXT NOT NULL,
        instant INTEGER,
        actor   TEXT NOT NULL,
        reason  TEXT NOT NULL
    ) STRICT;
    INSERT INTO revocation_log_next (id, at, kind, value, instant, actor, reason)
        SELECT id, at, kind, value, instant, actor, reason FROM revocation_log;
    DROP TABLE revocation_log;
    ALTER TABLE revocation_log_next RENAME TO revocation_log;
    CREATE INDEX revocation_log_by_time ON revocation_log (at);
    CREATE INDEX revocation_log_by_value ON revocation_log (value, kind);
",
    // Expired sessions are forgotten in batches.
    r"
    CREATE INDEX families_by_expiry ON families (expires_at);
",
];

/// Changes committed together at most.
const MAX_BATCH: usize = 512;
/// Reader connections.
const READERS: usize = 4;

/// A change run by the writer thread inside the batch transaction. It gets the connection (or why the batch could
/// not start) and returns what to do once the batch's commit is known.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

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
        return Err(StoreError::Backend(format!(
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
    options.open(path).map(drop).map_err(|err| StoreError::Backend(format!("{}: {err}", path.display())))
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
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || {
                // Woken by a change, the writer no longer preempts a request handler in the middle of its work (a
                // token signature) but runs when a core frees up: at once on an idle machine; under load, changes
                // queue meanwhile and more of them share one commit's fsync. Without it, it merely preempts more.
                if let Err(why) = crate::sched_batch_for_this_thread() {
                    tracing::debug!(error = %why, "the SQLite writer keeps the default scheduling policy");
                }
                write_loop(&writer_conn, &jobs);
            })
            .map_err(|err| StoreError::Backend(format!("cannot start the writer thread: {err}")))?;
        Ok(Self { path: path.to_owned(), writer, readers: Arc::new(readers), next_reader: AtomicUsize::new(0) })
    }

    /// Runs a change on the writer thread; returns once its batch is committed.
    async fn write<T: Send + 'static>(
        &self,
        change: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => in_savepoint(conn, change),
                Err(why) => Err(StoreError::Backend(why.to_owned())),
            };
            Box::new(move |commit| {
                let _ = reply.send(commit.map_err(StoreError::Backend).and(result));
            })
        });
        self.writer.send(job).map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
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

fn write_loop(conn: &Connection, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(|err| err.to_string());
        let completions: Vec<Completion> = match &began {
            Ok(()) => batch.into_iter().map(|job| job(Ok(conn))).collect(),
            Err(why) => batch.into_iter().map(|job| job(Err(why.as_str()))).collect(),
        };
        let outcome = began.and_then(|()| conn.execute_batch("COMMIT").map_err(|err| err.to_string()));
        if let Err(why) = &outcome {
            tracing::error!(error = %why, size = completions.len(), "commit failed; nothing in the batch was acknowledged");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for complete in completions {
            complete(outcome.clone());
        }
    }
}

/// Runs one change in a savepoint, so a failed change leaves nothing behind in the shared batch transaction.
fn in_savepoint<T>(
    conn: &Connection,
    change: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: every change runs these, and parsing them each time shows in the writer's profile.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut statement| statement.execute([]));
    run("SAVEPOINT change")?;
    match change(conn) {
        Ok(value) => {
            run("RELEASE change")?;
            Ok(value)
        }
        Err(err) => {
            run("ROLLBACK TO change")?;
            run("RELEASE change")?;
            Err(err)
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(err.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(err)))
}

const USER_COLUMNS: &str = "username, password_hash, roles, disabled, created_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        username: row.get(0)?,
        password_hash: row.get(1)?,
        roles: from_json(&row.get::<_, String>(2)?)?,
        disabled: row.get(3)?,
        created_at: row.get(4)?,
    })
}

const CLIENT_COLUMNS: &str = "client_id, secret_hash, scopes, audiences, grants, disabled, created_at, jwks";

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<Client> {
    Ok(Client {
        client_id: row.get(0)?,
        secret_hash: row.get(1)?,
        scopes: from_json(&row.get::<_, String>(2)?)?,
        audiences: from_json(&row.get::<_, String>(3)?)?,
        grants: from_json(&row.get::<_, String>(4)?)?,
        disabled: row.get(5)?,
        created_at: row.get(6)?,
        jwks: row.get(7)?,
    })
}

const FAMILY_COLUMNS: &str = "sid, sub, client_id, scope, roles, claims, user_agent, created_at, expires_at, \
     last_used_at, generation, generation_issued_at, revoked_at, revoked_reason";

fn family_from_row(row: &Row<'_>) -> rusqlite::Result<Family> {
    Ok(Family {
        session: NewFamily {
            sid: row.get(0)?,
            sub: row.get(1)?,
            client_id: row.get(2)?,
            scope: row.get(3)?,
            roles: from_json(&row.get::<_, String>(4)?)?,
            claims: from_json::<Map<String, Value>>(&row.get::<_, String>(5)?)?,
            user_agent: row.get(6)?,
            created_at: row.get(7)?,
            expires_at: row.get(8)?,
        },
        last_used_at: row.get(9)?,
        generation: row.get(10)?,
        generation_issued_at: row.get(11)?,
        revoked_at: row.get(12)?,
        revoked_reason: row.get(13)?,
    })
}

fn load_family(conn: &Connection, sid: &str) -> Result<Option<Family>, StoreError> {
    let sql = format!("SELECT {FAMILY_COLUMNS} FROM families WHERE sid = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([sid], family_from_row).optional()?)
}

fn load_subject(conn: &Connection, sub: &str) -> Result<SubjectState, StoreError> {
    let (not_before, disabled) = conn
        .prepare_cached(
            "SELECT (SELECT not_before FROM subjects WHERE sub = ?1), (SELECT disabled FROM users WHERE username = ?1)",
        )?
        .query_row([sub], |row| Ok((row.get(0)?, row.get::<_, Option<bool>>(1)?)))?;
    Ok(SubjectState { not_before, disabled: disabled.unwrap_or(false) })
}

/// Runs an UPDATE that must change exactly one existing row.
fn update_one(
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

fn revocation_from_row(row: &Row<'_>) -> rusqlite::Result<RevocationEntry> {
    let kind: String = row.get(2)?;
    let revocation = Revocation::from_columns(&kind, row.get(3)?, row.get(4)?);
    Ok(RevocationEntry {
        id: row.get(0)?,
        at: row.get(1)?,
        revocation,
        provenance: Provenance { actor: row.get(5)?, reason: row.get(6)? },
    })
}

/// Applies a revocation and logs it, in the caller's transaction. Whether it changed anything: a session that
/// was live, a subject instant that moved forward, a token or client entry (always new).
fn revoke_in(
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
fn client_changed(
    conn: &Connection,
    client_id: &str,
    now: Millis,
    not_before: Millis,
    reason: &str,
) -> Result<(), StoreError> {
    let revocation = Revocation::Client { client_id: client_id.to_owned(), not_before };
    revoke_in(conn, &revocation, &Provenance::new("tessera", reason), now).map(drop)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        self.write(move |conn| {
            let roles = to_json(&user.roles)?;
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING"
                ))?
                .execute(params![user.username, user.password_hash, roles, user.disabled, user.created_at])?;
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
            Ok(conn.prepare_cached(&sql)?.query_row([username], user_from_row).optional()?)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
            let mut statement = conn.prepare_cached(&sql)?;
            let users = statement.query_map([], user_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(users)
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
                revoke_in(conn, &revocation, &Provenance::new("tessera", "user_disabled"), now)?;
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
                    "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING"
                ))?
                .execute(params![
                    client.client_id,
                    client.secret_hash,
                    to_json(&client.scopes)?,
                    to_json(&client.audiences)?,
                    to_json(&client.grants)?,
                    client.disabled,
                    client.created_at,
                    client.jwks
                ])?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("client {:?}", client.client_id)));
            }
            // Instant 0: a new client has no tokens to cut off; verifiers only learn that it exists.
            client_changed(conn, &client.client_id, client.created_at, 0, "client_added")
        })
        .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let client_id = client_id.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?1");
            Ok(conn.prepare_cached(&sql)?.query_row([client_id], client_from_row).optional()?)
        })
        .await
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id");
            let mut statement = conn.prepare_cached(&sql)?;
            let clients = statement.query_map([], client_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(clients)
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
            let (instant, reason) = if disabled { (now, "client_disabled") } else { (0, "client_enabled") };
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
            client_changed(conn, &client_id, now, now, "client_secret_rotated")
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
            client_changed(conn, &client_id, now, now, "client_keys_replaced")
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

    async fn create_family(&self, family: NewFamily) -> Result<Family, StoreError> {
        self.write(move |conn| {
            let family = Family::new(family);
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO families ({FAMILY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT DO NOTHING"
                ))?
                .execute(params![
                    family.session.sid,
                    family.session.sub,
                    family.session.client_id,
                    family.session.scope,
                    to_json(&family.session.roles)?,
                    to_json(&family.session.claims)?,
                    family.session.user_agent,
                    family.session.created_at,
                    family.session.expires_at,
                    family.last_used_at,
                    family.generation,
                    family.generation_issued_at,
                    family.revoked_at,
                    family.revoked_reason,
                ])?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("session {:?}", family.session.sid)));
            }
            Ok(family)
        })
        .await
    }

    async fn family(&self, sid: &str) -> Result<Option<Family>, StoreError> {
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
            let subject = load_subject(conn, &family.session.sub)?;
            match decide(&family, presented, &subject, now, rules) {
                Decision::Rotate => {
                    let changed = conn
                        .prepare_cached(
                            "UPDATE families SET generation = generation + 1, generation_issued_at = ?3, last_used_at = ?3
                             WHERE sid = ?1 AND generation = ?2 AND revoked_at IS NULL",
                        )?
                        .execute(params![sid, family.generation, now])?;
                    if changed != 1 {
                        return Err(StoreError::Backend(format!("session {sid} changed under the writer")));
                    }
                    family.generation += 1;
                    family.generation_issued_at = now;
                    family.last_used_at = now;
                    Ok(RefreshOutcome::Rotated(family))
                }
                Decision::Replay => Ok(RefreshOutcome::Replayed(family)),
                Decision::Theft => {
                    let provenance = Provenance::new("tessera", "reuse_detected");
                    revoke_in(conn, &Revocation::Session { sid: sid.clone() }, &provenance, now)?;
                    conn.prepare_cached("INSERT INTO security_events (at, kind, sub, sid, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
                        .execute(params![
                            now,
                            "refresh_token_reuse",
                            family.session.sub,
                            sid,
                            format!("generation {presented} presented while generation {} is live", family.generation)
                        ])?;
                    family.revoked_at = Some(now);
                    family.revoked_reason = Some("reuse_detected".into());
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

    async fn live_families(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Family>, StoreError> {
        let sub = sub.to_owned();
        self.read(move |conn| {
            let not_before = load_subject(conn, &sub)?.not_before.unwrap_or(Millis::MIN);
            let sql = format!(
                "SELECT {FAMILY_COLUMNS} FROM families
                 WHERE sub = ?1 AND created_at > ?2 AND revoked_at IS NULL AND expires_at > ?3 AND last_used_at > ?4
                 ORDER BY created_at DESC"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let idle_since = now.saturating_sub(rules.idle_timeout_ms);
            let families = statement.query_map(params![sub, not_before, now, idle_since], family_from_row)?;
            Ok(families.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        let sub = sub.to_owned();
        self.read(move |conn| load_subject(conn, &sub)).await
    }

    async fn revocations_after(
        &self,
        after_id: i64,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, at, kind, value, instant, actor, reason FROM revocation_log
                 WHERE id > ?1 AND at >= ?2 ORDER BY id LIMIT ?3",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement.query_map(params![after_id, since, limit], revocation_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
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

    async fn log_head(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT coalesce(max(id), 0) FROM revocation_log")?
                .query_row([], |row| row.get(0))?)
        })
        .await
    }

    async fn security_events(&self, limit: usize) -> Result<Vec<SecurityEvent>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT at, kind, sub, sid, detail FROM security_events ORDER BY id DESC LIMIT ?1")?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement.query_map([limit], |row| {
                Ok(SecurityEvent {
                    at: row.get(0)?,
                    kind: row.get(1)?,
                    sub: row.get(2)?,
                    sid: row.get(3)?,
                    detail: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let row = conn
                .prepare_cached("SELECT version, contents FROM documents WHERE name = ?1")?
                .query_row([name], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
                .optional()?;
            row.map(|(version, contents)| Ok(Document { version: document_version(version)?, contents })).transpose()
        })
        .await
    }

    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError> {
        let name = name.to_owned();
        let expected = expected.map(i64::try_from).transpose().map_err(|_| bad_version())?;
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

fn document_version(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored).map_err(|_| bad_version())
}

fn bad_version() -> StoreError {
    StoreError::Backend("document version out of range".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a panic here is a failed test

    use super::*;

    /// The writer must not preempt request handlers (see `SqliteStore::open`): its thread is
    /// `SCHED_BATCH` (policy 3, field 41 of `/proc/<tid>/stat`) while the opener's thread keeps the default (0).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_writer_thread_runs_under_sched_batch_and_leaves_other_threads_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tessera.db")).unwrap();
        // The thread names itself and sets its policy once it runs: a committed change shows it has.
        let user =
            User { username: "u".into(), password_hash: "h".into(), roles: vec![], disabled: false, created_at: 0 };
        store.create_user(user).await.unwrap();
        let policy_of = |task: &std::path::Path| {
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            let after_name = stat.rsplit_once(')').unwrap().1;
            // Fields after the name start at field 3.
            after_name.split_whitespace().nth(41 - 3).unwrap().parse::<u32>().unwrap()
        };
        let tasks: Vec<(String, u32)> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .map(|task| {
                let task = task.unwrap().path();
                (std::fs::read_to_string(task.join("comm")).unwrap().trim().to_owned(), policy_of(&task))
            })
            .collect();
        let writer = tasks.iter().find(|(name, _)| name == "tessera-sqlite-").expect("no writer thread");
        assert_eq!(writer.1, 3, "writer thread policy (3 = SCHED_BATCH); threads: {tasks:?}");
        assert_eq!(policy_of(Path::new("/proc/thread-self")), 0, "the opening thread must keep SCHED_OTHER");
    }

    #[tokio::test]
    async fn the_revocation_log_survives_the_migration_that_adds_token_and_client_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute_batch(
                "INSERT INTO revocation_log (at, kind, value, not_before) VALUES (10, 'session', 's1', NULL);
                 INSERT INTO revocation_log (at, kind, value, not_before) VALUES (20, 'subject', 'u1', 20);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let log = store.revocations_after(0, 0, 10).await.unwrap();
        let kept: Vec<_> = log.iter().map(|e| (e.id, e.at, e.revocation.clone())).collect();
        assert_eq!(
            kept,
            [
                (1, 10, Revocation::Session { sid: "s1".into() }),
                (2, 20, Revocation::Subject { sub: "u1".into(), not_before: 20 })
            ]
        );
        let token = Revocation::Token { jti: "j".into(), expires_at: 99 };
        store.revoke(token.clone(), Provenance::new("cli", "test"), 30).await.unwrap();
        let next = store.revocations_after(2, 0, 10).await.unwrap();
        assert_eq!((next[0].id, &next[0].revocation), (3, &token), "positions continue after the migrated ones");
    }

    /// The database, its write-ahead log and its shared-memory file are the owner's alone, whatever the umask.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_and_its_wal_and_shm_files_are_created_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.db");
        let store = SqliteStore::open(&path).unwrap();
        store.revoke(Revocation::Session { sid: "s".into() }, Provenance::new("cli", "test"), 1).await.unwrap();
        for file in ["tessera.db", "tessera.db-wal", "tessera.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}: {mode:o}");
        }
    }
}
