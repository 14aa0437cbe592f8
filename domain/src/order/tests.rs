//! Given/when/then tests for the order aggregate: the purchase from creation to payment,
//! its timers (authorization deadline, door checks, weight wait), the weight settlement
//! with coupons and anomalies, and charging with its retries.

use super::*;
use crate::cabinet::LanePlan;
use crate::coupon::{Coupon, CouponChoice, CouponKind, CouponPolicy};
use crate::weight::{infer_door, LaneGrams, LaneScale, StableReading, Tolerance, WeightSample};
use crate::{CabinetId, Cents, ConfirmMode, DoorNo, LaneNo, ProviderKind, Sku};
use crate::{Grams, UnixMs};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;

const AT: UnixMs = 1_700_000_000_000;
const DEADLINE: UnixMs = AT + 60_000;
const OPENED_AT: UnixMs = AT + 20;
const CLOSED_AT: UnixMs = AT + 30;
const SETTLED_AT: UnixMs = AT + 40;

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

fn lane(n: u8, sku: &str, unit_grams: f64, price: i64, capacity: u32) -> LanePlan {
    LanePlan {
        lane: LaneNo::of(n),
        sku: Sku::of(sku),
        name: sku.to_uppercase(),
        unit_grams: Grams::of(unit_grams),
        price: Cents::new(price),
        capacity,
        restock_threshold: 2,
        tolerance: Tolerance::default(),
        price_version: 1,
        calibration_version: 0,
    }
}

/// Lane 1: cola, 330 g, 3.00; lane 2: water, 550 g, 2.00.
fn lanes() -> Vec<LanePlan> {
    vec![lane(1, "cola", 330.0, 300, 10), lane(2, "water", 550.0, 200, 8)]
}

fn scales() -> Vec<LaneScale> {
    lanes().iter().map(LanePlan::scale).collect()
}

/// A stable reading taken after the close (device clock), so it may settle the order.
fn reading(msg_id: &str, lanes: &[(u8, f64)]) -> StableReading {
    reading_at(msg_id, SETTLED_AT, lanes)
}

fn reading_at(msg_id: &str, device_ts: UnixMs, lanes: &[(u8, f64)]) -> StableReading {
    StableReading::from_sample(WeightSample {
        msg_id: msg_id.into(),
        device_ts,
        received_at: AT,
        stable: true,
        lanes: lanes
            .iter()
            .map(|(lane, grams)| LaneGrams {
                lane: LaneNo::of(*lane),
                grams: Grams::of(*grams),
            })
            .collect(),
    })
    .unwrap()
}

/// Ten colas and five waters.
fn before() -> StableReading {
    reading("before", &[(1, 3300.0), (2, 2750.0)])
}

/// Two colas taken; the water lane reads a gram more (noise).
fn after_two_colas() -> StableReading {
    reading("after", &[(1, 2640.0), (2, 2751.0)])
}

fn line(lane_no: u8, qty: u32) -> OrderLine {
    let plan = lanes().into_iter().find(|l| l.lane == LaneNo::of(lane_no)).unwrap();
    OrderLine {
        lane: plan.lane,
        sku: plan.sku,
        name: plan.name,
        qty,
        unit_price: plan.price,
    }
}

fn cash(id: &str, value: i64) -> Coupon {
    Coupon {
        id: id.into(),
        kind: CouponKind::Cash {
            value: Cents::new(value),
            min_spend: Cents::new(0),
        },
        expires_at: None,
    }
}

fn choice(coupon_id: &str, discount: i64) -> Option<CouponChoice> {
    Some(CouponChoice {
        coupon_id: coupon_id.into(),
        discount: Cents::new(discount),
    })
}

fn create() -> OrderCommand {
    OrderCommand::Create {
        order_id: "order-1".into(),
        shopper_id: "shopper-1".into(),
        cabinet: CabinetId::new("wc1", "SN-001").unwrap(),
        door: DoorNo::of(1),
        provider: ProviderKind::Wechat,
        confirm_mode: ConfirmMode::EachTime,
        lanes: lanes(),
        planogram_version: 3,
        auth_deadline: DEADLINE,
        at: AT,
    }
}

fn created() -> OrderEvent {
    OrderEvent::OrderCreated {
        order_id: "order-1".into(),
        shopper_id: "shopper-1".into(),
        cabinet: CabinetId::new("wc1", "SN-001").unwrap(),
        door: DoorNo::of(1),
        provider: ProviderKind::Wechat,
        confirm_mode: ConfirmMode::EachTime,
        lanes: lanes(),
        planogram_version: 3,
        auth_deadline: DEADLINE,
        at: AT,
    }
}

fn authorized_events() -> Vec<OrderEvent> {
    vec![
        OrderEvent::OrderAuthorized { at: AT + 10 },
        OrderEvent::DoorOpenRequested {
            cmd_id: "order-1-open".into(),
            at: AT + 10,
        },
    ]
}

fn door_opened(before: Option<StableReading>) -> OrderEvent {
    OrderEvent::OrderDoorOpened {
        device_ts: OPENED_AT - 5,
        before,
        at: OPENED_AT,
    }
}

