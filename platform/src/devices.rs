//! The device hub: the one place device traffic enters and leaves the platform, whatever
//! carries it (in-process virtual cabinets now, the MQTT listener and the HTTP device
//! API at the gateway). A transport registers a connection, hands every uplink to
//! [`DeviceHub::ingest`] as (cabinet, kind, bytes) and delivers the [`Downlink`]s it is
//! given.
//!
//! Here uplinks are parsed and validated per the contract, de-duplicated by message id,
//! turned into cabinet commands (door events ordered by `seq` in the cabinet aggregate)
//! or telemetry (weight samples into the [`TelemetryBuffer`]), and time-sync requests
//! are answered.

use crate::clock::PlatformClock;
use crate::protocol::{parse_uplink, CommandMsg, Downlink, ProtocolError, TimeReply, Uplink, UplinkBody};
use crate::store::{Aggregates, Meta};
use crate::telemetry::TelemetryBuffer;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tare_domain::cabinet::{CabinetCommand, DeviceStatus, DoorPosition};
use tare_domain::weight::StableReading;
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_sagas::ports::{DeviceLink, DeviceLinkError};
use tokio::sync::mpsc;

/// Message ids remembered per device to drop duplicates [D8].
const RECENT_IDS_PER_DEVICE: usize = 128;

/// How far behind a device's latest `seq` a message may be and still be applied (as a
/// late message). Further back, without a `boot` in between, it is refused as `stale_seq`:
/// the contract restarts `seq` only after a reboot, which the device announces.
pub const SEQ_WINDOW: u64 = 1000;

/// What happened to an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied (or recorded as telemetry).
    Accepted,
    /// A message id seen before: ignored.
    Duplicate,
}

/// Why an uplink was not applied.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// It broke the contract.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The cabinet is not registered.
    #[error("unknown device {0}")]
    UnknownDevice(String),
    /// The platform could not record it (the device should resend).
    #[error("store: {0}")]
    Store(String),
}

/// Counters of device traffic (exported as metrics).
#[derive(Default)]
pub struct DeviceCounters {
    /// Uplinks accepted.
    pub accepted: AtomicU64,
    /// Duplicates dropped.
    pub duplicates: AtomicU64,
    /// Rejected, by reason.
    pub rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Downlinks sent.
    pub sent: AtomicU64,
    /// Devices recorded offline for silence (operator alerts) [D5].
    pub silent_alerts: AtomicU64,
}

impl DeviceCounters {
    /// Counts one refusal for `reason`.
    pub fn reject(&self, reason: &'static str) {
        *self.rejected.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }
}

/// The last message ids of one device, as 64-bit hashes in a ring: a fixed 1 KiB per
/// active device, so 100,000 connected cabinets cost about 100 MiB at most for dedupe
/// (resends come within seconds; a longer memory would buy nothing).
struct RecentIds {
    ring: Box<[u64; RECENT_IDS_PER_DEVICE]>,
    next: usize,
    len: usize,
    /// Highest `seq` seen since the device's last boot.
    highest_seq: Option<u64>,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self {
            ring: Box::new([0; RECENT_IDS_PER_DEVICE]),
            next: 0,
            len: 0,
            highest_seq: None,
        }
    }
}

fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // A fixed-key hasher: stable within the process, which is all a dedupe window needs.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(id.as_bytes());
    h.finish()
}

impl RecentIds {
    /// Records `id`; false if it was already there.
    fn insert(&mut self, id: &str) -> bool {
        let h = id_hash(id);
        if self.ring[..self.len].contains(&h) {
            return false;
        }
        self.ring[self.next] = h;
        self.next = (self.next + 1) % RECENT_IDS_PER_DEVICE;
        self.len = (self.len + 1).min(RECENT_IDS_PER_DEVICE);
        true
    }

    fn forget(&mut self, id: &str) {
        let h = id_hash(id);
        if let Some(slot) = self.ring[..self.len].iter_mut().find(|x| **x == h) {
            *slot = 0;
        }
    }
}

