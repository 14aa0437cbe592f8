//! The purchase saga [O3–O8]: reacts to order, payment and cabinet events with the
//! effects that move a purchase along, and arms the durable timers (authorization
//! timeout, door checks, stable-weight wait, deduction retry).
//!
//! Every effect has a key derived from the order and the step, so a redelivered event
//! schedules nothing new, and an effect that runs twice finds its work already done.

use serde::{Deserialize, Serialize};
use tare_domain::cabinet::{CabinetEvent, Holder};
use tare_domain::order::OrderEvent;
use tare_domain::payment::PaymentEvent;
use tare_domain::{AnyEvent, CabinetId, Cents, DoorNo, UnixMs};

use crate::ports::DoorCommandKind;

/// Timings of the purchase (all durations in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaConfig {
    /// How long the shopper has to authorize [O3] (default 60 s).
    pub auth_timeout_ms: i64,
    /// How long to wait for the door to open before each query [O4] (default 3 s).
    pub door_check_ms: i64,
    /// Wait after the close before looking for a stable weight [O5] (default 500 ms).
    pub stable_wait_ms: i64,
    /// How much longer to keep looking [O5] (default 2 s).
    pub stable_extra_ms: i64,
    /// How often to look again meanwhile (default 250 ms).
    pub stable_poll_ms: i64,
    /// Delay before retrying a failed deduction [O8] (default 1 h).
    pub charge_retry_ms: i64,
    /// Deduction attempts before the order is dead-lettered for an operator [O8].
    pub max_charge_attempts: u32,
    /// How long a door command stays valid on the device [B7] (default 10 s).
    pub command_ttl_ms: i64,
    /// How long to wait for a device's ack before resending a command [D7] (default 3 s).
    pub command_resend_ms: i64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            auth_timeout_ms: 60_000,
            door_check_ms: 3_000,
            stable_wait_ms: 500,
            stable_extra_ms: 2_000,
            stable_poll_ms: 250,
            charge_retry_ms: 3_600_000,
            max_charge_attempts: 24,
            command_ttl_ms: 10_000,
            command_resend_ms: 3_000,
        }
    }
}

/// One thing the saga wants done. Effects that carry only an order id load what else
/// they need when they run, so they act on the latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Deliver (or resend) a device command, or record that it expired unacknowledged
    /// [D7]. Attempt 1 is due at issue; each delivery arms the next.
    DeliverCommand {
        /// Command id.
        cmd_id: String,
        /// Delivery attempt.
        attempt: u32,
    },
}

impl Effect {
    /// What this effect is serialized on: effects of one order (or one device command)
    /// run one at a time, in the order their causes were committed.
    pub fn serial_key(&self) -> &str {
        match self {
            Self::DeliverCommand { cmd_id, .. } => cmd_id,
            Self::OpenPayment { order_id }
            | Self::CancelPayment { order_id, .. }
            | Self::AuthorizeOrder { order_id }
            | Self::ExpireAuthorization { order_id }
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
            | Self::EndShopperOrder { order_id, .. } => order_id,
        }
    }
}

/// An effect with its idempotency key and due time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    /// Unique per effect instance; scheduling the same key twice keeps the first.
    pub key: String,
    /// When to run it (Unix ms).
    pub due_at: UnixMs,
    /// What to do.
    pub effect: Effect,
}

fn now(key: String, at: UnixMs, effect: Effect) -> Scheduled {
    Scheduled { key, due_at: at, effect }
}