fn door_closed(unexpected: bool, fallback_before: Option<StableReading>) -> OrderEvent {
    OrderEvent::OrderDoorClosed {
        device_ts: CLOSED_AT - 5,
        unexpected,
        fallback_before,
        at: CLOSED_AT,
    }
}

fn query(attempt: u32) -> OrderEvent {
    OrderEvent::DoorQueryRequested {
        attempt,
        cmd_id: format!("order-1-q{attempt}"),
        at: AT + 10 + UnixMs::from(attempt) * 1_000,
    }
}

fn check_door(attempt: u32) -> OrderCommand {
    OrderCommand::CheckDoor {
        attempt,
        at: AT + 10 + UnixMs::from(attempt) * 1_000,
    }
}

fn mark_opened(before: Option<StableReading>) -> OrderCommand {
    OrderCommand::MarkDoorOpened {
        device_ts: OPENED_AT - 5,
        before,
        at: OPENED_AT,
    }
}

fn mark_closed(unexpected: bool, fallback_before: Option<StableReading>) -> OrderCommand {
    OrderCommand::MarkDoorClosed {
        device_ts: CLOSED_AT - 5,
        unexpected,
        fallback_before,
        at: CLOSED_AT,
    }
}

fn settle(after: StableReading, coupons: Vec<Coupon>, policy: CouponPolicy) -> OrderCommand {
    OrderCommand::SettleWeights {
        after,
        coupons,
        policy,
        at: SETTLED_AT,
    }
}

/// The `WeightsSettled` the order should record for `after` against [`before`].
fn weights_settled(
    after: StableReading,
    lines: Vec<OrderLine>,
    subtotal: i64,
    coupon: Option<CouponChoice>,
    total: i64,
    anomalies: Vec<Anomaly>,
) -> OrderEvent {
    OrderEvent::WeightsSettled {
        inference: infer_door(&scales(), &before(), &after).unwrap(),
        after,
        lines,
        subtotal: Cents::new(subtotal),
        coupon,
        total: Cents::new(total),
        anomalies,
        at: SETTLED_AT,
    }
}

fn charge_requested(amount: i64, attempt: u32, at: UnixMs) -> OrderEvent {
    OrderEvent::ChargeRequested {
        amount: Cents::new(amount),
        attempt,
        at,
    }
}

fn charge_failed(attempt: u32, retry_at: Option<UnixMs>) -> OrderEvent {
    OrderEvent::ChargeFailed {
        attempt,
        reason: "insufficient_funds".into(),
        retry_at,
        at: AT + 100,
    }
}

fn record_failure(retry_at: Option<UnixMs>) -> OrderCommand {
    OrderCommand::RecordChargeFailure {
        reason: "insufficient_funds".into(),
        retry_at,
        at: AT + 100,
    }
}

fn mark_paid(amount: i64) -> OrderCommand {
    OrderCommand::MarkPaid {
        transaction_id: "tx-1".into(),
        amount: Cents::new(amount),
        at: AT + 200,
    }
}

fn paid(amount: i64) -> OrderEvent {
    OrderEvent::OrderPaid {
        transaction_id: "tx-1".into(),
        amount: Cents::new(amount),
        at: AT + 200,
    }
}

fn cancel() -> OrderCommand {
    OrderCommand::Cancel {
        reason: "shopper_cancelled".into(),
        at: AT + 5,
    }
}

fn cancelled(reason: &str, at: UnixMs) -> OrderEvent {
    OrderEvent::OrderCancelled { reason: reason.into(), at }
}

fn with(mut events: Vec<OrderEvent>, more: impl IntoIterator<Item = OrderEvent>) -> Vec<OrderEvent> {
    events.extend(more);
    events
}

fn given(events: Vec<OrderEvent>) -> AggregateTestExecutor<Order> {
    TestFramework::<Order>::with(()).given(events)
}

fn fresh() -> AggregateTestExecutor<Order> {
    TestFramework::<Order>::with(()).given_no_previous_events()
}

fn state_after(events: Vec<OrderEvent>) -> Order {
    let mut order = Order::default();
    for e in events {
        order.apply(e);
    }
    order
}

// Histories, one per state.

fn authorizing() -> Vec<OrderEvent> {
    vec![created()]
}

fn opening() -> Vec<OrderEvent> {
    with(authorizing(), authorized_events())
}

fn open() -> Vec<OrderEvent> {
    with(opening(), [door_opened(Some(before()))])
}

fn settling() -> Vec<OrderEvent> {
    with(open(), [door_closed(false, None)])
}

/// Two colas taken, a 1.00 coupon applied: 5.00 to charge.
fn charging() -> Vec<OrderEvent> {
    with(
        settling(),
        [
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, choice("c1", 100), 500, vec![]),
            charge_requested(500, 1, SETTLED_AT),
        ],
    )
}

fn paid_history() -> Vec<OrderEvent> {
    with(charging(), [paid(500)])
}

