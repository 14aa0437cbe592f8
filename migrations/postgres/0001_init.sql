-- Tare scaled-out store (PostgreSQL). events/snapshots as postgres-es expects, plus the
-- columns the gap-free feed needs: a global identity and the writing transaction's id.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_commit_order ON events (transaction_id, global_position);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- The global feed, numbered by one sequencer (advisory lock) that reads events in
-- (transaction_id, global_position) order below the oldest running transaction
-- (pg_snapshot_xmin), so a transaction that commits late is never skipped.
CREATE TABLE feed
(
    position       bigint PRIMARY KEY,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE feed_sequencer
(
    id              int PRIMARY KEY CHECK (id = 1),
    transaction_id  xid8   NOT NULL,
    global_position bigint NOT NULL
);
INSERT INTO feed_sequencer VALUES (1, '0'::xid8, 0);

CREATE TABLE checkpoints
(
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);

CREATE TABLE jobs
(
    key          text   PRIMARY KEY,
    due_at       bigint NOT NULL,
    effect       text   NOT NULL,
    status       text   NOT NULL DEFAULT 'pending',
    attempts     int    NOT NULL DEFAULT 0,
    locked_until bigint NOT NULL DEFAULT 0,
    last_error   text,
    source       bigint,
    updated_at   bigint NOT NULL DEFAULT 0
);
CREATE INDEX jobs_due ON jobs (status, due_at);

CREATE TABLE views
(
    view     text   NOT NULL,
    id       text   NOT NULL,
    owner    text,
    doc      text   NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (view, id)
);
CREATE INDEX views_owner ON views (view, owner);

CREATE TABLE device_credentials
(
    cabinet  text PRIMARY KEY,
    secret   text NOT NULL,
    disabled int  NOT NULL DEFAULT 0
);

CREATE TABLE settings
(
    key   text PRIMARY KEY,
    value text NOT NULL
);
