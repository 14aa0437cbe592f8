-- Keys of personal data, outside the log (see the PostgreSQL migration of the same name).
CREATE TABLE personal_keys
(
    subject   TEXT PRIMARY KEY,
    key       TEXT,
    erased_at INTEGER
) STRICT;