fn cancelled_history() -> Vec<OrderEvent> {
    with(authorizing(), [cancelled("authorization_timeout", DEADLINE)])
}

fn abnormal() -> Vec<OrderEvent> {
    with(
        opening(),
        [OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![Anomaly::DoorNeverOpened],
            at: AT + 6_010,
        }],
    )
}

/// Runs `command` on `history` and returns the history with the new events.
fn run(history: Vec<OrderEvent>, command: OrderCommand) -> Vec<OrderEvent> {
    let new = given(history.clone()).when(command).inspect_result().unwrap();
    with(history, new)
}

// ---------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------

#[test]
fn create_freezes_the_planogram_into_the_order() {
    fresh().when(create()).then_expect_events(vec![created()]);
    let order = state_after(authorizing());
    assert_eq!(order.id.as_deref(), Some("order-1"));
    assert_eq!(order.shopper_id, "shopper-1");
    assert_eq!(order.door, Some(DoorNo::of(1)));
    assert_eq!(order.lanes, lanes());
    assert_eq!(order.planogram_version, 3);
    assert_eq!(order.auth_deadline, DEADLINE);
    assert_eq!(order.created_at, AT);
    assert_eq!(order.state, OrderState::Authorizing);
}

#[test]
fn create_twice_is_rejected() {
    given(authorizing()).when(create()).then_expect_error(OrderError::AlreadyExists);
}

#[test]
fn commands_on_a_missing_order_are_not_found() {
    let commands = vec![
        OrderCommand::MarkAuthorized {
            open_cmd_id: "x".into(),
            at: AT,
        },
        OrderCommand::ExpireAuthorization { at: DEADLINE },
        check_door(1),
        mark_opened(Some(before())),
        mark_closed(false, None),
        settle(after_two_colas(), vec![], CouponPolicy::default()),
        OrderCommand::AbandonWeights { at: AT },
        mark_paid(500),
        record_failure(Some(AT)),
        OrderCommand::RetryCharge { at: AT },
        cancel(),
    ];
    for command in commands {
        fresh().when(command).then_expect_error(OrderError::NotFound);
    }
}

// ---------------------------------------------------------------------------------------
// The happy path, step by step
// ---------------------------------------------------------------------------------------

#[test]
fn mark_authorized_authorizes_and_requests_the_door_open() {
    given(authorizing())
        .when(OrderCommand::MarkAuthorized {
            open_cmd_id: "order-1-open".into(),
            at: AT + 10,
        })
        .then_expect_events(authorized_events());
    let order = state_after(opening());
    assert_eq!(order.state, OrderState::Opening);
    assert_eq!(order.open_cmd_id.as_deref(), Some("order-1-open"));
}

#[test]
fn mark_door_opened_records_the_baseline() {
    given(opening())
        .when(mark_opened(Some(before())))
        .then_expect_events(vec![door_opened(Some(before()))]);
    let order = state_after(open());
    assert_eq!(order.state, OrderState::Open);
    assert_eq!(order.before, Some(before()));
    assert_eq!(order.opened_device_ts, Some(OPENED_AT - 5));
}

#[test]
fn mark_door_closed_after_the_open_waits_for_the_weight() {
    given(open())
        .when(mark_closed(false, None))
        .then_expect_events(vec![door_closed(false, None)]);
    let order = state_after(settling());
    assert_eq!(order.state, OrderState::Settling);
    assert_eq!(order.closed_device_ts, Some(CLOSED_AT - 5));
    assert_eq!(order.closed_at, Some(CLOSED_AT));
    assert!(order.anomalies.is_empty());
}

#[test]
fn settle_weights_prices_the_taken_items_applies_the_coupon_and_requests_the_charge() {
    given(settling())
        .when(settle(after_two_colas(), vec![cash("c1", 100)], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, choice("c1", 100), 500, vec![]),
            charge_requested(500, 1, SETTLED_AT),
        ]);
    let order = state_after(charging());
    assert_eq!(order.state, OrderState::Charging);
    assert_eq!(order.charge_attempts, 1);
    assert_eq!(order.subtotal, Cents::new(600));
    assert_eq!(order.total, Cents::new(500));
    assert_eq!(order.lines, vec![line(1, 2)]);
    assert_eq!(order.after, Some(after_two_colas()));
    let counts: Vec<i64> = order.inference.iter().map(|i| i.count).collect();
    assert_eq!(counts, vec![2, 0]);
    assert!(order.inference.iter().all(|i| i.within_tolerance));
}

#[test]
fn mark_paid_completes_the_order() {
    given(charging()).when(mark_paid(500)).then_expect_events(vec![paid(500)]);
    let order = state_after(paid_history());
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(order.transaction_id.as_deref(), Some("tx-1"));
    assert!(order.state.is_terminal());
}

