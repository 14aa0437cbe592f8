-- The store's identity, made once with the store (see the PostgreSQL migration of the
-- same name): a backup restores it with the log it names.
CREATE TABLE store_identity
(
    singleton  INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    store_id   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO store_identity (store_id, created_at)
VALUES (lower(hex(randomblob(16))), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
