//! What auditors and monitoring read: the global feed [E2] and one snapshot of the
//! platform's own metrics [X3], so the API never reaches into the subsystems.

use super::ServiceError;
use crate::devices::liveness::Health;
use crate::feed::FeedEvent;
use crate::Platform;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Everything `/metrics` shows, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Highest position in the global feed.
    pub feed_head: i64,
    /// The feed position the order saga has decided up to.
    pub saga_position: i64,
    /// The feed position the projections have applied up to.
    pub projections_position: i64,
    /// Effects and timers not yet done.
    pub effects_pending: i64,
    /// Effects given up (dead letters).
    pub effects_dead: i64,
    /// Effects this process completed.
    pub effects_done: u64,
    /// Transient effect failures in this process.
    pub effects_retried: u64,
    /// Effects this process dead-lettered.
    pub effects_buried: u64,
    /// The device edge's counters.
    pub devices: DeviceMetrics,
    /// Heartbeat liveness of this node's devices [D5, B1].
    pub liveness: LivenessMetrics,
    /// The NATS side, when scaled out.
    pub cluster: Option<ClusterMetrics>,
}

/// Device traffic counters of this node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceMetrics {
    /// Uplinks accepted.
    pub accepted: u64,
    /// Uplinks dropped as duplicates.
    pub duplicates: u64,
    /// Uplinks refused, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Commands and replies sent to devices.
    pub downlinks: u64,
    /// Devices recorded offline for silence (operator alerts).
    pub silent_alerts: u64,
    /// Doors closed for their session from a rebooted device's snapshot [B7].
    pub reboots_reconciled: u64,
    /// Door closes never received, heard from a later heartbeat's door states [B7].
    pub lost_closes_heard: u64,
    /// Weight samples and heartbeats published as telemetry.
    pub telemetry_published: u64,
    /// Weight samples written to the 30-day history [D6].
    pub weight_history_written: u64,
    /// Weight samples the history's full queue dropped.
    pub weight_history_dropped: u64,
    /// Device connections this node holds.
    pub connections: usize,
}

/// Heartbeat liveness of this node's devices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivenessMetrics {
    /// Intake health over the window.
    pub health: Health,
    /// Devices whose heartbeats are tracked.
    pub tracked: usize,
    /// Devices silent while the platform is unhealthy (shown unknown).
    pub undecided: usize,
}

/// The scaled-out mode's counters of this node.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClusterMetrics {
    /// Events this node's relay published (acknowledged by JetStream).
    pub relayed: u64,
    /// Of those, events JetStream already held.
    pub relay_duplicates: u64,
    /// Stream events this node's workers applied.
    pub applied: u64,
    /// Stream events handed to this node that were applied before.
    pub skipped: u64,
    /// Stream messages this build could not read.
    pub undecodable: u64,
    /// Telemetry records published to NATS.
    pub telemetry_out: u64,
    /// Telemetry records lost before NATS.
    pub telemetry_lost: u64,
    /// Weight samples taken in from other gateway nodes.
    pub telemetry_in: u64,
    /// Device commands handed to the gateway node holding the device.
    pub commands_routed: u64,
    /// Whether this node's relay publishes the feed now.
    pub relay_leader: bool,
}