#[test]
fn full_happy_path_from_create_to_paid() {
    let mut history = run(vec![], create());
    history = run(
        history,
        OrderCommand::MarkAuthorized {
            open_cmd_id: "order-1-open".into(),
            at: AT + 10,
        },
    );
    history = run(history, mark_opened(Some(before())));
    history = run(history, mark_closed(false, None));
    history = run(history, settle(after_two_colas(), vec![cash("c1", 100)], CouponPolicy::default()));
    history = run(history, mark_paid(500));
    assert_eq!(history, paid_history());
}

// ---------------------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------------------

#[test]
fn repeated_or_late_authorization_is_a_no_op() {
    for history in [opening(), open(), cancelled_history()] {
        given(history)
            .when(OrderCommand::MarkAuthorized {
                open_cmd_id: "order-1-open-2".into(),
                at: AT + 11,
            })
            .then_expect_events(vec![]);
    }
}

#[test]
fn expire_authorization_before_the_deadline_does_nothing() {
    given(authorizing())
        .when(OrderCommand::ExpireAuthorization { at: DEADLINE - 1 })
        .then_expect_events(vec![]);
}

#[test]
fn expire_authorization_at_or_after_the_deadline_cancels() {
    for at in [DEADLINE, DEADLINE + 5_000] {
        given(authorizing())
            .when(OrderCommand::ExpireAuthorization { at })
            .then_expect_events(vec![cancelled("authorization_timeout", at)]);
    }
    let order = state_after(cancelled_history());
    assert_eq!(order.state, OrderState::Cancelled);
    assert_eq!(order.cancel_reason.as_deref(), Some("authorization_timeout"));
}

#[test]
fn expire_authorization_after_authorization_does_nothing() {
    for history in [opening(), open(), cancelled_history()] {
        given(history)
            .when(OrderCommand::ExpireAuthorization { at: DEADLINE + 1 })
            .then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------------------------------
// Door checks
// ---------------------------------------------------------------------------------------

#[test]
fn check_door_queries_the_door_up_to_five_times() {
    for attempt in 1..=MAX_DOOR_QUERIES {
        let history = with(opening(), (1..attempt).map(query));
        given(history).when(check_door(attempt)).then_expect_events(vec![query(attempt)]);
    }
    assert_eq!(state_after(with(opening(), (1..=3).map(query))).door_queries, 3);
}

#[test]
fn repeated_door_check_is_a_no_op() {
    let history = with(opening(), [query(1), query(2)]);
    for attempt in [0, 1, 2] {
        given(history.clone()).when(check_door(attempt)).then_expect_events(vec![]);
    }
}

#[test]
fn sixth_door_check_marks_the_door_never_opened() {
    given(with(opening(), (1..=5).map(query)))
        .when(check_door(6))
        .then_expect_events(vec![OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![Anomaly::DoorNeverOpened],
            at: check_door_at(6),
        }]);
    let order = state_after(abnormal());
    assert_eq!(order.state, OrderState::Abnormal);
    assert_eq!(order.anomalies, vec![Anomaly::DoorNeverOpened]);
}

fn check_door_at(attempt: u32) -> UnixMs {
    match check_door(attempt) {
        OrderCommand::CheckDoor { at, .. } => at,
        _ => unreachable!(),
    }
}

#[test]
fn check_door_when_not_opening_is_a_no_op() {
    for history in [authorizing(), open(), settling(), cancelled_history(), abnormal()] {
        given(history).when(check_door(1)).then_expect_events(vec![]);
    }
}

#[test]
fn door_opening_after_queries_is_still_accepted() {
    given(with(opening(), [query(1), query(2)]))
        .when(mark_opened(Some(before())))
        .then_expect_events(vec![door_opened(Some(before()))]);
}

#[test]
fn door_opened_when_not_opening_is_a_no_op() {
    for history in [authorizing(), open(), settling(), cancelled_history(), abnormal()] {
        given(history).when(mark_opened(Some(before()))).then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------------------------------
// Door close and baselines
// ---------------------------------------------------------------------------------------

#[test]
fn close_while_still_opening_is_an_unexpected_close() {
    given(opening())
        .when(mark_closed(false, Some(before())))
        .then_expect_events(vec![door_closed(true, Some(before()))]);
    let order = state_after(with(opening(), [door_closed(true, Some(before()))]));
    assert_eq!(order.state, OrderState::Settling);
    assert_eq!(order.before, Some(before()));
    assert_eq!(order.anomalies, vec![Anomaly::UnexpectedClose]);
}

#[test]
fn close_the_cabinet_judged_unexpected_stays_unexpected() {
    given(open())
        .when(mark_closed(true, None))
        .then_expect_events(vec![door_closed(true, None)]);
}

#[test]
fn close_fallback_baseline_is_ignored_when_the_open_gave_one() {
    let other = reading("other", &[(1, 1.0), (2, 1.0)]);
    given(open())
        .when(mark_closed(false, Some(other)))
        .then_expect_events(vec![door_closed(false, None)]);
}

#[test]
fn close_fallback_baseline_is_used_when_the_open_had_none() {
    let history = with(opening(), [door_opened(None)]);
    given(history.clone())
        .when(mark_closed(false, Some(before())))
        .then_expect_events(vec![door_closed(false, Some(before()))]);
    let order = state_after(with(history, [door_closed(false, Some(before()))]));
    assert_eq!(order.before, Some(before()));
}

#[test]
fn close_when_not_open_or_opening_is_a_no_op() {
    for history in [authorizing(), settling(), charging(), cancelled_history(), abnormal()] {
        given(history).when(mark_closed(false, None)).then_expect_events(vec![]);
    }
}

#[test]
fn settle_after_an_unexpected_close_is_abnormal_and_not_charged() {
    let history = with(opening(), [door_closed(true, Some(before()))]);
    given(history)
        .when(settle(after_two_colas(), vec![cash("c1", 100)], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, None, 600, vec![Anomaly::UnexpectedClose]),
            OrderEvent::OrderMarkedAbnormal {
                anomalies: vec![Anomaly::UnexpectedClose],
                at: SETTLED_AT,
            },
        ]);
}

#[test]
fn settle_without_a_baseline_is_abnormal_no_weight_before() {
    let history = with(opening(), [door_opened(None), door_closed(false, None)]);
    given(history)
        .when(settle(after_two_colas(), vec![], CouponPolicy::default()))
        .then_expect_events(vec![OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![Anomaly::NoWeightBefore],
            at: SETTLED_AT,
        }]);
    // Earlier anomalies are kept.
    given(with(opening(), [door_closed(true, None)]))
        .when(settle(after_two_colas(), vec![], CouponPolicy::default()))
        .then_expect_events(vec![OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![Anomaly::UnexpectedClose, Anomaly::NoWeightBefore],
            at: SETTLED_AT,
        }]);
}

