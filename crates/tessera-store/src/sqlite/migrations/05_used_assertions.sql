-- Client assertions (private_key_jwt) already used, until they expire.
CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
) STRICT;
CREATE INDEX used_assertions_by_expiry ON used_assertions (expires_at);
