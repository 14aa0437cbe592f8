//! Telemetry across nodes [D6]: gateway nodes publish weights and heartbeats to the
//! telemetry stream; saga nodes take other nodes' weight samples into their buffer.

use super::{nats_err, Nats};
use crate::devices::bus::{HeartbeatInfo, Telemetry};
use crate::devices::telemetry::TelemetryBuffer;
use crate::devices::DeviceHub;
use async_nats::jetstream::consumer;
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tare_domain::weight::WeightSample;
use tare_domain::{CabinetId, DoorNo};
use tokio::sync::watch;

/// A telemetry record on NATS (weights and heartbeats, with the gateway node that
/// received it, so that node does not ingest its own records twice).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TelemetryRecord {
    node: String,
    /// The process that published it: a node skips its own records only while it is the
    /// same process, so one that restarted reads back what it received before.
    #[serde(default)]
    instance: String,
    cabinet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    door: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sample: Option<WeightSample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heartbeat: Option<HeartbeatInfo>,
}

/// This process's id on telemetry records (see [`TelemetryRecord::instance`]).
static INSTANCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// On a gateway node: publishes the hub's telemetry to the telemetry stream
/// (`{ns}.telemetry.{pk}.{dn}.weight|heartbeat`) [D6]. Records the local bus dropped
/// because this task lagged are counted as lost.
pub async fn forward_telemetry(nats: Arc<Nats>, hub: Arc<DeviceHub>, mut shutdown: watch::Receiver<bool>) {
    let mut rx = hub.bus().subscribe();
    let node = hub.node().to_string();
    loop {
        let t = tokio::select! {
            _ = shutdown.changed() => return,
            t = rx.recv() => t,
        };
        let (subject, record) = match t {
            Ok(Telemetry::Weight { cabinet, door, sample }) => (
                nats.telemetry_subject(&cabinet.to_string(), "weight"),
                TelemetryRecord {
                    node: node.clone(),
                    instance: INSTANCE.clone(),
                    cabinet: cabinet.to_string(),
                    door: Some(door.get()),
                    sample: Some(sample),
                    heartbeat: None,
                },
            ),
            Ok(Telemetry::Heartbeat { cabinet, info }) => (
                nats.telemetry_subject(&cabinet.to_string(), "heartbeat"),
                TelemetryRecord {
                    node: node.clone(),
                    instance: INSTANCE.clone(),
                    cabinet: cabinet.to_string(),
                    door: None,
                    sample: None,
                    heartbeat: Some(info),
                },
            ),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                nats.counters.telemetry_lost.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Ok(body) = serde_json::to_vec(&record) else { continue };
        match nats.client.publish(subject, body.into()).await {
            Ok(()) => nats.counters.telemetry_out.fetch_add(1, Ordering::Relaxed),
            Err(_) => nats.counters.telemetry_lost.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// On a saga node: takes other gateway nodes' weight samples into the local telemetry
/// buffer, so the stable-weight checks of an order find them whichever node runs the
/// effect. The last two minutes are read back from the stream at start, so a node that
/// joins (or restarts) mid-purchase has the door's history.
pub async fn ingest_telemetry(nats: Arc<Nats>, node: String, buffer: Arc<TelemetryBuffer>, mut shutdown: watch::Receiver<bool>) {
    let filter = format!("{}.telemetry.*.*.weight", nats.namespace);
    // Read again from a little before the last sample seen (or two minutes back at
    // start) whenever the consumer has to be made anew (NATS restarted, stream moved).
    let mut from = time::OffsetDateTime::now_utc() - time::Duration::seconds(120);
    loop {
        let consumer = async {
            let stream = nats.js.get_stream(nats.telemetry_stream()).await.map_err(nats_err)?;
            stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: from },
                    ..Default::default()
                })
                .await
                .map_err(nats_err)?
                .messages()
                .await
                .map_err(nats_err)
        };
        let mut messages = match consumer.await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the telemetry stream; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.changed() => return,
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => { tracing::debug!(error = %e, "telemetry stream hiccup"); continue }
                    None => break,
                },
            };
            from = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
            let Ok(rec) = serde_json::from_slice::<TelemetryRecord>(&msg.payload) else {
                continue;
            };
            let own = if rec.instance.is_empty() {
                rec.node == node
            } else {
                rec.instance == *INSTANCE
            };
            if own {
                continue;
            }
            let door = rec.door.and_then(|d| DoorNo::try_from(d).ok());
            if let (Ok(cabinet), Some(door), Some(sample)) = (CabinetId::parse(&rec.cabinet), door, rec.sample) {
                nats.counters.telemetry_in.fetch_add(1, Ordering::Relaxed);
                buffer.push(&cabinet, door, sample);
            }
        }
    }
}
