-- Snapshots written before the aggregate cache (cqrs-es 0.5 applied a snapshot's last
-- command's events twice when it made one): a snapshot is only a shortcut to replaying
-- an aggregate's events, so dropping them all loses nothing; the next snapshots are
-- made from the state before each command.
DELETE FROM snapshots;
