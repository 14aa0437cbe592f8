//! The telemetry bus [D6]: weight samples and heartbeats leave the device hub here, as
//! telemetry rather than as events of the log. In the embedded default the bus is a
//! broadcast channel in the process (subscribers: whoever wants a live feed); the
//! scaled-out mode backs the same trait with a JetStream stream that keeps about a month.
//! A slow subscriber loses the oldest telemetry (and the loss is counted) — telemetry is
//! shed first, never commands or money events.

use std::sync::atomic::{AtomicU64, Ordering};
use tare_domain::weight::WeightSample;
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tokio::sync::broadcast;

/// A heartbeat's content [D4].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatInfo {
    /// Device time.
    pub device_ts: UnixMs,
    /// Platform receive time.
    pub received_at: UnixMs,
    /// Temperature, °C.
    pub temp_c: f64,
    /// Battery 0–100.
    pub battery: u8,
    /// Network strength 0–100.
    pub net: u8,
    /// Heating on.
    pub heating: bool,
    /// Door (or compartment) states as the device reports them.
    pub doors: Vec<(u8, String)>,
}

/// One piece of telemetry.
#[derive(Debug, Clone, PartialEq)]
pub enum Telemetry {
    /// A weight sample of one door.
    Weight {
        /// Cabinet.
        cabinet: CabinetId,
        /// Door.
        door: DoorNo,
        /// The sample.
        sample: WeightSample,
    },
    /// A heartbeat.
    Heartbeat {
        /// Cabinet.
        cabinet: CabinetId,
        /// Its content.
        info: HeartbeatInfo,
    },
}

/// Where the hub hands telemetry.
pub trait TelemetryBus: Send + Sync {
    /// Publishes one record (never blocks the device's connection).
    fn publish(&self, t: Telemetry);
}

/// The embedded bus: a bounded broadcast channel.
pub struct InProcessBus {
    tx: broadcast::Sender<Telemetry>,
    /// Records published.
    pub published: AtomicU64,
}

impl InProcessBus {
    /// A bus keeping up to `capacity` records for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
            published: AtomicU64::new(0),
        }
    }

    /// A live subscription (lagging subscribers skip the oldest records).
    pub fn subscribe(&self) -> broadcast::Receiver<Telemetry> {
        self.tx.subscribe()
    }
}

impl TelemetryBus for InProcessBus {
    fn publish(&self, t: Telemetry) {
        self.published.fetch_add(1, Ordering::Relaxed);
        // No subscriber is fine: the record has been used by the hub already.
        let _ = self.tx.send(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_records_and_a_slow_one_loses_the_oldest() {
        let bus = InProcessBus::new(2);
        let mut rx = bus.subscribe();
        let cab = CabinetId::parse("a.b").unwrap();
        let hb = |ts| Telemetry::Heartbeat {
            cabinet: cab.clone(),
            info: HeartbeatInfo {
                device_ts: ts,
                received_at: ts,
                temp_c: 4.0,
                battery: 90,
                net: 80,
                heating: false,
                doors: vec![],
            },
        };
        bus.publish(hb(1));
        assert_eq!(rx.recv().await.unwrap(), hb(1));
        for ts in 2..=4 {
            bus.publish(hb(ts));
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(1))));
        assert_eq!(rx.recv().await.unwrap(), hb(3));
        assert_eq!(bus.published.load(Ordering::Relaxed), 4);
    }
}
