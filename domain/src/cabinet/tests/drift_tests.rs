//! Drift and creep [B4], the tare step [M1] and the temperature lockout [B8], given
//! events → expected events (the `online()` cabinet: door 1 cola 6 × 330 g, gum
//! 10 × 50 g).

use super::*;
use crate::command::CommandSpec;

/// A stable reading of door 1, received `after_ms` after the cabinet was counted.
fn door1(cola: f64, gum: f64, after_ms: i64) -> CabinetCommand {
    let mut r = reading("w", &[(1, cola), (2, gum)]);
    let mut s = r.sample().clone();
    s.received_at = AT + 30 + after_ms;
    r = StableReading::from_sample(s).unwrap();
    CabinetCommand::ObserveClosedWeight {
        door: DoorNo::of(1),
        reading: r,
        at: AT + 30 + after_ms,
    }
}

fn rezeroed(zero_before: f64, zero_after: f64, reading: f64, health: u8, after_ms: i64) -> CabinetEvent {
    CabinetEvent::LaneRezeroed {
        door: DoorNo::of(1),
        lane: LaneNo::of(2),
        zero_before: Grams::of(zero_before),
        zero_after: Grams::of(zero_after),
        reading_grams: Grams::of(reading),
        stock: 10,
        health,
        at: AT + 30 + after_ms,
    }
}

#[test]
fn noise_within_the_band_moves_nothing() {
    // Gum's band: half of 3 g + 0.3 % of 500 g = 2.25 g.
    given(online()).when(door1(1980.4, 502.2, 100)).then_expect_events(vec![]);
}

#[test]
fn drift_below_a_third_of_an_item_moves_the_zero_and_is_recorded() {
    given(online())
        .when(door1(1980.0, 505.0, 100))
        .then_expect_events(vec![rezeroed(0.0, 5.0, 505.0, 88, 100)]);
    // The next reading is weighed against the new zero.
    given(with(online(), [rezeroed(0.0, 5.0, 505.0, 88, 100)]))
        .when(door1(1980.0, 506.0, 200))
        .then_expect_events(vec![]);
    let lane = &state_after(with(online(), [rezeroed(0.0, 5.0, 505.0, 88, 100)])).doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)];
    assert_eq!(
        (lane.zero_grams, lane.expected_grams(), lane.health()),
        (Grams::of(5.0), Grams::of(505.0), 88)
    );
}

#[test]
fn a_step_of_a_third_of_an_item_or_more_is_not_drift_but_a_divergence() {
    for (gum, class, weighed) in [(516.0, StockClass::Drift, 10), (450.0, StockClass::UnpaidTake, 9)] {
        let events = state_after(online()).decide(door1(1980.0, gum, 100)).unwrap();
        let classes: Vec<_> = events
            .iter()
            .map(|e| match e {
                CabinetEvent::LaneStockDiverged {
                    lane,
                    class,
                    weighed_stock,
                    ..
                } => Some((lane.get(), *class, *weighed_stock)),
                _ => None,
            })
            .collect();
        assert_eq!(classes, vec![Some((2, class, Some(weighed)))], "gum {gum} g: {events:?}");
    }
}

#[test]
fn a_zero_past_the_drift_limit_blocks_the_door_until_calibrated() {
    let drifted = with(online(), [rezeroed(0.0, 30.0, 530.0, 25, 100)]);
    given(drifted.clone())
        .when(door1(1980.0, 542.0, 200))
        .then_expect_events(vec![CabinetEvent::LaneDriftBlocked {
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            zero_grams: Grams::of(42.0),
            limit_grams: Grams::of(40.0),
            reading_grams: Grams::of(542.0),
            at: AT + 230,
        }]);
    let blocked = with(
        drifted,
        [CabinetEvent::LaneDriftBlocked {
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            zero_grams: Grams::of(42.0),
            limit_grams: Grams::of(40.0),
            reading_grams: Grams::of(542.0),
            at: AT + 230,
        }],
    );
    let c = state_after(blocked.clone());
    assert_eq!(
        c.check_door_sellable(DoorNo::of(1)),
        Err(CabinetError::LaneNeedsCalibration(LaneNo::of(2)))
    );
    assert_eq!(c.check_door_sellable(DoorNo::of(2)), Ok(()));
    assert_eq!(c.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)].health(), 0);
    // A blocked lane is not re-zeroed further.
    given(blocked).when(door1(1980.0, 548.0, 300)).then_expect_events(vec![]);
}

#[test]
fn only_a_free_closed_door_read_after_its_last_session_is_weighed() {
    // Received before the cabinet was counted.
    given(online()).when(door1(1980.0, 505.0, -10)).then_expect_events(vec![]);
    // The door is held by a purchase.
    given(with(online(), [acquired(1, order_holder("o1"))]))
        .when(door1(1980.0, 505.0, 100))
        .then_expect_events(vec![]);
    // Freed after the reading was received.
    given(with(online(), [released(1, "o1", "done", AT + 500)]))
        .when(door1(1980.0, 505.0, 100))
        .then_expect_events(vec![]);
}

