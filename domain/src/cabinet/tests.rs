//! Given/when/then tests for the cabinet aggregate: registration and planogram checks,
//! the device's connection and initialization, door ownership, door events and sales.

use super::*;
use crate::weight::{LaneGrams, StableReading, Tolerance, WeightSample};
use crate::{CabinetId, CabinetKind, Cents, DoorNo, GeoPoint, LaneNo, Sku};
use crate::{Grams, UnixMs};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;

const AT: UnixMs = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

fn cabinet_id() -> CabinetId {
    CabinetId::new("wc1", "SN-001").unwrap()
}

fn location() -> GeoPoint {
    GeoPoint::parse(31.2304, 121.4737).unwrap()
}

fn lane(n: u8, sku: &str, unit_grams: f64, capacity: u32, restock_threshold: u32) -> LanePlan {
    LanePlan {
        lane: LaneNo::of(n),
        sku: Sku::of(sku),
        name: sku.to_uppercase(),
        unit_grams: Grams::of(unit_grams),
        price: Cents::new(300),
        capacity,
        restock_threshold,
        tolerance: Tolerance::default(),
        price_version: 1,
        calibration_version: 0,
    }
}

fn door(n: u8, lanes: Vec<LanePlan>) -> DoorPlan {
    DoorPlan {
        door: DoorNo::of(n),
        lanes,
    }
}

/// Door 1: cola (330 g, 10, restock at 3) and gum (50 g, 20, restock at 5);
/// door 2: water (500 g, 10, restock at 2).
fn plan() -> Vec<DoorPlan> {
    vec![
        door(1, vec![lane(1, "cola", 330.0, 10, 3), lane(2, "gum", 50.0, 20, 5)]),
        door(2, vec![lane(1, "water", 500.0, 10, 2)]),
    ]
}

fn register(kind: CabinetKind, doors: Vec<DoorPlan>) -> CabinetCommand {
    CabinetCommand::Register {
        id: cabinet_id(),
        kind,
        location: location(),
        doors,
        at: AT,
    }
}

fn registered() -> CabinetEvent {
    CabinetEvent::CabinetRegistered {
        id: cabinet_id(),
        kind: CabinetKind::Weight,
        location: location(),
        doors: plan(),
        at: AT,
    }
}

fn connect() -> CabinetCommand {
    CabinetCommand::ConnectDevice {
        node: "gw-1".into(),
        fw: "1.2.0".into(),
        at: AT + 10,
    }
}

fn connected(status: DeviceStatus) -> CabinetEvent {
    CabinetEvent::DeviceConnected {
        node: "gw-1".into(),
        fw: "1.2.0".into(),
        status,
        at: AT + 10,
    }
}

fn disconnected() -> CabinetEvent {
    CabinetEvent::DeviceDisconnected { at: AT + 20 }
}

fn stock_changed(door: u8, lane: u8, sku: &str, before: i64, after: i64, reason: StockReason, at: UnixMs) -> CabinetEvent {
    CabinetEvent::LaneStockChanged {
        door: DoorNo::of(door),
        lane: LaneNo::of(lane),
        sku: Sku::of(sku),
        before,
        change: after - before,
        after,
        reason,
        at,
    }
}

/// A registered cabinet, connected, waiting for initialization.
fn pending_init() -> Vec<CabinetEvent> {
    vec![registered(), connected(DeviceStatus::PendingInit)]
}

/// Opening stock: door 1 cola 6, gum 10; door 2 water 5.
fn online() -> Vec<CabinetEvent> {
    let mut events = pending_init();
    events.extend([
        stock_changed(1, 1, "cola", 0, 6, StockReason::Opening, AT + 30),
        stock_changed(1, 2, "gum", 0, 10, StockReason::Opening, AT + 30),
        stock_changed(2, 1, "water", 0, 5, StockReason::Opening, AT + 30),
        CabinetEvent::CabinetInitialized { at: AT + 30 },
    ]);
    events
}

fn with(mut events: Vec<CabinetEvent>, more: impl IntoIterator<Item = CabinetEvent>) -> Vec<CabinetEvent> {
    events.extend(more);
    events
}

fn reading(msg_id: &str, lanes: &[(u8, f64)]) -> StableReading {
    reading_at(msg_id, lanes, AT)
}

