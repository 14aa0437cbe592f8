-- Gateway nodes announce themselves here every few seconds; a node not seen for a
-- while is presumed dead, and the devices it held are judged by another node [D5].
CREATE TABLE nodes (
    name text PRIMARY KEY,
    roles text NOT NULL,
    seen_at bigint NOT NULL
);
