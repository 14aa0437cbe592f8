//! The cabinet aggregate [C1, D1, O2, D8]: doors and lanes (the planogram), the device's
//! connection status, each door's physical state and — the consistency point of the whole
//! platform — who holds each door right now (a purchase, a restock, a calibration).
//!
//! Stock per lane lives here too, because every stock movement must be serialized with
//! the door sessions that cause it; each movement is an event with before/change/after,
//! which the lane ledger projection [R2] reads as is.

use crate::weight::{LaneScale, StableReading, Tolerance};
use crate::{CabinetId, CabinetKind, Cents, DomainError, DoorNo, GeoPoint, LaneNo, RejectionKind, Sku, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// One lane as planned: what it holds and how its scale is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanePlan {
    /// Lane number.
    pub lane: LaneNo,
    /// Product on the lane.
    pub sku: Sku,
    /// Product name (for receipts and price labels).
    pub name: String,
    /// Unit weight in grams.
    pub unit_grams: f64,
    /// Unit price.
    pub price: Cents,
    /// Most items the lane holds.
    pub capacity: u32,
    /// At or below this stock a restock task is raised [O10].
    pub restock_threshold: u32,
    /// The scale tolerance.
    pub tolerance: Tolerance,
}

impl LanePlan {
    /// The facts the weight inference needs.
    pub fn scale(&self) -> LaneScale {
        LaneScale {
            lane: self.lane,
            sku: self.sku.clone(),
            unit_grams: self.unit_grams,
            tolerance: self.tolerance,
        }
    }
}

/// One door as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoorPlan {
    /// Door number.
    pub door: DoorNo,
    /// Its lanes.
    pub lanes: Vec<LanePlan>,
}

/// The connection status of the cabinet's device (API: `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Registered, never connected.
    #[default]
    Registered,
    /// Connected for the first time, waiting for initialization [D1].
    PendingInit,
    /// Initialized and connected.
    Online,
    /// Disconnected or silent.
    Offline,
    /// Taken out of service by an operator or a hardware fault.
    Faulty,
}

/// A locker compartment's change, as the device reports it (`up/compartment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompartmentChange {
    /// It popped open (after a `pop` command).
    Popped,
    /// Its item was taken out.
    Taken,
    /// An item was put back in.
    Returned,
}

/// Who holds a door [O2].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Holder {
    /// A shopper's purchase.
    Order {
        /// The order.
        order_id: String,
        /// Its shopper.
        shopper_id: String,
    },
    /// An operator's restock session.
    Restock {
        /// The session id.
        session_id: String,
    },
    /// A calibration.
    Calibration {
        /// The calibration id.
        calibration_id: String,
    },
}

impl Holder {
    /// The id of the session that holds the door (order, restock or calibration id).
    pub fn session_id(&self) -> &str {
        match self {
            Self::Order { order_id, .. } => order_id,
            Self::Restock { session_id } => session_id,
            Self::Calibration { calibration_id } => calibration_id,
        }
    }
}

/// A door's physical state as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DoorPosition {
    /// Not reported yet.
    #[default]
    Unknown,
    /// Open.
    Open,
    /// Closed.
    Closed,
}

/// Why a lane's stock moved (the ledger's reason column) [R2].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StockReason {
    /// Opening stock counted from the first stable weight [D1].
    Opening,
    /// Sold in an order.
    Sale {
        /// The order.
        order_id: String,
    },
    /// Taken during an order that went abnormal: physically gone, not (yet) charged.
    UnchargedTake {
        /// The order.
        order_id: String,
    },
    /// Added by a restock session.
    Restock {
        /// The session.
        session_id: String,
    },
}

