CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY NOT NULL,
    secret_hash BLOB NOT NULL,
    scopes      TEXT NOT NULL,
    audiences   TEXT NOT NULL,
    grants      TEXT NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
) STRICT;
