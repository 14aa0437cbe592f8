//! The facts of a cabinet, as the log keeps them forever: the lane ledger [R2] and the
//! door sessions are read from these as they are.

use super::{CompartmentChange, DeviceStatus, DoorPlan, DoorPosition, Holder, StockReason};
use crate::{CabinetId, CabinetKind, DoorNo, GeoPoint, LaneNo, Sku, UnixMs, EVENT_VERSION};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

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
