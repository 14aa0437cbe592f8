//! Personal data out of the log in clear [issue 14, item 6]: a shopper's phone number is
//! in the log only sealed under the shopper's own key; staff read it opened (auditors
//! masked); erasing the shopper destroys the key, so the number is gone while the log
//! stays whole — the shopper's paid order is still there, and a replay rebuilds every
//! view exactly.

use crate::common::{config, Store, TestStore};
use serde_json::json;
use std::sync::Arc;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec};
use tare_domain::{DoorNo, LaneNo};
use tare_platform::StoreConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phone_is_sealed_in_the_log_and_erasure_shreds_it() {
    let store = TestStore::new(Store::Sqlite).await;
    let StoreConfig::Sqlite(data) = store.config.clone() else {
        unreachable!()
    };
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        pk: "pii".into(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.unwrap());
    let c = &fleet.client;
    let phone = "13912345678";
    let shopper = fleet.new_shopper(phone, "alipay", "once").await.unwrap();
    let p = fleet.purchase(&shopper, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    let (_, auditor) = c
        .post("/api/v1/operators", &c.admin, &json!({"name": "Audit", "role": "auditor"}))
        .await
        .unwrap();
    let auditor = auditor["token"].as_str().unwrap().to_string();

    // The log holds the number sealed, never in clear.
    let stream = format!("/api/v1/events?stream=shopper:{}", shopper.id);
    let (_, page) = c.get(&stream, &auditor).await.unwrap();
    let created = &page["events"][0]["payload"]["ShopperCreated"];
    assert!(created["phone_sealed"].as_str().unwrap().starts_with("v1:"), "{created}");
    assert!(!page.to_string().contains(phone), "{page}");

    // Staff read it opened; an auditor masked.
    let record = format!("/api/v1/shoppers/{}", shopper.id);
    let (_, s) = c.get(&record, &c.admin).await.unwrap();
    assert_eq!((s["phone"].as_str(), s["erased"].as_bool()), (Some(phone), Some(false)), "{s}");
    let (_, s) = c.get(&record, &auditor).await.unwrap();
    assert_eq!(s["phone"], "139****5678", "{s}");

    // Only an admin erases.
    let erase = format!("/api/v1/shoppers/{}/erase", shopper.id);
    let (st, _) = c.post(&erase, &auditor, &json!({"reason": "asked"})).await.unwrap();
    assert_eq!(st, 403);
    let (st, b) = c.post(&erase, &c.admin, &json!({"reason": "the shopper asked"})).await.unwrap();
    assert_eq!(st, 204, "{b}");
    let (_, s) = c.get(&record, &c.admin).await.unwrap();
    assert_eq!(
        (s["phone"].clone(), s["erased"].as_bool()),
        (serde_json::Value::Null, Some(true)),
        "{s}"
    );
    let (_, page) = c.get(&stream, &c.admin).await.unwrap();
    let types: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"ShopperErased"), "{types:?}");

    // The log is whole: the order stands, and every view replays exactly.
    let (_, o) = c.get(&format!("/api/v1/orders/{}", p.order_id), &c.admin).await.unwrap();
    assert_eq!(
        (o["state"].clone(), o["total_cents"].clone()),
        (p.order["state"].clone(), p.order["total_cents"].clone())
    );
    app.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tare"))
        .args(["replay", "--verify", "--data"])
        .arg(&data)
        .output()
        .expect("tare replay");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    store.cleanup().await;
}