fn read(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Most feed events one page of a time-window query reads.
pub const FEED_SCAN: i64 = 20_000;

impl Platform {
    /// Up to `limit` events of the global feed after position `after`, in feed order.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<FeedEvent>, ServiceError> {
        Ok(self.feed.read_after(after, limit).await?)
    }

    /// A page of the feed after `after` [E2]: one stream's events (`stream` = aggregate
    /// type and id; an order's includes its payment's) and/or those whose time is in
    /// `[from_ts, to_ts)`, at most `limit`; with the position to continue from. A time
    /// window alone is found by reading the feed in order, at most [`FEED_SCAN`] events
    /// a page: a page may hold fewer than `limit` events and still have more after it.
    pub async fn events_filtered(
        &self,
        after: i64,
        limit: i64,
        stream: Option<(&str, &str)>,
        window: (Option<i64>, Option<i64>),
    ) -> Result<(Vec<FeedEvent>, i64), ServiceError> {
        let in_window = |e: &FeedEvent| window.0.is_none_or(|f| e.time() >= f) && window.1.is_none_or(|t| e.time() < t);
        if let Some((t, id)) = stream {
            let mut events = self.feed.read_stream_after(t, id, after, limit).await?;
            if t == "order" {
                events.extend(self.feed.read_stream_after("payment", id, after, limit).await?);
                events.sort_by_key(|e| e.position);
                events.truncate(limit as usize);
            }
            let next = events.last().map_or(after, |e| e.position);
            return Ok((events.into_iter().filter(in_window).collect(), next));
        }
        let (mut out, mut at) = (Vec::new(), after);
        let mut scanned = 0;
        'pages: while scanned < FEED_SCAN {
            let batch = self.feed.read_after(at, 1_000).await?;
            if batch.is_empty() {
                break;
            }
            for e in batch {
                scanned += 1;
                at = e.position;
                if in_window(&e) {
                    out.push(e);
                    if out.len() as i64 == limit {
                        break 'pages;
                    }
                }
            }
        }
        Ok((out, at))
    }

    /// Waits until events may have been committed after the last wait (at most
    /// `timeout`: another node's commits are seen only by reading again).
    pub async fn wait_for_events(&self, timeout: std::time::Duration) {
        let appended = self.feed.appended();
        let _ = tokio::time::timeout(timeout, appended.notified()).await;
    }

    /// Order `order_id`'s cabinet and shopper, from its summary (for placing its steps).
    pub async fn order_place(&self, order_id: &str) -> Option<(String, String)> {
        let doc = self.views.get("order_summary", order_id).await.ok()??;
        let s: tare_projections::OrderSummary = serde_json::from_value(doc).ok()?;
        Some((s.cabinet, s.shopper_id))
    }

    /// The highest position in the global feed.
    pub async fn feed_head(&self) -> Result<i64, ServiceError> {
        Ok(self.feed.head().await?)
    }

    /// The last feed position published to JetStream (scaled out; `None` embedded).
    pub async fn relayed_head(&self) -> Result<Option<i64>, ServiceError> {
        match &self.nats {
            Some(n) => n.relayed_head().await.map(Some).map_err(|e| ServiceError::Internal(e.to_string())),
            None => Ok(None),
        }
    }

    /// The platform's metrics, read now.
    pub async fn metrics(&self) -> Result<MetricsSnapshot, ServiceError> {
        let feed_head = self.feed.head().await?;
        let jobs = self.jobs.open_counts().await?;
        let saga_position = self.jobs.checkpoint_for_metrics(crate::runner::ORDER_SAGA).await?;
        let projections_position = self.jobs.checkpoint_for_metrics(crate::views::PROJECTIONS).await?;
        let c = &self.effects.counters;
        let d = &self.hub.counters();
        let now = self.clock.now_ms();
        let cluster = match &self.nats {
            Some(n) => {
                let c = &n.counters;
                Some(ClusterMetrics {
                    relayed: read(&c.relayed),
                    relay_duplicates: read(&c.relay_duplicates),
                    applied: read(&c.applied),
                    skipped: read(&c.skipped),
                    undecodable: read(&c.undecodable),
                    telemetry_out: read(&c.telemetry_out),
                    telemetry_lost: read(&c.telemetry_lost),
                    telemetry_in: read(&c.telemetry_in),
                    commands_routed: read(&c.commands_routed),
                    relay_leader: match &self.relay {
                        Some(r) => r.is_leader().await,
                        None => false,
                    },
                })
            }
            None => None,
        };
        Ok(MetricsSnapshot {
            feed_head,
            saga_position,
            projections_position,
            effects_pending: jobs.pending,
            effects_dead: jobs.dead,
            effects_done: read(&c.done),
            effects_retried: read(&c.retried),
            effects_buried: read(&c.buried),
            devices: DeviceMetrics {
                accepted: read(&d.accepted),
                duplicates: read(&d.duplicates),
                rejected: d.rejected.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                downlinks: read(&d.sent),
                silent_alerts: read(&d.silent_alerts),
                reboots_reconciled: read(&d.reboots_reconciled),
                lost_closes_heard: read(&d.lost_closes_heard),
                telemetry_published: read(&self.hub.bus().published),
                weight_history_written: read(&self.history.written),
                weight_history_dropped: read(&self.history.dropped),
                connections: self.hub.connection_count(),
            },
            liveness: LivenessMetrics {
                health: self.hub.liveness().health(now),
                tracked: self.hub.liveness().tracked(),
                undecided: self.hub.liveness().undecided_count(),
            },
            cluster,
        })
    }
}
