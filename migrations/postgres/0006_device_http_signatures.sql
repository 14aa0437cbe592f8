-- Signed HTTP device requests already served [issue 14]: a captured request replayed
-- within the clock-skew window is refused, on every node and after a restart. Rows
-- expire with the window (pruned by the nodes).
CREATE TABLE device_http_signatures
(
    signature  TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX device_http_signatures_expiry ON device_http_signatures (expires_at);
