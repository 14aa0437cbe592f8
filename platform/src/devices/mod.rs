//! The device edge: the one place device traffic enters and leaves the platform, whatever
//! carries it (the MQTT listener and the HTTP device API at the gateway, in-process
//! virtual cabinets in tests). A transport registers a connection with
//! [`DeviceHub::attach`], hands every uplink to [`DeviceHub::ingest`] as (cabinet, kind,
//! bytes) and delivers the [`Downlink`]s it is given.
//!
//! - `ingest`: parse (`tare_protocol`), drop duplicates and stale sequences (`dedupe`),
//!   then hand the typed uplink to its kind's handler in `uplinks`;
//! - `initialization`: a first boot's price labels and opening stock [D1];
//! - [`telemetry`]: recent weight samples per door; [`bus`]: weights and heartbeats on as
//!   telemetry; [`liveness`]: heartbeat deadlines and the platform's own health [D5, B1];
//!   `judge`: the sweep that records silent devices offline.
//!
//! Architecture Invariant: this module decides nothing about cabinets, orders or
//! commands: it turns device messages into aggregate commands and telemetry, and
//! aggregate decisions into downlinks.

pub mod bus;
mod counters;
mod dedupe;
mod ingest;
mod initialization;
mod judge;
pub mod liveness;
pub mod telemetry;
mod uplinks;
pub mod watch;

pub use counters::DeviceCounters;
pub use dedupe::SEQ_WINDOW;
pub use ingest::{IngestError, IngestOutcome};

use crate::clock::PlatformClock;
use crate::store::Aggregates;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tare_domain::cabinet::CabinetCommand;
use tare_domain::{CabinetId, UnixMs};
use tare_protocol::{CommandMsg, Downlink, DownlinkKind};
use tare_sagas::ports::{DeviceLink, DeviceLinkError};
use telemetry::TelemetryBuffer;
use tokio::sync::mpsc;

/// A transport's registration of one device connection: downlinks for the device arrive
/// on `downlinks`; `id` tells this connection from a later one of the same device.
pub struct DeviceConnection {
    /// Connection id (unique in this hub).
    pub id: u64,
    /// Downlinks to deliver.
    pub downlinks: mpsc::UnboundedReceiver<Downlink>,
}

/// The device hub (see the module docs).
pub struct DeviceHub {
    aggregates: Arc<Aggregates>,
    telemetry: Arc<TelemetryBuffer>,
    clock: PlatformClock,
    node: String,
    links: Mutex<HashMap<CabinetId, (u64, mpsc::UnboundedSender<Downlink>)>>,
    next_connection: AtomicU64,
    recent: Mutex<HashMap<CabinetId, dedupe::RecentIds>>,
    pending_init: Mutex<HashMap<CabinetId, initialization::PendingInit>>,
    last_seen: Mutex<HashMap<CabinetId, UnixMs>>,
    last_heartbeat: Mutex<HashMap<CabinetId, bus::HeartbeatInfo>>,
    watches: Mutex<HashMap<CabinetId, watch::CabinetWatch>>,
    bus: Arc<bus::InProcessBus>,
    /// Where every sample is kept 30 days [D6] (set once at start).
    history: std::sync::OnceLock<Arc<crate::weight_history::WeightHistory>>,
    /// The store, for the device messages its log already holds (set once at start).
    log: std::sync::OnceLock<crate::db::Db>,
    counters: DeviceCounters,
    liveness: liveness::Liveness,
}

impl DeviceHub {
    /// A hub for gateway node `node`.
    pub fn new(
        aggregates: Arc<Aggregates>,
        telemetry: Arc<TelemetryBuffer>,
        clock: PlatformClock,
        node: String,
        liveness: liveness::LivenessConfig,
    ) -> Self {
        Self {
            aggregates,
            telemetry,
            clock,
            node,
            links: Mutex::default(),
            next_connection: AtomicU64::new(1),
            recent: Mutex::default(),
            pending_init: Mutex::default(),
            last_seen: Mutex::default(),
            last_heartbeat: Mutex::default(),
            watches: Mutex::default(),
            bus: Arc::new(bus::InProcessBus::new(4096)),
            history: std::sync::OnceLock::new(),
            log: std::sync::OnceLock::new(),
            counters: DeviceCounters::default(),
            liveness: liveness::Liveness::new(liveness),
        }
    }

    /// Reads the device messages already in the log from `db` when a device is first
    /// heard from, so duplicates are told apart across restarts and nodes
    /// ([`dedupe::recorded_messages`]).
    pub fn set_log(&self, db: crate::db::Db) {
        let _ = self.log.set(db);
    }

    /// Keeps every weight sample this hub receives in `history` [D6].
    pub fn set_history(&self, history: Arc<crate::weight_history::WeightHistory>) {
        let _ = self.history.set(history);
    }

