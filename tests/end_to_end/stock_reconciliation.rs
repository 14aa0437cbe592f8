//! Stock reconciliation [R3 (a), B6] and daily settlements [R3 (c)], on both stores.
//!
//! A simulated day on a test clock: a clean night raises nothing; then, behind an
//! operator's raw door opens, an item moved between two lanes of the same product, an item
//! put in another product's lane, goods taken unpaid, items the ledger never received, and
//! a load cell that wandered — each found with its class and routed to the anomaly queue
//! by the nightly run, once; a lane put right agrees again.

use crate::common::{config, eventually, run_command, Store, TestStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTransport};
use tare_domain::reconciliation::dates::day_start;
use tare_domain::{DoorNo, LaneNo};
use tare_platform::clock::{ManualClock, PlatformClock};

const HOUR: i64 = 3_600_000;
/// Past the watch's settle time: the next stable reading of a moved door is weighed.
const SETTLE: i64 = 31_000;

async fn stock(fleet: &Fleet, cab: &str) -> Vec<Value> {
    let (st, v) = fleet
        .client
        .get(&format!("/api/v1/reconciliation/stock?cabinet={cab}"), &fleet.client.admin)
        .await
        .unwrap();
    assert_eq!(st.as_u16(), 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

async fn stock_anomalies(fleet: &Fleet, cab: &str) -> Vec<Value> {
    let (_, v) = fleet
        .client
        .get(&format!("/api/v1/anomalies?cabinet={cab}"), &fleet.client.admin)
        .await
        .unwrap();
    let items = v["items"].as_array().unwrap().clone();
    items
        .into_iter()
        .filter(|a| a["kind"].as_str().unwrap_or_default().starts_with("stock_"))
        .collect()
}

/// An operator's raw `open_door` on `door`, `act` on the open shelf, then the close;
/// returns once the door is free again.
async fn behind_a_raw_open(fleet: &Fleet, door: u8, act: impl AsyncFnOnce(&tare_sim::cabinet::VirtualCabinet)) {
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let c = run_command(&fleet.client, &cab, json!({"type": "open_door", "args": {"door": door}})).await;
    assert_eq!(c["state"], "done", "{c}");
    assert!(vc.wait_open(DoorNo::of(door), Duration::from_secs(10)).await);
    act(vc).await;
    vc.close(DoorNo::of(door)).await.unwrap();
    eventually(20, "the door free", || async {
        let (_, c) = fleet
            .client
            .get(&format!("/api/v1/cabinets/{cab}"), &fleet.client.admin)
            .await
            .ok()?;
        let d = c["doors"].as_array()?.iter().find(|d| d["door"] == door)?.clone();
        d["held_by"].is_null().then_some(())
    })
    .await;
}

async fn a_day_of_discrepancies_is_found_classified_and_raised_once(kind: Store) {
    let store = TestStore::new(kind).await;
    // 09:00 on 2026-12-01 in China; the nightly run is at 10:00.
    let clock = ManualClock::new(day_start("2026-12-01").unwrap() + 9 * HOUR);
    let mut cfg = config(&store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        capacity: 10,
        noise_grams: 0.5,
        pk: "stk".into(),
        transport: FleetTransport::InProcess,
        layout: Some(vec![
            vec!["cola-330", "cola-330", "chips-70"],
            vec!["water-550", "gum-25"],
            vec!["chips-70"],
            vec!["choc-45"],
            vec!["juice-300"],
        ]),
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let vc = fleet.cabinets[0].clone();
    let cab = vc.id().to_string();
    let report_all = || async {
        clock.advance(SETTLE);
        for d in 1..=5 {
            vc.report_weight(DoorNo::of(d)).await.unwrap();
        }
    };

    // A clean morning: a purchase, settled readings, and a clean night.
    let s = fleet.new_shopper("13800000071", "alipay", "once").await.unwrap();
    let p = fleet.purchase(&s, 0, DoorNo::of(3), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    report_all().await;
    clock.advance(HOUR);
    eventually(20, "the clean night's run", || async {
        (app.platform.stock_runs("2026-11-30").await.ok()? == 1).then_some(())
    })
    .await;
    assert_eq!(stock(&fleet, &cab).await, Vec::<Value>::new());
    assert_eq!(
        stock_anomalies(&fleet, &cab).await,
        Vec::<Value>::new(),
        "a clean night raises none"
    );

    // The day's discrepancies.
    let (d1, d2, d3, d5) = (DoorNo::of(1), DoorNo::of(2), DoorNo::of(3), DoorNo::of(5));
    let (l1, l2) = (LaneNo::of(1), LaneNo::of(2));
    behind_a_raw_open(&fleet, 1, async |vc| {
        vc.take(d1, l1, 1).await.unwrap();
        vc.put(d1, l2, 1).await.unwrap();
    })
    .await;
    behind_a_raw_open(&fleet, 2, async |vc| {
        vc.take(d2, l1, 1).await.unwrap();
        vc.put_foreign(d2, l2, 571.0).await.unwrap();
    })
    .await;
    behind_a_raw_open(&fleet, 3, async |vc| {
        vc.take(d3, l1, 2).await.unwrap();
    })
    .await;
    behind_a_raw_open(&fleet, 5, async |vc| {
        vc.put(d5, l1, 2).await.unwrap();
    })
    .await;
    vc.set_drift(DoorNo::of(4), l1, 20.0);
    report_all().await;

    let want: BTreeMap<(u64, u64), (&str, i64)> = BTreeMap::from([
        ((1, 1), ("equal_weight_swap", -1)),
        ((1, 2), ("equal_weight_swap", 1)),
        ((2, 1), ("wrong_lane", -1)),
        ((2, 2), ("wrong_lane", 21)),
        ((3, 1), ("unpaid_take", -2)),
        ((4, 1), ("drift", 0)),
        ((5, 1), ("data_error", 2)),
    ]);
    let items = eventually(20, "every discrepancy listed", || async {
        let items = stock(&fleet, &cab).await;
        (items.len() == want.len()).then_some(items)
    })
    .await;
    let got: BTreeMap<(u64, u64), (&str, i64)> = items
        .iter()
        .map(|i| {
            let key = (i["door"].as_u64().unwrap(), i["lane"].as_u64().unwrap());
            (key, (i["class"].as_str().unwrap(), i["difference"].as_i64().unwrap()))
        })
        .collect();
    assert_eq!(got, want, "{items:?}");
    let counts = vc.counts();
    for i in &items {
        let (d, l) = (
            DoorNo::of(i["door"].as_u64().unwrap() as u8),
            LaneNo::of(i["lane"].as_u64().unwrap() as u8),
        );
        assert_eq!(
            i["ledger_stock"].as_i64().unwrap() + i["difference"].as_i64().unwrap(),
            i["weighed_stock"].as_i64().unwrap(),
            "{i}"
        );
        if i["class"] != "wrong_lane" && i["class"] != "drift" {
            assert_eq!(
                i["weighed_stock"].as_i64().unwrap(),
                i64::from(counts[&(d, l)]),
                "the shelf's truth: {i}"
            );
        }
        if i["door"] != 4 {
            assert_eq!(i["last_session"]["kind"], "command", "the raw open behind it: {i}");
        }
        assert!(i["since"].as_i64().unwrap() >= i["window_from"].as_i64().unwrap(), "{i}");
    }

    // The night routes each to the anomaly queue, once.
    clock.advance(24 * HOUR);
    let raised = eventually(20, "the night's anomalies", || async {
        let a = stock_anomalies(&fleet, &cab).await;
        (a.len() == want.len()).then_some(a)
    })
    .await;
    for a in &raised {
        let key = (a["door"].as_u64().unwrap(), a["lane"].as_u64().unwrap());
        assert_eq!(a["kind"], format!("stock_{}", want[&key].0), "{a}");
        assert_eq!((a["cabinet"].as_str(), a["state"].as_str()), (Some(cab.as_str()), Some("open")));
    }
    clock.advance(24 * HOUR);
    eventually(20, "the next night's run", || async {
        (app.platform.stock_runs("2026-12-02").await.ok()? == 1).then_some(())
    })
    .await;
    assert_eq!(stock_anomalies(&fleet, &cab).await.len(), want.len(), "nothing raised twice");

    // The two juices nobody booked are written off as found: the ledger takes them
    // (reason `write_off`), the lane agrees, and a second write-off changes nothing.
    let juice = raised.iter().find(|a| a["door"] == 5).unwrap();
    let act = format!("/api/v1/anomalies/{}/actions", juice["anomaly_id"].as_str().unwrap());
    let body = json!({"action": "write_off", "note": "two juices left by a restocker"});
    for _ in 0..2 {
        let (st, v) = fleet.client.post(&act, &fleet.client.admin, &body).await.unwrap();
        assert_eq!((st.as_u16(), v["state"].as_str()), (200, Some("closed")), "{v}");
    }
    let write_offs: Vec<Value> = eventually(20, "the write-off on the ledger", || async {
        let (_, ledger) = fleet
            .client
            .get(&format!("/api/v1/cabinets/{cab}/ledger?door=5&lane=1"), &fleet.client.admin)
            .await
            .ok()?;
        let w: Vec<Value> = ledger["items"]
            .as_array()?
            .iter()
            .filter(|e| e["reason"] == "write_off")
            .cloned()
            .collect();
        (!w.is_empty()).then_some(w)
    })
    .await;
    assert_eq!(write_offs.len(), 1, "{write_offs:?}");
    assert_eq!(
        (write_offs[0]["change"].as_i64(), write_offs[0]["after"].as_i64()),
        (Some(2), Some(12))
    );
    assert_eq!(write_offs[0]["anomaly_id"], juice["anomaly_id"]);
    // The whole ledger in pages of three is the ledger in one page, in feed order; a
    // door's is its part.
    let ledger_at = |q: String| {
        let client = fleet.client.clone();
        let cab = cab.clone();
        async move {
            client
                .get(&format!("/api/v1/cabinets/{cab}/ledger?{q}"), &client.admin)
                .await
                .unwrap()
                .1
        }
    };
    let all = ledger_at("limit=1000".into()).await["items"].as_array().unwrap().clone();
    let (mut paged, mut after) = (Vec::new(), 0);
    loop {
        let page = ledger_at(format!("limit=3&after={after}")).await;
        paged.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(paged, all);
    let positions: Vec<i64> = all.iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]) && all.len() >= 10, "{all:?}");
    let door3 = ledger_at("door=3".into()).await["items"].as_array().unwrap().clone();
    assert_eq!(door3, all.iter().filter(|e| e["door"] == 3).cloned().collect::<Vec<_>>());
    assert_eq!(
        door3.iter().map(|e| e["reason"].as_str().unwrap()).collect::<Vec<_>>(),
        ["opening", "sale"]
    );
    let (st, e) = fleet
        .client
        .get(&format!("/api/v1/cabinets/{cab}/ledger?lane=1"), &fleet.client.admin)
        .await
        .unwrap();
    assert_eq!((st.as_u16(), e["error"]["field"].as_str()), (422, Some("lane")), "{e}");
    eventually(20, "door 5 agreeing after the write-off", || async {
        let items = stock(&fleet, &cab).await;
        items.iter().all(|i| i["door"] != 5).then_some(())
    })
    .await;
    clock.advance(SETTLE);
    vc.report_weight(d5).await.unwrap();

    // The unpaid goods come back: the lane agrees again and leaves the list.
    behind_a_raw_open(&fleet, 3, async |vc| {
        vc.put(d3, l1, 2).await.unwrap();
    })
    .await;
    report_all().await;
    eventually(20, "door 3 agreeing again", || async {
        let items = stock(&fleet, &cab).await;
        (items.len() == want.len() - 2 && items.iter().all(|i| i["door"] != 3 && i["door"] != 5)).then_some(())
    })
    .await;
    let (st, e) = fleet
        .client
        .get("/api/v1/reconciliation/stock?cabinet=nodot", &fleet.client.admin)
        .await
        .unwrap();
    assert_eq!((st.as_u16(), e["error"]["field"].as_str()), (422, Some("cabinet")), "{e}");
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(stock_day, a_day_of_discrepancies_is_found_classified_and_raised_once);

/// The daily settlement closes at the configured local hour: a sale before it belongs
/// to the day before; a refund belongs to the day it succeeded.
async fn settlements_close_at_the_configured_hour(kind: Store) {
    let store = TestStore::new(kind).await;
    // 03:00 on 2026-12-01 in China; the business day closes at 04:00.
    let clock = ManualClock::new(day_start("2026-12-01").unwrap() + 3 * HOUR);
    let mut cfg = config(&store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    cfg.saga.settlement_close_hour = 4;
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 2,
        pk: "stl".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let cab = fleet.cabinets[0].id().to_string();
    let s = fleet.new_shopper("13800000072", "alipay", "once").await.unwrap();
    let late = fleet.purchase(&s, 0, DoorNo::of(1), &[(LaneNo::of(1), 2)]).await.unwrap();
    assert_eq!(late.order["state"], "paid", "{}", late.order);
    clock.advance(2 * HOUR);
    let early = fleet.purchase(&s, 0, DoorNo::of(2), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(early.order["state"], "paid", "{}", early.order);
    let (st, r) = fleet
        .client
        .post(
            &format!("/api/v1/orders/{}/refunds", late.order_id),
            &fleet.client.admin,
            &json!({"amount_cents": 100, "reason": "dented"}),
        )
        .await
        .unwrap();
    assert_eq!(st.as_u16(), 201, "{r}");
    let total = |p: &tare::fleet::Purchase| p.order["total_cents"].as_i64().unwrap();
    let day = |date: &'static str| {
        let client = fleet.client.clone();
        let cab = cab.clone();
        async move {
            let (st, v) = client
                .get(&format!("/api/v1/settlements?date={date}&cabinet={cab}"), &client.admin)
                .await
                .unwrap();
            assert_eq!(st.as_u16(), 200, "{v}");
            v
        }
    };
    let fee = |cents: i64| (cents * 6_000 + 500_000) / 1_000_000;
    let before = eventually(20, "the sale before 04:00 in the day before", || async {
        let v = day("2026-11-30").await;
        (v["items"].as_array()?.len() == 1).then_some(v)
    })
    .await;
    let i = &before["items"][0];
    assert_eq!(
        (i["orders"].as_i64(), i["gross"].as_i64(), i["refunds"].as_i64()),
        (Some(1), Some(late.true_subtotal()), Some(0)),
        "{before}"
    );
    assert_eq!(i["fees"].as_i64(), Some(fee(total(&late))), "{before}");
    assert_eq!(before["close_hour"], 4);
    let today = eventually(20, "the refund in the day it succeeded", || async {
        let v = day("2026-12-01").await;
        (v["items"][0]["refunds"] == 100).then_some(v)
    })
    .await;
    let i = &today["items"][0];
    assert_eq!(
        (i["orders"].as_i64(), i["gross"].as_i64()),
        (Some(1), Some(early.true_subtotal())),
        "{today}"
    );
    assert_eq!(i["fees"].as_i64(), Some(fee(total(&early) - 100)), "{today}");
    let net = i["gross"].as_i64().unwrap() - i["discounts"].as_i64().unwrap() - 100 - i["fees"].as_i64().unwrap();
    assert_eq!(i["net"].as_i64(), Some(net));
    assert_eq!(today["total"]["net"], i["net"], "one cabinet: the total is its day");
    assert_eq!(day("2026-12-02").await["items"], json!([]), "an empty day");
    for (q, field) in [
        ("", "date"),
        ("date=2026-02-30", "date"),
        ("date=2026-12-01&cabinet=x", "cabinet"),
        ("date=2026-12-01&y=1", "query"),
    ] {
        let (st, e) = fleet
            .client
            .get(&format!("/api/v1/settlements?{q}"), &fleet.client.admin)
            .await
            .unwrap();
        assert_eq!((st.as_u16(), e["error"]["field"].as_str()), (422, Some(field)), "{q}: {e}");
    }
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(settlements_day, settlements_close_at_the_configured_hour);