#[test]
fn settle_with_a_reading_missing_a_lane_is_abnormal_no_stable_weight() {
    given(settling())
        .when(settle(reading("after", &[(1, 2640.0)]), vec![], CouponPolicy::default()))
        .then_expect_events(vec![OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![Anomaly::NoStableWeight],
            at: SETTLED_AT,
        }]);
}

// ---------------------------------------------------------------------------------------
// Settlement outcomes
// ---------------------------------------------------------------------------------------

#[test]
fn heavier_lane_is_an_anomaly_but_the_other_lane_is_still_charged() {
    // A cola came back (+330 g) and a water left (−550 g).
    let after = reading("after", &[(1, 3630.0), (2, 2200.0)]);
    given(settling())
        .when(settle(after.clone(), vec![], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(
                after,
                vec![line(2, 1)],
                200,
                None,
                200,
                vec![Anomaly::LaneHeavier {
                    lane: LaneNo::of(1),
                    items: 1,
                }],
            ),
            charge_requested(200, 1, SETTLED_AT),
        ]);
}

#[test]
fn heavier_lane_does_not_block_the_coupon() {
    let after = reading("after", &[(1, 3630.0), (2, 2200.0)]);
    let events = given(settling())
        .when(settle(after, vec![cash("c1", 50)], CouponPolicy::default()))
        .inspect_result()
        .unwrap();
    assert!(matches!(
        &events[0],
        OrderEvent::WeightsSettled { coupon, total, .. } if *coupon == choice("c1", 50) && *total == Cents::new(150)
    ));
    assert_eq!(events[1], charge_requested(150, 1, SETTLED_AT));
}

#[test]
fn residual_out_of_tolerance_is_low_confidence_and_abnormal() {
    // 160 g off the cola lane: half a can, neither 0 nor 1 within ±12.9 g.
    let after = reading("after", &[(1, 3140.0), (2, 2200.0)]);
    let inference = infer_door(&scales(), &before(), &after).unwrap();
    assert!(!inference[0].within_tolerance);
    let low = Anomaly::LowConfidence {
        lane: LaneNo::of(1),
        confidence: inference[0].confidence,
    };
    given(settling())
        .when(settle(after.clone(), vec![cash("c1", 100)], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after, vec![line(2, 1)], 200, None, 200, vec![low.clone()]),
            OrderEvent::OrderMarkedAbnormal {
                anomalies: vec![low],
                at: SETTLED_AT,
            },
        ]);
}

#[test]
fn nothing_taken_cancels_the_order() {
    given(settling())
        .when(settle(before(), vec![cash("c1", 100)], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(before(), vec![], 0, None, 0, vec![]),
            cancelled("nothing_taken", SETTLED_AT),
        ]);
}

#[test]
fn coupon_covering_the_whole_order_pays_it_without_a_charge() {
    given(settling())
        .when(settle(after_two_colas(), vec![cash("c600", 600)], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, choice("c600", 600), 0, vec![]),
            OrderEvent::OrderPaid {
                transaction_id: String::new(),
                amount: Cents::new(0),
                at: SETTLED_AT,
            },
        ]);
}