/// Commands a cabinet accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CabinetCommand {
    /// Registers the cabinet with its planogram [C1].
    Register {
        /// Its id.
        id: CabinetId,
        /// Hardware kind.
        kind: CabinetKind,
        /// Where it stands.
        location: GeoPoint,
        /// Doors and lanes.
        doors: Vec<DoorPlan>,
        /// When.
        at: UnixMs,
    },
    /// The device connected (through gateway node `node`).
    ConnectDevice {
        /// The gateway node holding the connection [D1].
        node: String,
        /// Firmware version from the boot message.
        fw: String,
        /// When.
        at: UnixMs,
    },
    /// The device disconnected.
    DisconnectDevice {
        /// When.
        at: UnixMs,
    },
    /// The device's heartbeats stopped past the liveness threshold while the platform was
    /// healthy: offline, and operators are alerted [D5].
    MarkSilent {
        /// Receive time of its last heartbeat.
        last_seen: UnixMs,
        /// The gateway node the caller believes holds the connection: if the device has
        /// since connected through another node, the silence is stale and nothing
        /// happens (a crashed node's devices are judged by another node) [D5].
        held_by: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// A device marked silent heartbeats again on its connection [D5].
    MarkAlive {
        /// When.
        at: UnixMs,
    },
    /// An operator lets the device connect, or shuts it out [D2].
    SetDeviceAccess {
        /// Allowed to connect.
        enabled: bool,
        /// Who.
        by: String,
        /// When.
        at: UnixMs,
    },
    /// A locker reported a compartment change [seed 000].
    RecordCompartment {
        /// Compartment (a locker's doors are its compartments).
        compartment: DoorNo,
        /// What happened.
        change: CompartmentChange,
        /// Device message id (duplicates are ignored).
        msg_id: String,
        /// When.
        at: UnixMs,
    },
    /// The device played an ad (billing evidence for advertisers).
    RecordAdPlay {
        /// The ad.
        ad_id: String,
        /// How long it played.
        duration_ms: u64,
        /// Device message id (duplicates are ignored).
        msg_id: String,
        /// When.
        at: UnixMs,
    },
    /// A pending-init cabinet reported a stable weight for a door: count opening stock.
    Initialize {
        /// Stable readings, one per door.
        readings: Vec<(DoorNo, StableReading)>,
        /// When.
        at: UnixMs,
    },
    /// Someone wants exclusive use of a door [O2].
    AcquireDoor {
        /// The door.
        door: DoorNo,
        /// Who.
        holder: Holder,
        /// When.
        at: UnixMs,
    },
    /// The holder is done with the door (idempotent: releasing a door one does not hold
    /// is a no-op).
    ReleaseDoor {
        /// The door.
        door: DoorNo,
        /// The session that held it.
        session_id: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// The device reported a door change [D8].
    RecordDoorEvent {
        /// The door.
        door: DoorNo,
        /// New position.
        position: DoorPosition,
        /// Device message id (duplicates are ignored).
        msg_id: String,
        /// Device sequence number (orders events).
        seq: u64,
        /// Device clock.
        device_ts: UnixMs,
        /// The command that caused it, if any.
        cmd_id: Option<String>,
        /// Platform receive time.
        at: UnixMs,
    },
    /// A purchase on `door` ended: record the sold counts and release the door, once.
    FinishSale {
        /// The door.
        door: DoorNo,
        /// The order that held it.
        order_id: String,
        /// Items taken per lane (only positive counts are stock movements).
        sold: Vec<(LaneNo, u32)>,
        /// Whether the order charges for them (otherwise they are an uncharged take
        /// awaiting an operator).
        charged: bool,
        /// When.
        at: UnixMs,
    },
}

/// Facts about a cabinet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CabinetEvent {
    /// Registered with its planogram (version 1).
    CabinetRegistered {
        /// Id.
        id: CabinetId,
        /// Kind.
        kind: CabinetKind,
        /// Location.
        location: GeoPoint,
        /// Planogram.
        doors: Vec<DoorPlan>,
        /// When.
        at: UnixMs,
    },
    /// The device connected; `status` is where that left the cabinet.
    DeviceConnected {
        /// Gateway node.
        node: String,
        /// Firmware.
        fw: String,
        /// Resulting status (`pending_init` or `online`).
        status: DeviceStatus,
        /// When.
        at: UnixMs,
    },
    /// The device disconnected.
    DeviceDisconnected {
        /// When.
        at: UnixMs,
    },
    /// Heartbeats stopped: offline, an alert for operators [D5].
    DeviceWentSilent {
        /// Receive time of the last heartbeat.
        last_seen: UnixMs,
        /// When.
        at: UnixMs,
    },
    /// Heartbeats resumed after a silence; `status` is where that left the cabinet.
    DeviceResumed {
        /// `online` or `pending_init`.
        status: DeviceStatus,
        /// When.
        at: UnixMs,
    },
    /// The device's access was switched (its credentials refuse it while disabled).
    DeviceAccessChanged {
        /// Allowed to connect.
        enabled: bool,
        /// Who.
        by: String,
        /// When.
        at: UnixMs,
    },
    /// A locker compartment popped open, or its item was taken or returned.
    CompartmentChanged {
        /// Compartment.
        compartment: DoorNo,
        /// What happened.
        change: CompartmentChange,
        /// Device message id.
        msg_id: String,
        /// When.
        at: UnixMs,
    },
    /// An ad played on the cabinet's screen.
    AdPlayed {
        /// The ad.
        ad_id: String,
        /// How long.
        duration_ms: u64,
        /// Device message id.
        msg_id: String,
        /// When.
        at: UnixMs,
    },
    /// Opening stock counted; the cabinet is initialized and online [D1].
    CabinetInitialized {
        /// When.
        at: UnixMs,
    },
    /// A lane's stock moved (ledger entry) [R2].
    LaneStockChanged {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// Product.
        sku: Sku,
        /// Stock before.
        before: i64,
        /// Change (negative for sales).
        change: i64,
        /// Stock after.
        after: i64,
        /// Why.
        reason: StockReason,
        /// When.
        at: UnixMs,
    },
    /// A lane fell to its restock threshold [O10].
    RestockNeeded {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// Product.
        sku: Sku,
        /// Stock now.
        stock: i64,
        /// Threshold.
        threshold: u32,
        /// When.
        at: UnixMs,
    },
    /// A door was taken by `holder`.
    DoorAcquired {
        /// Door.
        door: DoorNo,
        /// Holder.
        holder: Holder,
        /// When.
        at: UnixMs,
    },
    /// A door was released.
    DoorReleased {
        /// Door.
        door: DoorNo,
        /// The session that held it.
        session_id: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// The door opened.
    DoorOpened {
        /// Door.
        door: DoorNo,
        /// Who held it then.
        holder: Option<Holder>,
        /// Device message id.
        msg_id: String,
        /// Device sequence.
        seq: u64,
        /// Device clock.
        device_ts: UnixMs,
        /// Causing command.
        cmd_id: Option<String>,
        /// Receive time.
        at: UnixMs,
    },
    /// The door closed; `unexpected` when it was not known to be open (a lost or late
    /// open, or a forced door) [D8].
    DoorClosed {
        /// Door.
        door: DoorNo,
        /// Who held it then.
        holder: Option<Holder>,
        /// Whether the close was unexpected.
        unexpected: bool,
        /// Device message id.
        msg_id: String,
        /// Device sequence.
        seq: u64,
        /// Device clock.
        device_ts: UnixMs,
        /// Receive time.
        at: UnixMs,
    },
    /// A door event arrived after a later one: kept, not applied [D8].
    LateDoorEventRecorded {
        /// Door.
        door: DoorNo,
        /// The late position.
        position: DoorPosition,
        /// Device message id.
        msg_id: String,
        /// Its sequence.
        seq: u64,
        /// The sequence already applied.
        applied_seq: u64,
        /// Who held the door then.
        holder: Option<Holder>,
        /// Receive time.
        at: UnixMs,
    },
}

impl DomainEvent for CabinetEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CabinetRegistered { .. } => "CabinetRegistered",
            Self::DeviceConnected { .. } => "DeviceConnected",
            Self::DeviceDisconnected { .. } => "DeviceDisconnected",
            Self::DeviceWentSilent { .. } => "DeviceWentSilent",
            Self::DeviceResumed { .. } => "DeviceResumed",
            Self::CompartmentChanged { .. } => "CompartmentChanged",
            Self::DeviceAccessChanged { .. } => "DeviceAccessChanged",
            Self::AdPlayed { .. } => "AdPlayed",
            Self::CabinetInitialized { .. } => "CabinetInitialized",
            Self::LaneStockChanged { .. } => "LaneStockChanged",
            Self::RestockNeeded { .. } => "RestockNeeded",
            Self::DoorAcquired { .. } => "DoorAcquired",
            Self::DoorReleased { .. } => "DoorReleased",
            Self::DoorOpened { .. } => "DoorOpened",
            Self::DoorClosed { .. } => "DoorClosed",
            Self::LateDoorEventRecorded { .. } => "LateDoorEventRecorded",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a cabinet command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CabinetError {
    /// Already registered.
    #[error("cabinet already exists")]
    AlreadyExists,
    /// Not registered.
    #[error("cabinet not found")]
    NotFound,
    /// No such door.
    #[error("cabinet has no door {0}")]
    UnknownDoor(u8),
    /// Not online (offline, pending init, faulty).
    #[error("cabinet is {0}")]
    NotAvailable(&'static str),
    /// The door is held by someone else.
    #[error("door is busy")]
    DoorBusy,
    /// The planogram is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field.
        field: String,
        /// Why.
        reason: String,
    },
}

impl DomainError for CabinetError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::AlreadyExists | Self::NotAvailable(_) | Self::DoorBusy => RejectionKind::Conflict,
            Self::NotFound | Self::UnknownDoor(_) => RejectionKind::NotFound,
            Self::Invalid { .. } => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "cabinet_exists",
            Self::NotFound => "cabinet_not_found",
            Self::UnknownDoor(_) => "door_not_found",
            Self::NotAvailable(_) => "cabinet_unavailable",
            Self::DoorBusy => "cabinet_busy",
            Self::Invalid { .. } => "invalid_field",
        }
    }
}

