-- Gateway nodes announce themselves here every few seconds (one node embedded; the
-- table keeps the schema the same on both stores).
CREATE TABLE nodes (
    name text PRIMARY KEY,
    roles text NOT NULL,
    seen_at integer NOT NULL
);