/// The purchase saga's decision for one event of aggregate `aggregate_id`.
pub fn decide(aggregate_id: &str, event: &AnyEvent, cfg: &SagaConfig) -> Vec<Scheduled> {
    let id = aggregate_id.to_string();
    let k = |step: &str| format!("order:{aggregate_id}:{step}");
    match event {
        AnyEvent::Order(e) => match e {
            OrderEvent::OrderCreated { auth_deadline, at, .. } => vec![
                now(k("open-payment"), *at, Effect::OpenPayment { order_id: id.clone() }),
                now(k("auth-timeout"), *auth_deadline, Effect::ExpireAuthorization { order_id: id }),
            ],
            OrderEvent::DoorOpenRequested { cmd_id, at } => door_command(cfg, &id, cmd_id, DoorCommandKind::OpenDoor, 1, *at),
            OrderEvent::DoorQueryRequested { attempt, cmd_id, at } => {
                door_command(cfg, &id, cmd_id, DoorCommandKind::QueryDoor, attempt + 1, *at)
            }
            OrderEvent::OrderDoorClosed { at, .. } => vec![Scheduled {
                key: k("settle-weights"),
                due_at: at + cfg.stable_wait_ms,
                effect: Effect::SettleWeights {
                    order_id: id,
                    poll_ms: cfg.stable_poll_ms,
                    give_up_at: at + cfg.stable_wait_ms + cfg.stable_extra_ms,
                },
            }],
            OrderEvent::WeightsSettled { coupon, at, .. } => {
                let mut out = vec![now(k("finish-door"), *at, Effect::FinishDoorSession { order_id: id.clone() })];
                if coupon.is_some() {
                    out.push(now(k("redeem-coupon"), *at, Effect::RedeemCoupon { order_id: id }));
                }
                out
            }
            OrderEvent::ChargeRequested { attempt, at, .. } => vec![now(
                k(&format!("collect:{attempt}")),
                *at,
                Effect::Collect {
                    order_id: id,
                    attempt: *attempt,
                },
            )],
            OrderEvent::ChargeFailed {
                attempt,
                retry_at: Some(t),
                ..
            } => vec![Scheduled {
                key: k(&format!("retry-collect:{attempt}")),
                due_at: *t,
                effect: Effect::RetryCollection {
                    order_id: id,
                    after_attempt: *attempt,
                },
            }],
            OrderEvent::OrderPaid { at, .. } => vec![
                now(k("finish-door"), *at, Effect::FinishDoorSession { order_id: id.clone() }),
                now(
                    k("end-shopper-order"),
                    *at,
                    Effect::EndShopperOrder {
                        order_id: id,
                        outcome: "paid".into(),
                    },
                ),
            ],
            OrderEvent::OrderCancelled { reason, at } => end_without_charge(&id, "cancelled", reason, *at),
            OrderEvent::OrderMarkedAbnormal { at, .. } => end_without_charge(&id, "abnormal", "abnormal", *at),
            _ => vec![],
        },
        AnyEvent::Payment(e) => match e {
            PaymentEvent::PaymentAuthorized { at, .. } => {
                vec![now(k("authorize"), *at, Effect::AuthorizeOrder { order_id: id })]
            }
            PaymentEvent::LateAuthorizationReceived { at, .. } => vec![now(
                k("late-auth-cancel"),
                *at,
                Effect::CancelPayment {
                    order_id: id,
                    reason: "late_authorization".into(),
                },
            )],
            PaymentEvent::PaymentCollected {
                transaction_id,
                amount,
                at,
                ..
            } => vec![now(
                k("mark-paid"),
                *at,
                Effect::MarkOrderPaid {
                    order_id: id,
                    transaction_id: transaction_id.clone(),
                    amount: *amount,
                },
            )],
            PaymentEvent::CollectionFailed { attempt, reason, at } => vec![now(
                k(&format!("charge-failed:{attempt}")),
                *at,
                Effect::RecordChargeFailure {
                    order_id: id,
                    attempt: *attempt,
                    reason: reason.clone(),
                },
            )],
            _ => vec![],
        },
        AnyEvent::Cabinet(e) => match e {
            CabinetEvent::DoorOpened {
                door,
                holder: Some(Holder::Order { order_id, .. }),
                device_ts,
                at,
                ..
            } => {
                let cabinet = cabinet_id(aggregate_id);
                cabinet.map_or_else(Vec::new, |cabinet| {
                    vec![now(
                        format!("order:{order_id}:door-opened"),
                        *at,
                        Effect::RecordDoorOpened {
                            order_id: order_id.clone(),
                            cabinet,
                            door: *door,
                            device_ts: *device_ts,
                        },
                    )]
                })
            }
            CabinetEvent::DoorClosed {
                door,
                holder: Some(Holder::Order { order_id, .. }),
                device_ts,
                unexpected,
                at,
                ..
            } => {
                let cabinet = cabinet_id(aggregate_id);
                cabinet.map_or_else(Vec::new, |cabinet| {
                    vec![now(
                        format!("order:{order_id}:door-closed"),
                        *at,
                        Effect::RecordDoorClosed {
                            order_id: order_id.clone(),
                            cabinet,
                            door: *door,
                            device_ts: *device_ts,
                            unexpected: *unexpected,
                        },
                    )]
                })
            }
            _ => vec![],
        },
        AnyEvent::Command(e) => command_decisions(aggregate_id, e, cfg),
        _ => vec![],
    }
}

