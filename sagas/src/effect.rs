//! The unit of work of every saga: an [`Effect`] scheduled under a key at a due time,
//! stored with the saga's checkpoint, run by the platform's executor, which records its
//! [`EffectOutcome`].

use crate::ports::{CommandError, DoorCommandKind, ProviderError};
use serde::{Deserialize, Serialize};
use tare_domain::weight::StableReading;
use tare_domain::{CabinetId, Cents, DoorNo, UnixMs};

/// One thing the saga wants done. Effects that carry only an order id load what else
/// they need when they run, so they act on the latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Create the provider authorization and open the payment.
    OpenPayment {
        /// Order.
        order_id: String,
    },
    /// Cancel the provider order and the payment (no charge).
    CancelPayment {
        /// Order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// Order: authorized → send the door command.
    AuthorizeOrder {
        /// Order.
        order_id: String,
    },
    /// Timer: the authorization deadline.
    ExpireAuthorization {
        /// Order.
        order_id: String,
    },
    /// Timer, while the shopper has not confirmed: ask the provider whether the
    /// authorization was given (its notification may be late or lost).
    CheckAuthorization {
        /// Order.
        order_id: String,
    },
    /// Send a door command to the order's cabinet door.
    SendDoorCommand {
        /// Order (its cabinet and door are read when the effect runs).
        order_id: String,
        /// Open or query.
        kind: DoorCommandKind,
        /// Command id.
        cmd_id: String,
        /// Device must ignore it after this.
        expires_at: UnixMs,
    },
    /// Timer: has the door opened?
    CheckDoor {
        /// Order.
        order_id: String,
        /// Which check.
        attempt: u32,
    },
    /// The door of an order opened: record it with the reading before.
    RecordDoorOpened {
        /// Order.
        order_id: String,
        /// Cabinet.
        cabinet: CabinetId,
        /// Door.
        door: DoorNo,
        /// Device clock of the open.
        device_ts: UnixMs,
        /// The baseline the node holding the device had (see
        /// `CabinetEvent::DoorOpened`); absent in jobs made before it was carried.
        #[serde(default)]
        before: Option<StableReading>,
        /// The device time of the door's previous close: no baseline may be older (see
        /// `StableReading::fresh`); absent in jobs made before it was carried.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<UnixMs>,
    },
    /// The door of an order closed.
    RecordDoorClosed {
        /// Order.
        order_id: String,
        /// Cabinet.
        cabinet: CabinetId,
        /// Door.
        door: DoorNo,
        /// Device clock of the close.
        device_ts: UnixMs,
        /// Whether the cabinet judged it unexpected.
        unexpected: bool,
        /// The last stable reading before the close on the node holding the device.
        #[serde(default)]
        before: Option<StableReading>,
        /// The device time of the door's previous close: no baseline may be older (see
        /// `StableReading::fresh`); absent in jobs made before it was carried.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<UnixMs>,
    },
    /// Timer: look for a stable post-close weight; re-arms itself until `give_up_at`.
    SettleWeights {
        /// Order.
        order_id: String,
        /// Look again every this many ms.
        poll_ms: i64,
        /// Then give up (abnormal).
        give_up_at: UnixMs,
    },
    /// Record the sold counts on the cabinet and release the door (or just release).
    FinishDoorSession {
        /// Order.
        order_id: String,
    },
    /// Spend the coupon the order used.
    RedeemCoupon {
        /// Order.
        order_id: String,
    },
    /// Deduct through the provider.
    Collect {
        /// Order.
        order_id: String,
        /// Attempt.
        attempt: u32,
    },
    /// Timer: query the provider, then retry the deduction if still unpaid.
    RetryCollection {
        /// Order.
        order_id: String,
        /// The attempt that failed.
        after_attempt: u32,
    },
    /// The provider collected: mark the order paid.
    MarkOrderPaid {
        /// Order.
        order_id: String,
        /// Transaction.
        transaction_id: String,
        /// Amount.
        amount: Cents,
    },
    /// The provider declined: record it on the order (which schedules the retry).
    RecordChargeFailure {
        /// Order.
        order_id: String,
        /// Attempt.
        attempt: u32,
        /// Reason.
        reason: String,
    },
    /// Free the shopper's open-order slot.
    EndShopperOrder {
        /// Order.
        order_id: String,
        /// How it ended.
        outcome: String,
    },
    /// Ask the provider for a refund the payment recorded, and record its outcome [O9].
    SendRefund {
        /// Order.
        order_id: String,
        /// Our refund id (the provider's idempotency key).
        refund_id: String,
    },
    /// A refund answered a shopper's dispute: count it against the shopper [B8].
    RecordDispute {
        /// Order.
        order_id: String,
    },
    /// The payment's refunds grew: the order records its refunded total.
    MarkOrderRefunded {
        /// Order.
        order_id: String,
    },
    /// A charge was settled by hand: close the provider order (no more automatic
    /// deductions) and the payment [O8].
    AbandonPayment {
        /// Order.
        order_id: String,
        /// Why (who settled it, how).
        reason: String,
    },
    /// Deliver (or resend) a device command, or record that it expired unacknowledged
    /// [D7]. Attempt 1 is due at issue; each delivery arms the next.
    DeliverCommand {
        /// Command id.
        cmd_id: String,
        /// Delivery attempt.
        attempt: u32,
    },
    /// Timer: the nightly reconciliation of every provider's bill of local `date` [R3];
    /// run by the platform (it reads views and records the result), which arms the next
    /// night's when it is done.
    ReconcileBills {
        /// The provider's local date reconciled.
        date: String,
    },
    /// Open an anomaly in the queue [M3] (with its order's cabinet and door, read when
    /// the effect runs).
    RaiseAnomaly {
        /// The anomaly's stable id.
        anomaly_id: String,
        /// What was found.
        facts: tare_domain::anomaly::AnomalyFacts,
    },
    /// Timer: a purchase's door still open after the limit raises an anomaly [B7].
    CheckDoorLeftOpen {
        /// Order.
        order_id: String,
    },
    /// Tell an operator [alerts].
    SendAlert {
        /// The alert.
        alert: crate::alerts::Alert,
    },
    /// A product's price or name changed: send its label to every lane holding it [C2].
    PushPriceLabels {
        /// The product.
        sku: String,
        /// The label version to show.
        version: u32,
    },
    /// Issue a campaign's commands to one of its cabinets [M5].
    IssueCampaignCommands {
        /// The campaign.
        campaign_id: String,
        /// The cabinet.
        cabinet: tare_domain::CabinetId,
    },
    /// A campaign's command reached a final state: record it on the campaign [M5].
    RecordCampaignOutcome {
        /// The campaign.
        campaign_id: String,
        /// Command id.
        cmd_id: String,
    },
    /// A device command that held its door ended: free the door [O2].
    FreeCommandDoor {
        /// Command id.
        cmd_id: String,
        /// The door.
        door: DoorNo,
    },
    /// Take the door for a restock session and send the door command [O10].
    OpenRestockDoor {
        /// The session.
        restock_id: String,
    },
    /// Timer: a restock whose door has not opened by now fails.
    ExpireRestockOpening {
        /// The session.
        restock_id: String,
    },
    /// The door of a restock session opened or closed: record it with the reading
    /// before.
    RecordRestockDoor {
        /// The session.
        restock_id: String,
        /// Cabinet.
        cabinet: CabinetId,
        /// Door.
        door: DoorNo,
        /// Device clock of the open or close.
        device_ts: UnixMs,
        /// A close (else an open).
        closed: bool,
        /// The reading before, from the node holding the device (see
        /// `CabinetEvent::DoorOpened`); absent in jobs made before it was carried.
        #[serde(default)]
        before: Option<StableReading>,
        /// The device time of the door's previous close: no baseline may be older (see
        /// `StableReading::fresh`); absent in jobs made before it was carried.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<UnixMs>,
    },
    /// Timer: count a closed restock from a stable reading; re-arms until `give_up_at`.
    CountRestock {
        /// The session.
        restock_id: String,
        /// Look again every this many ms.
        poll_ms: i64,
        /// Then fail.
        give_up_at: UnixMs,
    },
    /// Book a restock's counts on the cabinet and free the door (or just free it).
    FinishRestock {
        /// The session.
        restock_id: String,
    },
}

