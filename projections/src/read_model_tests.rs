//! Given events → expected rows, for the projections of `lib.rs` and `product_lanes`:
//! order summaries and their indexes by cabinet and state, lane stock, the lane ledger,
//! and the lanes of each product.

use super::*;
use std::collections::BTreeMap;
use tare_domain::cabinet::{DoorPlan, LanePlan};
use tare_domain::order::OrderEvent;
use tare_domain::weight::Tolerance;
use tare_domain::{CabinetId, CabinetKind, Cents, ConfirmMode, DoorNo, GeoPoint, Grams, LaneNo, ProviderKind, Sku};

/// Folds `events` (aggregate id, event) through `p` from nothing, as the runner does;
/// returns every document with its owner.
fn fold(p: &dyn Projection, events: &[(&str, AnyEvent)]) -> BTreeMap<String, (Option<String>, Value)> {
    let mut docs: BTreeMap<String, (Option<String>, Value)> = BTreeMap::new();
    for (position, (id, e)) in (1..).zip(events) {
        let touched: Vec<(String, Option<Value>)> = p
            .touches(id, e)
            .into_iter()
            .map(|t| {
                let d = docs.get(&t).map(|(_, d)| d.clone());
                (t, d)
            })
            .collect();
        for w in p.apply(&touched, id, e, position, 1_000 + position) {
            docs.insert(w.id, (w.owner, w.doc));
        }
    }
    docs
}

fn order(e: OrderEvent) -> (&'static str, AnyEvent) {
    ("o1", AnyEvent::Order(e))
}

fn order_day() -> Vec<(&'static str, AnyEvent)> {
    vec![
        order(OrderEvent::OrderCreated {
            order_id: "o1".into(),
            shopper_id: "s1".into(),
            cabinet: CabinetId::new("c1", "SN-1").unwrap(),
            door: DoorNo::of(2),
            provider: ProviderKind::Alipay,
            confirm_mode: ConfirmMode::EachTime,
            lanes: vec![],
            planogram_version: 1,
            auth_deadline: 0,
            at: 10,
        }),
        order(OrderEvent::OrderAuthorized { at: 11 }),
        order(OrderEvent::WeightsSettled {
            after: tare_domain::weight::StableReading::from_sample(tare_domain::weight::WeightSample {
                msg_id: "w".into(),
                device_ts: 0,
                received_at: 0,
                stable: true,
                lanes: vec![],
            })
            .unwrap(),
            inference: vec![],
            lines: vec![],
            subtotal: Cents::new(650),
            coupon: None,
            total: Cents::new(650),
            anomalies: vec![],
            at: 11,
        }),
        order(OrderEvent::ChargeRequested {
            amount: Cents::new(650),
            attempt: 1,
            at: 12,
        }),
        order(OrderEvent::OrderPaid {
            transaction_id: "t1".into(),
            amount: Cents::new(650),
            at: 13,
        }),
    ]
}

#[test]
fn an_order_summary_follows_its_states_under_its_shopper_cabinet_and_state() {
    let events = order_day();
    let by_shopper = fold(&OrderSummaries, &events);
    let (owner, doc) = &by_shopper["o1"];
    assert_eq!(owner.as_deref(), Some("s1"));
    let s: OrderSummary = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(s.total_cents, 650);
    assert_eq!(
        (s.state.as_str(), s.cabinet.as_str(), s.door, s.created_at, s.updated_at),
        ("paid", "c1.SN-1", 2, 10, 1_005)
    );
    assert_eq!(fold(&OrderIndex::by_cabinet(), &events)["o1"].0.as_deref(), Some("c1.SN-1"));
    // By state: the document moves as the order does.
    assert_eq!(fold(&OrderIndex::by_state(), &events[..2])["o1"].0.as_deref(), Some("authorized"));
    assert_eq!(fold(&OrderIndex::by_state(), &events)["o1"].0.as_deref(), Some("paid"));
    let mut refunded = events.clone();
    refunded.push(order(OrderEvent::OrderRefunded {
        refunded: Cents::new(100),
        at: 20,
    }));
    assert_eq!(
        fold(&OrderIndex::by_state(), &refunded)["o1"].0.as_deref(),
        Some("partially_refunded")
    );
}

