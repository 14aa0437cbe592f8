-- Snapshots recorded at their commit's last event although cqrs-es takes them at the
-- last multiple of the interval the commit reaches (which may come earlier): a load
-- from one skipped the events in between. A snapshot is only a shortcut to replaying an
-- aggregate's events, so dropping them all loses nothing; the next ones are recorded at
-- their own sequence.
DELETE FROM snapshots;
