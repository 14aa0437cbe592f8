//! The facts of an order, as the log keeps them forever (and auditors replay them).

use super::{Anomaly, HandSettlement, OrderLine};
use crate::cabinet::LanePlan;
use crate::coupon::CouponChoice;
use crate::weight::{LaneInference, StableReading};
use crate::{CabinetId, Cents, ConfirmMode, DoorNo, ProviderKind, UnixMs, EVENT_VERSION};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Facts about an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The order exists.
    OrderCreated {
        /// Id.
        order_id: String,
        /// Shopper.
        shopper_id: String,
        /// Cabinet.
        cabinet: CabinetId,
        /// Door.
        door: DoorNo,
        /// Provider.
        provider: ProviderKind,
        /// Mode.
        confirm_mode: ConfirmMode,
        /// Frozen planogram.
        lanes: Vec<LanePlan>,
        /// Its version.
        planogram_version: u32,
        /// Authorization deadline.
        auth_deadline: UnixMs,
        /// When.
        at: UnixMs,
    },
    /// Pre-authorized.
    OrderAuthorized {
        /// When.
        at: UnixMs,
    },
    /// The open-door command is to be sent.
    DoorOpenRequested {
        /// Command id.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// The door is to be queried.
    DoorQueryRequested {
        /// Which query (1..=5).
        attempt: u32,
        /// Command id.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// The door opened; the reading before it is the baseline of the charge.
    OrderDoorOpened {
        /// Device clock.
        device_ts: UnixMs,
        /// The baseline reading.
        before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The door stayed open past the limit: the purchase will not be charged without an
    /// operator [B8].
    OrderDoorLeftOpen {
        /// When.
        at: UnixMs,
    },
    /// The door closed.
    OrderDoorClosed {
        /// Device clock.
        device_ts: UnixMs,
        /// Whether unexpected.
        unexpected: bool,
        /// Baseline taken at the close when the open was never seen.
        fallback_before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The purchase was computed: the receipt and its evidence [B2].
    WeightsSettled {
        /// The stable reading after the close.
        after: StableReading,
        /// Per-lane inference.
        inference: Vec<LaneInference>,
        /// Charged lines.
        lines: Vec<OrderLine>,
        /// Sum of lines.
        subtotal: Cents,
        /// The coupon applied.
        coupon: Option<CouponChoice>,
        /// Total to charge.
        total: Cents,
        /// Anomalies found.
        anomalies: Vec<Anomaly>,
        /// When.
        at: UnixMs,
    },
    /// A deduction is to be made.
    ChargeRequested {
        /// Amount.
        amount: Cents,
        /// Attempt (1-based).
        attempt: u32,
        /// When.
        at: UnixMs,
    },
    /// A deduction failed.
    ChargeFailed {
        /// Attempt.
        attempt: u32,
        /// Reason.
        reason: String,
        /// Next try (`None`: dead-lettered for an operator) [O8].
        retry_at: Option<UnixMs>,
        /// When.
        at: UnixMs,
    },
    /// Paid.
    OrderPaid {
        /// Provider transaction.
        transaction_id: String,
        /// Amount.
        amount: Cents,
        /// When.
        at: UnixMs,
    },
    /// Cancelled, nothing charged.
    OrderCancelled {
        /// Why (`authorization_timeout`, `nothing_taken`, …).
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// Refunds of the order reached `refunded` in all [O9].
    OrderRefunded {
        /// Refunded so far (cumulative).
        refunded: Cents,
        /// When.
        at: UnixMs,
    },
    /// A dead-lettered charge was settled by hand [O8].
    ChargeSettledByHand {
        /// How.
        resolution: HandSettlement,
        /// Who.
        by: String,
        /// Why.
        note: String,
        /// When.
        at: UnixMs,
    },
    /// Needs an operator; nothing charged.
    OrderMarkedAbnormal {
        /// Why.
        anomalies: Vec<Anomaly>,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrderCreated { .. } => "OrderCreated",
            Self::OrderAuthorized { .. } => "OrderAuthorized",
            Self::DoorOpenRequested { .. } => "DoorOpenRequested",
            Self::DoorQueryRequested { .. } => "DoorQueryRequested",
            Self::OrderDoorOpened { .. } => "OrderDoorOpened",
            Self::OrderDoorLeftOpen { .. } => "OrderDoorLeftOpen",
            Self::OrderDoorClosed { .. } => "OrderDoorClosed",
            Self::WeightsSettled { .. } => "WeightsSettled",
            Self::ChargeRequested { .. } => "ChargeRequested",
            Self::ChargeFailed { .. } => "ChargeFailed",
            Self::OrderPaid { .. } => "OrderPaid",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderMarkedAbnormal { .. } => "OrderMarkedAbnormal",
            Self::OrderRefunded { .. } => "OrderRefunded",
            Self::ChargeSettledByHand { .. } => "ChargeSettledByHand",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}
