//! The scaled-out mode's NATS side [E1, D6]: the JetStream streams, the relay that
//! publishes the global feed to them, and the partitioned durable consumers through
//! which saga and projection workers on many nodes share the work.
//!
//! - **Streams** (created or updated idempotently at start): `{NS}_EVENTS` holds every
//!   domain event on `{ns}.events.p{NN}.{aggregate_type}` (no ids in subjects: JetStream's
//!   memory grows with distinct subjects); `{NS}_TELEMETRY` holds weight samples and
//!   heartbeats on `{ns}.telemetry.{pk}.{dn}.{kind}` for about a month.
//! - **Relay**: one node at a time (PostgreSQL session advisory lock on a connection of
//!   its own; if the node dies the lock goes with its session) publishes the feed in
//!   order, each event with `Nats-Msg-Id` = event id and its feed position in a header.
//!   On taking the lead it reads its checkpoint back from the stream's last message, so
//!   a crash publishes nothing twice; the id dedupe covers the overlap of two relays.
//! - **Partitions**: an event goes to partition `fnv1a(aggregate_id) % PARTITIONS`, so
//!   all events of one aggregate (a cabinet, an order, a device command) are in one
//!   partition, in feed order. Each worker kind has one durable pull consumer per
//!   partition with `max_ack_pending = 1`: whichever node pulls, at most one event of a
//!   partition is in flight cluster-wide, so order holds and work spreads over nodes by
//!   partition. An event is acknowledged only after its effect committed, together with
//!   the partition's checkpoint; a redelivered event at or before the checkpoint is
//!   skipped. A node that dies mid-event leaves it unacknowledged; JetStream hands it to
//!   another node after `ack_wait`.
//!
//! - [`nats`]: the connection, the streams and their subjects; [`relay`]: the feed to the
//!   event stream; [`consumers`]: the partitioned workers; [`routed`]: device commands to
//!   the gateway node holding the device; [`telemetry`]: weights and heartbeats across
//!   nodes.

mod consumers;
mod nats;
mod relay;
mod routed;
mod telemetry;

pub use consumers::consume_partition;
pub use nats::Nats;
pub use relay::Relay;
pub use routed::{serve_routed_commands, RoutedDevices};
pub use telemetry::{forward_telemetry, ingest_telemetry};

use crate::db::DbError;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// How many partitions the event stream is cut into. Every node must agree on it (it
/// names the consumers and the subjects), so it is a constant of the build.
pub const PARTITIONS: u16 = 16;

/// Header carrying an event's feed position.
pub const POSITION_HEADER: &str = "Tare-Position";

/// How long JetStream waits for an acknowledgement before handing an event to another
/// node (the stall a crashed node's in-flight event causes in its partition).
const ACK_WAIT: Duration = Duration::from_secs(10);

/// About a month of telemetry [D6].
const TELEMETRY_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// The advisory-lock key of the relay's leadership.
const RELAY_LOCK: i64 = 7_361_627;

/// Where NATS is and which names this deployment uses.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port`.
    pub url: String,
    /// Subject prefix and stream-name prefix (`tare` → `tare.events.…`, `TARE_EVENTS`);
    /// tests use a fresh one each so they can run side by side.
    pub namespace: String,
}

impl NatsConfig {
    /// The default names at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: "tare".into(),
        }
    }
}

/// A NATS failure.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Connecting, publishing, a JetStream API call.
    #[error("nats: {0}")]
    Nats(String),
    /// The store.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A bad configuration value (which one, why).
    #[error("config: {0}")]
    Config(String),
}

fn nats_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(e.to_string())
}

/// The worker kinds that consume the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// The order saga (decides effects and timers).
    Sagas,
    /// The projections (read models).
    Projections,
}

impl WorkerKind {
    /// The checkpoint / consumer name stem.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sagas => "saga-order",
            Self::Projections => crate::views::PROJECTIONS,
        }
    }

    /// The checkpoint of partition `p` (`projections/p03`).
    pub fn checkpoint(self, p: u16) -> String {
        format!("{}/p{p:02}", self.name())
    }
}

/// The partition of an aggregate: FNV-1a of its id (stable across builds and nodes).
pub fn partition_of(aggregate_id: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in aggregate_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(PARTITIONS)) as u16
}

/// Counters of the NATS side (Prometheus).
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Events the relay published (and JetStream acknowledged).
    pub relayed: AtomicU64,
    /// Of those, ones JetStream reported as duplicates (already in the stream).
    pub relay_duplicates: AtomicU64,
    /// Events applied by this node's workers.
    pub applied: AtomicU64,
    /// Events handed to this node that another delivery had applied already.
    pub skipped: AtomicU64,
    /// Messages on the event stream this build could not read (terminated, logged).
    pub undecodable: AtomicU64,
    /// Telemetry records published to NATS.
    pub telemetry_out: AtomicU64,
    /// Telemetry records lost before NATS (the local bus lagged, or NATS refused).
    pub telemetry_lost: AtomicU64,
    /// Telemetry records received from other nodes.
    pub telemetry_in: AtomicU64,
    /// Device commands handed to another gateway node (and taken by its device link).
    pub commands_routed: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Pinned: every node and every build must agree.
        assert_eq!(partition_of("a.b"), partition_of("a.b"));
        let mut hits = [0u32; PARTITIONS as usize];
        for i in 0..1600 {
            hits[partition_of(&format!("order-{i}")) as usize] += 1;
        }
        assert!(hits.iter().all(|&n| n > 50), "uneven spread: {hits:?}");
        assert_eq!(WorkerKind::Projections.checkpoint(3), "projections/p03");
    }
}
