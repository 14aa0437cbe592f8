//! Tests of the purchase saga decisions.

use super::*;
// Every saga's decision: the purchase and the device commands it issues.
use crate::decide;
use crate::effect::Effect;
use crate::ports::DoorCommandKind;
use std::collections::HashSet;
use tare_domain::cabinet::{CabinetEvent, Holder, LanePlan};
use tare_domain::coupon::{Coupon, CouponChoice, CouponKind};
use tare_domain::order::{Anomaly, OrderEvent, OrderLine};
use tare_domain::payment::PaymentEvent;
use tare_domain::product::ProductEvent;
use tare_domain::shopper::ShopperEvent;
use tare_domain::weight::{LaneGrams, StableReading, Tolerance, WeightSample};
use tare_domain::{AnyEvent, CabinetId, Cents, ConfirmMode, DoorNo, Grams, LaneNo, ProviderKind, Sku, UnixMs};

const ORDER: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const OTHER: &str = "0190a1b2-c3d4-7e5f-8a9b-ffffffffffff";
const CABINET: &str = "wc1.SN-001";
const AT: UnixMs = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

fn custom() -> SagaConfig {
    SagaConfig {
        auth_timeout_ms: 11_000,
        door_check_ms: 1_234,
        stable_wait_ms: 777,
        stable_extra_ms: 4_321,
        stable_poll_ms: 99,
        charge_retry_ms: 5_000,
        max_charge_attempts: 3,
        command_ttl_ms: 2_468,
        command_resend_ms: 1_111,
        refund_poll_ms: 2_222,
        auth_check_ms: 3_333,
        bills_at_minute: 600,
        door_open_limit_ms: 44_444,
        ..SagaConfig::default()
    }
}

fn lane() -> LanePlan {
    LanePlan {
        lane: LaneNo::of(1),
        sku: Sku::of("cola"),
        name: "Cola".into(),
        unit_grams: Grams::of(330.0),
        price: Cents::new(300),
        capacity: 10,
        restock_threshold: 2,
        tolerance: Tolerance::default(),
        price_version: 1,
        calibration_version: 0,
    }
}

fn reading(device_ts: UnixMs) -> StableReading {
    StableReading::from_sample(WeightSample {
        msg_id: format!("m-{device_ts}"),
        device_ts,
        received_at: device_ts + 5,
        stable: true,
        lanes: vec![LaneGrams {
            lane: LaneNo::of(1),
            grams: Grams::of(2_640.0),
        }],
    })
    .expect("a stable sample")
}

fn created(order_id: &str, at: UnixMs, auth_deadline: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::OrderCreated {
        order_id: order_id.into(),
        shopper_id: "shopper-1".into(),
        cabinet: CabinetId::parse(CABINET).unwrap(),
        door: DoorNo::of(2),
        provider: ProviderKind::Wechat,
        confirm_mode: ConfirmMode::Once,
        lanes: vec![lane()],
        planogram_version: 3,
        auth_deadline,
        at,
    })
}

fn open_requested(cmd_id: &str, at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::DoorOpenRequested { cmd_id: cmd_id.into(), at })
}

fn query_requested(attempt: u32, cmd_id: &str, at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::DoorQueryRequested {
        attempt,
        cmd_id: cmd_id.into(),
        at,
    })
}

fn door_closed(at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::OrderDoorClosed {
        device_ts: at - 3,
        unexpected: false,
        fallback_before: None,
        at,
    })
}

fn settled(coupon: Option<CouponChoice>, at: UnixMs) -> AnyEvent {
    let discount = coupon.as_ref().map_or(0, |c| c.discount.get());
    AnyEvent::Order(OrderEvent::WeightsSettled {
        after: reading(at - 10),
        inference: vec![],
        lines: vec![OrderLine {
            lane: LaneNo::of(1),
            sku: Sku::of("cola"),
            name: "Cola".into(),
            qty: 2,
            unit_price: Cents::new(300),
        }],
        subtotal: Cents::new(600),
        coupon,
        total: Cents::new(600 - discount),
        anomalies: vec![],
        at,
    })
}

fn charge_requested(attempt: u32, at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::ChargeRequested {
        amount: Cents::new(600),
        attempt,
        at,
    })
}

fn charge_failed(attempt: u32, retry_at: Option<UnixMs>, at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::ChargeFailed {
        attempt,
        reason: "NOT_ENOUGH".into(),
        retry_at,
        at,
    })
}

fn paid(at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::OrderPaid {
        transaction_id: "tx-9".into(),
        amount: Cents::new(600),
        at,
    })
}

fn cancelled(reason: &str, at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::OrderCancelled { reason: reason.into(), at })
}

fn abnormal(at: UnixMs) -> AnyEvent {
    AnyEvent::Order(OrderEvent::OrderMarkedAbnormal {
        anomalies: vec![Anomaly::NoStableWeight],
        at,
    })
}

fn cab_opened(holder: Option<Holder>, device_ts: UnixMs, at: UnixMs) -> AnyEvent {
    AnyEvent::Cabinet(CabinetEvent::DoorOpened {
        stable_before: None,
        not_before: Some(device_ts - 60_000),
        door: DoorNo::of(2),
        holder,
        msg_id: "m-open".into(),
        seq: 41,
        device_ts,
        cmd_id: Some("cmd-1".into()),
        at,
    })
}

