-- Tare embedded store (SQLite). The events/snapshots tables are exactly sqlite-es's
-- (keep the composite primary key: sqlite-es detects concurrency conflicts by it).
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE TABLE snapshots
(
  aggregate_type   text                                  NOT NULL,
  aggregate_id     text                                  NOT NULL,
  last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
  current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
  payload          text                                  NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

-- The gap-free global feed. SQLite serializes writers, so a trigger that inserts into an
-- INTEGER PRIMARY KEY table inside the writing transaction numbers events in commit
-- order with no gaps (a rolled-back insert frees its number for the next writer).
CREATE TABLE feed
(
  position       integer PRIMARY KEY,
  aggregate_type text    NOT NULL,
  aggregate_id   text    NOT NULL,
  sequence       integer NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE TRIGGER events_into_feed AFTER INSERT ON events
BEGIN
  INSERT INTO feed (aggregate_type, aggregate_id, sequence)
  VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
END;

-- Each feed consumer's position, committed with its effects.
CREATE TABLE checkpoints
(
  name     text    PRIMARY KEY,
  position integer NOT NULL
) STRICT;

-- Durable effects and timers scheduled by sagas: the key makes scheduling idempotent.
CREATE TABLE jobs
(
  key          text    PRIMARY KEY,
  due_at       integer NOT NULL,
  effect       text    NOT NULL,
  status       text    NOT NULL DEFAULT 'pending',
  attempts     integer NOT NULL DEFAULT 0,
  locked_until integer NOT NULL DEFAULT 0,
  last_error   text,
  source       integer,
  updated_at   integer NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX jobs_due ON jobs (status, due_at);

-- Read models folded from the feed (documents keyed by view and id, with an owner for
-- "mine" queries).
CREATE TABLE views
(
  view     text    NOT NULL,
  id       text    NOT NULL,
  owner    text,
  doc      text    NOT NULL,
  position integer NOT NULL,
  PRIMARY KEY (view, id)
) STRICT;
CREATE INDEX views_owner ON views (view, owner);

-- Device secrets live outside the event log: the log is replayed and shown to auditors.
CREATE TABLE device_credentials
(
  cabinet  text    PRIMARY KEY,
  secret   text    NOT NULL,
  disabled integer NOT NULL DEFAULT 0
) STRICT;

-- Operator settings (coupon policy).
CREATE TABLE settings
(
  key   text PRIMARY KEY,
  value text NOT NULL
) STRICT;
