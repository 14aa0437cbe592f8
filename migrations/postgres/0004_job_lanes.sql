-- Each effect's lane (its serial key: the order, command, restock, … it acts on). Where
-- several nodes claim effects, only the first pending effect of a lane may be claimed,
-- so one order's effects never run side by side on two nodes, out of order.
ALTER TABLE jobs ADD COLUMN lane text;
CREATE INDEX jobs_pending_lane ON jobs (lane) WHERE status = 'pending';