fn cab_closed(holder: Option<Holder>, unexpected: bool, device_ts: UnixMs, at: UnixMs) -> AnyEvent {
    AnyEvent::Cabinet(CabinetEvent::DoorClosed {
        stable_before: None,
        not_before: Some(device_ts - 60_000),
        door: DoorNo::of(2),
        holder,
        unexpected,
        msg_id: "m-close".into(),
        seq: 42,
        device_ts,
        at,
    })
}

fn order_holder(order_id: &str) -> Option<Holder> {
    Some(Holder::Order {
        order_id: order_id.into(),
        shopper_id: "shopper-1".into(),
    })
}

fn restock_holder() -> Option<Holder> {
    Some(Holder::Restock {
        session_id: "restock-1".into(),
    })
}

fn calibration_holder() -> Option<Holder> {
    Some(Holder::Calibration {
        calibration_id: "cal-1".into(),
    })
}

fn key(order_id: &str, step: &str) -> String {
    format!("order:{order_id}:{step}")
}

fn keys(out: &[Scheduled]) -> Vec<&str> {
    out.iter().map(|s| s.key.as_str()).collect()
}

/// One event of every kind the saga reacts to (with the aggregate it belongs to), for the
/// property tests.
fn every_reacting_event(order_id: &str) -> Vec<(String, AnyEvent)> {
    let o = |e: AnyEvent| (order_id.to_string(), e);
    let coupon = CouponChoice {
        coupon_id: "cp-1".into(),
        discount: Cents::new(100),
    };
    vec![
        o(created(order_id, AT, AT + 60_000)),
        o(open_requested(&format!("{order_id}-open"), AT + 1)),
        o(query_requested(1, &format!("{order_id}-q1"), AT + 2)),
        o(query_requested(5, &format!("{order_id}-q5"), AT + 3)),
        o(door_closed(AT + 4)),
        o(settled(Some(coupon), AT + 5)),
        o(charge_requested(1, AT + 6)),
        o(charge_failed(1, Some(AT + 3_600_000), AT + 7)),
        o(charge_requested(2, AT + 8)),
        o(paid(AT + 9)),
        o(cancelled("authorization_timeout", AT + 10)),
        o(abnormal(AT + 11)),
        o(AnyEvent::Payment(PaymentEvent::PaymentAuthorized {
            notification_id: Some("n-1".into()),
            at: AT + 12,
        })),
        o(AnyEvent::Payment(PaymentEvent::LateAuthorizationReceived {
            notification_id: None,
            at: AT + 13,
        })),
        o(AnyEvent::Payment(PaymentEvent::PaymentCollected {
            transaction_id: "tx-9".into(),
            amount: Cents::new(500),
            notification_id: None,
            at: AT + 14,
        })),
        o(AnyEvent::Payment(PaymentEvent::CollectionFailed {
            attempt: 1,
            reason: "NOT_ENOUGH".into(),
            at: AT + 15,
        })),
        (CABINET.to_string(), cab_opened(order_holder(order_id), AT + 16, AT + 17)),
        (CABINET.to_string(), cab_closed(order_holder(order_id), false, AT + 18, AT + 19)),
    ]
}

fn decide_all(order_id: &str, cfg: &SagaConfig) -> Vec<Scheduled> {
    every_reacting_event(order_id)
        .iter()
        .flat_map(|(agg, e)| decide(agg, e, cfg))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------

#[test]
fn default_config_has_the_documented_timings() {
    let cfg = SagaConfig::default();
    assert_eq!(cfg.auth_timeout_ms, 60_000);
    assert_eq!(cfg.door_check_ms, 3_000);
    assert_eq!(cfg.stable_wait_ms, 500);
    assert_eq!(cfg.stable_extra_ms, 2_000);
    assert_eq!(cfg.stable_poll_ms, 250);
    assert_eq!(cfg.charge_retry_ms, 3_600_000);
    assert_eq!(cfg.max_charge_attempts, 24);
    assert_eq!(cfg.command_ttl_ms, 10_000);
    assert_eq!(cfg.auth_check_ms, 5_000);
}

// ---------------------------------------------------------------------------------------
// Order events
// ---------------------------------------------------------------------------------------

#[test]
fn order_created_opens_the_payment_now_and_arms_the_check_and_the_authorization_deadline() {
    let deadline = AT + 45_000;
    let out = decide(ORDER, &created(ORDER, AT, deadline), &SagaConfig::default());
    assert_eq!(
        out,
        vec![
            Scheduled {
                key: key(ORDER, "open-payment"),
                due_at: AT,
                effect: Effect::OpenPayment { order_id: ORDER.into() },
            },
            Scheduled {
                key: key(ORDER, "auth-check"),
                due_at: AT + 5_000,
                effect: Effect::CheckAuthorization { order_id: ORDER.into() },
            },
            Scheduled {
                key: key(ORDER, "auth-timeout"),
                due_at: deadline,
                effect: Effect::ExpireAuthorization { order_id: ORDER.into() },
            },
        ]
    );
}

#[test]
fn order_created_uses_the_event_deadline_not_the_configured_timeout() {
    // The deadline is frozen into the event; the saga must not recompute it.
    let deadline = AT + 7;
    let out = decide(ORDER, &created(ORDER, AT, deadline), &custom());
    assert_eq!(out[1].due_at, AT + custom().auth_check_ms, "the check comes from the config");
    assert_eq!(out[2].due_at, deadline);
    assert_ne!(out[2].due_at, AT + custom().auth_timeout_ms);
}

#[test]
fn door_open_requested_sends_open_door_and_arms_the_first_door_check() {
    let cfg = SagaConfig::default();
    let out = decide(ORDER, &open_requested("cmd-open-1", AT), &cfg);
    assert_eq!(
        out,
        vec![
            Scheduled {
                key: key(ORDER, "cmd:cmd-open-1"),
                due_at: AT,
                effect: Effect::SendDoorCommand {
                    order_id: ORDER.into(),
                    kind: DoorCommandKind::OpenDoor,
                    cmd_id: "cmd-open-1".into(),
                    expires_at: AT + 10_000,
                },
            },
            Scheduled {
                key: key(ORDER, "check-door:1"),
                due_at: AT + 3_000,
                effect: Effect::CheckDoor {
                    order_id: ORDER.into(),
                    attempt: 1
                },
            },
        ]
    );
}

#[test]
fn door_open_requested_timings_come_from_the_config() {
    let cfg = custom();
    let out = decide(ORDER, &open_requested("cmd-open-1", AT), &cfg);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].due_at, AT);
    assert!(matches!(
        &out[0].effect,
        Effect::SendDoorCommand { expires_at, kind: DoorCommandKind::OpenDoor, .. } if *expires_at == AT + cfg.command_ttl_ms
    ));
    assert_eq!(out[1].due_at, AT + cfg.door_check_ms);
    assert_eq!(
        out[1].effect,
        Effect::CheckDoor {
            order_id: ORDER.into(),
            attempt: 1
        }
    );
}

