//! What can be asked of an order: by the shopper's scan (`Create`), by the provider
//! (authorization, payment), by the device (door open and close, weights) and by the
//! saga's timers. Commands that no longer apply are no-ops, never errors.

use super::HandSettlement;
use crate::cabinet::LanePlan;
use crate::coupon::{Coupon, CouponPolicy};
use crate::weight::StableReading;
use crate::{CabinetId, Cents, ConfirmMode, DoorNo, ProviderKind, UnixMs};
use serde::{Deserialize, Serialize};

/// Commands an order accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// Creates the order after the shopper's slot and the door were taken [O1, O2].
    Create {
        /// Order id.
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
        /// The door's lanes as planned now (prices and scales are frozen into the order).
        lanes: Vec<LanePlan>,
        /// Planogram version those lanes come from.
        planogram_version: u32,
        /// When authorization times out [O3].
        auth_deadline: UnixMs,
        /// When.
        at: UnixMs,
    },
    /// The provider pre-authorized the payment: send the door command [O4].
    MarkAuthorized {
        /// Door command id.
        open_cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// Timer: the authorization deadline passed [O3].
    ExpireAuthorization {
        /// When.
        at: UnixMs,
    },
    /// Timer: check whether the door has opened; query again or give up [O4].
    CheckDoor {
        /// Which check (1-based).
        attempt: u32,
        /// When.
        at: UnixMs,
    },
    /// Timer: the door is still open past the limit [B8]: the order will go to an
    /// operator instead of charging.
    FlagDoorLeftOpen {
        /// When.
        at: UnixMs,
    },
    /// The door opened.
    MarkDoorOpened {
        /// Device clock of the open.
        device_ts: UnixMs,
        /// The last stable reading before the open, if any.
        before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The door closed (possibly without an open seen) [O5, D8].
    MarkDoorClosed {
        /// Device clock of the close.
        device_ts: UnixMs,
        /// Whether the cabinet judged the close unexpected.
        unexpected: bool,
        /// A stable reading from before the close, used if the open was never seen.
        fallback_before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// A stable reading after the close arrived: compute the purchase [O6, O7].
    SettleWeights {
        /// The stable reading (taken no earlier than the close).
        after: StableReading,
        /// The shopper's unspent coupons.
        coupons: Vec<Coupon>,
        /// The operator's coupon policy.
        policy: CouponPolicy,
        /// When.
        at: UnixMs,
    },
    /// Timer: no stable reading came within the wait [O5].
    AbandonWeights {
        /// When.
        at: UnixMs,
    },
    /// The provider collected the money [O8].
    MarkPaid {
        /// Provider transaction id.
        transaction_id: String,
        /// Amount collected.
        amount: Cents,
        /// When.
        at: UnixMs,
    },
    /// A deduction failed; schedule the next try [O8].
    RecordChargeFailure {
        /// Provider's reason.
        reason: String,
        /// When to try again (`None`: give up, dead-letter).
        retry_at: Option<UnixMs>,
        /// When.
        at: UnixMs,
    },
    /// Timer: try the deduction again.
    RetryCharge {
        /// When.
        at: UnixMs,
    },
    /// The payment's refunds reached `refunded` in all [O9].
    RecordRefunds {
        /// Refunded so far (cumulative).
        refunded: Cents,
        /// When.
        at: UnixMs,
    },
    /// An operator settles a dead-lettered charge by hand [O8]: it was paid another way,
    /// or it is written off.
    SettleChargeByHand {
        /// How.
        resolution: HandSettlement,
        /// Who.
        by: String,
        /// Why, in their words.
        note: String,
        /// When.
        at: UnixMs,
    },
    /// Cancels an order that has not opened its door yet.
    Cancel {
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}
