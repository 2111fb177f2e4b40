-- Expired sessions are forgotten in batches.
CREATE INDEX families_by_expiry ON families (expires_at);
