//! Stock reconciliation by weight [R3 (a)]: given a door's ledger and one settled
//! reading → each lane's class (door 1 of `online()`: cola 6 × 330 g on lane 1, gum
//! 10 × 50 g on lane 2); then the divergence events the cabinet records.

use super::*;
use std::collections::BTreeMap;

/// Door 1 after `online()`, its gum lane's unit changed to `gum_unit` (to make look-alikes).
fn door1_with_gum_unit(gum_unit: f64) -> DoorState {
    let mut d = state_after(online()).doors[&DoorNo::of(1)].clone();
    d.lanes.get_mut(&LaneNo::of(2)).unwrap().plan.unit_grams = Grams::of(gum_unit);
    d
}

fn classes(d: &DoorState, cola: Option<f64>, gum: f64) -> Vec<(u8, Option<StockClass>, Option<i64>)> {
    let mut lanes = vec![(2, gum)];
    lanes.extend(cola.map(|c| (1, c)));
    check_door(d, &reading("w", &lanes))
        .into_iter()
        .map(|v| (v.lane.get(), v.class, v.weighed_stock))
        .collect()
}

#[test]
fn a_door_whose_weights_match_the_ledger_has_no_class() {
    let d = door1_with_gum_unit(50.0);
    // Noise and drift under a third of an item agree (the zero follows drift).
    assert_eq!(classes(&d, Some(1981.0), 510.0), vec![(1, None, Some(6)), (2, None, Some(10))]);
}

#[test]
fn each_discrepancy_gets_its_class() {
    let d = door1_with_gum_unit(50.0);
    let cases = [
        // One cola gone, nothing paid.
        (
            Some(1650.0),
            500.0,
            vec![(1, Some(StockClass::UnpaidTake), Some(5)), (2, None, Some(10))],
        ),
        // A cola put on the gum lane: 330 g is no whole number of gums.
        (
            Some(1650.0),
            830.0,
            vec![
                (1, Some(StockClass::WrongLane), Some(5)),
                (2, Some(StockClass::WrongLane), Some(17)),
            ],
        ),
        // A cola from elsewhere (another door) on the gum lane.
        (
            Some(1980.0),
            830.0,
            vec![(1, None, Some(6)), (2, Some(StockClass::WrongLane), Some(17))],
        ),
        // 22 g: no whole item of either product.
        (
            Some(1980.0),
            478.0,
            vec![(1, None, Some(6)), (2, Some(StockClass::Drift), Some(10))],
        ),
        // Three gums more than the ledger knows, no lane to explain them.
        (
            Some(1980.0),
            650.0,
            vec![(1, None, Some(6)), (2, Some(StockClass::DataError), Some(13))],
        ),
        // Gum lane below its empty weight.
        (
            Some(1980.0),
            -40.0,
            vec![(1, None, Some(6)), (2, Some(StockClass::DataError), Some(-1))],
        ),
        // No reading of the cola lane.
        (None, 500.0, vec![(2, None, Some(10)), (1, Some(StockClass::DataError), None)]),
    ];
    for (cola, gum, want) in cases {
        let mut got = classes(&d, cola, gum);
        let mut want = want;
        got.sort();
        want.sort();
        assert_eq!(got, want, "cola {cola:?} g, gum {gum} g");
    }
}

#[test]
fn look_alike_lanes_swap_at_equal_weight() {
    // Gum made as heavy as a cola: the lanes are look-alikes.
    let d = door1_with_gum_unit(331.0);
    let gum = 331.0 * 10.0;
    // One cola moved onto the gum lane: the weights cannot tell them apart.
    assert_eq!(
        classes(&d, Some(1650.0), gum + 330.0),
        vec![
            (1, Some(StockClass::EqualWeightSwap), Some(5)),
            (2, Some(StockClass::EqualWeightSwap), Some(11))
        ]
    );
    // A lone item of that weight too much on the gum lane.
    assert_eq!(
        classes(&d, Some(1980.0), gum + 331.0),
        vec![(1, None, Some(6)), (2, Some(StockClass::EqualWeightSwap), Some(11))]
    );
}

