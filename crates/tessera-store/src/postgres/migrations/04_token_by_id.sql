-- Revocations of a token by `jti` alone (its expiry unknown), and an index by identifier: compact mode
-- confirms its prefilter's positives by looking a `jti` up in the log.
ALTER TABLE revocation_log DROP CONSTRAINT revocation_log_kind_check;
ALTER TABLE revocation_log ADD CONSTRAINT revocation_log_kind_check
    CHECK (kind IN ('session', 'subject', 'token', 'token_by_id', 'client'));
CREATE INDEX revocation_log_by_value ON revocation_log (value, kind);