impl Effect {
    /// What this effect is serialized on: effects of one order (or one device command)
    /// run one at a time, in the order their causes were committed.
    pub fn serial_key(&self) -> &str {
        match self {
            Self::DeliverCommand { cmd_id, .. } | Self::FreeCommandDoor { cmd_id, .. } => cmd_id,
            Self::ReconcileBills { date } => date,
            Self::RaiseAnomaly { anomaly_id, .. } => anomaly_id,
            Self::PushPriceLabels { sku, .. } => sku,
            Self::IssueCampaignCommands { campaign_id, .. } => campaign_id,
            Self::RecordCampaignOutcome { campaign_id, .. } => campaign_id,
            Self::CheckDoorLeftOpen { order_id } => order_id,
            Self::SendAlert { alert } => &alert.alert_id,
            Self::OpenRestockDoor { restock_id }
            | Self::ExpireRestockOpening { restock_id }
            | Self::RecordRestockDoor { restock_id, .. }
            | Self::CountRestock { restock_id, .. }
            | Self::FinishRestock { restock_id } => restock_id,
            Self::OpenPayment { order_id }
            | Self::CancelPayment { order_id, .. }
            | Self::AuthorizeOrder { order_id }
            | Self::ExpireAuthorization { order_id }
            | Self::CheckAuthorization { order_id }
            | Self::SendDoorCommand { order_id, .. }
            | Self::CheckDoor { order_id, .. }
            | Self::RecordDoorOpened { order_id, .. }
            | Self::RecordDoorClosed { order_id, .. }
            | Self::SettleWeights { order_id, .. }
            | Self::FinishDoorSession { order_id }
            | Self::RedeemCoupon { order_id }
            | Self::Collect { order_id, .. }
            | Self::RetryCollection { order_id, .. }
            | Self::MarkOrderPaid { order_id, .. }
            | Self::RecordChargeFailure { order_id, .. }
            | Self::EndShopperOrder { order_id, .. }
            | Self::SendRefund { order_id, .. }
            | Self::MarkOrderRefunded { order_id }
            | Self::RecordDispute { order_id }
            | Self::AbandonPayment { order_id, .. } => order_id,
        }
    }
}

