//! What can be asked of a cabinet: registration, the device's connection and reports,
//! and the door sessions (purchases, restocks, calibrations) that take and free its doors.

use super::{CompartmentChange, DoorPlan, DoorPosition, Holder, LanePlan};
use crate::weight::StableReading;
use crate::{CabinetId, CabinetKind, Cents, DoorNo, GeoPoint, Grams, LaneNo, Sku, UnixMs};
use serde::{Deserialize, Serialize};

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
        /// The newest stable reading of the door before the event (device clock), as the
        /// node that received it has it: the purchase's baseline travels with the event,
        /// so the node that runs the order's effects needs no telemetry of its own.
        stable_before: Option<StableReading>,
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
    /// A restock session on `door` was counted: each lane's change is booked (bounded by
    /// the lane's capacity and stock), and the door freed [O10, M2].
    FinishRestock {
        /// Door.
        door: DoorNo,
        /// The restock session.
        restock_id: String,
        /// Items added per lane (negative: taken out).
        added: Vec<(LaneNo, i64)>,
        /// When.
        at: UnixMs,
    },
    /// A price label was acknowledged by the device: the lane charges what it shows
    /// from now on [C2]. A label older than the lane's last applied one, or for another
    /// product, changes nothing.
    ApplyPriceLabel {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// The product the label was for.
        sku: Sku,
        /// Its price.
        price: Cents,
        /// Its name.
        name: String,
        /// When the label command was issued (orders the labels of one lane).
        issued_at: UnixMs,
        /// When.
        at: UnixMs,
    },
    /// Puts another product on a lane: a planogram version change [C2]. The lane must
    /// be empty and its door free.
    SwapLane {
        /// Door.
        door: DoorNo,
        /// The new plan of the lane (its number is the lane's).
        plan: LanePlan,
        /// When.
        at: UnixMs,
    },
    /// A `calibrate` command came back: the lane's measured error under a standard
    /// weight becomes its next calibration version [M1].
    RecordCalibration {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// The standard weight placed.
        standard_grams: Grams,
        /// What the lane measured.
        measured_grams: Grams,
        /// The command.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// A closed, free door's stable weight, some time after its last session: each
    /// lane is weighed against its ledger stock and its zero follows small drift, or the
    /// lane is blocked when the drift is too large [B4].
    ObserveClosedWeight {
        /// Door.
        door: DoorNo,
        /// The stable reading.
        reading: StableReading,
        /// When.
        at: UnixMs,
    },
    /// An operator wrote off a lane's stock divergence [R3 (a)]: the ledger takes the
    /// weighed stock — only of the divergence that began at `since` (a later one is
    /// another anomaly's), only while the door is free.
    WriteOffDivergence {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// When the divergence began.
        since: UnixMs,
        /// The anomaly closed by it.
        anomaly_id: String,
        /// When.
        at: UnixMs,
    },
    /// A `tare` command came back: the empty lane reads zero again [M1].
    RecordTare {
        /// Door.
        door: DoorNo,
        /// Lane.
        lane: LaneNo,
        /// The command.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// An operator sets (or clears, with `None`) the cabinet's temperature limit [B8].
    SetTemperatureLimit {
        /// Highest temperature, °C (−40 to 80).
        max_c: Option<f64>,
        /// Who.
        by: String,
        /// When.
        at: UnixMs,
    },
    /// A heartbeat's temperature, when it is above the cabinet's limit [B8].
    ObserveTemperature {
        /// °C.
        temp_c: f64,
        /// When.
        at: UnixMs,
    },
    /// An operator lifts a temperature lockout [B8].
    ResetTemperatureLockout {
        /// Who.
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}