    /// The gateway node this hub runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The telemetry buffer (recent weight samples per door).
    pub fn telemetry(&self) -> Arc<TelemetryBuffer> {
        self.telemetry.clone()
    }

    /// The telemetry bus weights and heartbeats leave on.
    pub(crate) fn bus(&self) -> &Arc<bus::InProcessBus> {
        &self.bus
    }

    /// This node's device traffic counters.
    pub(crate) fn counters(&self) -> &DeviceCounters {
        &self.counters
    }

    /// Heartbeat liveness of this node's devices.
    pub(crate) fn liveness(&self) -> &liveness::Liveness {
        &self.liveness
    }

    /// Registers a transport connection for `cabinet`. A new connection replaces an older
    /// one (the device reconnected; the older connection's downlink channel closes).
    pub fn attach(&self, cabinet: &CabinetId) -> DeviceConnection {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        lock(&self.links).insert(cabinet.clone(), (id, tx));
        DeviceConnection { id, downlinks: rx }
    }

    /// Whether `cabinet` has a live connection on this node.
    pub fn is_attached(&self, cabinet: &CabinetId) -> bool {
        lock(&self.links).contains_key(cabinet)
    }

    /// Closes `cabinet`'s connection on this node (its transport sees its downlink channel
    /// end) and records the disconnect.
    pub async fn kick(&self, cabinet: &CabinetId) -> Result<(), IngestError> {
        let current = lock(&self.links).get(cabinet).map(|(id, _)| *id);
        match current {
            Some(id) => self.detach(cabinet, id, true).await,
            None => Ok(()),
        }
    }

    /// Whether `connection` is `cabinet`'s current connection.
    pub fn is_current(&self, cabinet: &CabinetId, connection: u64) -> bool {
        lock(&self.links).get(cabinet).is_some_and(|(id, _)| *id == connection)
    }

    /// Connections held by this node.
    pub fn connection_count(&self) -> usize {
        lock(&self.links).len()
    }

    /// Drops connection `connection` of `cabinet` and, if it was the device's current one
    /// and `record` is set, records the disconnect. A connection already replaced by a
    /// newer one changes nothing (the device is still connected).
    pub async fn detach(&self, cabinet: &CabinetId, connection: u64, record: bool) -> Result<(), IngestError> {
        let was_current = {
            let mut links = lock(&self.links);
            match links.get(cabinet) {
                Some((id, _)) if *id == connection => {
                    links.remove(cabinet);
                    true
                }
                _ => false,
            }
        };
        if !was_current || !record {
            return Ok(());
        }
        self.forget_watch(cabinet);
        self.liveness.disconnected(cabinet);
        let at = self.clock.now_ms();
        let meta = crate::store::Meta::new(at, cabinet.to_string(), "transport:disconnect");
        self.aggregates
            .cabinets
            .execute(&cabinet.to_string(), CabinetCommand::DisconnectDevice { at }, meta)
            .await
            .map_err(|e| IngestError::Store(e.to_string()))
    }

    /// The device's newest heartbeat (by device time) [D4].
    pub fn last_heartbeat(&self, cabinet: &CabinetId) -> Option<bus::HeartbeatInfo> {
        lock(&self.last_heartbeat).get(cabinet).cloned()
    }

    /// When the device was last heard from (platform clock).
    pub fn last_seen(&self, cabinet: &CabinetId) -> Option<UnixMs> {
        lock(&self.last_seen).get(cabinet).copied()
    }

    /// Hands a downlink to `cabinet`'s connection on this node.
    fn send(&self, cabinet: &CabinetId, downlink: Downlink) -> Result<(), DeviceLinkError> {
        let links = lock(&self.links);
        let (_, tx) = links
            .get(cabinet)
            .ok_or_else(|| DeviceLinkError::NotConnected(cabinet.to_string()))?;
        tx.send(downlink).map_err(|_| DeviceLinkError::NotConnected(cabinet.to_string()))?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A lock that survives a panicked holder (the data is counters and maps of plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl DeviceLink for DeviceHub {
    async fn send_command(
        &self,
        cabinet: &CabinetId,
        cmd_id: &str,
        type_name: &str,
        args: serde_json::Value,
        expires_at: UnixMs,
    ) -> Result<(), DeviceLinkError> {
        let msg = CommandMsg {
            cmd_id: cmd_id.to_string(),
            ts: self.clock.now_ms(),
            kind: type_name.to_string(),
            args,
            expires_at,
        };
        let payload = serde_json::to_vec(&msg).map_err(|_| DeviceLinkError::NotConnected(cabinet.to_string()))?;
        self.send(
            cabinet,
            Downlink {
                kind: DownlinkKind::Cmd,
                payload,
            },
        )
    }
}