/// How long an initialization price label stays valid [D1].
const LABEL_TTL_MS: i64 = 60_000;

/// What a pending-init cabinet still needs before it is counted and online [D1].
#[derive(Default)]
struct PendingInit {
    /// The stable reading of each door so far.
    readings: BTreeMap<DoorNo, StableReading>,
    /// Price-label commands not yet acknowledged ok.
    labels: std::collections::BTreeSet<String>,
}

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
    recent: Mutex<HashMap<CabinetId, RecentIds>>,
    pending_init: Mutex<HashMap<CabinetId, PendingInit>>,
    last_seen: Mutex<HashMap<CabinetId, UnixMs>>,
    last_heartbeat: Mutex<HashMap<CabinetId, crate::bus::HeartbeatInfo>>,
    /// Where weight samples and heartbeats go on as telemetry [D6].
    pub bus: Arc<crate::bus::InProcessBus>,
    /// Traffic counters.
    pub counters: DeviceCounters,
    /// Heartbeat liveness of this node's devices [D5].
    pub liveness: crate::liveness::Liveness,
}

impl DeviceHub {
    /// A hub for gateway node `node`.
    pub fn new(
        aggregates: Arc<Aggregates>,
        telemetry: Arc<TelemetryBuffer>,
        clock: PlatformClock,
        node: String,
        liveness: crate::liveness::LivenessConfig,
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
            bus: Arc::new(crate::bus::InProcessBus::new(4096)),
            counters: DeviceCounters::default(),
            liveness: crate::liveness::Liveness::new(liveness),
        }
    }

    /// The gateway node this hub runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The telemetry buffer.
    pub fn telemetry(&self) -> Arc<TelemetryBuffer> {
        self.telemetry.clone()
    }

    /// Registers a transport connection for `cabinet`. A new connection replaces an older
    /// one (the device reconnected; the older connection's downlink channel closes).
    pub fn attach(&self, cabinet: &CabinetId) -> DeviceConnection {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cabinet.clone(), (id, tx));
        DeviceConnection { id, downlinks: rx }
    }

    /// Whether `cabinet` has a live connection on this node.
    pub fn is_attached(&self, cabinet: &CabinetId) -> bool {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).contains_key(cabinet)
    }

    /// Closes `cabinet`'s connection on this node (its transport sees its downlink channel
    /// end) and records the disconnect.
    pub async fn kick(&self, cabinet: &CabinetId) -> Result<(), IngestError> {
        let current = self.links.lock().unwrap_or_else(|p| p.into_inner()).get(cabinet).map(|(id, _)| *id);
        match current {
            Some(id) => self.detach(cabinet, id, true).await,
            None => Ok(()),
        }
    }

    /// Whether `connection` is `cabinet`'s current connection.
    pub fn is_current(&self, cabinet: &CabinetId, connection: u64) -> bool {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cabinet)
            .is_some_and(|(id, _)| *id == connection)
    }

    /// Connections held by this node.
    pub fn connection_count(&self) -> usize {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drops connection `connection` of `cabinet` and, if it was the device's current one
    /// and `record` is set, records the disconnect. A connection already replaced by a
    /// newer one changes nothing (the device is still connected).
    pub async fn detach(&self, cabinet: &CabinetId, connection: u64, record: bool) -> Result<(), IngestError> {
        let was_current = {
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
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
        self.liveness.disconnected(cabinet);
        let at = self.clock.now_ms();
        self.aggregates
            .cabinets
            .execute(
                &cabinet.to_string(),
                CabinetCommand::DisconnectDevice { at },
                Meta::new(at, cabinet.to_string(), "transport:disconnect"),
            )
            .await
            .map_err(|e| IngestError::Store(e.to_string()))
    }

    /// The device's newest heartbeat (by device time) [D4].
    pub fn last_heartbeat(&self, cabinet: &CabinetId) -> Option<crate::bus::HeartbeatInfo> {
        self.last_heartbeat.lock().unwrap_or_else(|p| p.into_inner()).get(cabinet).cloned()
    }

    /// When the device was last heard from (platform clock).
    pub fn last_seen(&self, cabinet: &CabinetId) -> Option<UnixMs> {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).get(cabinet).copied()
    }

    fn send(&self, cabinet: &CabinetId, downlink: Downlink) -> Result<(), DeviceLinkError> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let (_, tx) = links
            .get(cabinet)
            .ok_or_else(|| DeviceLinkError::NotConnected(cabinet.to_string()))?;
        tx.send(downlink).map_err(|_| DeviceLinkError::NotConnected(cabinet.to_string()))?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Handles one uplink of `kind` from `cabinet` (already authenticated by the
    /// transport).
    pub async fn ingest(&self, cabinet: &CabinetId, kind: &str, payload: &[u8]) -> Result<IngestOutcome, IngestError> {
        let received_at = self.clock.now_ms();
        let up = match parse_uplink(kind, payload) {
            Ok(up) => up,
            Err(e) => {
                self.counters.reject(e.reason());
                tracing::warn!(%cabinet, kind, error = %e, "device message refused");
                return Err(e.into());
            }
        };
        let verdict = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let r = recent.entry(cabinet.clone()).or_default();
            let seq = up.envelope.seq;
            if kind == "boot" {
                r.highest_seq = None;
            }
            match r.highest_seq {
                // The will is composed at connect time, so its seq is old by design.
                Some(h) if kind != "status" && seq.saturating_add(SEQ_WINDOW) < h => Err(h),
                highest => {
                    let fresh = r.insert(&up.envelope.id);
                    if fresh {
                        r.highest_seq = Some(highest.map_or(seq, |h| h.max(seq)));
                    }
                    Ok(fresh)
                }
            }
        };
        match verdict {
            Ok(true) => {}
            Ok(false) => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                return Ok(IngestOutcome::Duplicate);
            }
            Err(highest) => {
                let e = ProtocolError::Invalid {
                    field: "seq".into(),
                    reason: format!(
                        "{} is more than {SEQ_WINDOW} behind the device's latest {highest} with no boot in between",
                        up.envelope.seq
                    ),
                };
                self.counters.reject("stale_seq");
                tracing::warn!(%cabinet, kind, error = %e, "device message refused");
                return Err(e.into());
            }
        }
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cabinet.clone(), received_at);
        match self.apply(cabinet, &up, received_at).await {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(IngestOutcome::Accepted)
            }
            Err(e) => {
                // Not recorded: let a resend of the same id through.
                if let Some(r) = self.recent.lock().unwrap_or_else(|p| p.into_inner()).get_mut(cabinet) {
                    r.forget(&up.envelope.id);
                }
                if let IngestError::UnknownDevice(_) = e {
                    self.counters.reject("unknown_device");
                }
                Err(e)
            }
        }
    }

    async fn load_cabinet(&self, cabinet: &CabinetId) -> Result<tare_domain::cabinet::Cabinet, IngestError> {
        self.aggregates
            .cabinets
            .load(&cabinet.to_string())
            .await
            .map_err(|e| IngestError::Store(e.to_string()))
    }

    async fn cabinet_cmd(&self, cabinet: &CabinetId, cmd: CabinetCommand, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        use crate::store::CommandError;
        use tare_domain::cabinet::CabinetError;
        let meta = Meta::new(at, cabinet.to_string(), format!("device:{}", up.envelope.id));
        match self.aggregates.cabinets.execute(&cabinet.to_string(), cmd, meta).await {
            Ok(()) => Ok(()),
            Err(CommandError::Rejected(CabinetError::NotFound)) => Err(IngestError::UnknownDevice(cabinet.to_string())),
            Err(CommandError::Rejected(e)) => {
                // The cabinet refused (unknown door, …): a contract breach by the device.
                let e = match e {
                    CabinetError::Invalid { field, reason } => ProtocolError::Invalid { field, reason },
                    other => ProtocolError::Invalid {
                        field: "door".into(),
                        reason: other.to_string(),
                    },
                };
                self.counters.reject(e.reason());
                Err(e.into())
            }
            Err(e) => Err(IngestError::Store(e.to_string())),
        }
    }

    async fn apply(&self, cabinet: &CabinetId, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        match &up.body {
            UplinkBody::Boot { fw, doors, lanes, .. } => {
                // D1: the boot must describe the registered planogram (doors and lanes
                // per door; a locker's compartments have none).
                let before = self.load_cabinet(cabinet).await?;
                if before.id.is_none() {
                    return Err(IngestError::UnknownDevice(cabinet.to_string()));
                }
                let expected: Vec<u8> = before.doors.values().map(|d| d.lanes.len() as u8).collect();
                if usize::from(*doors) != expected.len() || *lanes != expected {
                    self.counters.reject("boot_mismatch");
                    return Err(IngestError::Protocol(ProtocolError::Invalid {
                        field: "lanes".into(),
                        reason: format!(
                            "boot reports {doors} doors with lanes {lanes:?}; the planogram has {} doors with lanes {expected:?}",
                            expected.len()
                        ),
                    }));
                }
                self.cabinet_cmd(
                    cabinet,
                    CabinetCommand::ConnectDevice {
                        node: self.node.clone(),
                        fw: fw.clone(),
                        at,
                    },
                    up,
                    at,
                )
                .await?;
                let state = self.load_cabinet(cabinet).await?;
                self.liveness.connected(cabinet, at);
                if state.status == DeviceStatus::PendingInit {
                    // D1: push a price label to every lane; the cabinet goes online once
                    // the device has acknowledged them all and reported stable weights.
                    let mut labels = std::collections::BTreeSet::new();
                    for d in state.doors.values() {
                        for l in d.lanes.values() {
                            let cmd_id = format!("label-{}-{}-{}-{}", cabinet, up.envelope.id, d.door.get(), l.plan.lane.get());
                            let step = tare_domain::command::CommandStep::Issue {
                                cabinet: cabinet.clone(),
                                spec: tare_domain::command::CommandSpec::SetPriceLabel {
                                    door: d.door.get(),
                                    lane: l.plan.lane.get(),
                                    price_cents: l.plan.price.get(),
                                    name: l.plan.name.clone(),
                                },
                                expires_at: at + LABEL_TTL_MS,
                                issued_by: format!("init:{cabinet}"),
                                at,
                            };
                            let meta = Meta::new(at, cabinet.to_string(), format!("device:{}", up.envelope.id));
                            self.aggregates
                                .commands
                                .execute(&cmd_id, step, meta)
                                .await
                                .map_err(|e| IngestError::Store(e.to_string()))?;
                            labels.insert(cmd_id);
                        }
                    }
                    self.pending_init.lock().unwrap_or_else(|p| p.into_inner()).insert(
                        cabinet.clone(),
                        PendingInit {
                            readings: BTreeMap::new(),
                            labels,
                        },
                    );
                }
            }
            UplinkBody::Weight { .. } => {
                if let Some((door, sample)) = up.weight_sample(at) {
                    self.telemetry.push(cabinet, door, sample.clone());
                    crate::bus::TelemetryBus::publish(
                        &*self.bus,
                        crate::bus::Telemetry::Weight {
                            cabinet: cabinet.clone(),
                            door,
                            sample: sample.clone(),
                        },
                    );
                    self.maybe_initialize(cabinet, door, sample, up, at).await?;
                }
            }
            UplinkBody::Door { door, state, cmd_id } => {
                let position = if state == "open" {
                    DoorPosition::Open
                } else {
                    DoorPosition::Closed
                };
                let cmd = CabinetCommand::RecordDoorEvent {
                    door: DoorNo::of(*door),
                    position,
                    msg_id: up.envelope.id.clone(),
                    seq: up.envelope.seq,
                    device_ts: up.envelope.ts,
                    cmd_id: cmd_id.clone(),
                    at,
                };
                self.cabinet_cmd(cabinet, cmd, up, at).await?;
            }
            UplinkBody::Ack {
                cmd_id,
                status,
                detail,
                result,
            } => {
                use tare_domain::command::{CommandError, CommandSpec, CommandStep};
                let step = CommandStep::RecordAck {
                    ok: status == "ok",
                    detail: detail.clone(),
                    result: result.clone(),
                    at,
                };
                let meta = Meta::new(at, cmd_id.clone(), format!("device:{}", up.envelope.id));
                match self.aggregates.commands.execute(cmd_id, step, meta).await {
                    Ok(()) => {}
                    Err(crate::store::CommandError::Rejected(CommandError::NotFound)) => {
                        // Not one of ours (or from before a store was wiped): counted, kept
                        // out of the log.
                        self.counters.reject("unknown_command_ack");
                        tracing::warn!(%cabinet, cmd_id, "ack for an unknown command");
                        return Ok(());
                    }
                    Err(e) => return Err(IngestError::Store(e.to_string())),
                }
                self.label_acked(cabinet, cmd_id, status == "ok", up, at).await?;
                // A query_door answered "open" is as good as the door's own open event
                // (which may have been lost) [O4].
                let open = result.as_ref().and_then(|r| r.get("state")).and_then(|s| s.as_str()) == Some("open");
                if status == "ok" && open {
                    let command = self
                        .aggregates
                        .commands
                        .load(cmd_id)
                        .await
                        .map_err(|e| IngestError::Store(e.to_string()))?;
                    let queried = match &command.spec {
                        Some(CommandSpec::QueryDoor { door }) => DoorNo::try_from(*door).ok(),
                        _ => None,
                    };
                    if let (Some(door), Some(target)) = (queried, &command.cabinet) {
                        if target == cabinet {
                            let cmd = CabinetCommand::RecordDoorEvent {
                                door,
                                position: DoorPosition::Open,
                                msg_id: up.envelope.id.clone(),
                                seq: up.envelope.seq,
                                device_ts: up.envelope.ts,
                                cmd_id: Some(cmd_id.clone()),
                                at,
                            };
                            self.cabinet_cmd(cabinet, cmd, up, at).await?;
                        }
                    }
                }
            }
            UplinkBody::Time { device_send_ts } => {
                let reply = TimeReply {
                    device_send_ts: *device_send_ts,
                    server_recv_ts: at,
                    server_send_ts: self.clock.now_ms(),
                };
                let payload = serde_json::to_vec(&reply).map_err(|e| IngestError::Store(e.to_string()))?;
                let _ = self.send(cabinet, Downlink { kind: "time", payload });
            }
            UplinkBody::Compartment { compartment, event } => {
                use tare_domain::cabinet::CompartmentChange;
                let change = match event.as_str() {
                    "taken" => CompartmentChange::Taken,
                    "returned" => CompartmentChange::Returned,
                    "popped" => CompartmentChange::Popped,
                    _ => unreachable!("validated by the protocol parser"),
                };
                let compartment = u8::try_from(*compartment)
                    .ok()
                    .and_then(|c| DoorNo::try_from(c).ok())
                    .ok_or_else(|| {
                        self.counters.reject("invalid");
                        IngestError::Protocol(ProtocolError::Invalid {
                            field: "compartment".into(),
                            reason: "no such compartment".into(),
                        })
                    })?;
                let cmd = CabinetCommand::RecordCompartment {
                    compartment,
                    change,
                    msg_id: up.envelope.id.clone(),
                    at,
                };
                self.cabinet_cmd(cabinet, cmd, up, at).await?;
            }
            UplinkBody::AdPlay { ad_id, duration_ms } => {
                let cmd = CabinetCommand::RecordAdPlay {
                    ad_id: ad_id.clone(),
                    duration_ms: *duration_ms,
                    msg_id: up.envelope.id.clone(),
                    at,
                };
                self.cabinet_cmd(cabinet, cmd, up, at).await?;
            }
            UplinkBody::Status { state } if state == "offline" => {
                self.liveness.disconnected(cabinet);
                self.cabinet_cmd(cabinet, CabinetCommand::DisconnectDevice { at }, up, at).await?;
            }
            UplinkBody::Heartbeat {
                temp_c,
                battery,
                net,
                heating,
                doors,
            } => {
                let info = crate::bus::HeartbeatInfo {
                    device_ts: up.envelope.ts,
                    received_at: at,
                    temp_c: *temp_c,
                    battery: *battery,
                    net: *net,
                    heating: *heating,
                    doors: doors.iter().map(|d| (d.door, d.state.clone())).collect(),
                };
                {
                    // The newest by device time is what operators see [D4].
                    let mut last = self.last_heartbeat.lock().unwrap_or_else(|p| p.into_inner());
                    if last.get(cabinet).is_none_or(|h| h.device_ts <= info.device_ts) {
                        last.insert(cabinet.clone(), info.clone());
                    }
                }
                crate::bus::TelemetryBus::publish(
                    &*self.bus,
                    crate::bus::Telemetry::Heartbeat {
                        cabinet: cabinet.clone(),
                        info,
                    },
                );
                // Ordered by device time; a heartbeat from a device not tracked (marked
                // silent, or tracked by no one since a restart) brings it back [D5].
                if !self.liveness.heartbeat(cabinet, up.envelope.ts, at) {
                    self.cabinet_cmd(cabinet, CabinetCommand::MarkAlive { at }, up, at).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn maybe_initialize(
        &self,
        cabinet: &CabinetId,
        door: DoorNo,
        sample: tare_domain::weight::WeightSample,
        up: &Uplink,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        {
            let mut pending = self.pending_init.lock().unwrap_or_else(|p| p.into_inner());
            let Some(p) = pending.get_mut(cabinet) else {
                return Ok(());
            };
            let Some(reading) = StableReading::from_sample(sample) else {
                return Ok(());
            };
            p.readings.insert(door, reading);
        }
        self.try_initialize(cabinet, up, at).await
    }

    /// Initializes a pending cabinet once every door has a stable reading and every
    /// price label is acknowledged [D1].
    async fn try_initialize(&self, cabinet: &CabinetId, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        let readings = {
            let pending = self.pending_init.lock().unwrap_or_else(|p| p.into_inner());
            let Some(p) = pending.get(cabinet) else {
                return Ok(());
            };
            if !p.labels.is_empty() {
                return Ok(()); // labels still unacknowledged
            }
            p.readings.clone()
        };
        let state = self.load_cabinet(cabinet).await?;
        if !state.doors.keys().all(|d| readings.contains_key(d)) {
            return Ok(()); // wait for a stable reading of every door
        }
        let cmd = CabinetCommand::Initialize {
            readings: readings.into_iter().collect(),
            at,
        };
        self.cabinet_cmd(cabinet, cmd, up, at).await?;
        self.pending_init.lock().unwrap_or_else(|p| p.into_inner()).remove(cabinet);
        Ok(())
    }

    /// An ack arrived for `cmd_id`: if it was an initialization label, tick it off.
    async fn label_acked(&self, cabinet: &CabinetId, cmd_id: &str, ok: bool, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        let done = {
            let mut pending = self.pending_init.lock().unwrap_or_else(|p| p.into_inner());
            match pending.get_mut(cabinet) {
                Some(p) if ok => p.labels.remove(cmd_id),
                _ => false,
            }
        };
        if done {
            self.try_initialize(cabinet, up, at).await?;
        }
        Ok(())
    }
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
        self.send(cabinet, Downlink { kind: "cmd", payload })
    }
}
