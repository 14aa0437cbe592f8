//! The facts of a cabinet, as the log keeps them forever: the lane ledger [R2] and the
//! door sessions are read from these as they are.

use super::{CompartmentChange, DeviceStatus, DoorPlan, DoorPosition, Holder, LanePlan, StockClass, StockReason};
use crate::weight::StableReading;
use crate::{CabinetId, CabinetKind, Cents, DoorNo, GeoPoint, Grams, LaneNo, Sku, UnixMs, EVENT_VERSION};
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
    /// A lane's label was acknowledged with a new price or name: it charges that now
    /// [C2].
    LanePriceChanged {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// Product.
        sku: Sku,
        /// Price before.
        from: Cents,
        /// Price now.
        to: Cents,
        /// Name now.
        name: String,
        /// The lane's price version now.
        price_version: u32,
        /// When the label was issued.
        issued_at: UnixMs,
        /// When.
        at: UnixMs,
    },
    /// A lane got another product: planogram version + 1 [C2].
    LaneProductSwapped {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// The product it held.
        from: Sku,
        /// Its plan now.
        plan: LanePlan,
        /// The cabinet's planogram version now.
        planogram_version: u32,
        /// Whether the new unit weight differs, so the lane must be calibrated before
        /// the door sells again [M1].
        needs_calibration: bool,
        /// When.
        at: UnixMs,
    },
    /// A lane was calibrated with a standard weight [M1].
    LaneCalibrated {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// The lane's calibration version now (orders weighed after it record it).
        version: u32,
        /// The standard weight.
        standard_grams: Grams,
        /// What the lane measured.
        measured_grams: Grams,
        /// Whether the error is within the lane's tolerance at that load; if not, the
        /// lane still needs calibrating (and an anomaly says so).
        within_limit: bool,
        /// The command.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// A closed door's stable weight showed a lane's empty-scale reading had wandered
    /// (drift, or creep after a load) by less than an item: the lane's zero follows it,
    /// so its weight keeps counting the ledger's stock [B4]. No stock moves.
    LaneRezeroed {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// The zero before.
        zero_before: Grams,
        /// The zero now (what the lane reads with nothing on it).
        zero_after: Grams,
        /// The stable reading that moved it.
        reading_grams: Grams,
        /// The ledger's stock the reading was weighed against.
        stock: i64,
        /// The lane's calibration health now (0–100).
        health: u8,
        /// When.
        at: UnixMs,
    },
    /// A lane's zero wandered past its drift limit: it no longer counts by weight
    /// reliably, and its door is blocked from sale until the lane is calibrated [B4].
    LaneDriftBlocked {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// Where its zero would be.
        zero_grams: Grams,
        /// How far a zero may wander.
        limit_grams: Grams,
        /// The stable reading that showed it.
        reading_grams: Grams,
        /// When.
        at: UnixMs,
    },
    /// A settled closed-door reading disagrees with a lane's ledger, for the first time
    /// or differently than before [R3 (a)].
    LaneStockDiverged {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// Product the ledger holds there.
        sku: Sku,
        /// Why, as far as the weights tell.
        class: StockClass,
        /// Items by the ledger.
        ledger_stock: i64,
        /// Whole items by weight (`None` without a reading).
        weighed_stock: Option<i64>,
        /// `weighed_stock − ledger_stock` (0 when no whole items were counted).
        difference: i64,
        /// The lane's reading.
        reading_grams: Option<Grams>,
        /// What the ledger says it should read.
        expected_grams: Grams,
        /// When the lane first disagreed (kept while the divergence lasts).
        since: UnixMs,
        /// When the door last opened before it: the window in which it happened.
        window_from: UnixMs,
        /// The last session that held the door (an order, a restock, a command).
        last_session: Option<Holder>,
        /// When.
        at: UnixMs,
    },
    /// A lane that disagreed weighs what its ledger says again [R3 (a)].
    LaneStockAgreed {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// Items by the ledger (and by weight).
        stock: i64,
        /// The reading that agreed.
        reading_grams: Option<Grams>,
        /// When.
        at: UnixMs,
    },
    /// An empty lane was tared (zeroed by the device): the first step of a calibration
    /// [M1]; its zero is 0 again.
    LaneTared {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// The zero it had wandered to.
        zero_before: Grams,
        /// The `tare` command.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// The cabinet's temperature limit changed (`None`: no limit) [B8].
    TemperatureLimitSet {
        /// Highest temperature the goods may stand, °C.
        max_c: Option<f64>,
        /// Who.
        by: String,
        /// When.
        at: UnixMs,
    },
    /// The cabinet reported a temperature above its limit: shoppers are turned away
    /// until an operator resets the lockout (the goods may have spoiled) [B8].
    TemperatureLockedOut {
        /// The temperature reported.
        temp_c: f64,
        /// The limit.
        max_c: f64,
        /// When.
        at: UnixMs,
    },
    /// An operator lifted a temperature lockout [B8].
    TemperatureLockoutReset {
        /// Who.
        by: String,
        /// Why (what was checked).
        reason: String,
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
        /// The newest stable reading before the open, on the node that received it (the
        /// purchase's baseline; absent in events recorded before it was carried).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stable_before: Option<StableReading>,
        /// The device time of the door's previous close: a baseline older than it is from
        /// before the previous session's takes, and must not be weighed against.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<UnixMs>,
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
        /// The newest stable reading before the close, on the node that received it (the
        /// baseline of a purchase whose open was never seen).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stable_before: Option<StableReading>,
        /// The device time of the door's previous close (see `DoorOpened`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<UnixMs>,
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
            Self::LanePriceChanged { .. } => "LanePriceChanged",
            Self::LaneCalibrated { .. } => "LaneCalibrated",
            Self::LaneProductSwapped { .. } => "LaneProductSwapped",
            Self::LaneRezeroed { .. } => "LaneRezeroed",
            Self::LaneDriftBlocked { .. } => "LaneDriftBlocked",
            Self::LaneTared { .. } => "LaneTared",
            Self::LaneStockDiverged { .. } => "LaneStockDiverged",
            Self::LaneStockAgreed { .. } => "LaneStockAgreed",
            Self::TemperatureLimitSet { .. } => "TemperatureLimitSet",
            Self::TemperatureLockedOut { .. } => "TemperatureLockedOut",
            Self::TemperatureLockoutReset { .. } => "TemperatureLockoutReset",
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
