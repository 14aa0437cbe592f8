-- Signed HTTP device requests already served (see the PostgreSQL migration of the same
-- name).
CREATE TABLE device_http_signatures
(
    signature  TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX device_http_signatures_expiry ON device_http_signatures (expires_at);
