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
