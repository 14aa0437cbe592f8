-- Keys of personal data, outside the log [issue 14]: a shopper's phone number is in the
-- log sealed under the shopper's key; erasing the shopper destroys the key (key NULL,
-- erased_at set), so the log stays whole and the number unreadable.
CREATE TABLE personal_keys
(
    subject   TEXT PRIMARY KEY,
    key       TEXT,
    erased_at BIGINT
);