/// A settled reading of door 1 after a raw open by command `c1`.
fn observe(cola: f64, gum: f64, after_ms: i64) -> CabinetCommand {
    let mut s = reading("w", &[(1, cola), (2, gum)]).sample().clone();
    s.received_at = AT + 1_000 + after_ms;
    CabinetCommand::ObserveClosedWeight {
        door: DoorNo::of(1),
        reading: StableReading::from_sample(s).unwrap(),
        at: AT + 1_000 + after_ms,
    }
}

fn after_a_raw_open() -> Vec<CabinetEvent> {
    let holder = Holder::Command { cmd_id: "c1".into() };
    with(
        online(),
        [
            acquired(1, holder.clone()),
            opened(1, Some(holder.clone()), "m1", 1),
            closed(1, Some(holder), false, "m2", 2),
            released(1, "c1", "done", AT + 500),
        ],
    )
}

fn diverged(class: StockClass, weighed: i64, difference: i64, since: UnixMs, at: UnixMs) -> CabinetEvent {
    CabinetEvent::LaneStockDiverged {
        door: DoorNo::of(1),
        lane: LaneNo::of(1),
        sku: Sku::of("cola"),
        class,
        ledger_stock: 6,
        weighed_stock: Some(weighed),
        difference,
        reading_grams: Some(Grams::of(330.0 * weighed as f64)),
        expected_grams: Grams::of(1980.0),
        since,
        window_from: AT + 160,
        last_session: Some(Holder::Command { cmd_id: "c1".into() }),
        at,
    }
}

#[test]
fn a_divergence_is_recorded_when_it_starts_or_changes_and_when_it_ends() {
    let first = diverged(StockClass::UnpaidTake, 5, -1, AT + 1_100, AT + 1_100);
    given(after_a_raw_open())
        .when(observe(1650.0, 500.0, 100))
        .then_expect_events(vec![first.clone()]);
    // The same again: nothing new.
    given(with(after_a_raw_open(), [first.clone()]))
        .when(observe(1650.0, 500.0, 200))
        .then_expect_events(vec![]);
    // Another cola gone: the divergence changes, its start stays.
    given(with(after_a_raw_open(), [first.clone()]))
        .when(observe(1320.0, 500.0, 300))
        .then_expect_events(vec![diverged(StockClass::UnpaidTake, 4, -2, AT + 1_100, AT + 1_300)]);
    // A cola sold since: the ledger and the weight moved alike, the difference is the
    // same, and the divergence is recorded again with the counts of now.
    let sold = CabinetEvent::LaneStockChanged {
        door: DoorNo::of(1),
        lane: LaneNo::of(1),
        sku: Sku::of("cola"),
        before: 6,
        change: -1,
        after: 5,
        reason: StockReason::Sale { order_id: "o-9".into() },
        at: AT + 1_250,
    };
    let recounted = CabinetEvent::LaneStockDiverged {
        door: DoorNo::of(1),
        lane: LaneNo::of(1),
        sku: Sku::of("cola"),
        class: StockClass::UnpaidTake,
        ledger_stock: 5,
        weighed_stock: Some(4),
        difference: -1,
        reading_grams: Some(Grams::of(1320.0)),
        expected_grams: Grams::of(1650.0),
        since: AT + 1_100,
        window_from: AT + 160,
        last_session: Some(Holder::Command { cmd_id: "c1".into() }),
        at: AT + 1_300,
    };
    given(with(after_a_raw_open(), [first.clone(), sold.clone()]))
        .when(observe(1320.0, 500.0, 300))
        .then_expect_events(vec![recounted.clone()]);
    given(with(after_a_raw_open(), [first.clone(), sold, recounted]))
        .when(observe(1320.0, 500.0, 400))
        .then_expect_events(vec![]);
    // Put back: the lane agrees again.
    given(with(after_a_raw_open(), [first.clone()]))
        .when(observe(1980.0, 500.0, 400))
        .then_expect_events(vec![CabinetEvent::LaneStockAgreed {
            door: DoorNo::of(1),
            lane: LaneNo::of(1),
            stock: 6,
            reading_grams: Some(Grams::of(1980.0)),
            at: AT + 1_400,
        }]);
    assert_eq!(
        open_divergences(&state_after(with(after_a_raw_open(), [first]))),
        BTreeMap::from([(
            (DoorNo::of(1), LaneNo::of(1)),
            StockDivergence {
                class: StockClass::UnpaidTake,
                difference: -1,
                since: AT + 1_100,
                ledger_stock: 6,
            }
        )])
    );
}