#[test]
fn door_query_requested_sends_query_door_and_arms_the_next_check() {
    let cfg = custom();
    let cmd = format!("{ORDER}-q2");
    let out = decide(ORDER, &query_requested(2, &cmd, AT), &cfg);
    assert_eq!(
        out,
        vec![
            Scheduled {
                key: key(ORDER, &format!("cmd:{cmd}")),
                due_at: AT,
                effect: Effect::SendDoorCommand {
                    order_id: ORDER.into(),
                    kind: DoorCommandKind::QueryDoor,
                    cmd_id: cmd.clone(),
                    expires_at: AT + cfg.command_ttl_ms,
                },
            },
            Scheduled {
                key: key(ORDER, "check-door:3"),
                due_at: AT + cfg.door_check_ms,
                effect: Effect::CheckDoor {
                    order_id: ORDER.into(),
                    attempt: 3
                },
            },
        ]
    );
}

#[test]
fn every_door_query_arms_a_distinct_check() {
    let cfg = SagaConfig::default();
    let mut all: Vec<Scheduled> = decide(ORDER, &open_requested("open", AT), &cfg);
    for attempt in 1..=5 {
        all.extend(decide(ORDER, &query_requested(attempt, &format!("{ORDER}-q{attempt}"), AT), &cfg));
    }
    let checks: Vec<u32> = all
        .iter()
        .filter_map(|s| match s.effect {
            Effect::CheckDoor { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(checks, vec![1, 2, 3, 4, 5, 6]);
    let unique: HashSet<&str> = keys(&all).into_iter().collect();
    assert_eq!(unique.len(), all.len(), "every command and check has its own key");
}

#[test]
fn order_door_closed_arms_the_stable_weight_wait() {
    let close = AT + 30_000;
    let out = decide(ORDER, &door_closed(close), &SagaConfig::default());
    assert_eq!(
        out,
        vec![Scheduled {
            key: key(ORDER, "settle-weights"),
            due_at: close + 500,
            effect: Effect::SettleWeights {
                order_id: ORDER.into(),
                poll_ms: 250,
                give_up_at: close + 500 + 2_000
            },
        }]
    );
}

#[test]
fn order_door_closed_timings_come_from_the_config() {
    let cfg = custom();
    let close = AT + 30_000;
    let out = decide(ORDER, &door_closed(close), &cfg);
    assert_eq!(
        out,
        vec![Scheduled {
            key: key(ORDER, "settle-weights"),
            due_at: close + cfg.stable_wait_ms,
            effect: Effect::SettleWeights {
                order_id: ORDER.into(),
                poll_ms: cfg.stable_poll_ms,
                give_up_at: close + cfg.stable_wait_ms + cfg.stable_extra_ms,
            },
        }]
    );
}

#[test]
fn weights_settled_without_coupon_only_finishes_the_door_session() {
    let out = decide(ORDER, &settled(None, AT), &SagaConfig::default());
    assert_eq!(
        out,
        vec![Scheduled {
            key: key(ORDER, "finish-door"),
            due_at: AT,
            effect: Effect::FinishDoorSession { order_id: ORDER.into() },
        }]
    );
}

#[test]
fn weights_settled_with_coupon_also_redeems_it() {
    let coupon = CouponChoice {
        coupon_id: "cp-1".into(),
        discount: Cents::new(100),
    };
    let out = decide(ORDER, &settled(Some(coupon), AT), &SagaConfig::default());
    assert_eq!(
        out,
        vec![
            Scheduled {
                key: key(ORDER, "finish-door"),
                due_at: AT,
                effect: Effect::FinishDoorSession { order_id: ORDER.into() },
            },
            Scheduled {
                key: key(ORDER, "redeem-coupon"),
                due_at: AT,
                effect: Effect::RedeemCoupon { order_id: ORDER.into() },
            },
        ]
    );
}

#[test]
fn charge_requested_collects_with_its_attempt() {
    for attempt in [1, 2, 24] {
        let out = decide(ORDER, &charge_requested(attempt, AT), &SagaConfig::default());
        assert_eq!(
            out,
            vec![Scheduled {
                key: key(ORDER, &format!("collect:{attempt}")),
                due_at: AT,
                effect: Effect::Collect {
                    order_id: ORDER.into(),
                    attempt
                },
            }]
        );
    }
}

#[test]
fn charge_failed_with_a_retry_time_arms_the_retry_then() {
    let retry_at = AT + 3_600_000;
    let out = decide(ORDER, &charge_failed(2, Some(retry_at), AT), &SagaConfig::default());
    assert_eq!(
        out,
        vec![Scheduled {
            key: key(ORDER, "retry-collect:2"),
            due_at: retry_at,
            effect: Effect::RetryCollection {
                order_id: ORDER.into(),
                after_attempt: 2
            },
        }]
    );
}

#[test]
fn charge_failed_retry_time_comes_from_the_event_not_the_config() {
    let retry_at = AT + 42;
    let out = decide(ORDER, &charge_failed(1, Some(retry_at), AT), &custom());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].due_at, retry_at);
}

#[test]
fn charge_failed_without_a_retry_schedules_nothing() {
    // For the purchase saga (the alert to an operator is `crate::alerts`').
    let out = super::decide(ORDER, &charge_failed(24, None, AT), &SagaConfig::default());
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn order_paid_finishes_the_door_and_frees_the_shopper() {
    let out = decide(ORDER, &paid(AT), &SagaConfig::default());
    assert_eq!(
        out,
        vec![
            Scheduled {
                key: key(ORDER, "finish-door"),
                due_at: AT,
                effect: Effect::FinishDoorSession { order_id: ORDER.into() },
            },
            Scheduled {
                key: key(ORDER, "end-shopper-order"),
                due_at: AT,
                effect: Effect::EndShopperOrder {
                    order_id: ORDER.into(),
                    outcome: "paid".into()
                },
            },
        ]
    );
}

#[test]
fn order_cancelled_cancels_the_payment_finishes_the_door_and_frees_the_shopper() {
    let out = decide(ORDER, &cancelled("authorization_timeout", AT), &SagaConfig::default());
    assert_eq!(
        out,
        vec![
            Scheduled {
                key: key(ORDER, "cancel-payment"),
                due_at: AT,
                effect: Effect::CancelPayment {
                    order_id: ORDER.into(),
                    reason: "authorization_timeout".into()
                },
            },
            Scheduled {
                key: key(ORDER, "finish-door"),
                due_at: AT,
                effect: Effect::FinishDoorSession { order_id: ORDER.into() },
            },
            Scheduled {
                key: key(ORDER, "end-shopper-order"),
                due_at: AT,
                effect: Effect::EndShopperOrder {
                    order_id: ORDER.into(),
                    outcome: "cancelled".into()
                },
            },
        ]
    );
}

#[test]
fn order_marked_abnormal_cancels_the_payment_finishes_the_door_and_frees_the_shopper() {
    // The purchase saga's part (the anomaly queue's is `crate::anomaly`'s).
    let out = super::decide(ORDER, &abnormal(AT), &SagaConfig::default());
    assert_eq!(
        out,
        vec![
            Scheduled {
                key: key(ORDER, "cancel-payment"),
                due_at: AT,
                effect: Effect::CancelPayment {
                    order_id: ORDER.into(),
                    reason: "abnormal".into()
                },
            },
            Scheduled {
                key: key(ORDER, "finish-door"),
                due_at: AT,
                effect: Effect::FinishDoorSession { order_id: ORDER.into() },
            },
            Scheduled {
                key: key(ORDER, "end-shopper-order"),
                due_at: AT,
                effect: Effect::EndShopperOrder {
                    order_id: ORDER.into(),
                    outcome: "abnormal".into()
                },
            },
        ]
    );
}

#[test]
fn order_events_that_need_nothing_schedule_nothing() {
    let cfg = SagaConfig::default();
    let events = [
        AnyEvent::Order(OrderEvent::OrderAuthorized { at: AT }),
        AnyEvent::Order(OrderEvent::OrderDoorOpened {
            device_ts: AT - 2,
            before: Some(reading(AT - 100)),
            at: AT,
        }),
    ];
    for e in &events {
        assert!(super::decide(ORDER, e, &cfg).is_empty(), "{e:?}");
    }
    // The open door is watched for being left open (by the anomaly saga).
    let watched = decide(ORDER, &events[1], &cfg);
    assert_eq!(watched.len(), 1);
    assert_eq!(
        (watched[0].key.as_str(), watched[0].due_at),
        (format!("order:{ORDER}:door-left-open").as_str(), AT + cfg.door_open_limit_ms)
    );
}

// ---------------------------------------------------------------------------------------
// Payment events
// ---------------------------------------------------------------------------------------

#[test]
fn payment_authorized_authorizes_the_order() {
    let e = AnyEvent::Payment(PaymentEvent::PaymentAuthorized {
        notification_id: Some("n-1".into()),
        at: AT,
    });
    assert_eq!(
        decide(ORDER, &e, &SagaConfig::default()),
        vec![Scheduled {
            key: key(ORDER, "authorize"),
            due_at: AT,
            effect: Effect::AuthorizeOrder { order_id: ORDER.into() },
        }]
    );
}

#[test]
fn late_authorization_cancels_the_payment_again() {
    let e = AnyEvent::Payment(PaymentEvent::LateAuthorizationReceived {
        notification_id: None,
        at: AT,
    });
    assert_eq!(
        decide(ORDER, &e, &SagaConfig::default()),
        vec![Scheduled {
            key: key(ORDER, "late-auth-cancel"),
            due_at: AT,
            effect: Effect::CancelPayment {
                order_id: ORDER.into(),
                reason: "late_authorization".into()
            },
        }]
    );
}

#[test]
fn late_authorization_cancel_is_not_deduplicated_with_the_order_cancel() {
    // The order's own cancel already ran when the late authorization arrives, so the
    // second cancel must get a key of its own or the runner would drop it.
    let cfg = SagaConfig::default();
    let late = decide(
        ORDER,
        &AnyEvent::Payment(PaymentEvent::LateAuthorizationReceived {
            notification_id: None,
            at: AT + 1,
        }),
        &cfg,
    );
    let first = decide(ORDER, &cancelled("authorization_timeout", AT), &cfg);
    assert!(first.iter().all(|s| s.key != late[0].key));
}

#[test]
fn payment_collected_marks_the_order_paid_with_the_same_transaction_and_amount() {
    let e = AnyEvent::Payment(PaymentEvent::PaymentCollected {
        transaction_id: "4200001234".into(),
        amount: Cents::new(1_234),
        notification_id: Some("n-2".into()),
        at: AT,
    });
    assert_eq!(
        decide(ORDER, &e, &SagaConfig::default()),
        vec![Scheduled {
            key: key(ORDER, "mark-paid"),
            due_at: AT,
            effect: Effect::MarkOrderPaid {
                order_id: ORDER.into(),
                transaction_id: "4200001234".into(),
                amount: Cents::new(1_234),
            },
        }]
    );
}

#[test]
fn collection_failed_records_the_charge_failure() {
    let e = AnyEvent::Payment(PaymentEvent::CollectionFailed {
        attempt: 3,
        reason: "NOT_ENOUGH".into(),
        at: AT,
    });
    assert_eq!(
        decide(ORDER, &e, &SagaConfig::default()),
        vec![Scheduled {
            key: key(ORDER, "charge-failed:3"),
            due_at: AT,
            effect: Effect::RecordChargeFailure {
                order_id: ORDER.into(),
                attempt: 3,
                reason: "NOT_ENOUGH".into()
            },
        }]
    );
}

#[test]
fn payment_events_that_need_nothing_schedule_nothing() {
    let cfg = SagaConfig::default();
    let events = [
        AnyEvent::Payment(PaymentEvent::PaymentOpened {
            order_id: ORDER.into(),
            provider: ProviderKind::Alipay,
            confirm_mode: ConfirmMode::EachTime,
            provider_order_ref: "ref-1".into(),
            confirm_url: Some("https://pay.example/confirm".into()),
            at: AT,
        }),
        AnyEvent::Payment(PaymentEvent::CollectionRequested {
            amount: Cents::new(600),
            attempt: 1,
            at: AT,
        }),
        AnyEvent::Payment(PaymentEvent::PaymentCancelled {
            reason: "abnormal".into(),
            at: AT,
        }),
    ];
    for e in &events {
        assert!(decide(ORDER, e, &cfg).is_empty(), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Cabinet events
// ---------------------------------------------------------------------------------------

#[test]
fn door_opened_held_by_an_order_records_the_open_on_that_order() {
    let out = decide(CABINET, &cab_opened(order_holder(ORDER), AT - 7, AT), &SagaConfig::default());
    assert_eq!(
        out,
        vec![Scheduled {
            key: key(ORDER, "door-opened"),
            due_at: AT,
            effect: Effect::RecordDoorOpened {
                before: None,
                order_id: ORDER.into(),
                cabinet: CabinetId::new("wc1", "SN-001").unwrap(),
                door: DoorNo::of(2),
                device_ts: AT - 7,
                not_before: Some(AT - 7 - 60_000),
            },
        }]
    );
}

#[test]
fn door_closed_held_by_an_order_records_the_close_on_that_order() {
    for unexpected in [false, true] {
        let out = decide(
            CABINET,
            &cab_closed(order_holder(ORDER), unexpected, AT - 9, AT),
            &SagaConfig::default(),
        );
        assert_eq!(
            out,
            vec![Scheduled {
                key: key(ORDER, "door-closed"),
                due_at: AT,
                effect: Effect::RecordDoorClosed {
                    before: None,
                    order_id: ORDER.into(),
                    cabinet: CabinetId::new("wc1", "SN-001").unwrap(),
                    door: DoorNo::of(2),
                    device_ts: AT - 9,
                    unexpected,
                    not_before: Some(AT - 9 - 60_000),
                },
            }]
        );
    }
}

#[test]
fn door_events_without_an_order_holder_schedule_nothing() {
    // The purchase saga's part (a restock's door is `crate::restock`'s).
    use super::decide;
    let cfg = SagaConfig::default();
    for holder in [None, restock_holder(), calibration_holder()] {
        let opened = cab_opened(holder.clone(), AT - 1, AT);
        let closed = cab_closed(holder.clone(), false, AT - 1, AT);
        let closed_unexpected = cab_closed(holder.clone(), true, AT - 1, AT);
        assert!(decide(CABINET, &opened, &cfg).is_empty(), "{holder:?}");
        assert!(decide(CABINET, &closed, &cfg).is_empty(), "{holder:?}");
        assert!(decide(CABINET, &closed_unexpected, &cfg).is_empty(), "{holder:?}");
    }
}

#[test]
fn door_events_of_an_unparsable_cabinet_id_schedule_nothing() {
    let cfg = SagaConfig::default();
    assert!(decide("no-dot", &cab_opened(order_holder(ORDER), AT - 1, AT), &cfg).is_empty());
    assert!(decide("no-dot", &cab_closed(order_holder(ORDER), false, AT - 1, AT), &cfg).is_empty());
}

#[test]
fn other_cabinet_events_schedule_nothing() {
    // For the purchase saga (alerts about them are `crate::alerts`').
    use super::decide;
    let cfg = SagaConfig::default();
    let events = [
        AnyEvent::Cabinet(CabinetEvent::DeviceDisconnected { at: AT }),
        AnyEvent::Cabinet(CabinetEvent::CabinetInitialized { at: AT }),
        AnyEvent::Cabinet(CabinetEvent::DoorAcquired {
            door: DoorNo::of(2),
            holder: Holder::Order {
                order_id: ORDER.into(),
                shopper_id: "shopper-1".into(),
            },
            at: AT,
        }),
        AnyEvent::Cabinet(CabinetEvent::DoorReleased {
            door: DoorNo::of(2),
            session_id: ORDER.into(),
            reason: "order_paid".into(),
            at: AT,
        }),
        AnyEvent::Cabinet(CabinetEvent::LateDoorEventRecorded {
            door: DoorNo::of(2),
            position: tare_domain::cabinet::DoorPosition::Open,
            msg_id: "m-late".into(),
            seq: 3,
            applied_seq: 4,
            holder: order_holder(ORDER),
            at: AT,
        }),
    ];
    for e in &events {
        assert!(decide(CABINET, e, &cfg).is_empty(), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Product and shopper events
// ---------------------------------------------------------------------------------------

#[test]
fn product_and_shopper_events_schedule_nothing() {
    // For the purchase saga (a price change is `crate::pricing`'s).
    use super::decide;
    let cfg = SagaConfig::default();
    let events = [
        AnyEvent::Product(ProductEvent::ProductRegistered {
            sku: Sku::of("cola"),
            name: "Cola".into(),
            unit_grams: Grams::of(330.0),
            price: Cents::new(300),
            at: AT,
        }),
        AnyEvent::Product(ProductEvent::ProductPriceChanged {
            from: Cents::new(300),
            to: Cents::new(350),
            version: 2,
            at: AT,
        }),
        AnyEvent::Shopper(ShopperEvent::ShopperCreated {
            shopper_id: "shopper-1".into(),
            phone: "+8613800000000".into(),
            phone_sealed: None,
            provider: ProviderKind::Wechat,
            confirm_mode: ConfirmMode::Once,
            token_sha256: "ab".repeat(32),
            at: AT,
        }),
        AnyEvent::Shopper(ShopperEvent::AccountOpened {
            balance: Cents::new(0),
            at: AT,
        }),
        AnyEvent::Shopper(ShopperEvent::OrderBegun {
            order_id: ORDER.into(),
            at: AT,
        }),
        AnyEvent::Shopper(ShopperEvent::OrderEnded {
            order_id: ORDER.into(),
            outcome: "paid".into(),
            at: AT,
        }),
        AnyEvent::Shopper(ShopperEvent::CouponGranted {
            coupon: Coupon {
                id: "cp-1".into(),
                kind: CouponKind::Cash {
                    value: Cents::new(100),
                    min_spend: Cents::new(0),
                },
                expires_at: None,
            },
            at: AT,
        }),
        AnyEvent::Shopper(ShopperEvent::CouponRedeemed {
            coupon_id: "cp-1".into(),
            order_id: ORDER.into(),
            at: AT,
        }),
    ];
    for e in &events {
        assert!(decide("shopper-1", e, &cfg).is_empty(), "{e:?}");
        assert!(decide(ORDER, e, &cfg).is_empty(), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties the runner relies on
// ---------------------------------------------------------------------------------------

#[test]
fn deciding_the_same_event_twice_gives_identical_schedules() {
    for cfg in [SagaConfig::default(), custom()] {
        for (agg, e) in every_reacting_event(ORDER) {
            let first = decide(&agg, &e, &cfg);
            let again = decide(&agg, &e, &cfg);
            assert!(!first.is_empty(), "{e:?}");
            assert_eq!(first, again, "{e:?}");
            assert_eq!(keys(&first), keys(&again), "{e:?}");
        }
    }
}

#[test]
fn every_key_names_its_order() {
    for s in decide_all(ORDER, &SagaConfig::default()) {
        let anomaly = format!("anomaly:order:{ORDER}");
        assert!(
            s.key.starts_with(&format!("order:{ORDER}:")) || s.key.starts_with(&anomaly),
            "{}",
            s.key
        );
    }
}

#[test]
fn keys_of_different_orders_never_collide() {
    let cfg = SagaConfig::default();
    let a: HashSet<String> = decide_all(ORDER, &cfg).into_iter().map(|s| s.key).collect();
    let b: HashSet<String> = decide_all(OTHER, &cfg).into_iter().map(|s| s.key).collect();
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len());
    assert!(a.is_disjoint(&b), "shared keys: {:?}", a.intersection(&b).collect::<Vec<_>>());
}

#[test]
fn keys_do_not_depend_on_timing_or_config() {
    // The key identifies the step, not when it runs: a redelivered event decided under a
    // changed config must still dedupe against the first scheduling.
    let a: Vec<String> = decide_all(ORDER, &SagaConfig::default()).into_iter().map(|s| s.key).collect();
    let b: Vec<String> = decide_all(ORDER, &custom()).into_iter().map(|s| s.key).collect();
    assert_eq!(a, b);
}

#[test]
fn finish_door_session_has_one_key_whichever_event_asks_for_it() {
    let cfg = SagaConfig::default();
    let finish_keys = |e: &AnyEvent| -> Vec<String> {
        decide(ORDER, e, &cfg)
            .into_iter()
            .filter(|s| matches!(s.effect, Effect::FinishDoorSession { .. }))
            .map(|s| s.key)
            .collect()
    };
    let from_settled = finish_keys(&settled(None, AT));
    let from_cancelled = finish_keys(&cancelled("nothing_taken", AT + 1));
    let from_abnormal = finish_keys(&abnormal(AT + 2));
    let from_paid = finish_keys(&paid(AT + 3));
    assert_eq!(from_settled, vec![key(ORDER, "finish-door")]);
    assert_eq!(from_cancelled, from_settled);
    assert_eq!(from_abnormal, from_settled);
    assert_eq!(from_paid, from_settled);
}

#[test]
fn end_shopper_order_and_cancel_payment_have_one_key_per_order() {
    let cfg = SagaConfig::default();
    let key_of = |e: &AnyEvent, want: fn(&Effect) -> bool| -> String {
        decide(ORDER, e, &cfg).into_iter().find(|s| want(&s.effect)).expect("effect").key
    };
    let is_end = |e: &Effect| matches!(e, Effect::EndShopperOrder { .. });
    let is_cancel = |e: &Effect| matches!(e, Effect::CancelPayment { .. });
    let end_paid = key_of(&paid(AT), is_end);
    assert_eq!(key_of(&cancelled("nothing_taken", AT), is_end), end_paid);
    assert_eq!(key_of(&abnormal(AT), is_end), end_paid);
    assert_eq!(key_of(&cancelled("nothing_taken", AT), is_cancel), key_of(&abnormal(AT), is_cancel));
}

#[test]
fn distinct_steps_of_one_order_have_distinct_keys() {
    // Only the steps meant to run once per order (finish the door, end the shopper's
    // order, cancel the payment) share a key across events; everything else is unique.
    let all = decide_all(ORDER, &SagaConfig::default());
    let mut seen: std::collections::HashMap<&str, &Effect> = std::collections::HashMap::new();
    for s in &all {
        if let Some(prev) = seen.insert(&s.key, &s.effect) {
            let same_step = std::mem::discriminant(prev) == std::mem::discriminant(&s.effect);
            assert!(same_step, "key {} used for {prev:?} and {:?}", s.key, s.effect);
            assert!(
                matches!(
                    s.effect,
                    Effect::FinishDoorSession { .. } | Effect::EndShopperOrder { .. } | Effect::CancelPayment { .. }
                ),
                "unexpected shared key {}",
                s.key
            );
        }
    }
}

#[test]
fn every_effect_round_trips_through_json() {
    let mut effects: Vec<Effect> = decide_all(ORDER, &custom()).into_iter().map(|s| s.effect).collect();
    effects.push(Effect::SendDoorCommand {
        order_id: ORDER.into(),
        kind: DoorCommandKind::QueryDoor,
        cmd_id: "q".into(),
        expires_at: AT,
    });
    // Make sure the list covers every variant.
    let variants: HashSet<String> = effects
        .iter()
        .map(|e| serde_json::to_value(e).unwrap()["effect"].as_str().unwrap().to_string())
        .collect();
    for name in [
        "open_payment",
        "cancel_payment",
        "authorize_order",
        "expire_authorization",
        "send_door_command",
        "check_door",
        "record_door_opened",
        "record_door_closed",
        "settle_weights",
        "finish_door_session",
        "redeem_coupon",
        "collect",
        "retry_collection",
        "mark_order_paid",
        "record_charge_failure",
        "end_shopper_order",
    ] {
        assert!(variants.contains(name), "no {name} effect decided");
    }
    for effect in &effects {
        let json = serde_json::to_string(effect).unwrap();
        let back: Effect = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, effect, "{json}");
    }
}

#[test]
fn scheduled_round_trips_through_json() {
    for s in decide_all(ORDER, &SagaConfig::default()) {
        let json = serde_json::to_value(&s).unwrap();
        let back: Scheduled = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }
}

#[test]
fn effect_json_has_a_stable_shape() {
    let json = serde_json::to_value(Effect::SendDoorCommand {
        order_id: ORDER.into(),
        kind: DoorCommandKind::OpenDoor,
        cmd_id: "c-1".into(),
        expires_at: AT,
    })
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "effect": "send_door_command",
            "order_id": ORDER,
            "kind": "open_door",
            "cmd_id": "c-1",
            "expires_at": AT,
        })
    );
    let json = serde_json::to_value(Effect::RecordDoorOpened {
        before: None,
        order_id: ORDER.into(),
        cabinet: CabinetId::parse(CABINET).unwrap(),
        door: DoorNo::of(2),
        device_ts: AT,
        not_before: None,
    })
    .unwrap();
    assert_eq!(json["cabinet"], CABINET);
    assert_eq!(json["door"], 2);
    let json = serde_json::to_value(Effect::MarkOrderPaid {
        order_id: ORDER.into(),
        transaction_id: "t".into(),
        amount: Cents::new(5),
    })
    .unwrap();
    assert_eq!(json["amount"], 5);
}

// ---------------------------------------------------------------------------------------
// Device commands [D7]
// ---------------------------------------------------------------------------------------

#[test]
fn a_command_is_delivered_at_issue_and_resent_after_each_delivery_until_settled() {
    use tare_domain::command::{CommandEvent, CommandSpec};
    let cfg = custom();
    let issued = AnyEvent::Command(CommandEvent::CommandIssued {
        cabinet: tare_domain::CabinetId::parse("pk.dn").unwrap(),
        spec: CommandSpec::Lights { on: true },
        expires_at: 60_000,
        issued_by: "operator".into(),
        holds_door: false,
        at: 1_000,
    });
    let d = decide("cmd-1", &issued, &cfg);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].key.as_str(), d[0].due_at), ("command:cmd-1:deliver:1", 1_000));
    assert_eq!(
        d[0].effect,
        Effect::DeliverCommand {
            cmd_id: "cmd-1".into(),
            attempt: 1
        }
    );
    assert_eq!(d[0].effect.serial_key(), "cmd-1");
    let delivered = AnyEvent::Command(CommandEvent::CommandDelivered { attempt: 2, at: 5_000 });
    let d = decide("cmd-1", &delivered, &cfg);
    assert_eq!((d[0].key.as_str(), d[0].due_at), ("command:cmd-1:deliver:3", 5_000 + 1_111));
    let acked = AnyEvent::Command(CommandEvent::CommandAcknowledged {
        ok: true,
        detail: None,
        result: None,
        late: false,
        frees_door: None,
        at: 5_500,
    });
    assert!(decide("cmd-1", &acked, &cfg).is_empty());
    let expired = AnyEvent::Command(CommandEvent::CommandExpired {
        attempts: 3,
        frees_door: None,
        at: 60_000,
    });
    assert!(decide("cmd-1", &expired, &cfg).is_empty());
}

#[test]
fn a_refund_is_sent_once_and_its_success_reaches_the_order() {
    let requested = AnyEvent::Payment(PaymentEvent::RefundRequested {
        refund_id: "rf-1".into(),
        amount: Cents::new(200),
        reason: "damaged".into(),
        requested_by: "admin".into(),
        dispute: false,
        at: AT,
    });
    let send = Scheduled {
        key: key(ORDER, "refund:rf-1"),
        due_at: AT,
        effect: Effect::SendRefund {
            order_id: ORDER.into(),
            refund_id: "rf-1".into(),
        },
    };
    assert_eq!(decide(ORDER, &requested, &SagaConfig::default()), vec![send.clone()]);
    // A refund on a shopper's dispute is also counted against the shopper [B8].
    let AnyEvent::Payment(PaymentEvent::RefundRequested {
        refund_id,
        amount,
        reason,
        requested_by,
        at,
        ..
    }) = requested
    else {
        unreachable!()
    };
    let disputed = AnyEvent::Payment(PaymentEvent::RefundRequested {
        refund_id,
        amount,
        reason,
        requested_by,
        dispute: true,
        at,
    });
    assert_eq!(
        decide(ORDER, &disputed, &SagaConfig::default()),
        vec![
            send,
            Scheduled {
                key: key(ORDER, "dispute"),
                due_at: AT,
                effect: Effect::RecordDispute { order_id: ORDER.into() },
            }
        ]
    );
    let succeeded = AnyEvent::Payment(PaymentEvent::RefundSucceeded {
        refund_id: "rf-1".into(),
        amount: Cents::new(200),
        provider_refund_id: "p-1".into(),
        notification_id: None,
        at: AT + 5,
    });
    assert_eq!(
        decide(ORDER, &succeeded, &SagaConfig::default()),
        vec![Scheduled {
            key: key(ORDER, "refunded:rf-1"),
            due_at: AT + 5,
            effect: Effect::MarkOrderRefunded { order_id: ORDER.into() },
        }]
    );
    let failed = AnyEvent::Payment(PaymentEvent::RefundFailed {
        refund_id: "rf-1".into(),
        reason: "closed".into(),
        at: AT + 5,
    });
    assert!(decide(ORDER, &failed, &SagaConfig::default()).is_empty());
}

#[test]
fn a_charge_settled_by_hand_closes_the_provider_order_and_frees_the_shopper() {
    let settled = AnyEvent::Order(OrderEvent::ChargeSettledByHand {
        resolution: tare_domain::order::HandSettlement::WrittenOff,
        by: "admin".into(),
        note: "gave up".into(),
        at: AT,
    });
    let out = decide(ORDER, &settled, &SagaConfig::default());
    assert_eq!(
        keys(&out),
        vec![key(ORDER, "abandon-payment").as_str(), key(ORDER, "end-shopper-order").as_str()]
    );
    assert!(matches!(&out[1].effect, Effect::EndShopperOrder { outcome, .. } if outcome == "written_off"));
    assert!(matches!(&out[0].effect, Effect::AbandonPayment { reason, .. } if reason.contains("admin")));
}