#[test]
fn coupon_policy_decides_whether_a_big_coupon_is_used() {
    let strict = CouponPolicy {
        max_value_over_amount_pct: Some(30),
    };
    // 20.00 on a 6.00 order is more than 30 % over: not used.
    given(settling())
        .when(settle(after_two_colas(), vec![cash("big", 2000)], strict))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, None, 600, vec![]),
            charge_requested(600, 1, SETTLED_AT),
        ]);
    // Without a limit it covers the order.
    given(settling())
        .when(settle(after_two_colas(), vec![cash("big", 2000)], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, choice("big", 600), 0, vec![]),
            OrderEvent::OrderPaid {
                transaction_id: String::new(),
                amount: Cents::new(0),
                at: SETTLED_AT,
            },
        ]);
}

#[test]
fn settle_applies_the_coupon_that_saves_the_most() {
    let group_buy = Coupon {
        id: "gb".into(),
        kind: CouponKind::GroupBuy {
            sku: Sku::of("cola"),
            price: Cents::new(99),
        },
        expires_at: None,
    };
    given(settling())
        .when(settle(after_two_colas(), vec![cash("c1", 100), group_buy], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, choice("gb", 201), 399, vec![]),
            charge_requested(399, 1, SETTLED_AT),
        ]);
}

#[test]
fn coupon_expiring_at_settlement_is_not_used() {
    let mut expiring = cash("c1", 100);
    expiring.expires_at = Some(SETTLED_AT);
    given(settling())
        .when(settle(after_two_colas(), vec![expiring], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, None, 600, vec![]),
            charge_requested(600, 1, SETTLED_AT),
        ]);
}

#[test]
fn settle_when_not_settling_is_a_no_op() {
    for history in [open(), charging(), paid_history(), abnormal()] {
        given(history)
            .when(settle(after_two_colas(), vec![], CouponPolicy::default()))
            .then_expect_events(vec![]);
    }
}

#[test]
fn abandon_weights_marks_no_stable_weight() {
    given(settling())
        .when(OrderCommand::AbandonWeights { at: AT + 90 })
        .then_expect_events(vec![OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![Anomaly::NoStableWeight],
            at: AT + 90,
        }]);
    // Keeps an earlier unexpected close.
    given(with(opening(), [door_closed(true, Some(before()))]))
        .when(OrderCommand::AbandonWeights { at: AT + 90 })
        .then_expect_events(vec![OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![Anomaly::UnexpectedClose, Anomaly::NoStableWeight],
            at: AT + 90,
        }]);
}

