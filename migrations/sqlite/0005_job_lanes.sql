-- Each effect's lane (its serial key), as on PostgreSQL (where several nodes claim
-- effects, only the first pending effect of a lane may be claimed).
ALTER TABLE jobs ADD COLUMN lane text;
CREATE INDEX jobs_pending_lane ON jobs (lane) WHERE status = 'pending';
