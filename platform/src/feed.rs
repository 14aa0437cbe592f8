//! The gap-free global feed [E1, E2]: every committed event once, in one stable order.
//!
//! SQLite numbers events with a trigger inside the writing transaction. PostgreSQL
//! numbers them with a sequencer (one at a time, by advisory lock) that takes events in
//! `(transaction_id, global_position)` order strictly below `pg_snapshot_xmin`, so an
//! event of a transaction still in flight is waited for, never skipped. Readers on both
//! stores then read `feed` by position.

use crate::db::{Db, DbError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Notify;

/// One event as read from the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEvent {
    /// Position in the feed (1, 2, 3, … with no gaps).
    pub position: i64,
    /// Stable event id (derived from aggregate type, id and sequence).
    pub event_id: String,
    /// Aggregate type (`order`, `cabinet`, …).
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Sequence within the aggregate.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Schema version.
    pub event_version: String,
    /// The event.
    pub payload: serde_json::Value,
    /// time, correlation_id, causation_id, command_id.
    pub metadata: serde_json::Value,
}

impl FeedEvent {
    /// The event's time from its metadata (Unix ms), or 0.
    pub fn time(&self) -> i64 {
        self.metadata.get("time").and_then(|t| t.as_i64()).unwrap_or(0)
    }
}

/// cqrs-es stores metadata as strings; the feed shows `time` as the Unix-ms number the
/// API promises.
fn numeric_time(mut metadata: serde_json::Value) -> serde_json::Value {
    if let Some(t) = metadata.get("time").and_then(|t| t.as_str()).and_then(|t| t.parse::<i64>().ok()) {
        metadata["time"] = serde_json::Value::from(t);
    }
    metadata
}

/// The namespace of event ids (UUIDv5 of `type/id/sequence`): the same event always
/// has the same id, on every replay and every node.
const EVENT_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7a1e2c3d_4b5a_4f60_9e8d_1c2b3a4f5e6d);

/// The id of event `sequence` of aggregate `aggregate_type/aggregate_id`.
pub fn event_id(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> String {
    uuid::Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{aggregate_type}/{aggregate_id}/{sequence}").as_bytes(),
    )
    .to_string()
}

/// A feed row as selected: position, type, id, sequence, event type, version, payload
/// and metadata (JSON text).
type FeedRow = (i64, String, String, i64, String, String, String, String);

