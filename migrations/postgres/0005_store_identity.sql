-- The store's identity, made once with the store: what a JetStream stream is bound to, so
-- a stream of another store (a reused namespace) or one ahead of this store's feed (a
-- restore from an older backup) is refused at start instead of skipping silently.
CREATE TABLE store_identity
(
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    store_id   TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO store_identity (store_id, created_at)
VALUES (replace(gen_random_uuid()::text, '-', ''), (extract(epoch FROM now()) * 1000)::BIGINT);