/// Device commands [D7]: deliver at issue; after each delivery, resend (same id, which
/// the device executes at most once and answers with its ack again) until an ack or the
/// expiry, when the effect records the command `unknown`.
fn command_decisions(cmd_id: &str, e: &tare_domain::command::CommandEvent, cfg: &SagaConfig) -> Vec<Scheduled> {
    use tare_domain::command::CommandEvent;
    let deliver = |attempt: u32, at: UnixMs| Scheduled {
        key: format!("command:{cmd_id}:deliver:{attempt}"),
        due_at: at,
        effect: Effect::DeliverCommand {
            cmd_id: cmd_id.to_string(),
            attempt,
        },
    };
    match e {
        CommandEvent::CommandIssued { at, .. } => vec![deliver(1, *at)],
        CommandEvent::CommandDelivered { attempt, at } => vec![deliver(attempt + 1, at + cfg.command_resend_ms)],
        CommandEvent::CommandAcknowledged { .. } | CommandEvent::CommandExpired { .. } => vec![],
    }
}

fn cabinet_id(s: &str) -> Option<CabinetId> {
    CabinetId::parse(s).ok()
}

fn door_command(cfg: &SagaConfig, order_id: &str, cmd_id: &str, kind: DoorCommandKind, next_check: u32, at: UnixMs) -> Vec<Scheduled> {
    vec![
        Scheduled {
            key: format!("order:{order_id}:cmd:{cmd_id}"),
            due_at: at,
            effect: Effect::SendDoorCommand {
                order_id: order_id.to_string(),
                kind,
                cmd_id: cmd_id.to_string(),
                expires_at: at + cfg.command_ttl_ms,
            },
        },
        Scheduled {
            key: format!("order:{order_id}:check-door:{next_check}"),
            due_at: at + cfg.door_check_ms,
            effect: Effect::CheckDoor {
                order_id: order_id.to_string(),
                attempt: next_check,
            },
        },
    ]
}

fn end_without_charge(id: &str, outcome: &str, reason: &str, at: UnixMs) -> Vec<Scheduled> {
    vec![
        now(
            format!("order:{id}:cancel-payment"),
            at,
            Effect::CancelPayment {
                order_id: id.to_string(),
                reason: reason.to_string(),
            },
        ),
        now(
            format!("order:{id}:finish-door"),
            at,
            Effect::FinishDoorSession { order_id: id.to_string() },
        ),
        now(
            format!("order:{id}:end-shopper-order"),
            at,
            Effect::EndShopperOrder {
                order_id: id.to_string(),
                outcome: outcome.to_string(),
            },
        ),
    ]
}

#[cfg(test)]
#[path = "order_saga_tests.rs"]
mod tests;
