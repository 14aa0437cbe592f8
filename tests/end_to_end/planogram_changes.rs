//! Price changes and lane swaps through the API and a simulated cabinet over MQTT, on
//! both stores [C2, M1]: a price change reaches every lane's label, a scan before the
//! label is acknowledged is charged the old price and one after it the new (the receipt
//! says which version); a lane swaps product only once empty, and a new unit weight
//! keeps its door from selling until the lane is calibrated, after which orders record
//! the calibration version they were weighed with.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, FleetTransport};
use tare_domain::{DoorNo, LaneNo};

async fn command_state(client: &ApiClient, cmd_id: &str) -> Option<String> {
    let (st, c) = client.get(&format!("/api/v1/commands/{cmd_id}"), &client.admin).await.ok()?;
    (st == StatusCode::OK).then(|| c["state"].as_str().unwrap_or_default().to_string())
}

fn evidence_lane(order: &Value, lane: u8) -> Value {
    let lanes = order["evidence"]["lanes"].as_array().cloned().unwrap_or_default();
    lanes.into_iter().find(|l| l["lane"] == lane).unwrap_or_default()
}

async fn price_changes_and_swaps_reach_the_shelf(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 1,
        lanes: 2,
        capacity: 10,
        seed: 11,
        pk: "pln".into(),
        transport: FleetTransport::Mqtt,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let door = DoorNo::of(1);
    let (sku, old_price) = fleet.planogram[0][&(door, LaneNo::of(1))].clone();
    let new_price = old_price + 50;
    let s = fleet.new_shopper("13800000061", "alipay", "once").await.unwrap();

    // Bad changes name the field; nothing changes.
    let path = format!("/api/v1/products/{sku}");
    for (body, field) in [
        (json!({"price_cents": -1}), "price_cents"),
        (json!({"name": " "}), "name"),
        (json!({"price_cents": 1, "colour": "red"}), "colour"),
    ] {
        let (st, e) = client.patch(&path, &client.admin, &body).await.unwrap();
        assert_eq!(
            (st, &e["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!(field)),
            "{body}: {e}"
        );
    }
    let (st, _) = client
        .patch("/api/v1/products/nope", &client.admin, &json!({"price_cents": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A shopper scans; the price changes while the door is open.
    let (st, o) = client
        .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{o}");
    let before_change = o["order_id"].as_str().unwrap().to_string();
    assert!(vc.wait_open(door, Duration::from_secs(10)).await);
    let (st, p) = client
        .patch(&path, &client.admin, &json!({"price_cents": new_price}))
        .await
        .unwrap();
    assert_eq!((st, &p["price_cents"]), (StatusCode::OK, &json!(new_price)), "{p}");
    // Every lane that holds it gets the label, and acknowledges it.
    let holding: Vec<u8> = (1..=2u8).filter(|l| fleet.planogram[0][&(door, LaneNo::of(*l))].0 == sku).collect();
    for lane in &holding {
        let cmd = format!("price-{sku}-v2-{cab}-1-{lane}");
        eventually(20, "the label acknowledged", || async {
            (command_state(client, &cmd).await.as_deref() == Some("done")).then_some(())
        })
        .await;
    }
    vc.take(door, LaneNo::of(1), 1).await.unwrap();
    vc.close(door).await.unwrap();
    let o = fleet
        .wait_terminal(&before_change, &s.token, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        (&o["state"], &o["total_cents"]),
        (&json!("paid"), &json!(old_price)),
        "scanned before the label: the old price"
    );
    assert_eq!(evidence_lane(&o, 1)["price_version"], 1);
    let after = fleet.purchase(&s, 0, door, &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(
        (&after.order["state"], &after.order["total_cents"]),
        (&json!("paid"), &json!(new_price)),
        "{}",
        after.order
    );
    assert_eq!(evidence_lane(&after.order, 1)["price_version"], 2);
    assert_eq!(after.order["evidence"]["planogram_version"], 1);

    // A swap needs an empty lane.
    let (st, _) = client
        .post(
            "/api/v1/products",
            &client.admin,
            &json!({"sku": "melon-900", "name": "Melon", "unit_grams": 900.0, "price_cents": 1200}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED);
    let swap = format!("/api/v1/cabinets/{cab}/doors/1/lanes/2");
    let body = json!({"sku": "melon-900", "capacity": 5, "restock_threshold": 1});
    let (st, e) = client.put(&swap, &client.admin, &body).await.unwrap();
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("lane_not_empty")), "{e}");
    for (path, body, st_want, field) in [
        (
            swap.clone(),
            json!({"sku": "nope", "capacity": 5, "restock_threshold": 1}),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            swap.clone(),
            json!({"sku": "no pe", "capacity": 5, "restock_threshold": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("sku"),
        ),
        (
            swap.clone(),
            json!({"sku": "melon-900", "capacity": 5, "restock_threshold": 6}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("restock_threshold"),
        ),
        (
            swap.clone(),
            json!({"sku": "melon-900", "capacity": 0, "restock_threshold": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("capacity"),
        ),
        (
            format!("/api/v1/cabinets/{cab}/doors/1/lanes/9"),
            body.clone(),
            StatusCode::NOT_FOUND,
            None,
        ),
    ] {
        let (st, e) = client.put(&path, &client.admin, &body).await.unwrap();
        assert_eq!(st, st_want, "{path} {body}: {e}");
        if let Some(f) = field {
            assert_eq!(e["error"]["field"], json!(f), "{e}");
        }
    }
    let emptied = fleet.purchase(&s, 0, door, &[(LaneNo::of(2), 10)]).await.unwrap();
    assert_eq!(emptied.order["state"], "paid", "{}", emptied.order);
    let (st, r) = eventually(20, "lane 2 empty on the ledger", || async {
        let (st, r) = client.put(&swap, &client.admin, &body).await.unwrap();
        (st == StatusCode::ACCEPTED).then_some((st, r))
    })
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(r, json!({"planogram_version": 2, "needs_calibration": true}));

    // Until lane 2 is calibrated, door 1 does not sell.
    let (st, e) = client
        .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(
        (st, &e["error"]["code"]),
        (StatusCode::CONFLICT, &json!("lane_needs_calibration")),
        "{e}"
    );
    // M1: a standard weight only after a tare of the empty lane.
    let (st, e) = client
        .post(
            &format!("/api/v1/cabinets/{cab}/commands"),
            &client.admin,
            &json!({"type": "calibrate", "args": {"door": 1, "lane": 2, "standard_grams": 500.0}}),
        )
        .await
        .unwrap();
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("tare_first")), "{e}");
    let c = crate::common::calibrate_lane(client, &cab, 1, 2, 500.0).await;
    assert_eq!(c["state"], "done", "{c}");
    let calibrated = eventually(20, "door 1 selling again", || async {
        let p = fleet.purchase(&s, 0, door, &[(LaneNo::of(1), 1)]).await.ok()?;
        Some(p)
    })
    .await;
    assert_eq!(calibrated.order["state"], "paid", "{}", calibrated.order);
    let lane2 = evidence_lane(&calibrated.order, 2);
    assert_eq!(
        (&lane2["sku"], &lane2["calibration_version"], &lane2["price_cents"]),
        (&json!("melon-900"), &json!(1), &json!(1200))
    );
    assert_eq!(calibrated.order["evidence"]["planogram_version"], 2);

    // Look-alikes on one door [B3]: one for one refused, combinations warned.
    let door_of = |a: &str, b: &str| {
        json!({"pk": "pln", "dn": format!("la-{a}-{b}"), "kind": "weight", "location": {"lat": 31.2, "lng": 121.4},
            "doors": [{"door": 1, "lanes": [
                {"lane": 1, "sku": a, "capacity": 10, "restock_threshold": 2},
                {"lane": 2, "sku": b, "capacity": 10, "restock_threshold": 2}]}]})
    };
    let (st, r) = client
        .post("/api/v1/cabinets", &client.admin, &door_of("gum-25", "chips-70"))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let warnings = r["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{r}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("3 x gum-25 (lane 1) and 1 x chips-70 (lane 2)"),
        "{r}"
    );
    let (st, _) = client
        .post(
            "/api/v1/products",
            &client.admin,
            &json!({"sku": "soda-330", "name": "Soda", "unit_grams": 347.0, "price_cents": 250}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED);
    let (st, e) = client
        .post("/api/v1/cabinets", &client.admin, &door_of("cola-330", "soda-330"))
        .await
        .unwrap();
    assert_eq!(
        (st, &e["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("doors[0].lanes[1].sku")),
        "{e}"
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("cannot be told apart"), "{e}");
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(planogram_changes, price_changes_and_swaps_reach_the_shelf);