fn write_off(since: UnixMs) -> CabinetCommand {
    CabinetCommand::WriteOffDivergence {
        door: DoorNo::of(1),
        lane: LaneNo::of(1),
        since,
        anomaly_id: "stock:x".into(),
        at: AT + 2_000,
    }
}

#[test]
fn a_write_off_books_the_weighed_stock_once_and_only_for_its_divergence() {
    let first = diverged(StockClass::UnpaidTake, 5, -1, AT + 1_100, AT + 1_100);
    let written_off = vec![
        CabinetEvent::LaneStockChanged {
            door: DoorNo::of(1),
            lane: LaneNo::of(1),
            sku: Sku::of("cola"),
            before: 6,
            change: -1,
            after: 5,
            reason: StockReason::WriteOff {
                anomaly_id: "stock:x".into(),
            },
            at: AT + 2_000,
        },
        CabinetEvent::LaneStockAgreed {
            door: DoorNo::of(1),
            lane: LaneNo::of(1),
            stock: 5,
            reading_grams: None,
            at: AT + 2_000,
        },
    ];
    given(with(after_a_raw_open(), [first.clone()]))
        .when(write_off(AT + 1_100))
        .then_expect_events(written_off.clone());
    // Done already, or another divergence's anomaly: nothing.
    given(with(with(after_a_raw_open(), [first.clone()]), written_off))
        .when(write_off(AT + 1_100))
        .then_expect_events(vec![]);
    given(with(after_a_raw_open(), [first.clone()]))
        .when(write_off(AT + 999))
        .then_expect_events(vec![]);
    // Not under a session's feet.
    given(with(after_a_raw_open(), [first, acquired(1, order_holder("o9"))]))
        .when(write_off(AT + 1_100))
        .then_expect_error(CabinetError::DoorBusy);
}

/// Only a reading of a free, closed door received after it was freed is weighed: the
/// hub's watch asks this before remembering a reading as weighed, so the same weight is
/// weighed again once the session that held the door has ended.
#[test]
fn a_closed_door_reading_is_weighed_only_once_the_door_is_free() {
    let holder = Holder::Command { cmd_id: "c1".into() };
    let held = state_after(with(
        online(),
        [
            acquired(1, holder.clone()),
            opened(1, Some(holder.clone()), "m1", 1),
            closed(1, Some(holder), false, "m2", 2),
        ],
    ));
    let CabinetCommand::ObserveClosedWeight { reading: late, .. } = observe(1650.0, 500.0, 0) else {
        unreachable!()
    };
    let CabinetCommand::ObserveClosedWeight { reading: early, .. } = observe(1650.0, 500.0, -600) else {
        unreachable!()
    };
    assert!(!held.weighs_closed(DoorNo::of(1), &late), "the door is still held");
    let freed = state_after(after_a_raw_open());
    assert!(freed.weighs_closed(DoorNo::of(1), &late));
    assert!(!freed.weighs_closed(DoorNo::of(1), &early), "received before the door was freed");
    assert!(!freed.weighs_closed(DoorNo::of(9), &late), "no such door");
}