#[test]
fn abandon_weights_when_not_settling_is_a_no_op() {
    for history in [open(), charging(), paid_history()] {
        given(history)
            .when(OrderCommand::AbandonWeights { at: AT + 90 })
            .then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------------------------------
// Charging
// ---------------------------------------------------------------------------------------

#[test]
fn mark_paid_twice_records_the_payment_once() {
    given(paid_history()).when(mark_paid(500)).then_expect_events(vec![]);
}

#[test]
fn mark_paid_with_another_amount_is_a_mismatch() {
    given(charging())
        .when(mark_paid(400))
        .then_expect_error(OrderError::AmountMismatch { want: 500, got: 400 });
}

#[test]
fn mark_paid_when_not_charging_is_wrong_state() {
    let cases = [
        (authorizing(), OrderState::Authorizing),
        (open(), OrderState::Open),
        (settling(), OrderState::Settling),
        (cancelled_history(), OrderState::Cancelled),
        (abnormal(), OrderState::Abnormal),
    ];
    for (history, state) in cases {
        given(history).when(mark_paid(500)).then_expect_error(OrderError::WrongState(state));
    }
}

#[test]
fn record_charge_failure_schedules_a_retry() {
    given(charging())
        .when(record_failure(Some(AT + 60_000)))
        .then_expect_events(vec![charge_failed(1, Some(AT + 60_000))]);
    let order = state_after(with(charging(), [charge_failed(1, Some(AT + 60_000))]));
    assert_eq!(order.state, OrderState::Charging);
    assert!(!order.dead_lettered);
}

#[test]
fn retry_charge_requests_the_next_attempt() {
    let history = with(charging(), [charge_failed(1, Some(AT + 60_000))]);
    given(history.clone())
        .when(OrderCommand::RetryCharge { at: AT + 60_000 })
        .then_expect_events(vec![charge_requested(500, 2, AT + 60_000)]);
    // Its failure is reported as attempt 2.
    given(with(history, [charge_requested(500, 2, AT + 60_000)]))
        .when(record_failure(Some(AT + 120_000)))
        .then_expect_events(vec![charge_failed(2, Some(AT + 120_000))]);
}

#[test]
fn charge_failure_without_retry_dead_letters_and_later_failures_are_ignored() {
    given(charging())
        .when(record_failure(None))
        .then_expect_events(vec![charge_failed(1, None)]);
    let history = with(charging(), [charge_failed(1, None)]);
    let order = state_after(history.clone());
    assert!(order.dead_lettered);
    assert_eq!(order.state, OrderState::Charging);
    given(history).when(record_failure(Some(AT + 1))).then_expect_events(vec![]);
}

#[test]
fn payment_after_a_dead_letter_is_still_recorded() {
    let history = with(charging(), [charge_failed(1, None)]);
    given(history.clone()).when(mark_paid(500)).then_expect_events(vec![paid(500)]);
    let order = state_after(with(history, [paid(500)]));
    assert!(!order.dead_lettered);
    assert_eq!(order.state, OrderState::Paid);
}

#[test]
fn charge_failure_or_retry_when_not_charging_is_a_no_op() {
    for history in [settling(), paid_history(), abnormal(), cancelled_history()] {
        given(history.clone()).when(record_failure(Some(AT + 1))).then_expect_events(vec![]);
        given(history)
            .when(OrderCommand::RetryCharge { at: AT + 1 })
            .then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_before_the_door_opens_cancels_the_order() {
    let authorized_only = with(authorizing(), [OrderEvent::OrderAuthorized { at: AT + 10 }]);
    for history in [authorizing(), authorized_only, opening()] {
        given(history)
            .when(cancel())
            .then_expect_events(vec![cancelled("shopper_cancelled", AT + 5)]);
    }
}

#[test]
fn cancel_a_cancelled_order_is_a_no_op() {
    given(cancelled_history()).when(cancel()).then_expect_events(vec![]);
}

#[test]
fn cancel_after_the_door_opened_is_wrong_state() {
    let cases = [
        (open(), OrderState::Open),
        (settling(), OrderState::Settling),
        (charging(), OrderState::Charging),
        (paid_history(), OrderState::Paid),
        (abnormal(), OrderState::Abnormal),
    ];
    for (history, state) in cases {
        given(history).when(cancel()).then_expect_error(OrderError::WrongState(state));
    }
}

// ---------------------------------------------------------------------------------------
// Small rules and errors
// ---------------------------------------------------------------------------------------

#[test]
fn only_end_states_are_terminal() {
    use OrderState as S;
    for s in [S::Paid, S::Cancelled, S::Abnormal, S::Refunded, S::PartiallyRefunded] {
        assert!(s.is_terminal(), "{s:?}");
    }
    for s in [S::Authorizing, S::Authorized, S::Opening, S::Open, S::Settling, S::Charging] {
        assert!(!s.is_terminal(), "{s:?}");
    }
}

#[test]
fn every_anomaly_but_a_heavier_lane_blocks_the_charge() {
    assert!(!Anomaly::LaneHeavier {
        lane: LaneNo::of(1),
        items: 1
    }
    .blocks_charge());
    for a in [
        Anomaly::UnexpectedClose,
        Anomaly::LowConfidence {
            lane: LaneNo::of(1),
            confidence: 0.1,
        },
        Anomaly::DoorNeverOpened,
        Anomaly::NoStableWeight,
        Anomaly::NoWeightBefore,
    ] {
        assert!(a.blocks_charge(), "{a:?}");
    }
}

#[test]
fn an_anomalys_code_is_its_serialized_tag() {
    for a in [
        Anomaly::UnexpectedClose,
        Anomaly::LaneHeavier {
            lane: LaneNo::of(2),
            items: 1,
        },
        Anomaly::LowConfidence {
            lane: LaneNo::of(3),
            confidence: 0.1,
        },
        Anomaly::DoorNeverOpened,
        Anomaly::NoStableWeight,
        Anomaly::NoWeightBefore,
    ] {
        assert_eq!(serde_json::to_value(&a).unwrap()["code"], a.code(), "{a:?}");
    }
    assert_eq!(Anomaly::NoStableWeight.lane(), None);
    assert_eq!(
        Anomaly::LowConfidence {
            lane: LaneNo::of(3),
            confidence: 0.1
        }
        .lane(),
        Some(LaneNo::of(3))
    );
}

#[test]
fn errors_map_to_rejection_kinds_and_codes() {
    let cases = [
        (OrderError::AlreadyExists, RejectionKind::Conflict, "order_exists"),
        (OrderError::NotFound, RejectionKind::NotFound, "order_not_found"),
        (OrderError::WrongState(OrderState::Open), RejectionKind::Conflict, "order_state"),
        (
            OrderError::AmountMismatch { want: 1, got: 2 },
            RejectionKind::Invalid,
            "amount_mismatch",
        ),
    ];
    for (error, kind, code) in cases {
        assert_eq!(error.kind(), kind, "{error:?}");
        assert_eq!(error.code(), code, "{error:?}");
    }
}

#[test]
fn settle_with_a_reading_older_than_the_close_is_refused() {
    let r = TestFramework::<Order>::with(())
        .given(vec![
            created(),
            OrderEvent::OrderAuthorized { at: AT },
            OrderEvent::DoorOpenRequested {
                cmd_id: "o1-open".into(),
                at: AT,
            },
            OrderEvent::OrderDoorOpened {
                device_ts: OPENED_AT - 5,
                before: Some(reading("b", &[(1, 3300.0), (2, 2500.0)])),
                at: OPENED_AT,
            },
            OrderEvent::OrderDoorClosed {
                device_ts: CLOSED_AT - 5,
                unexpected: false,
                fallback_before: None,
                at: CLOSED_AT,
            },
        ])
        .when(OrderCommand::SettleWeights {
            after: reading_at("a", CLOSED_AT - 6, &[(1, 3300.0), (2, 2500.0)]),
            coupons: vec![],
            policy: CouponPolicy::default(),
            at: SETTLED_AT,
        })
        .inspect_result();
    assert_eq!(r, Err(OrderError::StaleWeight));
}

// ---------------------------------------------------------------------------------------
// Refunds [O9] and charges settled by hand [O8]
// ---------------------------------------------------------------------------------------

fn refunds(total: i64, at: UnixMs) -> OrderCommand {
    OrderCommand::RecordRefunds {
        refunded: Cents::new(total),
        at,
    }
}

fn refunded(total: i64, at: UnixMs) -> OrderEvent {
    OrderEvent::OrderRefunded {
        refunded: Cents::new(total),
        at,
    }
}

#[test]
fn refunds_make_a_paid_order_partly_then_fully_refunded() {
    given(paid_history())
        .when(refunds(200, AT + 300))
        .then_expect_events(vec![refunded(200, AT + 300)]);
    let partly = with(paid_history(), [refunded(200, AT + 300)]);
    assert_eq!(state_after(partly.clone()).state, OrderState::PartiallyRefunded);
    // An older or equal total changes nothing; the rest makes it fully refunded.
    given(partly.clone()).when(refunds(200, AT + 310)).then_expect_events(vec![]);
    given(partly.clone())
        .when(refunds(500, AT + 400))
        .then_expect_events(vec![refunded(500, AT + 400)]);
    let full = state_after(with(partly, [refunded(500, AT + 400)]));
    assert_eq!((full.state, full.refunded), (OrderState::Refunded, Cents::new(500)));
    // An order that was never paid is never refunded.
    given(charging()).when(refunds(100, AT + 300)).then_expect_events(vec![]);
}

#[test]
fn a_dead_lettered_charge_is_settled_by_hand_once() {
    let dead = with(charging(), [charge_failed(1, None)]);
    let settle = |resolution: HandSettlement| OrderCommand::SettleChargeByHand {
        resolution,
        by: "admin".into(),
        note: "paid cash at the counter".into(),
        at: AT + 900,
    };
    let paid_outside = HandSettlement::PaidOutside { reference: "R-17".into() };
    given(dead.clone())
        .when(settle(paid_outside.clone()))
        .then_expect_events(vec![OrderEvent::ChargeSettledByHand {
            resolution: paid_outside.clone(),
            by: "admin".into(),
            note: "paid cash at the counter".into(),
            at: AT + 900,
        }]);
    let settled = state_after(with(
        dead.clone(),
        [OrderEvent::ChargeSettledByHand {
            resolution: paid_outside.clone(),
            by: "admin".into(),
            note: "n".into(),
            at: AT + 900,
        }],
    ));
    assert_eq!(settled.state, OrderState::Paid);
    assert_eq!(settled.transaction_id.as_deref(), Some("outside:R-17"));
    assert_eq!(settled.settled_by_hand, Some((paid_outside, "admin".to_string())));
    let written_off = state_after(with(
        dead,
        [OrderEvent::ChargeSettledByHand {
            resolution: HandSettlement::WrittenOff,
            by: "admin".into(),
            note: "n".into(),
            at: AT + 900,
        }],
    ));
    assert_eq!(written_off.state, OrderState::Cancelled);
    assert_eq!(written_off.cancel_reason.as_deref(), Some("written_off"));
    // A charge that never failed, or a paid order, is not settled by hand.
    given(charging())
        .when(settle(HandSettlement::WrittenOff))
        .then_expect_error(OrderError::WrongState(OrderState::Charging));
    given(paid_history())
        .when(settle(HandSettlement::WrittenOff))
        .then_expect_error(OrderError::WrongState(OrderState::Paid));
}

#[test]
fn a_door_left_open_past_the_limit_settles_for_an_operator_not_a_charge() {
    let left = OrderEvent::OrderDoorLeftOpen { at: AT + 300_000 };
    given(open())
        .when(OrderCommand::FlagDoorLeftOpen { at: AT + 300_000 })
        .then_expect_events(vec![left.clone()]);
    // Once; and never for an order no longer open.
    given(with(open(), [left.clone()]))
        .when(OrderCommand::FlagDoorLeftOpen { at: AT + 400_000 })
        .then_expect_events(vec![]);
    given(settling())
        .when(OrderCommand::FlagDoorLeftOpen { at: AT + 400_000 })
        .then_expect_events(vec![]);
    let history = with(open(), [left, door_closed(false, None)]);
    given(history)
        .when(settle(after_two_colas(), vec![], CouponPolicy::default()))
        .then_expect_events(vec![
            weights_settled(after_two_colas(), vec![line(1, 2)], 600, None, 600, vec![Anomaly::DoorLeftOpen]),
            OrderEvent::OrderMarkedAbnormal {
                anomalies: vec![Anomaly::DoorLeftOpen],
                at: SETTLED_AT,
            },
        ]);
}