/// A lane's live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneState {
    /// The plan.
    pub plan: LanePlan,
    /// Items on the lane by the ledger.
    pub stock: i64,
}

/// A door's live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoorState {
    /// Door number.
    pub door: DoorNo,
    /// Lanes by number.
    pub lanes: BTreeMap<LaneNo, LaneState>,
    /// Who holds it.
    pub holder: Option<Holder>,
    /// Physical position.
    pub position: DoorPosition,
    /// Highest device sequence applied to this door.
    pub last_seq: Option<u64>,
    /// Lockers: whether the compartment holds an item, as last reported (`None` until
    /// the device says).
    #[serde(default)]
    pub occupied: Option<bool>,
}

/// How many recent door-message ids a cabinet remembers to drop duplicates [D8].
const RECENT_MSG_IDS: usize = 64;

/// A cabinet's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cabinet {
    /// Id, once registered.
    pub id: Option<CabinetId>,
    /// Kind.
    pub kind: Option<CabinetKind>,
    /// Location.
    pub location: Option<GeoPoint>,
    /// Doors by number.
    pub doors: BTreeMap<DoorNo, DoorState>,
    /// Device status.
    pub status: DeviceStatus,
    /// Whether opening stock has been counted.
    pub initialized: bool,
    /// Gateway node holding the connection.
    pub node: Option<String>,
    /// Planogram version (1 at registration).
    pub planogram_version: u32,
    /// Recently seen door-message ids.
    pub recent_msg_ids: VecDeque<String>,
    /// An operator shut the device out [D2].
    #[serde(default)]
    pub device_disabled: bool,
}

