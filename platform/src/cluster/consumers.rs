//! The partition workers: each pulls its partition's events one at a time, applies each
//! with the partition's checkpoint, then acknowledges it.

use super::{Nats, WorkerKind};
use crate::db::DbError;
use crate::feed::FeedEvent;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Consumes partition `p` for worker `kind` until `shutdown`: pulls one event at a
/// time (the consumer allows one in flight), hands it to `apply` (which commits the
/// effect with the partition checkpoint and says whether it applied it), then
/// acknowledges it. A failed `apply` is negatively acknowledged for redelivery.
pub async fn consume_partition<F, Fut>(nats: Arc<Nats>, kind: WorkerKind, p: u16, mut shutdown: watch::Receiver<bool>, apply: F)
where
    F: Fn(FeedEvent) -> Fut + Send,
    Fut: Future<Output = Result<bool, DbError>> + Send,
{
    let mut consumer: Option<consumer::PullConsumer> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if consumer.is_none() {
            match nats.partition_consumer(kind, p).await {
                Ok(c) => {
                    consumer = Some(c);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(worker = kind.name(), partition = p, error = %e, "consumer unavailable; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(c) = consumer.as_ref() else { continue };
        let batch = tokio::select! {
            _ = shutdown.changed() => return,
            b = c.batch().max_messages(1).expires(Duration::from_secs(1)).messages() => b,
        };
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(worker = kind.name(), partition = p, error = %e, "pull failed; reconnecting the consumer");
                consumer = None;
                continue;
            }
        };
        while let Some(msg) = batch.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(worker = kind.name(), partition = p, error = %e, "pull ended");
                    break;
                }
            };
            let event: FeedEvent = match serde_json::from_slice(&msg.payload) {
                Ok(ev) => ev,
                Err(e) => {
                    nats.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(worker = kind.name(), partition = p, error = %e, "undecodable message on the event stream; terminated");
                    let _ = msg.ack_with(jetstream::AckKind::Term).await;
                    continue;
                }
            };
            let position = event.position;
            match apply(event).await {
                Ok(applied) => {
                    let counter = if applied { &nats.counters.applied } else { &nats.counters.skipped };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = msg.ack().await {
                        // Redelivered later and skipped by the checkpoint.
                        tracing::warn!(worker = kind.name(), partition = p, position, error = %e, "ack failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = kind.name(), partition = p, position, error = %e, "event not applied; redelivery requested");
                    let _ = msg.ack_with(jetstream::AckKind::Nak(Some(Duration::from_millis(500)))).await;
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }
}