#[test]
fn tare_needs_an_empty_lane_and_calibrate_a_tare_since_the_last_movement() {
    let tare = CommandSpec::Tare { door: 1, lane: 2 };
    let calibrate = CommandSpec::Calibrate {
        door: 1,
        lane: 2,
        standard_grams: Grams::of(200.0),
    };
    let c = state_after(online());
    assert_eq!(
        c.check_scale_command(&tare),
        Err(CabinetError::LaneNotEmpty {
            lane: LaneNo::of(2),
            stock: 10
        })
    );
    let emptied = with(online(), [stock_changed(1, 2, "gum", 10, 0, StockReason::Opening, AT + 40)]);
    let c = state_after(emptied.clone());
    assert_eq!(c.check_scale_command(&tare), Ok(()));
    assert_eq!(c.check_scale_command(&calibrate), Err(CabinetError::TareFirst(LaneNo::of(2))));
    let tared = CabinetEvent::LaneTared {
        door: DoorNo::of(1),
        lane: LaneNo::of(2),
        zero_before: Grams::ZERO,
        cmd_id: "t1".into(),
        at: AT + 50,
    };
    given(emptied.clone())
        .when(CabinetCommand::RecordTare {
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            cmd_id: "t1".into(),
            at: AT + 50,
        })
        .then_expect_events(vec![tared.clone()]);
    let c = state_after(with(emptied.clone(), [tared.clone()]));
    assert_eq!(c.check_scale_command(&calibrate), Ok(()));
    // A stock movement since the tare asks for another.
    let moved = with(emptied, [tared, stock_changed(1, 2, "gum", 0, 1, StockReason::Opening, AT + 60)]);
    let c = state_after(moved);
    assert!(c.check_scale_command(&calibrate).is_err());
}

#[test]
fn a_calibration_resets_the_health_it_measured() {
    let calibrated = |measured: f64| CabinetEvent::LaneCalibrated {
        door: DoorNo::of(1),
        lane: LaneNo::of(2),
        version: 1,
        standard_grams: Grams::of(200.0),
        measured_grams: Grams::of(measured),
        within_limit: (measured - 200.0_f64).abs() <= 3.6,
        cmd_id: "c1".into(),
        at: AT + 60,
    };
    // Allowed at 200 g: 3 g + 0.6 g; an error of 1.8 g used half of it.
    let c = state_after(with(online(), [calibrated(201.8)]));
    assert_eq!(c.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)].health(), 50);
    let c = state_after(with(online(), [calibrated(210.0)]));
    assert_eq!(c.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)].health(), 0);
    assert!(c.check_door_sellable(DoorNo::of(1)).is_err());
}

#[test]
fn a_cabinet_above_its_limit_locks_out_until_an_operator_resets_it() {
    let set = |max_c| CabinetCommand::SetTemperatureLimit {
        max_c,
        by: "ops".into(),
        at: AT + 40,
    };
    let limit = CabinetEvent::TemperatureLimitSet {
        max_c: Some(8.0),
        by: "ops".into(),
        at: AT + 40,
    };
    given(online()).when(set(Some(8.0))).then_expect_events(vec![limit.clone()]);
    given(online())
        .when(set(Some(200.0)))
        .then_expect_error_message("max_c: must be a temperature between -40 and 80");
    given(with(online(), [limit.clone()]))
        .when(set(Some(8.0)))
        .then_expect_events(vec![]);
    let observe = |temp_c| CabinetCommand::ObserveTemperature { temp_c, at: AT + 50 };
    given(with(online(), [limit.clone()])).when(observe(7.5)).then_expect_events(vec![]);
    let locked = CabinetEvent::TemperatureLockedOut {
        temp_c: 9.0,
        max_c: 8.0,
        at: AT + 50,
    };
    given(with(online(), [limit.clone()]))
        .when(observe(9.0))
        .then_expect_events(vec![locked.clone()]);
    let locked_out = with(online(), [limit, locked]);
    given(locked_out.clone()).when(observe(12.0)).then_expect_events(vec![]);
    let c = state_after(locked_out.clone());
    assert_eq!(
        c.check_door_sellable(DoorNo::of(2)).map_err(|e| e.code()),
        Err("temperature_lockout")
    );
    let reset = |reason: &str| CabinetCommand::ResetTemperatureLockout {
        by: "ops".into(),
        reason: reason.into(),
        at: AT + 60,
    };
    given(locked_out.clone())
        .when(reset(" "))
        .then_expect_error_message("reason: must say what was checked (1-500 characters)");
    let lifted = CabinetEvent::TemperatureLockoutReset {
        by: "ops".into(),
        reason: "goods checked".into(),
        at: AT + 60,
    };
    given(locked_out.clone())
        .when(reset("goods checked"))
        .then_expect_events(vec![lifted.clone()]);
    let c = state_after(with(locked_out.clone(), [lifted.clone()]));
    assert_eq!(c.check_door_sellable(DoorNo::of(2)), Ok(()));
    given(with(locked_out, [lifted]))
        .when(reset("again"))
        .then_expect_error_message("the cabinet is not locked out");
    // No limit: nothing locks.
    given(online()).when(observe(40.0)).then_expect_events(vec![]);
}
