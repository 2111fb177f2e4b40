-- Revocations of a token by `jti` alone (its expiry unknown), and an index by identifier: compact mode
-- confirms its prefilter's positives by looking a `jti` up in the log.
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
