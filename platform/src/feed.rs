//! The gap-free global feed [E1, E2]: every committed event once, in one stable order.
//!
//! SQLite numbers events with a trigger inside the writing transaction. PostgreSQL
//! numbers them with a sequencer (one at a time, by advisory lock) that takes events in
//! `(transaction_id, global_position)` order strictly below `pg_snapshot_xmin`, so an
//! event of a transaction still in flight is waited for, never skipped. Readers on both
//! stores then read `feed` by position.

use crate::db::{Db, DbError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
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
        let only = if stream.is_some() {
            "AND f.aggregate_type = $3 AND f.aggregate_id = $4 "
        } else {
            ""
        };
        let sql = format!(
            "SELECT f.position, f.aggregate_type, f.aggregate_id, f.sequence, e.event_type, e.event_version, e.payload{cast} AS payload, e.metadata{cast} AS metadata \
             FROM feed f JOIN events e ON e.aggregate_type = f.aggregate_type AND e.aggregate_id = f.aggregate_id AND e.sequence = f.sequence \
             WHERE f.position > $1 {only}ORDER BY f.position LIMIT $2"
        );
        let (t, id) = stream.unwrap_or_default();
        let rows: Vec<FeedRow> = match &self.db {
            Db::Sqlite { read, .. } => {
                let q = sqlx::query_as(&sql).bind(position).bind(limit);
                let q = if stream.is_some() { q.bind(t).bind(id) } else { q };
                q.fetch_all(read).await?
            }
            Db::Postgres(pool) => {
                let q = sqlx::query_as(&sql).bind(position).bind(limit);
                let q = if stream.is_some() { q.bind(t).bind(id) } else { q };
                q.fetch_all(pool).await?
            }
        };
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
        let row = sqlx::query("SELECT transaction_id::text AS txid, global_position FROM feed_sequencer WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let txid: String = row.try_get("txid")?;
        let gp: i64 = row.try_get("global_position")?;
        let rows = sqlx::query(
            "SELECT transaction_id::text AS txid, global_position, aggregate_type, aggregate_id, sequence FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id, global_position LIMIT $3",
        )
        .bind(&txid)
        .bind(gp)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let (head,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(position), 0) FROM feed")
            .fetch_one(&mut *tx)
            .await?;
        let mut last = (txid, gp);
        for (i, r) in rows.iter().enumerate() {
            sqlx::query("INSERT INTO feed (position, aggregate_type, aggregate_id, sequence) VALUES ($1, $2, $3, $4)")
                .bind(head + 1 + i as i64)
                .bind(r.try_get::<String, _>("aggregate_type")?)
                .bind(r.try_get::<String, _>("aggregate_id")?)
                .bind(r.try_get::<i64, _>("sequence")?)
                .execute(&mut *tx)
                .await?;
            last = (r.try_get("txid")?, r.try_get("global_position")?);
        }
        sqlx::query("UPDATE feed_sequencer SET transaction_id = $1::text::xid8, global_position = $2 WHERE id = 1")
            .bind(&last.0)
            .bind(last.1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.sequenced.send_modify(|n| *n = n.wrapping_add(1));
        Ok(rows.len() as u64)
    }
}