/// Of two baselines for one instant — the one the event carried from the node holding
/// the device, and this node's — the later reading (a node that missed readings, or
/// restarted, has only older ones; a reading that arrived after the event is only here).
/// Neither may be older than the door's previous close (`not_before`).
pub(crate) fn newest_reading(
    carried: Option<StableReading>,
    local: Option<StableReading>,
    not_before: Option<UnixMs>,
) -> Option<StableReading> {
    let newest = match (carried, local) {
        (Some(c), Some(l)) => Some(if l.sample().device_ts > c.sample().device_ts { l } else { c }),
        (c, l) => c.or(l),
    };
    StableReading::fresh(newest, not_before)
}

/// An effect with its idempotency key and due time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    /// Unique per effect instance; scheduling the same key twice keeps the first.
    pub key: String,
    /// When to run it (Unix ms).
    pub due_at: UnixMs,
    /// What to do.
    pub effect: Effect,
}

impl Scheduled {
    /// An effect due at `at`.
    pub fn at(key: String, at: UnixMs, effect: Effect) -> Self {
        Self { key, due_at: at, effect }
    }
}

/// What running an effect concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectOutcome {
    /// Finished.
    Done,
    /// Run again at this time (a re-arming timer, or a result still pending).
    Defer(UnixMs),
    /// Failed transiently: retry with backoff.
    Retry(String),
    /// Refused by the other side (a provider's definite "no"): retried with backoff, since
    /// a risk hold or a balance may clear, but at most [`MAX_REFUSALS`] times, then
    /// buried — never retried without end.
    Refused(String),
    /// Failed for good: park as a dead letter for an operator.
    Bury(String),
}

/// How many refusals in a row an effect is given before it is buried (with the
/// executor's backoff of 0.25 s doubling to 60 s, about six minutes in all).
pub const MAX_REFUSALS: i64 = 12;

/// Why an effect could not finish: a transient failure is retried with backoff, a
/// permanent one is buried as a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EffectError {
    /// The store, the provider or the network failed; the effect may succeed later.
    #[error("{0}")]
    Transient(String),
    /// The effect cannot succeed (an aggregate refused it, a provider is missing).
    #[error("{0}")]
    Permanent(String),
    /// The provider refused: retried a bounded number of times, then buried.
    #[error("{0}")]
    Refused(String),
}

impl<E: std::error::Error> From<CommandError<E>> for EffectError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(e) => Self::Permanent(e.to_string()),
            other => Self::Transient(other.to_string()),
        }
    }
}

/// A provider's failure is retried: an unknown outcome is resolved by asking again, and
/// a refusal mid-purchase is the provider's to lift (the order's own rules decide when to
/// stop).
impl From<ProviderError> for EffectError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Unavailable(_) => Self::Transient(e.to_string()),
            ProviderError::Refused { .. } => Self::Refused(e.to_string()),
        }
    }
}

impl From<Result<EffectOutcome, EffectError>> for EffectOutcome {
    fn from(r: Result<EffectOutcome, EffectError>) -> Self {
        match r {
            Ok(o) => o,
            Err(EffectError::Transient(e)) => Self::Retry(e),
            Err(EffectError::Permanent(e)) => Self::Bury(e),
            Err(EffectError::Refused(e)) => Self::Refused(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_s_refusal_is_bounded_and_its_unavailability_is_retried() {
        let outcome = |e: ProviderError| EffectOutcome::from(Err(EffectError::from(e)));
        let refused = ProviderError::Refused {
            code: "RISK".into(),
            message: "declined".into(),
        };
        assert_eq!(outcome(refused), EffectOutcome::Refused("provider refused: RISK: declined".into()));
        assert_eq!(
            outcome(ProviderError::Unavailable("timeout".into())),
            EffectOutcome::Retry("provider unavailable: timeout".into())
        );
    }
}
