//! The order aggregate [O1–O8, B2]: one purchase from scan to payment, and the evidence
//! that explains its charge (the stable readings before and after, the planogram version
//! and tolerances, the per-lane inference and its confidence).
//!
//! The order decides; the order saga only reacts to its events with effects (provider
//! calls, device commands, timers). Timers come back as commands (`ExpireAuthorization`,
//! `CheckDoor`, …) and the order ignores those that no longer apply, which is what makes
//! a timer that fires twice, or late, harmless. What to charge is decided by
//! [`crate::settlement::settle`]; the rules the saga's effects apply (the authorization
//! limit, how a door session ends, when a failed charge is retried) are in [`rules`].
//!
//! - [`commands`]: what can be asked of an order; [`events`]: its facts;
//! - [`aggregate`]: the state and the decisions; [`rules`]: pure rules around it.

mod aggregate;
mod commands;
mod events;
pub mod rules;

pub use aggregate::Order;
pub use commands::OrderCommand;
pub use events::OrderEvent;

use crate::{Cents, DomainError, LaneNo, RejectionKind, Sku};
use serde::{Deserialize, Serialize};

/// How many times the door is queried after a missing or negative open ack [O4].
pub const MAX_DOOR_QUERIES: u32 = 5;

/// The order's life (API: `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Waiting for the provider's pre-authorization.
    #[default]
    Authorizing,
    /// Authorized (transient: the door command follows in the same commit).
    Authorized,
    /// Door command sent, waiting for the door to open.
    Opening,
    /// Door open, shopper choosing.
    Open,
    /// Door closed, waiting for a stable weight.
    Settling,
    /// Deducting through the provider.
    Charging,
    /// Paid.
    Paid,
    /// Cancelled before anything was charged.
    Cancelled,
    /// Needs an operator (no charge made).
    Abnormal,
    /// Fully refunded.
    Refunded,
    /// Partly refunded.
    PartiallyRefunded,
}

impl OrderState {
    /// The state's name on the wire and in the log (`authorizing`, `paid`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorizing => "authorizing",
            Self::Authorized => "authorized",
            Self::Opening => "opening",
            Self::Open => "open",
            Self::Settling => "settling",
            Self::Charging => "charging",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Abnormal => "abnormal",
            Self::Refunded => "refunded",
            Self::PartiallyRefunded => "partially_refunded",
        }
    }

    /// Whether an order in this state still needs its door [O2]: until it is charging (the
    /// weighing is over) or ended, nobody else may take the door.
    pub fn holds_door(self) -> bool {
        !(self.is_terminal() || self == Self::Charging)
    }

    /// Whether the order has reached an end state (nothing more happens by itself).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Paid | Self::Cancelled | Self::Abnormal | Self::Refunded | Self::PartiallyRefunded
        )
    }
}

/// Something an operator should look at [M3].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Anomaly {
    /// The door closed without an open being seen first [D8].
    UnexpectedClose,
    /// A lane got heavier: an item put back in the wrong lane [O6].
    LaneHeavier {
        /// The lane.
        lane: LaneNo,
        /// Items more than before.
        items: i64,
    },
    /// A lane's residual exceeded its tolerance: the count is uncertain [B3].
    LowConfidence {
        /// The lane.
        lane: LaneNo,
        /// The confidence (0..1).
        confidence: f64,
    },
    /// The door never opened after the command and five queries [O4].
    DoorNeverOpened,
    /// No stable weight arrived after the close within the wait [O5].
    NoStableWeight,
    /// No stable weight was known from before the door opened.
    NoWeightBefore,
    /// The door stayed open past the limit: anyone could have reached in, so what the
    /// weights show is not charged to the shopper without an operator [B8].
    DoorLeftOpen,
}

impl Anomaly {
    /// Anomalies that stop the charge (the order goes to an operator instead) [B3].
    pub fn blocks_charge(&self) -> bool {
        !matches!(self, Self::LaneHeavier { .. })
    }

    /// Its code, as serialized (`no_stable_weight`, `lane_heavier`, …): the kind of the
    /// anomaly it opens in the queue.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnexpectedClose => "unexpected_close",
            Self::LaneHeavier { .. } => "lane_heavier",
            Self::LowConfidence { .. } => "low_confidence",
            Self::DoorNeverOpened => "door_never_opened",
            Self::NoStableWeight => "no_stable_weight",
            Self::NoWeightBefore => "no_weight_before",
            Self::DoorLeftOpen => "door_left_open",
        }
    }

    /// The lane it is about, if one.
    pub fn lane(&self) -> Option<LaneNo> {
        match self {
            Self::LaneHeavier { lane, .. } | Self::LowConfidence { lane, .. } => Some(*lane),
            _ => None,
        }
    }
}

/// How an operator settled a charge that kept failing [O8].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandSettlement {
    /// The shopper paid another way (cash, another channel); the order is paid.
    PaidOutside {
        /// The outside payment's reference (a receipt number).
        reference: String,
    },
    /// The money is given up; the order ends with nothing charged.
    WrittenOff,
}

/// A charged line of the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The lane it came from.
    pub lane: LaneNo,
    /// Product.
    pub sku: Sku,
    /// Product name.
    pub name: String,
    /// Units.
    pub qty: u32,
    /// Unit price.
    pub unit_price: Cents,
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Already created.
    #[error("order already exists")]
    AlreadyExists,
    /// Unknown order.
    #[error("order not found")]
    NotFound,
    /// The command does not fit the order's state.
    #[error("order is {0:?}")]
    WrongState(OrderState),
    /// A post-close weight taken before the close was offered [O5].
    #[error("the reading predates the door close")]
    StaleWeight,
    /// The provider collected an amount other than the one charged.
    #[error("collected {got} but charged {want}")]
    AmountMismatch {
        /// Charged.
        want: i64,
        /// Reported.
        got: i64,
    },
}

impl DomainError for OrderError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::AlreadyExists | Self::WrongState(_) => RejectionKind::Conflict,
            Self::NotFound => RejectionKind::NotFound,
            Self::AmountMismatch { .. } | Self::StaleWeight => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::StaleWeight => "stale_weight",
            Self::AlreadyExists => "order_exists",
            Self::NotFound => "order_not_found",
            Self::WrongState(_) => "order_state",
            Self::AmountMismatch { .. } => "amount_mismatch",
        }
    }
}

#[cfg(test)]
mod tests;