fn moved(door: u8, lane: u8, before: i64, after: i64, reason: StockReason) -> (&'static str, AnyEvent) {
    (
        "c1.SN-1",
        AnyEvent::Cabinet(CabinetEvent::LaneStockChanged {
            door: DoorNo::of(door),
            lane: LaneNo::of(lane),
            sku: Sku::of("cola"),
            before,
            change: after - before,
            after,
            reason,
            at: 50,
        }),
    )
}

fn stock_day() -> Vec<(&'static str, AnyEvent)> {
    vec![
        moved(1, 1, 0, 6, StockReason::Opening),
        moved(1, 2, 0, 4, StockReason::Opening),
        moved(1, 1, 6, 5, StockReason::Sale { order_id: "o1".into() }),
        moved(1, 1, 5, 9, StockReason::Restock { session_id: "r1".into() }),
        moved(
            1,
            2,
            4,
            3,
            StockReason::WriteOff {
                anomaly_id: "stock:a".into(),
            },
        ),
    ]
}

#[test]
fn lane_stock_keeps_each_lane_s_last_stock_under_its_cabinet() {
    let docs = fold(&LaneStock, &stock_day());
    let stock: Vec<(&str, Option<&str>, i64)> = docs
        .iter()
        .map(|(id, (owner, d))| (id.as_str(), owner.as_deref(), d["stock"].as_i64().unwrap()))
        .collect();
    assert_eq!(stock, [("c1.SN-1/1/1", Some("c1.SN-1"), 9), ("c1.SN-1/1/2", Some("c1.SN-1"), 3)]);
}

#[test]
fn the_ledger_keeps_every_movement_in_feed_order_listed_by_lane() {
    let docs = fold(&LaneLedger, &stock_day());
    let rows: Vec<(String, Option<String>, i64, i64, i64)> = docs
        .into_iter()
        .map(|(id, (owner, d))| {
            let e: LedgerEntry = serde_json::from_value(d).unwrap();
            (id, owner, e.before, e.change, e.after)
        })
        .collect();
    let lane = |l: u8| Some(format!("c1.SN-1/1/{l}"));
    assert_eq!(
        rows,
        [
            ("c1.SN-1/000000000001".into(), lane(1), 0, 6, 6),
            ("c1.SN-1/000000000002".into(), lane(2), 0, 4, 4),
            ("c1.SN-1/000000000003".into(), lane(1), 6, -1, 5),
            ("c1.SN-1/000000000004".into(), lane(1), 5, 4, 9),
            ("c1.SN-1/000000000005".into(), lane(2), 4, -1, 3),
        ]
    );
}

fn plan(lane: u8, sku: &str) -> LanePlan {
    LanePlan {
        lane: LaneNo::of(lane),
        sku: Sku::of(sku),
        name: sku.into(),
        unit_grams: Grams::of(330.0),
        price: Cents::new(300),
        capacity: 10,
        restock_threshold: 2,
        tolerance: Tolerance::default(),
        price_version: 1,
        calibration_version: 0,
    }
}

#[test]
fn each_product_lists_its_lanes_across_registrations_and_swaps() {
    let registered = (
        "c1.SN-1",
        AnyEvent::Cabinet(CabinetEvent::CabinetRegistered {
            id: CabinetId::new("c1", "SN-1").unwrap(),
            kind: CabinetKind::Weight,
            location: GeoPoint::parse(31.2, 121.4).unwrap(),
            doors: vec![DoorPlan {
                door: DoorNo::of(1),
                lanes: vec![plan(1, "cola"), plan(2, "cola"), plan(3, "gum")],
            }],
            at: 1,
        }),
    );
    let swapped = (
        "c1.SN-1",
        AnyEvent::Cabinet(CabinetEvent::LaneProductSwapped {
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            from: Sku::of("cola"),
            plan: plan(2, "gum"),
            planogram_version: 2,
            needs_calibration: false,
            at: 2,
        }),
    );
    let lanes = |docs: &BTreeMap<String, (Option<String>, Value)>, sku: &str| -> Vec<u8> {
        let d: ProductLanesDoc = serde_json::from_value(docs[sku].1.clone()).unwrap();
        d.lanes.into_iter().map(|(_, _, l)| l).collect()
    };
    let docs = fold(&ProductLanes, std::slice::from_ref(&registered));
    assert_eq!((lanes(&docs, "cola"), lanes(&docs, "gum")), (vec![1, 2], vec![3]));
    let docs = fold(&ProductLanes, &[registered, swapped]);
    assert_eq!((lanes(&docs, "cola"), lanes(&docs, "gum")), (vec![1], vec![2, 3]));
}
