CREATE TABLE documents (
    name     TEXT PRIMARY KEY,
    version  BIGINT NOT NULL,
    contents TEXT NOT NULL
);
