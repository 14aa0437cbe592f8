//! The relay: one node at a time publishes the global feed to the event stream, in
//! order, each event under its id (JetStream drops a re-publish) with its feed position.

use super::{nats_err, partition_of, ClusterError, Nats, POSITION_HEADER, RELAY_LOCK};
use crate::db::{Db, DbError};
use crate::feed::Feed;
use async_nats::jetstream;
use async_nats::HeaderMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The relay: publishes the feed to the event stream while this node leads.
pub struct Relay {
    nats: Arc<Nats>,
    feed: Feed,
    db: Db,
    /// The leadership session and the position relayed so far.
    lead: Mutex<Option<(sqlx::PgConnection, i64)>>,
}

impl Relay {
    /// A relay of `feed` (PostgreSQL) to `nats`.
    pub fn new(nats: Arc<Nats>, feed: Feed, db: Db) -> Self {
        Self {
            nats,
            feed,
            db,
            lead: Mutex::new(None),
        }
    }

    /// Gives up the lead (at shutdown): closing the session frees the lock for another
    /// node at once rather than when the process exits.
    pub async fn release(&self) {
        if let Some((conn, _)) = self.lead.lock().await.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
    }

    /// Whether this node leads the relay now.
    pub async fn is_leader(&self) -> bool {
        self.lead.lock().await.is_some()
    }

    /// Takes the lead if it is free, then publishes up to `batch` feed events after the
    /// relayed position. Returns how many it published. On any failure it gives up the
    /// lead, so the next step starts again from what the stream holds.
    pub async fn step(&self, batch: i64) -> Result<usize, ClusterError> {
        let mut lead = self.lead.lock().await;
        if lead.is_none() {
            let Db::Postgres(pool) = &self.db else {
                return Err(ClusterError::Config("the relay needs the PostgreSQL store".into()));
            };
            let mut conn = pool.acquire().await.map_err(DbError::from)?.detach();
            let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(&mut conn)
                .await
                .map_err(DbError::from)?;
            if !got {
                return Ok(0);
            }
            let head = self.nats.relayed_head().await?;
            tracing::info!(from = head, "relay: leading");
            *lead = Some((conn, head));
        }
        let result = self.publish_batch(&mut lead, batch).await;
        if result.is_err() {
            // Dropping the connection ends the session and frees the lock.
            *lead = None;
        }
        result
    }

    async fn publish_batch(&self, lead: &mut Option<(sqlx::PgConnection, i64)>, batch: i64) -> Result<usize, ClusterError> {
        let Some((conn, from)) = lead.as_mut() else {
            return Ok(0);
        };
        // The lock lives as long as this session: make sure it still does.
        sqlx::query("SELECT 1").execute(&mut *conn).await.map_err(DbError::from)?;
        let events = self.feed.read_after(*from, batch).await?;
        let mut acks = Vec::with_capacity(events.len());
        for ev in &events {
            let payload = serde_json::to_vec(ev).map_err(DbError::from)?;
            let mut headers = HeaderMap::new();
            headers.insert(POSITION_HEADER, ev.position.to_string().as_str());
            let subject = self.nats.event_subject(partition_of(&ev.aggregate_id), &ev.aggregate_type);
            let ack = self
                .nats
                .js
                .send_publish(
                    subject,
                    jetstream::message::PublishMessage::build()
                        .payload(payload.into())
                        .headers(headers)
                        .message_id(&ev.event_id),
                )
                .await
                .map_err(nats_err)?;
            acks.push(ack);
        }
        for ack in acks {
            let ack = ack.await.map_err(nats_err)?;
            self.nats.counters.relayed.fetch_add(1, Ordering::Relaxed);
            if ack.duplicate {
                self.nats.counters.relay_duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(last) = events.last() {
            *from = last.position;
        }
        Ok(events.len())
    }
}
