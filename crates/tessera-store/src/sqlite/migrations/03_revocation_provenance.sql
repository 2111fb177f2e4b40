-- Revocations by token (`jti`) and by client, and who revoked and why, kept for audit.
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
