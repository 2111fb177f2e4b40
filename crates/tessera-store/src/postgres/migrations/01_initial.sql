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