fn reading_at(msg_id: &str, lanes: &[(u8, f64)], device_ts: UnixMs) -> StableReading {
    StableReading::from_sample(WeightSample {
        msg_id: msg_id.into(),
        device_ts,
        received_at: device_ts,
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

fn order_holder(order_id: &str) -> Holder {
    Holder::Order {
        order_id: order_id.into(),
        shopper_id: "shopper-1".into(),
    }
}

fn acquire(door: u8, holder: Holder) -> CabinetCommand {
    CabinetCommand::AcquireDoor {
        door: DoorNo::of(door),
        holder,
        at: AT + 100,
    }
}

fn acquired(door: u8, holder: Holder) -> CabinetEvent {
    CabinetEvent::DoorAcquired {
        door: DoorNo::of(door),
        holder,
        at: AT + 100,
    }
}

fn release(door: u8, session_id: &str) -> CabinetCommand {
    CabinetCommand::ReleaseDoor {
        door: DoorNo::of(door),
        session_id: session_id.into(),
        reason: "done".into(),
        at: AT + 200,
    }
}

fn released(door: u8, session_id: &str, reason: &str, at: UnixMs) -> CabinetEvent {
    CabinetEvent::DoorReleased {
        door: DoorNo::of(door),
        session_id: session_id.into(),
        reason: reason.into(),
        at,
    }
}

fn door_event(door: u8, position: DoorPosition, msg_id: &str, seq: u64) -> CabinetCommand {
    CabinetCommand::RecordDoorEvent {
        stable_before: None,
        door: DoorNo::of(door),
        position,
        msg_id: msg_id.into(),
        seq,
        device_ts: AT + 150,
        cmd_id: None,
        at: AT + 160,
    }
}

fn opened(door: u8, holder: Option<Holder>, msg_id: &str, seq: u64) -> CabinetEvent {
    CabinetEvent::DoorOpened {
        stable_before: None,
        not_before: None,
        door: DoorNo::of(door),
        holder,
        msg_id: msg_id.into(),
        seq,
        device_ts: AT + 150,
        cmd_id: None,
        at: AT + 160,
    }
}

fn closed(door: u8, holder: Option<Holder>, unexpected: bool, msg_id: &str, seq: u64) -> CabinetEvent {
    CabinetEvent::DoorClosed {
        stable_before: None,
        not_before: None,
        door: DoorNo::of(door),
        holder,
        unexpected,
        msg_id: msg_id.into(),
        seq,
        device_ts: AT + 150,
        at: AT + 160,
    }
}

fn finish_sale(door: u8, order_id: &str, sold: &[(u8, u32)], charged: bool) -> CabinetCommand {
    CabinetCommand::FinishSale {
        door: DoorNo::of(door),
        order_id: order_id.into(),
        sold: sold.iter().map(|(l, q)| (LaneNo::of(*l), *q)).collect(),
        charged,
        at: AT + 500,
    }
}

fn sale(order_id: &str) -> StockReason {
    StockReason::Sale { order_id: order_id.into() }
}

fn given(events: Vec<CabinetEvent>) -> cqrs_es::test::AggregateTestExecutor<Cabinet> {
    TestFramework::<Cabinet>::with(()).given(events)
}

fn fresh() -> cqrs_es::test::AggregateTestExecutor<Cabinet> {
    TestFramework::<Cabinet>::with(()).given_no_previous_events()
}

fn state_after(events: Vec<CabinetEvent>) -> Cabinet {
    let mut cabinet = Cabinet::default();
    for e in events {
        cabinet.apply(e);
    }
    cabinet
}

fn invalid_field(doors: Vec<DoorPlan>) -> String {
    match fresh().when(register(CabinetKind::Weight, doors)).inspect_result() {
        Err(CabinetError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid planogram, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------

#[test]
fn register_records_the_planogram() {
    fresh()
        .when(register(CabinetKind::Weight, plan()))
        .then_expect_events(vec![registered()]);
}

#[test]
fn registered_cabinet_starts_unconnected_with_empty_lanes() {
    let cabinet = state_after(vec![registered()]);
    assert_eq!(cabinet.id, Some(cabinet_id()));
    assert_eq!(cabinet.kind, Some(CabinetKind::Weight));
    assert_eq!(cabinet.status, DeviceStatus::Registered);
    assert_eq!(cabinet.planogram_version, 1);
    assert!(!cabinet.initialized);
    let door1 = cabinet.door(DoorNo::of(1)).unwrap();
    assert_eq!(door1.lanes.len(), 2);
    assert!(door1.lanes.values().all(|l| l.stock == 0));
    assert_eq!(door1.holder, None);
    assert_eq!(door1.position, DoorPosition::Unknown);
    assert_eq!(cabinet.door(DoorNo::of(3)), Err(CabinetError::UnknownDoor(DoorNo::of(3))));
}

#[test]
fn register_twice_is_rejected() {
    given(vec![registered()])
        .when(register(CabinetKind::Weight, plan()))
        .then_expect_error(CabinetError::AlreadyExists);
}

#[test]
fn register_locker_needs_a_compartment() {
    let r = fresh().when(register(CabinetKind::Locker, vec![])).inspect_result();
    assert_eq!(
        r,
        Err(CabinetError::Invalid {
            field: "doors".into(),
            reason: "a locker needs at least one compartment".into()
        })
    );
}

#[test]
fn register_rejects_a_planogram_without_doors() {
    let r = fresh().when(register(CabinetKind::Weight, vec![])).inspect_result();
    assert_eq!(
        r,
        Err(CabinetError::Invalid {
            field: "doors".into(),
            reason: "at least one door is required".into()
        })
    );
}

#[test]
fn register_rejects_a_duplicate_door() {
    let doors = vec![
        door(1, vec![lane(1, "cola", 330.0, 10, 3)]),
        door(1, vec![lane(1, "water", 500.0, 10, 2)]),
    ];
    let r = fresh().when(register(CabinetKind::Weight, doors)).inspect_result();
    assert_eq!(
        r,
        Err(CabinetError::Invalid {
            field: "doors[1].door".into(),
            reason: "duplicate door".into()
        })
    );
}

#[test]
fn register_rejects_a_duplicate_lane() {
    let doors = vec![
        door(1, vec![lane(1, "cola", 330.0, 10, 3)]),
        door(2, vec![lane(1, "water", 500.0, 10, 2), lane(1, "gum", 50.0, 20, 5)]),
    ];
    let r = fresh().when(register(CabinetKind::Weight, doors)).inspect_result();
    assert_eq!(
        r,
        Err(CabinetError::Invalid {
            field: "doors[1].lanes[1].lane".into(),
            reason: "duplicate lane".into()
        })
    );
}

#[test]
fn register_rejects_capacity_outside_1_to_1000() {
    for capacity in [0, 1001] {
        let doors = vec![door(1, vec![lane(1, "cola", 330.0, 10, 3), lane(2, "gum", 50.0, capacity, 0)])];
        assert_eq!(invalid_field(doors), "doors[0].lanes[1].capacity", "capacity {capacity}");
    }
}

#[test]
fn register_rejects_a_restock_threshold_above_capacity() {
    let doors = vec![door(1, vec![lane(1, "cola", 330.0, 10, 11)])];
    assert_eq!(invalid_field(doors), "doors[0].lanes[0].restock_threshold");
    // At capacity is fine.
    fresh()
        .when(register(CabinetKind::Weight, vec![door(1, vec![lane(1, "cola", 330.0, 10, 10)])]))
        .inspect_result()
        .unwrap();
}

#[test]
fn register_rejects_a_lane_whose_items_the_scale_cannot_separate() {
    // 5 g items, 100 of them: ±4.5 g at full load is not below half an item.
    let doors = vec![
        door(1, vec![lane(1, "cola", 330.0, 10, 3)]),
        door(2, vec![lane(1, "water", 500.0, 10, 2), lane(2, "mints", 5.0, 100, 10)]),
    ];
    assert_eq!(invalid_field(doors), "doors[1].lanes[1].tolerance");
    // A custom tolerance is judged too: 40 g on a 330 g item at 10 is too coarse.
    let mut coarse = lane(1, "cola", 330.0, 10, 3);
    coarse.tolerance = Tolerance {
        abs_grams: Grams::of(3.0),
        rel: 0.05,
    };
    assert_eq!(invalid_field(vec![door(1, vec![coarse])]), "doors[0].lanes[0].tolerance");
}

#[test]
fn commands_on_an_unregistered_cabinet_are_not_found() {
    let commands = vec![
        connect(),
        CabinetCommand::DisconnectDevice { at: AT },
        CabinetCommand::Initialize {
            readings: vec![(DoorNo::of(1), reading("m", &[(1, 0.0)]))],
            at: AT,
        },
        acquire(1, order_holder("order-1")),
        release(1, "order-1"),
        door_event(1, DoorPosition::Open, "m1", 1),
        finish_sale(1, "order-1", &[(1, 1)], true),
    ];
    for command in commands {
        fresh().when(command).then_expect_error(CabinetError::NotFound);
    }
}

// ---------------------------------------------------------------------------------------
// Connection and initialization
// ---------------------------------------------------------------------------------------

#[test]
fn first_connect_leaves_the_cabinet_pending_init() {
    given(vec![registered()])
        .when(connect())
        .then_expect_events(vec![connected(DeviceStatus::PendingInit)]);
    let cabinet = state_after(pending_init());
    assert_eq!(cabinet.status, DeviceStatus::PendingInit);
    assert_eq!(cabinet.node.as_deref(), Some("gw-1"));
}

#[test]
fn reconnect_before_initialization_is_still_pending_init() {
    given(with(pending_init(), [disconnected()]))
        .when(connect())
        .then_expect_events(vec![connected(DeviceStatus::PendingInit)]);
}

#[test]
fn connect_after_initialization_goes_online() {
    given(with(online(), [disconnected()]))
        .when(connect())
        .then_expect_events(vec![connected(DeviceStatus::Online)]);
    let cabinet = state_after(with(online(), [disconnected(), connected(DeviceStatus::Online)]));
    assert_eq!(cabinet.status, DeviceStatus::Online);
}

#[test]
fn disconnect_takes_an_online_or_pending_cabinet_offline() {
    for history in [pending_init(), online()] {
        given(history.clone())
            .when(CabinetCommand::DisconnectDevice { at: AT + 20 })
            .then_expect_events(vec![disconnected()]);
        let cabinet = state_after(with(history, [disconnected()]));
        assert_eq!(cabinet.status, DeviceStatus::Offline);
        assert_eq!(cabinet.node, None);
    }
}

#[test]
fn disconnect_when_not_connected_is_a_no_op() {
    for history in [vec![registered()], with(online(), [disconnected()])] {
        given(history)
            .when(CabinetCommand::DisconnectDevice { at: AT + 40 })
            .then_expect_events(vec![]);
    }
}

#[test]
fn a_silent_device_goes_offline_keeps_its_node_and_resumes_on_heartbeats() {
    let silent = CabinetEvent::DeviceWentSilent {
        last_seen: AT + 10,
        at: AT + 100,
    };
    given(online())
        .when(CabinetCommand::MarkSilent {
            last_seen: AT + 10,
            held_by: None,
            at: AT + 100,
        })
        .then_expect_events(vec![silent.clone()]);
    // Judged by the node it was on: applies while the device is still recorded there,
    // and is stale once the device connected through another node.
    let node = state_after(online()).node.expect("connected through a node");
    given(online())
        .when(CabinetCommand::MarkSilent {
            last_seen: AT + 10,
            held_by: Some(node),
            at: AT + 100,
        })
        .then_expect_events(vec![silent.clone()]);
    given(online())
        .when(CabinetCommand::MarkSilent {
            last_seen: AT + 10,
            held_by: Some("another-node".into()),
            at: AT + 100,
        })
        .then_expect_events(vec![]);
    let cabinet = state_after(with(online(), [silent.clone()]));
    assert_eq!(cabinet.status, DeviceStatus::Offline);
    assert!(cabinet.node.is_some(), "the connection may still be there");
    // Silent twice, or silent when not connected: nothing.
    given(with(online(), [silent.clone()]))
        .when(CabinetCommand::MarkSilent {
            last_seen: AT,
            held_by: None,
            at: AT + 200,
        })
        .then_expect_events(vec![]);
    given(vec![registered()])
        .when(CabinetCommand::MarkSilent {
            last_seen: AT,
            held_by: None,
            at: AT + 200,
        })
        .then_expect_events(vec![]);
    // Heartbeats again: back to where it was.
    let resumed = CabinetEvent::DeviceResumed {
        status: DeviceStatus::Online,
        at: AT + 300,
    };
    given(with(online(), [silent.clone()]))
        .when(CabinetCommand::MarkAlive { at: AT + 300 })
        .then_expect_events(vec![resumed.clone()]);
    given(with(pending_init(), [CabinetEvent::DeviceWentSilent { last_seen: AT, at: AT + 1 }]))
        .when(CabinetCommand::MarkAlive { at: AT + 300 })
        .then_expect_events(vec![CabinetEvent::DeviceResumed {
            status: DeviceStatus::PendingInit,
            at: AT + 300,
        }]);
    assert_eq!(state_after(with(online(), [silent.clone(), resumed])).status, DeviceStatus::Online);
    // Alive when online, or after a real disconnect: nothing (a reconnect boots).
    given(online())
        .when(CabinetCommand::MarkAlive { at: AT + 300 })
        .then_expect_events(vec![]);
    given(with(online(), [disconnected()]))
        .when(CabinetCommand::MarkAlive { at: AT + 300 })
        .then_expect_events(vec![]);
    // A disconnect after a silence still records that the connection went.
    given(with(online(), [silent]))
        .when(CabinetCommand::DisconnectDevice { at: AT + 20 })
        .then_expect_events(vec![disconnected()]);
}

#[test]
fn initialize_counts_opening_stock_from_stable_readings() {
    // 1985 g / 330 = 6.02 → 6; 498 g / 50 = 9.96 → 10; 2497 g / 500 = 4.99 → 5.
    given(pending_init())
        .when(CabinetCommand::Initialize {
            readings: vec![
                (DoorNo::of(2), reading("w2", &[(1, 2497.0)])),
                (DoorNo::of(1), reading("w1", &[(1, 1985.0), (2, 498.0)])),
            ],
            at: AT + 30,
        })
        .then_expect_events(online()[2..].to_vec());
    let cabinet = state_after(online());
    assert!(cabinet.initialized);
    assert_eq!(cabinet.status, DeviceStatus::Online);
    assert_eq!(cabinet.doors[&DoorNo::of(1)].lanes[&LaneNo::of(1)].stock, 6);
    assert_eq!(cabinet.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)].stock, 10);
    assert_eq!(cabinet.doors[&DoorNo::of(2)].lanes[&LaneNo::of(1)].stock, 5);
}

#[test]
fn initialize_counts_an_empty_or_negative_lane_as_zero() {
    given(pending_init())
        .when(CabinetCommand::Initialize {
            readings: vec![
                (DoorNo::of(1), reading("w1", &[(1, -4.0), (2, 0.0)])),
                (DoorNo::of(2), reading("w2", &[(1, 1000.0)])),
            ],
            at: AT + 30,
        })
        .then_expect_events(vec![
            stock_changed(1, 1, "cola", 0, 0, StockReason::Opening, AT + 30),
            stock_changed(1, 2, "gum", 0, 0, StockReason::Opening, AT + 30),
            stock_changed(2, 1, "water", 0, 2, StockReason::Opening, AT + 30),
            CabinetEvent::CabinetInitialized { at: AT + 30 },
        ]);
}

#[test]
fn initialize_without_a_reading_for_every_door_is_rejected() {
    given(pending_init())
        .when(CabinetCommand::Initialize {
            readings: vec![(DoorNo::of(1), reading("w1", &[(1, 1980.0), (2, 500.0)]))],
            at: AT + 30,
        })
        .then_expect_error(CabinetError::Invalid {
            field: "readings".into(),
            reason: "no stable reading for door 2".into(),
        });
}

#[test]
fn initialize_with_a_lane_missing_from_the_reading_is_rejected() {
    given(pending_init())
        .when(CabinetCommand::Initialize {
            readings: vec![
                (DoorNo::of(1), reading("w1", &[(1, 1980.0)])),
                (DoorNo::of(2), reading("w2", &[(1, 2500.0)])),
            ],
            at: AT + 30,
        })
        .then_expect_error(CabinetError::Invalid {
            field: "readings".into(),
            reason: "door 1 lane 2 missing".into(),
        });
}

#[test]
fn initialize_outside_pending_init_is_a_no_op() {
    let readings = vec![
        (DoorNo::of(1), reading("w1", &[(1, 330.0), (2, 50.0)])),
        (DoorNo::of(2), reading("w2", &[(1, 500.0)])),
    ];
    // Already initialized (a repeat), never connected, or offline.
    for history in [online(), vec![registered()], with(pending_init(), [disconnected()])] {
        given(history)
            .when(CabinetCommand::Initialize {
                readings: readings.clone(),
                at: AT + 40,
            })
            .then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------------------------------
// Door ownership
// ---------------------------------------------------------------------------------------

#[test]
fn acquire_takes_a_free_door_of_an_online_cabinet() {
    given(online())
        .when(acquire(1, order_holder("order-1")))
        .then_expect_events(vec![acquired(1, order_holder("order-1"))]);
    let cabinet = state_after(with(online(), [acquired(1, order_holder("order-1"))]));
    assert_eq!(cabinet.doors[&DoorNo::of(1)].holder, Some(order_holder("order-1")));
    assert_eq!(cabinet.doors[&DoorNo::of(2)].holder, None);
}

#[test]
fn acquire_an_unknown_door_is_rejected() {
    given(online())
        .when(acquire(9, order_holder("order-1")))
        .then_expect_error(CabinetError::UnknownDoor(DoorNo::of(9)));
}

#[test]
fn acquire_on_a_cabinet_that_is_not_online_is_not_available() {
    let cases = [
        (vec![registered()], "not_connected"),
        (pending_init(), "pending_init"),
        (with(online(), [disconnected()]), "offline"),
    ];
    for (history, status) in cases {
        given(history)
            .when(acquire(1, order_holder("order-1")))
            .then_expect_error(CabinetError::NotAvailable(status));
    }
}

#[test]
fn acquire_a_door_held_by_someone_else_is_busy() {
    let history = with(online(), [acquired(1, order_holder("order-1"))]);
    given(history.clone())
        .when(acquire(1, order_holder("order-2")))
        .then_expect_error(CabinetError::DoorBusy);
    given(history.clone())
        .when(acquire(
            1,
            Holder::Restock {
                session_id: "restock-1".into(),
            },
        ))
        .then_expect_error(CabinetError::DoorBusy);
    // The other door is free.
    given(history)
        .when(acquire(2, order_holder("order-2")))
        .then_expect_events(vec![acquired(2, order_holder("order-2"))]);
}

#[test]
fn acquire_again_by_the_same_holder_is_a_no_op() {
    let history = with(online(), [acquired(1, order_holder("order-1"))]);
    given(history.clone())
        .when(acquire(1, order_holder("order-1")))
        .then_expect_events(vec![]);
    // Even once the device went offline: the session already has the door.
    given(with(history, [disconnected()]))
        .when(acquire(1, order_holder("order-1")))
        .then_expect_events(vec![]);
}

#[test]
fn release_by_the_holder_frees_the_door() {
    let holder = Holder::Calibration {
        calibration_id: "cal-1".into(),
    };
    let history = with(online(), [acquired(1, holder)]);
    given(history.clone())
        .when(release(1, "cal-1"))
        .then_expect_events(vec![released(1, "cal-1", "done", AT + 200)]);
    given(with(history, [released(1, "cal-1", "done", AT + 200)]))
        .when(acquire(1, order_holder("order-2")))
        .then_expect_events(vec![acquired(1, order_holder("order-2"))]);
}

#[test]
fn release_by_a_non_holder_is_a_no_op() {
    given(with(online(), [acquired(1, order_holder("order-1"))]))
        .when(release(1, "order-2"))
        .then_expect_events(vec![]);
    // A free door, or a repeated release.
    given(online()).when(release(1, "order-1")).then_expect_events(vec![]);
}

#[test]
fn release_an_unknown_door_is_rejected() {
    given(online())
        .when(release(7, "order-1"))
        .then_expect_error(CabinetError::UnknownDoor(DoorNo::of(7)));
}

// ---------------------------------------------------------------------------------------
// Door events
// ---------------------------------------------------------------------------------------

#[test]
fn door_open_is_recorded_with_its_holder() {
    let history = with(online(), [acquired(1, order_holder("order-1"))]);
    given(history.clone())
        .when(CabinetCommand::RecordDoorEvent {
            stable_before: None,
            door: DoorNo::of(1),
            position: DoorPosition::Open,
            msg_id: "m1".into(),
            seq: 1,
            device_ts: AT + 150,
            cmd_id: Some("order-1-open".into()),
            at: AT + 160,
        })
        .then_expect_events(vec![CabinetEvent::DoorOpened {
            stable_before: None,
            not_before: None,
            door: DoorNo::of(1),
            holder: Some(order_holder("order-1")),
            msg_id: "m1".into(),
            seq: 1,
            device_ts: AT + 150,
            cmd_id: Some("order-1-open".into()),
            at: AT + 160,
        }]);
    let cabinet = state_after(with(history, [opened(1, Some(order_holder("order-1")), "m1", 1)]));
    assert_eq!(cabinet.doors[&DoorNo::of(1)].position, DoorPosition::Open);
    assert_eq!(cabinet.doors[&DoorNo::of(1)].last_seq, Some(1));
    assert!(cabinet.recent_msg_ids.contains(&"m1".to_string()));
}

/// The node that received a door report puts its baseline in the event, so whichever
/// node runs the order's effects has it; events stored before it was carried still read.
#[test]
fn a_door_event_carries_the_reading_before_it() {
    let r = reading("w1", &[(1, 990.0)]);
    let report = |position| CabinetCommand::RecordDoorEvent {
        stable_before: Some(r.clone()),
        door: DoorNo::of(1),
        position,
        msg_id: "m1".into(),
        seq: 1,
        device_ts: AT + 150,
        cmd_id: None,
        at: AT + 160,
    };
    given(online())
        .when(report(DoorPosition::Open))
        .then_expect_events(vec![CabinetEvent::DoorOpened {
            stable_before: Some(r.clone()),
            not_before: None,
            door: DoorNo::of(1),
            holder: None,
            msg_id: "m1".into(),
            seq: 1,
            device_ts: AT + 150,
            cmd_id: None,
            at: AT + 160,
        }]);
    given(online())
        .when(report(DoorPosition::Closed))
        .then_expect_events(vec![CabinetEvent::DoorClosed {
            stable_before: Some(r.clone()),
            not_before: None,
            door: DoorNo::of(1),
            holder: None,
            unexpected: true,
            msg_id: "m1".into(),
            seq: 1,
            device_ts: AT + 150,
            at: AT + 160,
        }]);
    let old = serde_json::json!({"DoorClosed": {"door": 1, "holder": null, "unexpected": true, "msg_id": "m", "seq": 1, "device_ts": 5, "at": 6}});
    let e: CabinetEvent = serde_json::from_value(old).expect("an event stored before the field");
    assert!(matches!(e, CabinetEvent::DoorClosed { stable_before: None, .. }));
}

/// A baseline taken before the door's previous close predates the previous shopper's
/// takes: the next door event drops it and names that close, so no node weighs against
/// it [O5]. A reading from after the close is kept; a device clock that stepped back
/// behind the close disables the guard rather than refusing every baseline.
#[test]
fn a_baseline_older_than_the_doors_previous_close_is_dropped() {
    let history = with(online(), [opened(1, None, "m1", 1), closed(1, None, false, "m2", 2)]);
    let closed_at = AT + 150;
    let report = |r: StableReading, device_ts| CabinetCommand::RecordDoorEvent {
        stable_before: Some(r),
        door: DoorNo::of(1),
        position: DoorPosition::Open,
        msg_id: "m3".into(),
        seq: 3,
        device_ts,
        cmd_id: None,
        at: AT + 900,
    };
    let opened_with = |stable_before, not_before, device_ts| CabinetEvent::DoorOpened {
        stable_before,
        not_before,
        door: DoorNo::of(1),
        holder: None,
        msg_id: "m3".into(),
        seq: 3,
        device_ts,
        cmd_id: None,
        at: AT + 900,
    };
    let stale = reading_at("w0", &[(1, 990.0)], closed_at - 1);
    let fresh = reading_at("w1", &[(1, 890.0)], closed_at + 10);
    given(history.clone())
        .when(report(stale.clone(), AT + 800))
        .then_expect_events(vec![opened_with(None, Some(closed_at), AT + 800)]);
    given(history.clone())
        .when(report(fresh.clone(), AT + 800))
        .then_expect_events(vec![opened_with(Some(fresh), Some(closed_at), AT + 800)]);
    given(history.clone())
        .when(report(stale.clone(), closed_at - 5))
        .then_expect_events(vec![opened_with(Some(stale), None, closed_at - 5)]);
    assert_eq!(state_after(history).doors[&DoorNo::of(1)].closed_device_ts, Some(closed_at));
}

#[test]
fn close_after_an_open_is_expected() {
    given(with(online(), [opened(1, None, "m1", 1)]))
        .when(door_event(1, DoorPosition::Closed, "m2", 2))
        .then_expect_events(vec![closed(1, None, false, "m2", 2)]);
}

#[test]
fn close_of_a_door_not_known_open_is_unexpected() {
    // Never reported.
    given(online())
        .when(door_event(1, DoorPosition::Closed, "m1", 1))
        .then_expect_events(vec![closed(1, None, true, "m1", 1)]);
    // Already closed (the open was lost).
    let holder = order_holder("order-1");
    given(with(
        online(),
        [acquired(1, holder.clone()), closed(1, Some(holder.clone()), true, "m1", 1)],
    ))
    .when(door_event(1, DoorPosition::Closed, "m3", 3))
    .then_expect_events(vec![CabinetEvent::DoorClosed {
        // The first close bounds this one's baseline.
        not_before: Some(AT + 150),
        stable_before: None,
        door: DoorNo::of(1),
        holder: Some(holder),
        unexpected: true,
        msg_id: "m3".into(),
        seq: 3,
        device_ts: AT + 150,
        at: AT + 160,
    }]);
}

#[test]
fn door_event_with_an_unknown_position_is_rejected() {
    given(online())
        .when(door_event(1, DoorPosition::Unknown, "m1", 1))
        .then_expect_error(CabinetError::Invalid {
            field: "state".into(),
            reason: "must be open or closed".into(),
        });
}

#[test]
fn door_event_for_an_unknown_door_is_rejected() {
    given(online())
        .when(door_event(5, DoorPosition::Open, "m1", 1))
        .then_expect_error(CabinetError::UnknownDoor(DoorNo::of(5)));
}

#[test]
fn duplicate_door_message_is_ignored() {
    given(with(online(), [opened(1, None, "m1", 1)]))
        .when(door_event(1, DoorPosition::Open, "m1", 1))
        .then_expect_events(vec![]);
    // The id decides, even if the duplicate carries another sequence or door.
    given(with(online(), [opened(1, None, "m1", 1)]))
        .when(door_event(2, DoorPosition::Closed, "m1", 9))
        .then_expect_events(vec![]);
}

#[test]
fn late_door_event_is_recorded_but_not_applied() {
    let holder = order_holder("order-1");
    let history = with(online(), [acquired(1, holder.clone()), opened(1, Some(holder.clone()), "m5", 5)]);
    let late = CabinetEvent::LateDoorEventRecorded {
        door: DoorNo::of(1),
        position: DoorPosition::Closed,
        msg_id: "m4".into(),
        seq: 4,
        applied_seq: 5,
        holder: Some(holder.clone()),
        at: AT + 160,
    };
    given(history.clone())
        .when(door_event(1, DoorPosition::Closed, "m4", 4))
        .then_expect_events(vec![late.clone()]);
    // The same sequence again (new message id) is late too.
    given(history.clone())
        .when(door_event(1, DoorPosition::Closed, "m5b", 5))
        .then_expect_events(vec![CabinetEvent::LateDoorEventRecorded {
            door: DoorNo::of(1),
            position: DoorPosition::Closed,
            msg_id: "m5b".into(),
            seq: 5,
            applied_seq: 5,
            holder: Some(holder.clone()),
            at: AT + 160,
        }]);
    // The door is still open afterwards, and the late message is remembered.
    let after_late = with(history, [late]);
    let cabinet = state_after(after_late.clone());
    assert_eq!(cabinet.doors[&DoorNo::of(1)].position, DoorPosition::Open);
    assert_eq!(cabinet.doors[&DoorNo::of(1)].last_seq, Some(5));
    given(after_late.clone())
        .when(door_event(1, DoorPosition::Closed, "m4", 4))
        .then_expect_events(vec![]);
    given(after_late)
        .when(door_event(1, DoorPosition::Closed, "m6", 6))
        .then_expect_events(vec![closed(1, Some(holder), false, "m6", 6)]);
}

#[test]
fn door_sequence_restarts_after_the_device_reconnects() {
    let history = with(
        online(),
        [opened(1, None, "m5", 5), disconnected(), connected(DeviceStatus::Online)],
    );
    assert_eq!(state_after(history.clone()).doors[&DoorNo::of(1)].last_seq, None);
    given(history)
        .when(door_event(1, DoorPosition::Closed, "boot-1", 1))
        .then_expect_events(vec![closed(1, None, false, "boot-1", 1)]);
}

#[test]
fn cabinet_remembers_only_the_most_recent_door_messages() {
    let mut history = online();
    for seq in 1..=65u64 {
        let position_event = if seq % 2 == 1 {
            opened(1, None, &format!("m{seq}"), seq)
        } else {
            closed(1, None, false, &format!("m{seq}"), seq)
        };
        history.push(position_event);
    }
    let cabinet = state_after(history.clone());
    assert_eq!(cabinet.recent_msg_ids.len(), 64);
    assert_eq!(cabinet.recent_msg_ids.front().map(String::as_str), Some("m2"));
    // A forgotten id is judged by its sequence instead: late, not a duplicate.
    given(history)
        .when(door_event(1, DoorPosition::Open, "m1", 1))
        .then_expect_events(vec![CabinetEvent::LateDoorEventRecorded {
            door: DoorNo::of(1),
            position: DoorPosition::Open,
            msg_id: "m1".into(),
            seq: 1,
            applied_seq: 65,
            holder: None,
            at: AT + 160,
        }]);
}

// ---------------------------------------------------------------------------------------
// Sales
// ---------------------------------------------------------------------------------------

fn held_by_order_1() -> Vec<CabinetEvent> {
    with(online(), [acquired(1, order_holder("order-1"))])
}

#[test]
fn finish_sale_records_stock_movements_and_releases_the_door() {
    given(held_by_order_1())
        .when(finish_sale(1, "order-1", &[(1, 2), (2, 1)], true))
        .then_expect_events(vec![
            stock_changed(1, 1, "cola", 6, 4, sale("order-1"), AT + 500),
            stock_changed(1, 2, "gum", 10, 9, sale("order-1"), AT + 500),
            released(1, "order-1", "sale_finished", AT + 500),
        ]);
    let cabinet = state_after(with(
        held_by_order_1(),
        [
            stock_changed(1, 1, "cola", 6, 4, sale("order-1"), AT + 500),
            stock_changed(1, 2, "gum", 10, 9, sale("order-1"), AT + 500),
            released(1, "order-1", "sale_finished", AT + 500),
        ],
    ));
    assert_eq!(cabinet.doors[&DoorNo::of(1)].lanes[&LaneNo::of(1)].stock, 4);
    assert_eq!(cabinet.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)].stock, 9);
    assert_eq!(cabinet.doors[&DoorNo::of(1)].holder, None);
}

#[test]
fn finish_sale_raises_restock_when_a_lane_reaches_its_threshold() {
    // Cola: 6 → 3 with the threshold at 3.
    given(held_by_order_1())
        .when(finish_sale(1, "order-1", &[(1, 3)], true))
        .then_expect_events(vec![
            stock_changed(1, 1, "cola", 6, 3, sale("order-1"), AT + 500),
            CabinetEvent::RestockNeeded {
                door: DoorNo::of(1),
                lane: LaneNo::of(1),
                sku: Sku::of("cola"),
                stock: 3,
                threshold: 3,
                at: AT + 500,
            },
            released(1, "order-1", "sale_finished", AT + 500),
        ]);
}

#[test]
fn finish_sale_does_not_raise_restock_again_below_the_threshold() {
    let history = with(
        online(),
        [
            stock_changed(1, 1, "cola", 6, 3, sale("order-0"), AT + 50),
            acquired(1, order_holder("order-1")),
        ],
    );
    given(history)
        .when(finish_sale(1, "order-1", &[(1, 1)], true))
        .then_expect_events(vec![
            stock_changed(1, 1, "cola", 3, 2, sale("order-1"), AT + 500),
            released(1, "order-1", "sale_finished", AT + 500),
        ]);
}

#[test]
fn uncharged_finish_sale_records_an_uncharged_take() {
    given(held_by_order_1())
        .when(finish_sale(1, "order-1", &[(2, 2)], false))
        .then_expect_events(vec![
            stock_changed(
                1,
                2,
                "gum",
                10,
                8,
                StockReason::UnchargedTake {
                    order_id: "order-1".into(),
                },
                AT + 500,
            ),
            released(1, "order-1", "sale_finished", AT + 500),
        ]);
}

#[test]
fn finish_sale_skips_zero_counts_and_unknown_lanes() {
    given(held_by_order_1())
        .when(finish_sale(1, "order-1", &[(1, 0), (9, 2)], true))
        .then_expect_events(vec![released(1, "order-1", "sale_finished", AT + 500)]);
}

#[test]
fn second_finish_sale_is_a_no_op() {
    let history = with(
        held_by_order_1(),
        [
            stock_changed(1, 1, "cola", 6, 5, sale("order-1"), AT + 500),
            released(1, "order-1", "sale_finished", AT + 500),
        ],
    );
    given(history)
        .when(finish_sale(1, "order-1", &[(1, 1)], true))
        .then_expect_events(vec![]);
}

#[test]
fn finish_sale_by_an_order_that_does_not_hold_the_door_is_a_no_op() {
    given(held_by_order_1())
        .when(finish_sale(1, "order-2", &[(1, 1)], true))
        .then_expect_events(vec![]);
    given(online())
        .when(finish_sale(1, "order-1", &[(1, 1)], true))
        .then_expect_events(vec![]);
}

#[test]
fn finish_sale_on_an_unknown_door_is_rejected() {
    given(held_by_order_1())
        .when(finish_sale(4, "order-1", &[(1, 1)], true))
        .then_expect_error(CabinetError::UnknownDoor(DoorNo::of(4)));
}

// ---------------------------------------------------------------------------------------
// Errors and small helpers
// ---------------------------------------------------------------------------------------

#[test]
fn errors_map_to_rejection_kinds_and_codes() {
    let cases = [
        (CabinetError::AlreadyExists, RejectionKind::Conflict, "cabinet_exists"),
        (CabinetError::NotFound, RejectionKind::NotFound, "cabinet_not_found"),
        (CabinetError::UnknownDoor(DoorNo::of(3)), RejectionKind::NotFound, "door_not_found"),
        (
            CabinetError::NotAvailable("offline"),
            RejectionKind::Conflict,
            "cabinet_unavailable",
        ),
        (CabinetError::DoorBusy, RejectionKind::Conflict, "cabinet_busy"),
        (
            CabinetError::Invalid {
                field: "doors".into(),
                reason: "x".into(),
            },
            RejectionKind::Invalid,
            "invalid_field",
        ),
    ];
    for (error, kind, code) in cases {
        assert_eq!(error.kind(), kind, "{error:?}");
        assert_eq!(error.code(), code, "{error:?}");
    }
}

#[test]
fn holder_session_id_is_the_order_restock_or_calibration_id() {
    assert_eq!(order_holder("order-1").session_id(), "order-1");
    assert_eq!(Holder::Restock { session_id: "r-1".into() }.session_id(), "r-1");
    assert_eq!(
        Holder::Calibration {
            calibration_id: "c-1".into()
        }
        .session_id(),
        "c-1"
    );
}

#[test]
fn lane_plan_scale_carries_what_the_inference_needs() {
    let plan = lane(2, "gum", 50.0, 20, 5);
    let scale = plan.scale();
    assert_eq!(scale.lane, LaneNo::of(2));
    assert_eq!(scale.sku, Sku::of("gum"));
    assert_eq!(scale.unit_grams, Grams::of(50.0));
    assert_eq!(scale.tolerance, Tolerance::default());
}

// ---------------------------------------------------------------------------------------
// Lockers [seed 000]
// ---------------------------------------------------------------------------------------

fn locker_plan() -> Vec<DoorPlan> {
    (1..=2)
        .map(|d| DoorPlan {
            door: DoorNo::of(d),
            lanes: vec![],
        })
        .collect()
}

fn locker_registered() -> CabinetEvent {
    CabinetEvent::CabinetRegistered {
        id: cabinet_id(),
        kind: CabinetKind::Locker,
        location: location(),
        doors: locker_plan(),
        at: AT,
    }
}

#[test]
fn a_locker_registers_compartments_without_lanes_and_is_online_on_connect() {
    given(vec![])
        .when(CabinetCommand::Register {
            id: cabinet_id(),
            kind: CabinetKind::Locker,
            location: location(),
            doors: locker_plan(),
            at: AT,
        })
        .then_expect_events(vec![locker_registered()]);
    given(vec![])
        .when(CabinetCommand::Register {
            id: cabinet_id(),
            kind: CabinetKind::Locker,
            location: location(),
            doors: plan(),
            at: AT,
        })
        .then_expect_error(CabinetError::Invalid {
            field: "doors[0].lanes".into(),
            reason: "a locker compartment has no lanes".into(),
        });
    given(vec![locker_registered()])
        .when(connect())
        .then_expect_events(vec![connected(DeviceStatus::Online)]);
}

#[test]
fn compartment_changes_and_ad_plays_are_recorded_once() {
    let locker = vec![locker_registered(), connected(DeviceStatus::Online)];
    let popped = CabinetEvent::CompartmentChanged {
        compartment: DoorNo::of(2),
        change: CompartmentChange::Popped,
        msg_id: "m1".into(),
        at: AT + 50,
    };
    let record = |change, msg: &str| CabinetCommand::RecordCompartment {
        compartment: DoorNo::of(2),
        change,
        msg_id: msg.into(),
        at: AT + 50,
    };
    given(locker.clone())
        .when(record(CompartmentChange::Popped, "m1"))
        .then_expect_events(vec![popped.clone()]);
    given(with(locker.clone(), [popped.clone()]))
        .when(record(CompartmentChange::Popped, "m1"))
        .then_expect_events(vec![]);
    let taken = CabinetEvent::CompartmentChanged {
        compartment: DoorNo::of(2),
        change: CompartmentChange::Taken,
        msg_id: "m2".into(),
        at: AT + 50,
    };
    let state = state_after(with(locker.clone(), [popped, taken]));
    assert_eq!(state.doors[&DoorNo::of(2)].position, DoorPosition::Open);
    assert_eq!(state.doors[&DoorNo::of(2)].occupied, Some(false));
    given(locker.clone())
        .when(CabinetCommand::RecordCompartment {
            compartment: DoorNo::of(7),
            change: CompartmentChange::Taken,
            msg_id: "m3".into(),
            at: AT,
        })
        .then_expect_error(CabinetError::UnknownDoor(DoorNo::of(7)));
    // A weight cabinet has no compartments.
    given(online())
        .when(record(CompartmentChange::Taken, "m4"))
        .then_expect_error(CabinetError::Invalid {
            field: "compartment".into(),
            reason: "this cabinet has no compartments".into(),
        });
    let play = |ms: u64| CabinetCommand::RecordAdPlay {
        ad_id: "ad1".into(),
        duration_ms: ms,
        msg_id: "p1".into(),
        at: AT + 60,
    };
    given(locker.clone())
        .when(play(15_000))
        .then_expect_events(vec![CabinetEvent::AdPlayed {
            ad_id: "ad1".into(),
            duration_ms: 15_000,
            msg_id: "p1".into(),
            at: AT + 60,
        }]);
    given(locker).when(play(4_000_000)).then_expect_error(CabinetError::Invalid {
        field: "duration_ms".into(),
        reason: "must be at most one hour".into(),
    });
}

#[test]
fn device_access_switches_are_recorded_only_when_they_change_something() {
    let off = CabinetEvent::DeviceAccessChanged {
        enabled: false,
        by: "operator".into(),
        at: AT + 5,
    };
    let set = |enabled| CabinetCommand::SetDeviceAccess {
        enabled,
        by: "operator".into(),
        at: AT + 5,
    };
    given(online()).when(set(false)).then_expect_events(vec![off.clone()]);
    given(online()).when(set(true)).then_expect_events(vec![]);
    given(with(online(), [off.clone()])).when(set(false)).then_expect_events(vec![]);
    assert!(state_after(with(online(), [off])).device_disabled);
}

#[test]
fn a_boot_must_describe_the_planogram() {
    let cabinet = state_after(vec![registered()]);
    // Two doors: two lanes, then one.
    assert_eq!(cabinet.check_boot(2, &[2, 1]), Ok(()));
    for (doors, lanes) in [(1, vec![2]), (2, vec![2, 2]), (3, vec![2, 1, 0]), (2, vec![1, 2])] {
        let err = cabinet.check_boot(doors, &lanes).unwrap_err();
        assert!(err.contains("the planogram has 2 doors with lanes [2, 1]"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// Labels, swaps and calibration [C2, M1]
// ---------------------------------------------------------------------------------------

fn label(price: i64, issued_at: UnixMs) -> CabinetCommand {
    CabinetCommand::ApplyPriceLabel {
        door: DoorNo::of(1),
        lane: LaneNo::of(1),
        sku: Sku::of("cola"),
        price: Cents::new(price),
        name: "COLA".into(),
        issued_at,
        at: AT + 100,
    }
}

fn relabelled(price: i64, issued_at: UnixMs) -> CabinetEvent {
    CabinetEvent::LanePriceChanged {
        door: DoorNo::of(1),
        lane: LaneNo::of(1),
        sku: Sku::of("cola"),
        from: Cents::new(300),
        to: Cents::new(price),
        name: "COLA".into(),
        price_version: 2,
        issued_at,
        at: AT + 100,
    }
}

#[test]
fn an_acknowledged_label_sets_the_lanes_price_once_and_an_older_one_never() {
    TestFramework::<Cabinet>::with(())
        .given(online())
        .when(label(350, AT + 50))
        .then_expect_events(vec![relabelled(350, AT + 50)]);
    // The same price and name again: nothing.
    TestFramework::<Cabinet>::with(())
        .given(online())
        .when(label(300, AT + 50))
        .then_expect_events(vec![]);
    // A label issued before the one applied arrives late: nothing.
    TestFramework::<Cabinet>::with(())
        .given(with(online(), [relabelled(350, AT + 50)]))
        .when(label(320, AT + 40))
        .then_expect_events(vec![]);
    // A label for a product the lane no longer holds: nothing.
    let mut other = label(350, AT + 60);
    if let CabinetCommand::ApplyPriceLabel { sku, .. } = &mut other {
        *sku = Sku::of("gum");
    }
    TestFramework::<Cabinet>::with(())
        .given(online())
        .when(other)
        .then_expect_events(vec![]);
    let mut c = Cabinet::default();
    for e in with(online(), [relabelled(350, AT + 50)]) {
        c.apply(e);
    }
    let l = &c.doors[&DoorNo::of(1)].lanes[&LaneNo::of(1)];
    assert_eq!(
        (l.plan.price, l.plan.price_version, l.label_issued_at),
        (Cents::new(350), 2, AT + 50)
    );
}

#[test]
fn a_lane_swaps_product_only_when_empty_and_a_new_weight_needs_calibration() {
    let melon = LanePlan {
        unit_grams: Grams::of(900.0),
        ..lane(2, "melon", 900.0, 5, 1)
    };
    let swap = |plan: LanePlan| CabinetCommand::SwapLane {
        door: DoorNo::of(1),
        plan,
        at: AT + 200,
    };
    TestFramework::<Cabinet>::with(())
        .given(online())
        .when(swap(melon.clone()))
        .then_expect_error(CabinetError::LaneNotEmpty {
            lane: LaneNo::of(2),
            stock: 10,
        });
    let sold_out = with(online(), [stock_changed(1, 2, "gum", 10, 0, StockReason::Opening, AT + 40)]);
    let swapped = CabinetEvent::LaneProductSwapped {
        door: DoorNo::of(1),
        lane: LaneNo::of(2),
        from: Sku::of("gum"),
        plan: melon.clone(),
        planogram_version: 2,
        needs_calibration: true,
        at: AT + 200,
    };
    TestFramework::<Cabinet>::with(())
        .given(sold_out.clone())
        .when(swap(melon.clone()))
        .then_expect_events(vec![swapped.clone()]);
    let bad = LanePlan {
        restock_threshold: 9,
        ..melon.clone()
    };
    let e = Cabinet::default_with(&sold_out).decide(swap(bad)).unwrap_err();
    assert_eq!((e.code(), e.field().as_deref()), ("invalid_field", Some("restock_threshold")));
    let held = with(
        sold_out.clone(),
        [CabinetEvent::DoorAcquired {
            door: DoorNo::of(1),
            holder: Holder::Restock { session_id: "rs".into() },
            at: AT + 150,
        }],
    );
    TestFramework::<Cabinet>::with(())
        .given(held)
        .when(swap(melon.clone()))
        .then_expect_error(CabinetError::DoorBusy);

    // Calibrated within tolerance: the lane sells again, once per command.
    let after_swap = with(sold_out, [swapped]);
    let calibrate = |measured: f64, cmd: &str| CabinetCommand::RecordCalibration {
        door: DoorNo::of(1),
        lane: LaneNo::of(2),
        standard_grams: Grams::of(500.0),
        measured_grams: Grams::of(measured),
        cmd_id: cmd.into(),
        at: AT + 300,
    };
    let mut c = Cabinet::default_with(&after_swap);
    assert!(c.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)].needs_calibration);
    let off = c.decide(calibrate(530.0, "c1")).unwrap();
    assert!(matches!(
        off[..],
        [CabinetEvent::LaneCalibrated {
            version: 1,
            within_limit: false,
            ..
        }]
    ));
    for e in off {
        c.apply(e);
    }
    assert!(
        c.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)].needs_calibration,
        "still off: still blocked"
    );
    assert_eq!(
        c.decide(calibrate(530.0, "c1")),
        Ok(vec![]),
        "the same command again records nothing"
    );
    for e in c.decide(calibrate(500.5, "c2")).unwrap() {
        c.apply(e);
    }
    let l = &c.doors[&DoorNo::of(1)].lanes[&LaneNo::of(2)];
    assert_eq!((l.needs_calibration, l.calibration_version), (false, 2));
}

impl Cabinet {
    fn default_with(events: &[CabinetEvent]) -> Self {
        let mut c = Self::default();
        for e in events {
            c.apply(e.clone());
        }
        c
    }
}

#[test]
fn look_alike_products_on_one_door_are_refused_one_for_one_and_warned_in_combinations() {
    // 3 gum (3 x 27.5 = 82.5 g) weigh like 1 bag of chips (82 g): warned.
    let gum = lane(1, "gum", 27.5, 20, 2);
    let chips = lane(2, "chips", 82.0, 20, 2);
    let found = door_ambiguities(&[gum.clone(), chips.clone()]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].a_items, found[0].b_items, found[0].refuses()), (3, 1, false));
    assert!(found[0]
        .describe(&[gum.clone(), chips.clone()])
        .contains("3 x gum (lane 1) and 1 x chips (lane 2)"));
    let warned = vec![DoorPlan {
        door: DoorNo::of(1),
        lanes: vec![gum.clone(), chips],
    }];
    TestFramework::<Cabinet>::with(())
        .given_no_previous_events()
        .when(register(CabinetKind::Weight, warned))
        .then_expect_events(vec![CabinetEvent::CabinetRegistered {
            id: cabinet_id(),
            kind: CabinetKind::Weight,
            location: location(),
            doors: vec![DoorPlan {
                door: DoorNo::of(1),
                lanes: vec![gum, lane(2, "chips", 82.0, 20, 2)],
            }],
            at: AT,
        }]);
    // Two products a gram apart: a swap of one for the other goes unseen — refused.
    let cola = lane(1, "cola", 348.0, 10, 2);
    let lookalike = lane(2, "soda", 347.0, 10, 2);
    let refused = vec![DoorPlan {
        door: DoorNo::of(1),
        lanes: vec![cola.clone(), lookalike.clone()],
    }];
    let e = Cabinet::default().decide(register(CabinetKind::Weight, refused)).unwrap_err();
    assert_eq!(e.field().as_deref(), Some("doors[0].lanes[1].sku"), "{e}");
    assert!(e.to_string().contains("cannot be told apart"), "{e}");
    // On different doors they are no trouble.
    let apart = vec![
        DoorPlan {
            door: DoorNo::of(1),
            lanes: vec![cola],
        },
        DoorPlan {
            door: DoorNo::of(2),
            lanes: vec![lookalike],
        },
    ];
    assert!(Cabinet::default().decide(register(CabinetKind::Weight, apart)).is_ok());
    // The same product on two lanes is not a look-alike.
    assert!(door_ambiguities(&[lane(1, "cola", 348.0, 10, 2), lane(2, "cola", 348.0, 10, 2)]).is_empty());
}

mod drift_tests;
mod stock_check_tests;
