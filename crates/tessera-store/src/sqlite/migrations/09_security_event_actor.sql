-- Who raised a security event (empty when not known), and the security-events API's filters by kind and subject,
-- newest first.
ALTER TABLE security_events ADD COLUMN actor TEXT NOT NULL DEFAULT '';
CREATE INDEX security_events_by_kind ON security_events (kind, id);
CREATE INDEX security_events_by_sub ON security_events (sub, id);
