//! The purchase saga's decision [O3–O8]: which effects each order, payment and cabinet
//! event calls for, each under a key derived from the order and the step, so a
//! redelivered event schedules nothing new.

use crate::effect::{Effect, Scheduled};
use crate::ports::DoorCommandKind;
use crate::SagaConfig;
use tare_domain::cabinet::{CabinetEvent, Holder};
use tare_domain::order::{HandSettlement, OrderEvent};
use tare_domain::payment::PaymentEvent;
use tare_domain::{AnyEvent, CabinetId, UnixMs};

/// The purchase saga's decision for one event of aggregate `aggregate_id` (an order, its
/// payment, or the cabinet whose door it holds).
pub fn decide(aggregate_id: &str, event: &AnyEvent, cfg: &SagaConfig) -> Vec<Scheduled> {
    match event {
        AnyEvent::Order(e) => order_event(aggregate_id, e, cfg),
        AnyEvent::Payment(e) => payment_event(aggregate_id, e),
        AnyEvent::Cabinet(e) => cabinet_event(aggregate_id, e),
        _ => vec![],
    }
}

/// The effects of one of order `aggregate_id`'s own events.
fn order_event(aggregate_id: &str, e: &OrderEvent, cfg: &SagaConfig) -> Vec<Scheduled> {
    let id = aggregate_id.to_string();
    let k = |step: &str| format!("order:{aggregate_id}:{step}");
    match e {
        OrderEvent::OrderCreated { auth_deadline, at, .. } => vec![
            Scheduled::at(k("open-payment"), *at, Effect::OpenPayment { order_id: id.clone() }),
            Scheduled::at(
                k("auth-check"),
                at + cfg.auth_check_ms,
                Effect::CheckAuthorization { order_id: id.clone() },
            ),
            Scheduled::at(k("auth-timeout"), *auth_deadline, Effect::ExpireAuthorization { order_id: id }),
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
            let mut out = vec![Scheduled::at(
                k("finish-door"),
                *at,
                Effect::FinishDoorSession { order_id: id.clone() },
            )];
            if coupon.is_some() {
                out.push(Scheduled::at(k("redeem-coupon"), *at, Effect::RedeemCoupon { order_id: id }));
            }
            out
        }
        OrderEvent::ChargeRequested { attempt, at, .. } => vec![Scheduled::at(
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
            Scheduled::at(k("finish-door"), *at, Effect::FinishDoorSession { order_id: id.clone() }),
            Scheduled::at(
                k("end-shopper-order"),
                *at,
                Effect::EndShopperOrder {
                    order_id: id,
                    outcome: "paid".into(),
                },
            ),
        ],
        OrderEvent::ChargeSettledByHand { resolution, by, at, .. } => {
            let (outcome, how) = match resolution {
                HandSettlement::PaidOutside { reference } => ("paid", format!("paid outside ({reference})")),
                HandSettlement::WrittenOff => ("written_off", "written off".to_string()),
            };
            vec![
                Scheduled::at(
                    k("abandon-payment"),
                    *at,
                    Effect::AbandonPayment {
                        order_id: id.clone(),
                        reason: format!("settled by hand by {by}: {how}"),
                    },
                ),
                Scheduled::at(
                    k("end-shopper-order"),
                    *at,
                    Effect::EndShopperOrder {
                        order_id: id,
                        outcome: outcome.into(),
                    },
                ),
            ]
        }
        OrderEvent::OrderCancelled { reason, at } => end_without_charge(&id, "cancelled", reason, *at),
        OrderEvent::OrderMarkedAbnormal { at, .. } => end_without_charge(&id, "abnormal", "abnormal", *at),
        _ => vec![],
    }
}

/// The effects of an event of the order's payment (same id as the order).
fn payment_event(aggregate_id: &str, e: &PaymentEvent) -> Vec<Scheduled> {
    let id = aggregate_id.to_string();
    let k = |step: &str| format!("order:{aggregate_id}:{step}");
    match e {
        PaymentEvent::PaymentAuthorized { at, .. } => {
            vec![Scheduled::at(k("authorize"), *at, Effect::AuthorizeOrder { order_id: id })]
        }
        PaymentEvent::LateAuthorizationReceived { at, .. } => vec![Scheduled::at(
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
        } => vec![Scheduled::at(
            k("mark-paid"),
            *at,
            Effect::MarkOrderPaid {
                order_id: id,
                transaction_id: transaction_id.clone(),
                amount: *amount,
            },
        )],
        PaymentEvent::RefundRequested {
            refund_id, at, dispute, ..
        } => {
            let mut out = vec![Scheduled::at(
                k(&format!("refund:{refund_id}")),
                *at,
                Effect::SendRefund {
                    order_id: id.clone(),
                    refund_id: refund_id.clone(),
                },
            )];
            if *dispute {
                out.push(Scheduled::at(k("dispute"), *at, Effect::RecordDispute { order_id: id }));
            }
            out
        }
        PaymentEvent::RefundSucceeded { refund_id, at, .. } => vec![Scheduled::at(
            k(&format!("refunded:{refund_id}")),
            *at,
            Effect::MarkOrderRefunded { order_id: id },
        )],
        PaymentEvent::CollectionFailed { attempt, reason, at } => vec![Scheduled::at(
            k(&format!("charge-failed:{attempt}")),
            *at,
            Effect::RecordChargeFailure {
                order_id: id,
                attempt: *attempt,
                reason: reason.clone(),
            },
        )],
        _ => vec![],
    }
}

/// The effects of a door event of cabinet `aggregate_id` while an order holds the door.
fn cabinet_event(aggregate_id: &str, e: &CabinetEvent) -> Vec<Scheduled> {
    match e {
        CabinetEvent::DoorOpened {
            door,
            holder: Some(Holder::Order { order_id, .. }),
            device_ts,
            stable_before,
            not_before,
            at,
            ..
        } => {
            let cabinet = cabinet_id(aggregate_id);
            cabinet.map_or_else(Vec::new, |cabinet| {
                vec![Scheduled::at(
                    format!("order:{order_id}:door-opened"),
                    *at,
                    Effect::RecordDoorOpened {
                        order_id: order_id.clone(),
                        cabinet,
                        door: *door,
                        device_ts: *device_ts,
                        before: stable_before.clone(),
                        not_before: *not_before,
                    },
                )]
            })
        }
        CabinetEvent::DoorClosed {
            door,
            holder: Some(Holder::Order { order_id, .. }),
            device_ts,
            unexpected,
            stable_before,
            not_before,
            at,
            ..
        } => {
            let cabinet = cabinet_id(aggregate_id);
            cabinet.map_or_else(Vec::new, |cabinet| {
                vec![Scheduled::at(
                    format!("order:{order_id}:door-closed"),
                    *at,
                    Effect::RecordDoorClosed {
                        order_id: order_id.clone(),
                        cabinet,
                        door: *door,
                        device_ts: *device_ts,
                        unexpected: *unexpected,
                        before: stable_before.clone(),
                        not_before: *not_before,
                    },
                )]
            })
        }
        _ => vec![],
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
        Scheduled::at(
            format!("order:{id}:cancel-payment"),
            at,
            Effect::CancelPayment {
                order_id: id.to_string(),
                reason: reason.to_string(),
            },
        ),
        Scheduled::at(
            format!("order:{id}:finish-door"),
            at,
            Effect::FinishDoorSession { order_id: id.to_string() },
        ),
        Scheduled::at(
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
#[path = "decide_tests.rs"]
mod tests;
