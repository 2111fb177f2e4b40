-- Named documents kept for their owners: the keyring and the server secrets, when a deployment keeps them
-- in the store rather than in the data directory.
CREATE TABLE documents (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    contents TEXT NOT NULL
) STRICT;
