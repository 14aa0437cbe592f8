//! The cabinet aggregate [C1, D1, O2, D8]: doors and lanes (the planogram), the device's
//! connection status, each door's physical state and — the consistency point of the whole
//! platform — who holds each door right now (a purchase, a restock, a calibration).
//!
//! Stock per lane lives here too, because every stock movement must be serialized with
//! the door sessions that cause it; each movement is an event with before/change/after,
//! which the lane ledger projection [R2] reads as is.
//!
//! - [`planogram`]: lanes and doors as planned, and their checks;
//! - [`commands`], [`events`]; [`aggregate`]: the state and the decisions.

mod aggregate;
mod commands;
mod drift;
mod events;
mod lanes;
mod planogram;
mod safety;
mod stock_check;

pub use aggregate::{Cabinet, DoorState, LaneState};
pub use commands::CabinetCommand;
pub use drift::{DRIFT_LIMIT_UNITS, REZERO_MAX_STEP_UNITS};
pub use events::CabinetEvent;
pub use planogram::{door_ambiguities, Ambiguity, DoorPlan, LanePlan, AMBIGUITY_MAX_ITEMS};
pub use safety::TemperatureGuard;
pub use stock_check::{check_door, open_divergences, LaneVerdict, StockClass, StockDivergence};

use crate::{DomainError, RejectionKind};
use serde::{Deserialize, Serialize};

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
    /// An operator's device command that opens or weighs the door (`open_door`,
    /// `tare`, `calibrate`) [O2]: held until the command ends, an opened door until it
    /// closes.
    Command {
        /// The command's id.
        cmd_id: String,
    },
}

impl Holder {
    /// The id of the session that holds the door (order, restock or calibration id).
    pub fn session_id(&self) -> &str {
        match self {
            Self::Order { order_id, .. } => order_id,
            Self::Restock { session_id } => session_id,
            Self::Calibration { calibration_id } => calibration_id,
            Self::Command { cmd_id } => cmd_id,
        }
    }

    /// What kind of session it is (`order`, `restock`, `calibration`, `command`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Order { .. } => "order",
            Self::Restock { .. } => "restock",
            Self::Calibration { .. } => "calibration",
            Self::Command { .. } => "command",
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
    /// A stock divergence an operator wrote off [R3 (a)]: the ledger takes the stock the
    /// weight counts (goods lost, or found).
    WriteOff {
        /// The anomaly closed by the write-off.
        anomaly_id: String,
    },
}

/// Why a cabinet command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CabinetError {
    /// Already registered.
    #[error("cabinet already exists")]
    AlreadyExists,
    /// Not registered.
    #[error("cabinet not found")]
    NotFound,
    /// No such door.
    #[error("cabinet has no door {0}")]
    UnknownDoor(crate::DoorNo),
    /// Not online (offline, pending init, faulty).
    #[error("cabinet is {0}")]
    NotAvailable(&'static str),
    /// The door is held by someone else.
    #[error("door is busy")]
    DoorBusy,
    /// No such lane on the door.
    #[error("door has no lane {0}")]
    UnknownLane(crate::LaneNo),
    /// A lane still holds items (empty it, or count it in a restock, first).
    #[error("lane {lane} still holds {stock} item(s)")]
    LaneNotEmpty {
        /// The lane.
        lane: crate::LaneNo,
        /// Its stock by the ledger.
        stock: i64,
    },
    /// A calibration needs the lane tared (zeroed, empty) first [M1].
    #[error("lane {0} must be tared (empty) before its standard weight")]
    TareFirst(crate::LaneNo),
    /// A lane of the door must be calibrated before the door sells [M1, B4].
    #[error("lane {0} must be calibrated before this door sells again")]
    LaneNeedsCalibration(crate::LaneNo),
    /// Too warm: locked out until an operator resets it [B8].
    #[error("the cabinet reported {temp_c} °C, above its limit of {max_c} °C: locked out until an operator resets it")]
    TemperatureLockout {
        /// The temperature that locked it.
        temp_c: f64,
        /// The limit.
        max_c: f64,
    },
    /// A reset of a lockout that is not there.
    #[error("the cabinet is not locked out")]
    NotLockedOut,
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
            Self::AlreadyExists
            | Self::NotAvailable(_)
            | Self::DoorBusy
            | Self::LaneNotEmpty { .. }
            | Self::TareFirst(_)
            | Self::LaneNeedsCalibration(_)
            | Self::TemperatureLockout { .. }
            | Self::NotLockedOut => RejectionKind::Conflict,
            Self::NotFound | Self::UnknownDoor(_) | Self::UnknownLane(_) => RejectionKind::NotFound,
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
            Self::UnknownLane(_) => "lane_not_found",
            Self::LaneNotEmpty { .. } => "lane_not_empty",
            Self::TareFirst(_) => "tare_first",
            Self::LaneNeedsCalibration(_) => "lane_needs_calibration",
            Self::TemperatureLockout { .. } => "temperature_lockout",
            Self::NotLockedOut => "not_locked_out",
            Self::Invalid { .. } => "invalid_field",
        }
    }
    fn field(&self) -> Option<String> {
        match self {
            Self::Invalid { field, .. } => Some(field.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
