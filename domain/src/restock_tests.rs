use super::*;
use crate::weight::{LaneGrams, Tolerance, WeightSample};
use crate::{Cents, Grams};

const AT: UnixMs = 1_000;

fn lane(n: u8, unit_grams: f64, capacity: u32, stock: i64) -> RestockLane {
    RestockLane {
        plan: LanePlan {
            lane: LaneNo::of(n),
            sku: Sku::of(&format!("sku{n}")),
            name: format!("SKU{n}"),
            unit_grams: Grams::of(unit_grams),
            price: Cents::new(300),
            capacity,
            restock_threshold: 2,
            tolerance: Tolerance::default(),
            price_version: 1,
            calibration_version: 0,
        },
        stock,
    }
}

fn reading(grams: &[f64]) -> StableReading {
    StableReading::from_sample(WeightSample {
        msg_id: "m".into(),
        device_ts: AT,
        received_at: AT,
        stable: true,
        lanes: grams
            .iter()
            .enumerate()
            .map(|(i, g)| LaneGrams {
                lane: LaneNo::of(i as u8 + 1),
                grams: Grams::of(*g),
            })
            .collect(),
    })
    .unwrap()
}

fn start(lanes: Vec<RestockLane>) -> RestockCommand {
    RestockCommand::Start {
        cabinet: CabinetId::parse("pk.c1").unwrap(),
        door: DoorNo::of(1),
        lanes,
        by: "ann".into(),
        open_cmd_id: "rs1-open".into(),
        at: AT,
    }
}

fn run(r: &mut Restock, c: RestockCommand) -> Vec<RestockEvent> {
    let events = r.decide(c).unwrap();
    for e in events.clone() {
        r.apply(e);
    }
    events
}

#[test]
fn a_session_opens_counts_what_was_added_and_books_it_within_capacity() {
    let mut r = Restock::default();
    assert_eq!(
        r.decide(RestockCommand::Fail {
            reason: "x".into(),
            at: AT
        }),
        Err(RestockError::NotFound)
    );
    run(
        &mut r,
        start(vec![lane(1, 330.0, 10, 2), lane(2, 50.0, 20, 19), lane(3, 500.0, 6, 4)]),
    );
    assert_eq!(r.state, RestockState::Opening);
    assert_eq!(r.decide(start(vec![lane(1, 330.0, 10, 2)])), Err(RestockError::AlreadyExists));
    let before = reading(&[660.0, 950.0, 2000.0]);
    run(
        &mut r,
        RestockCommand::MarkDoorOpened {
            device_ts: AT,
            before: Some(before.clone()),
            at: AT,
        },
    );
    assert_eq!(r.state, RestockState::Open);
    run(
        &mut r,
        RestockCommand::MarkDoorClosed {
            device_ts: AT + 60_000,
            fallback_before: None,
            at: AT + 60_000,
        },
    );
    assert_eq!((r.state, r.before.as_ref()), (RestockState::Counting, Some(&before)));
    // Lane 1: +5 (room for 8); lane 2: +3 weighed but room for 1; lane 3: one taken out.
    let counted = run(
        &mut r,
        RestockCommand::Count {
            after: reading(&[660.0 + 5.0 * 330.0, 950.0 + 150.0, 1500.0]),
            at: AT + 61_000,
        },
    );
    assert!(matches!(counted[..], [RestockEvent::RestockCounted { .. }]));
    let got: Vec<(u8, i64, i64, i64)> = r.lines.iter().map(|l| (l.lane.get(), l.counted, l.added, l.excess)).collect();
    assert_eq!(got, [(1, 5, 5, 0), (2, 3, 1, 2), (3, -1, -1, 0)]);
    assert!(r.lines.iter().all(|l| l.within_tolerance && l.confidence > 0.99));
    assert_eq!(r.state, RestockState::Done);
    // Late steps change nothing.
    let late = RestockCommand::Count {
        after: reading(&[0.0, 0.0, 0.0]),
        at: AT + 62_000,
    };
    assert_eq!(r.decide(late), Ok(vec![]));
    assert_eq!(
        r.decide(RestockCommand::Fail {
            reason: "x".into(),
            at: AT
        }),
        Ok(vec![])
    );
}

#[test]
fn a_door_that_never_opens_fails_and_a_close_without_an_open_counts_from_the_fallback() {
    let mut r = Restock::default();
    run(&mut r, start(vec![lane(1, 330.0, 10, 0)]));
    let failed = run(
        &mut r,
        RestockCommand::Fail {
            reason: "door_never_opened".into(),
            at: AT,
        },
    );
    assert_eq!(failed.len(), 1);
    assert_eq!((r.state, r.failure.as_deref()), (RestockState::Failed, Some("door_never_opened")));

    let mut r = Restock::default();
    run(&mut r, start(vec![lane(1, 330.0, 10, 0)]));
    run(
        &mut r,
        RestockCommand::MarkDoorClosed {
            device_ts: AT,
            fallback_before: Some(reading(&[0.0])),
            at: AT,
        },
    );
    run(
        &mut r,
        RestockCommand::Count {
            after: reading(&[3.0 * 330.0]),
            at: AT,
        },
    );
    assert_eq!(r.lines[0].added, 3);

    // No baseline at all: failed, nothing booked.
    let mut r = Restock::default();
    run(&mut r, start(vec![lane(1, 330.0, 10, 0)]));
    run(
        &mut r,
        RestockCommand::MarkDoorClosed {
            device_ts: AT,
            fallback_before: None,
            at: AT,
        },
    );
    run(
        &mut r,
        RestockCommand::Count {
            after: reading(&[330.0]),
            at: AT,
        },
    );
    assert_eq!(
        (r.state, r.failure.as_deref(), r.lines.len()),
        (RestockState::Failed, Some("no_weight_before"), 0)
    );
}

#[test]
fn a_door_without_lanes_cannot_be_restocked() {
    let e = Restock::default().decide(start(vec![])).unwrap_err();
    assert_eq!(
        (e.kind(), e.code(), e.field().as_deref()),
        (RejectionKind::Invalid, "invalid_field", Some("door"))
    );
}

#[test]
fn an_uncertain_count_is_flagged() {
    let lines = count_restock(&[lane(1, 100.0, 50, 0)], &reading(&[0.0]), &reading(&[245.0]));
    assert_eq!((lines[0].counted, lines[0].added), (2, 2));
    assert!(!lines[0].within_tolerance, "45 g off a 100 g unit");
    assert!(lines[0].confidence < 0.2);
}