/// Reads the feed; also wakes tailers when new events may be there.
#[derive(Clone)]
pub struct Feed {
    db: Db,
    appended: Arc<Notify>,
    /// Bumped when PostgreSQL's sequencer has numbered new events: the saga and
    /// projection loops read the feed at once instead of at their next idle poll (on
    /// PostgreSQL a commit is in the feed only once sequenced, so the commit's own wake-up
    /// usually finds nothing new yet).
    sequenced: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Feed {
    /// The feed of `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            appended: Arc::new(Notify::new()),
            sequenced: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Changes whenever this process's sequencer numbered new events.
    pub fn sequenced(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sequenced.subscribe()
    }

    /// Tells tailers that events were committed.
    pub fn notify(&self) {
        self.appended.notify_waiters();
    }

    /// A handle tailers wait on.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Up to `limit` events of one stream (`aggregate_type`, `aggregate_id`) after
    /// `position`, in feed order (through the feed's unique index on the stream).
    pub async fn read_stream_after(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        position: i64,
        limit: i64,
    ) -> Result<Vec<FeedEvent>, DbError> {
        self.read(Some((aggregate_type, aggregate_id)), position, limit).await
    }

    /// Up to `limit` events after `position`, in feed order.
    pub async fn read_after(&self, position: i64, limit: i64) -> Result<Vec<FeedEvent>, DbError> {
        self.read(None, position, limit).await
    }

    async fn read(&self, stream: Option<(&str, &str)>, position: i64, limit: i64) -> Result<Vec<FeedEvent>, DbError> {
        let cast = if self.db.is_postgres() { "::text" } else { "" };
        // The feed's rows first, then their events by primary key: joined the other way,
        // PostgreSQL's generic plan (it cannot see `$1`) guesses a third of the feed and
        // hashes the whole events table, a cost that grows with the log. Positions have
        // no gaps, so the whole-feed read names its range exactly; the limit is written
        // in (a number of ours) so the plan knows how few rows come. (Parameters appear
        // in the order of their numbers: SQLite numbers them by first appearance.)
        let filter = match stream {
            Some(_) => "AND aggregate_type = $2 AND aggregate_id = $3 ORDER BY position LIMIT $4".to_string(),
            None => format!("AND position <= $1 + CAST($2 AS BIGINT) ORDER BY position LIMIT {}", limit.max(0)),
        };
        let sql = format!(
            "SELECT f.position, f.aggregate_type, f.aggregate_id, f.sequence, e.event_type, e.event_version, e.payload{cast} AS payload, e.metadata{cast} AS metadata \
             FROM (SELECT position, aggregate_type, aggregate_id, sequence FROM feed WHERE position > $1 {filter}) f \
             JOIN events e ON e.aggregate_type = f.aggregate_type AND e.aggregate_id = f.aggregate_id AND e.sequence = f.sequence \
             ORDER BY f.position"
        );
        let rows: Vec<FeedRow> = crate::on_read_db!(&self.db, pool => {
            let q = sqlx::query_as(&sql).bind(position);
            let q = match stream {
                Some((t, id)) => q.bind(t).bind(id).bind(limit),
                None => q.bind(limit),
            };
            q.fetch_all(pool).await?
        });
        rows.into_iter()
            .map(
                |(position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)| {
                    Ok(FeedEvent {
                        position,
                        event_id: event_id(&aggregate_type, &aggregate_id, sequence),
                        aggregate_type,
                        aggregate_id,
                        sequence,
                        event_type,
                        event_version,
                        payload: serde_json::from_str(&payload)?,
                        metadata: numeric_time(serde_json::from_str(&metadata)?),
                    })
                },
            )
            .collect()
    }

    /// The highest position in the feed (0 when empty).
    pub async fn head(&self) -> Result<i64, DbError> {
        let sql = "SELECT COALESCE(MAX(position), 0) FROM feed";
        let (head,): (i64,) = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).fetch_one(pool).await?);
        Ok(head)
    }

    /// PostgreSQL only: numbers newly committed events into the feed. Returns how many
    /// were numbered. Safe to call from several nodes: one at a time holds the lock.
    pub async fn sequence_postgres(&self, batch: i64) -> Result<u64, DbError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(0);
        };
        let mut tx = pool.begin().await?;
        // Transaction-level advisory lock: released at commit/rollback.
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock(7361626)")
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        // One statement: the next committed events in commit order, numbered after the
        // feed's head, and the sequencer's mark moved past the last of them (a WITH's
        // INSERT and UPDATE always run to completion; `next` is evaluated once).
        let (numbered,): (i64,) = sqlx::query_as(
            "WITH next AS (SELECT e.transaction_id, e.global_position, e.aggregate_type, e.aggregate_id, e.sequence, \
                             row_number() OVER (ORDER BY e.transaction_id, e.global_position) AS n \
                      FROM events e \
                      WHERE (e.transaction_id, e.global_position) > \
                            ((SELECT transaction_id FROM feed_sequencer WHERE id = 1), (SELECT global_position FROM feed_sequencer WHERE id = 1)) \
                        AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                      ORDER BY e.transaction_id, e.global_position LIMIT $1), \
             head AS (SELECT COALESCE(MAX(position), 0) AS head FROM feed), \
             numbered AS (INSERT INTO feed (position, aggregate_type, aggregate_id, sequence) \
                          SELECT head.head + next.n, next.aggregate_type, next.aggregate_id, next.sequence FROM next, head \
                          RETURNING 1), \
             _moved AS (UPDATE feed_sequencer s SET transaction_id = last.transaction_id, global_position = last.global_position \
                       FROM (SELECT transaction_id, global_position FROM next ORDER BY n DESC LIMIT 1) last WHERE s.id = 1 \
                       RETURNING 1) \
             SELECT COUNT(*) FROM numbered",
        )
        .bind(batch)
        .fetch_one(&mut *tx)
        .await?;
        if numbered == 0 {
            return Ok(0);
        }
        tx.commit().await?;
        self.sequenced.send_modify(|n| *n = n.wrapping_add(1));
        Ok(numbered as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group_commit::GroupWriter;

    fn event(id: &str, sequence: usize) -> cqrs_es::persist::SerializedEvent {
        crate::group_commit::tests::event_of(id, sequence, sequence as u32)
    }

    #[tokio::test]
    async fn the_feed_reads_in_ranges_and_by_stream_on_both_stores() {
        let dir = std::env::temp_dir().join(format!("tare-feed-{}", uuid::Uuid::now_v7()));
        let admin = std::env::var("TARE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let pg_url = crate::db::create_scratch_postgres(&admin, "tare_feed").await.unwrap();
        for db in [Db::open_sqlite(&dir).await.unwrap(), Db::open_postgres(&pg_url, 4).await.unwrap()] {
            let writer = GroupWriter::start(&db);
            // Two streams, interleaved: a1 b1 a2 b2 … a5 b5.
            for s in 1..=5 {
                for id in ["a", "b"] {
                    writer.persist("tally", &[event(id, s)], None).await.unwrap();
                }
            }
            let feed = Feed::new(db.clone());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while feed.head().await.unwrap() < 10 && std::time::Instant::now() < deadline {
                feed.sequence_postgres(1000).await.unwrap();
            }
            let page = feed.read_after(3, 4).await.unwrap();
            assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), [4, 5, 6, 7]);
            assert_eq!(page[0].metadata["time"], serde_json::json!(1), "time as a number");
            assert_eq!(feed.read_after(8, 100).await.unwrap().len(), 2, "the end of the feed");
            let b = feed.read_stream_after("tally", "b", 2, 2).await.unwrap();
            assert_eq!(
                b.iter().map(|e| (e.aggregate_id.as_str(), e.sequence)).collect::<Vec<_>>(),
                [("b", 2), ("b", 3)],
                "postgres: {}",
                db.is_postgres()
            );
            db.close().await;
        }
        crate::db::drop_scratch_postgres(&admin, &pg_url).await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