impl Cabinet {
    /// A door's state, or `UnknownDoor`.
    pub fn door(&self, door: DoorNo) -> Result<&DoorState, CabinetError> {
        self.doors.get(&door).ok_or(CabinetError::UnknownDoor(door.0))
    }

    fn status_name(&self) -> &'static str {
        match self.status {
            DeviceStatus::Registered => "not_connected",
            DeviceStatus::PendingInit => "pending_init",
            DeviceStatus::Online => "online",
            DeviceStatus::Offline => "offline",
            DeviceStatus::Faulty => "faulty",
        }
    }
}

/// A locker's doors are its compartments: numbered, distinct, with no lanes.
fn validate_locker(doors: &[DoorPlan]) -> Result<(), CabinetError> {
    if doors.is_empty() {
        return Err(CabinetError::Invalid {
            field: "doors".into(),
            reason: "a locker needs at least one compartment".into(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in doors.iter().enumerate() {
        if !seen.insert(d.door) {
            return Err(CabinetError::Invalid {
                field: format!("doors[{i}].door"),
                reason: "duplicate compartment".into(),
            });
        }
        if !d.lanes.is_empty() {
            return Err(CabinetError::Invalid {
                field: format!("doors[{i}].lanes"),
                reason: "a locker compartment has no lanes".into(),
            });
        }
    }
    Ok(())
}

fn validate_plan(doors: &[DoorPlan]) -> Result<(), CabinetError> {
    let invalid = |field: String, reason: &str| CabinetError::Invalid {
        field,
        reason: reason.into(),
    };
    if doors.is_empty() {
        return Err(invalid("doors".into(), "at least one door is required"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in doors.iter().enumerate() {
        if !seen.insert(d.door) {
            return Err(invalid(format!("doors[{i}].door"), "duplicate door"));
        }
        let mut lanes = std::collections::BTreeSet::new();
        for (j, l) in d.lanes.iter().enumerate() {
            if !lanes.insert(l.lane) {
                return Err(invalid(format!("doors[{i}].lanes[{j}].lane"), "duplicate lane"));
            }
            if !l.unit_grams.is_finite() || l.unit_grams <= 0.0 {
                return Err(invalid(format!("doors[{i}].lanes[{j}].unit_grams"), "must be a positive number"));
            }
            if l.capacity == 0 || l.capacity > 1000 {
                return Err(invalid(format!("doors[{i}].lanes[{j}].capacity"), "must be between 1 and 1000"));
            }
            if l.restock_threshold > l.capacity {
                return Err(invalid(
                    format!("doors[{i}].lanes[{j}].restock_threshold"),
                    "must not exceed capacity",
                ));
            }
            if let Err(e) = crate::weight::check_lane_resolvable(l.unit_grams, l.capacity, &l.tolerance) {
                return Err(CabinetError::Invalid {
                    field: format!("doors[{i}].lanes[{j}].{}", e.field),
                    reason: e.reason,
                });
            }
        }
    }
    Ok(())
}

impl Aggregate for Cabinet {
    const TYPE: &'static str = "cabinet";
    type Command = CabinetCommand;
    type Event = CabinetEvent;
    type Error = CabinetError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        if self.id.is_none() && !matches!(command, CabinetCommand::Register { .. }) {
            return Err(CabinetError::NotFound);
        }
        match command {
            CabinetCommand::Register {
                id,
                kind,
                location,
                doors,
                at,
            } => {
                if self.id.is_some() {
                    return Err(CabinetError::AlreadyExists);
                }
                match kind {
                    CabinetKind::Weight => validate_plan(&doors)?,
                    CabinetKind::Locker => validate_locker(&doors)?,
                }
                sink.write(
                    CabinetEvent::CabinetRegistered {
                        id,
                        kind,
                        location,
                        doors,
                        at,
                    },
                    self,
                )
                .await;
            }
            CabinetCommand::ConnectDevice { node, fw, at } => {
                if self.status == DeviceStatus::Faulty {
                    return Err(CabinetError::NotAvailable("faulty"));
                }
                // A locker has no opening stock to count: it is ready when connected.
                let status = if self.initialized || self.kind == Some(CabinetKind::Locker) {
                    DeviceStatus::Online
                } else {
                    DeviceStatus::PendingInit
                };
                sink.write(CabinetEvent::DeviceConnected { node, fw, status, at }, self).await;
            }
            CabinetCommand::DisconnectDevice { at } => {
                // Also after a silence: the connection it still held is gone now.
                if matches!(self.status, DeviceStatus::Online | DeviceStatus::PendingInit) || self.node.is_some() {
                    sink.write(CabinetEvent::DeviceDisconnected { at }, self).await;
                }
            }
            CabinetCommand::MarkSilent { last_seen, held_by, at } => {
                let same_connection = held_by.is_none() || held_by == self.node;
                if same_connection && matches!(self.status, DeviceStatus::Online | DeviceStatus::PendingInit) {
                    sink.write(CabinetEvent::DeviceWentSilent { last_seen, at }, self).await;
                }
            }
            CabinetCommand::RecordCompartment {
                compartment,
                change,
                msg_id,
                at,
            } => {
                if self.kind != Some(CabinetKind::Locker) {
                    return Err(CabinetError::Invalid {
                        field: "compartment".into(),
                        reason: "this cabinet has no compartments".into(),
                    });
                }
                self.door(compartment)?;
                if !self.recent_msg_ids.contains(&msg_id) {
                    sink.write(
                        CabinetEvent::CompartmentChanged {
                            compartment,
                            change,
                            msg_id,
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            CabinetCommand::SetDeviceAccess { enabled, by, at } => {
                if self.device_disabled == enabled {
                    sink.write(CabinetEvent::DeviceAccessChanged { enabled, by, at }, self).await;
                }
            }
            CabinetCommand::RecordAdPlay {
                ad_id,
                duration_ms,
                msg_id,
                at,
            } => {
                if ad_id.is_empty() || ad_id.len() > 64 {
                    return Err(CabinetError::Invalid {
                        field: "ad_id".into(),
                        reason: "must be 1-64 characters".into(),
                    });
                }
                if duration_ms > 3_600_000 {
                    return Err(CabinetError::Invalid {
                        field: "duration_ms".into(),
                        reason: "must be at most one hour".into(),
                    });
                }
                if !self.recent_msg_ids.contains(&msg_id) {
                    sink.write(
                        CabinetEvent::AdPlayed {
                            ad_id,
                            duration_ms,
                            msg_id,
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            CabinetCommand::MarkAlive { at } => {
                if self.status == DeviceStatus::Offline && self.node.is_some() {
                    let status = if self.initialized {
                        DeviceStatus::Online
                    } else {
                        DeviceStatus::PendingInit
                    };
                    sink.write(CabinetEvent::DeviceResumed { status, at }, self).await;
                }
            }
            CabinetCommand::Initialize { readings, at } => {
                if self.status != DeviceStatus::PendingInit {
                    return Ok(()); // only a pending cabinet initializes; a repeat is a no-op
                }
                // Every door must be counted from one stable reading.
                let mut moves = Vec::new();
                for (door_no, door) in &self.doors {
                    let Some((_, reading)) = readings.iter().find(|(d, _)| d == door_no) else {
                        return Err(CabinetError::Invalid {
                            field: "readings".into(),
                            reason: format!("no stable reading for door {}", door_no.0),
                        });
                    };
                    for (lane_no, lane) in &door.lanes {
                        let grams = reading.grams(*lane_no).ok_or_else(|| CabinetError::Invalid {
                            field: "readings".into(),
                            reason: format!("door {} lane {} missing", door_no.0, lane_no.0),
                        })?;
                        let count = (grams / lane.plan.unit_grams).round().max(0.0) as i64;
                        moves.push((*door_no, *lane_no, lane.plan.sku.clone(), lane.stock, count));
                    }
                }
                for (door, lane, sku, before, count) in moves {
                    sink.write(
                        CabinetEvent::LaneStockChanged {
                            door,
                            lane,
                            sku,
                            before,
                            change: count - before,
                            after: count,
                            reason: StockReason::Opening,
                            at,
                        },
                        self,
                    )
                    .await;
                }
                sink.write(CabinetEvent::CabinetInitialized { at }, self).await;
            }
            CabinetCommand::AcquireDoor { door, holder, at } => {
                let d = self.door(door)?;
                if d.holder.as_ref() == Some(&holder) {
                    return Ok(()); // the same session asking again
                }
                if self.status != DeviceStatus::Online {
                    return Err(CabinetError::NotAvailable(self.status_name()));
                }
                if d.holder.is_some() {
                    return Err(CabinetError::DoorBusy);
                }
                sink.write(CabinetEvent::DoorAcquired { door, holder, at }, self).await;
            }
            CabinetCommand::ReleaseDoor {
                door,
                session_id,
                reason,
                at,
            } => {
                let d = self.door(door)?;
                if d.holder.as_ref().map(Holder::session_id) == Some(session_id.as_str()) {
                    sink.write(
                        CabinetEvent::DoorReleased {
                            door,
                            session_id,
                            reason,
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            CabinetCommand::RecordDoorEvent {
                door,
                position,
                msg_id,
                seq,
                device_ts,
                cmd_id,
                at,
            } => {
                let d = self.door(door)?.clone();
                if self.recent_msg_ids.contains(&msg_id) {
                    return Ok(()); // duplicate delivery [D8]
                }
                if let Some(applied) = d.last_seq {
                    if seq <= applied {
                        sink.write(
                            CabinetEvent::LateDoorEventRecorded {
                                door,
                                position,
                                msg_id,
                                seq,
                                applied_seq: applied,
                                holder: d.holder.clone(),
                                at,
                            },
                            self,
                        )
                        .await;
                        return Ok(());
                    }
                }
                let event = match position {
                    DoorPosition::Open => CabinetEvent::DoorOpened {
                        door,
                        holder: d.holder.clone(),
                        msg_id,
                        seq,
                        device_ts,
                        cmd_id,
                        at,
                    },
                    DoorPosition::Closed => CabinetEvent::DoorClosed {
                        door,
                        holder: d.holder.clone(),
                        unexpected: d.position != DoorPosition::Open,
                        msg_id,
                        seq,
                        device_ts,
                        at,
                    },
                    DoorPosition::Unknown => {
                        return Err(CabinetError::Invalid {
                            field: "state".into(),
                            reason: "must be open or closed".into(),
                        })
                    }
                };
                sink.write(event, self).await;
            }
            CabinetCommand::FinishSale {
                door,
                order_id,
                sold,
                charged,
                at,
            } => {
                let d = self.door(door)?.clone();
                if d.holder.as_ref().map(Holder::session_id) != Some(order_id.as_str()) {
                    return Ok(()); // already finished (or never held): idempotent
                }
                for (lane_no, qty) in sold {
                    // Read the live stock each time: the same lane may appear twice.
                    let Some(lane) = self.doors.get(&door).and_then(|d| d.lanes.get(&lane_no)).cloned() else {
                        continue;
                    };
                    if qty == 0 {
                        continue;
                    }
                    let before = lane.stock;
                    let after = before - i64::from(qty);
                    sink.write(
                        CabinetEvent::LaneStockChanged {
                            door,
                            lane: lane_no,
                            sku: lane.plan.sku.clone(),
                            before,
                            change: -i64::from(qty),
                            after,
                            reason: if charged {
                                StockReason::Sale {
                                    order_id: order_id.clone(),
                                }
                            } else {
                                StockReason::UnchargedTake {
                                    order_id: order_id.clone(),
                                }
                            },
                            at,
                        },
                        self,
                    )
                    .await;
                    let threshold = lane.plan.restock_threshold;
                    if after <= i64::from(threshold) && before > i64::from(threshold) {
                        sink.write(
                            CabinetEvent::RestockNeeded {
                                door,
                                lane: lane_no,
                                sku: lane.plan.sku.clone(),
                                stock: after,
                                threshold,
                                at,
                            },
                            self,
                        )
                        .await;
                    }
                }
                sink.write(
                    CabinetEvent::DoorReleased {
                        door,
                        session_id: order_id,
                        reason: "sale_finished".into(),
                        at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CabinetEvent::CabinetRegistered {
                id, kind, location, doors, ..
            } => {
                self.id = Some(id);
                self.kind = Some(kind);
                self.location = Some(location);
                self.planogram_version = 1;
                self.doors = doors
                    .into_iter()
                    .map(|d| {
                        let lanes = d.lanes.into_iter().map(|l| (l.lane, LaneState { plan: l, stock: 0 })).collect();
                        (
                            d.door,
                            DoorState {
                                door: d.door,
                                lanes,
                                holder: None,
                                position: DoorPosition::Unknown,
                                last_seq: None,
                                occupied: None,
                            },
                        )
                    })
                    .collect();
            }
            CabinetEvent::DeviceConnected { node, status, .. } => {
                self.node = Some(node);
                self.status = status;
                // A (re)boot restarts the device's sequence numbers [PROTOCOL: seq].
                for d in self.doors.values_mut() {
                    d.last_seq = None;
                }
            }
            CabinetEvent::DeviceDisconnected { .. } => {
                self.status = DeviceStatus::Offline;
                self.node = None;
            }
            // Silent, but the connection (and its node) may still be there.
            CabinetEvent::DeviceWentSilent { .. } => self.status = DeviceStatus::Offline,
            CabinetEvent::DeviceResumed { status, .. } => self.status = status,
            CabinetEvent::CompartmentChanged {
                compartment,
                change,
                msg_id,
                ..
            } => {
                if let Some(d) = self.doors.get_mut(&compartment) {
                    match change {
                        CompartmentChange::Popped => d.position = DoorPosition::Open,
                        CompartmentChange::Taken => d.occupied = Some(false),
                        CompartmentChange::Returned => d.occupied = Some(true),
                    }
                }
                self.remember(msg_id);
            }
            CabinetEvent::AdPlayed { msg_id, .. } => self.remember(msg_id),
            CabinetEvent::DeviceAccessChanged { enabled, .. } => self.device_disabled = !enabled,
            CabinetEvent::CabinetInitialized { .. } => {
                self.initialized = true;
                self.status = DeviceStatus::Online;
            }
            CabinetEvent::LaneStockChanged { door, lane, after, .. } => {
                if let Some(l) = self.doors.get_mut(&door).and_then(|d| d.lanes.get_mut(&lane)) {
                    l.stock = after;
                }
            }
            CabinetEvent::RestockNeeded { .. } => {}
            CabinetEvent::DoorAcquired { door, holder, .. } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.holder = Some(holder);
                }
            }
            CabinetEvent::DoorReleased { door, .. } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.holder = None;
                }
            }
            CabinetEvent::DoorOpened { door, seq, msg_id, .. } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.position = DoorPosition::Open;
                    d.last_seq = Some(seq);
                }
                self.remember(msg_id);
            }
            CabinetEvent::DoorClosed { door, seq, msg_id, .. } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.position = DoorPosition::Closed;
                    d.last_seq = Some(seq);
                }
                self.remember(msg_id);
            }
            CabinetEvent::LateDoorEventRecorded { msg_id, .. } => self.remember(msg_id),
        }
    }
}

impl Cabinet {
    fn remember(&mut self, msg_id: String) {
        self.recent_msg_ids.push_back(msg_id);
        while self.recent_msg_ids.len() > RECENT_MSG_IDS {
            self.recent_msg_ids.pop_front();
        }
    }
}

#[cfg(test)]
#[path = "cabinet_tests.rs"]
mod tests;
