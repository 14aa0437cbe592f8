//! Alerts that reach someone, end to end: a lane down to its threshold, a new anomaly and
//! a device gone offline each reach the recording sandbox once — two restock needs of one
//! cabinet within the window are one alert — and an operator's webhook that fails gets
//! the alert again until it takes it.

use crate::common::{config, eventually, Store, TestStore};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, FleetTransport};
use tare_domain::{DoorNo, LaneNo};

fn spec(pk: &str) -> FleetSpec {
    FleetSpec {
        cabinets: 1,
        doors: 1,
        lanes: 3,
        capacity: 10,
        pk: pk.into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    }
}

async fn sent(client: &ApiClient) -> Vec<Value> {
    let (st, b) = client.get("/sandbox/alerts", &client.admin).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{b}");
    b["items"].as_array().cloned().unwrap_or_default()
}

fn kinds(alerts: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = alerts.iter().map(|a| a["kind"].as_str().unwrap_or_default().to_string()).collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_an_operator_must_hear_reaches_the_sandbox_once() {
    let store = TestStore::new(Store::Sqlite).await;
    let app = App::start(config(&store)).await.expect("app");
    let fleet = Fleet::provision(&app, &spec("alr")).await.expect("fleet");
    let client = &fleet.client;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let s = fleet.new_shopper("13800000081", "alipay", "once").await.unwrap();
    assert!(sent(client).await.is_empty(), "a good day says nothing");

    // Two lanes fall to their threshold (2 of 10) in the same window: one alert.
    for lane in [1, 2] {
        let p = fleet.purchase(&s, 0, DoorNo::of(1), &[(LaneNo::of(lane), 8)]).await.unwrap();
        assert_eq!(p.order["state"], "paid", "{}", p.order);
    }
    // An item put back in the wrong lane: an anomaly.
    let (st, o) = client
        .post("/api/v1/orders", &s.token, &serde_json::json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{o}");
    let order_id = o["order_id"].as_str().unwrap().to_string();
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(3), 2).await.unwrap();
    vc.put(DoorNo::of(1), LaneNo::of(2), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let o = fleet.wait_terminal(&order_id, &s.token, Duration::from_secs(20)).await.unwrap();
    assert_eq!(o["state"], "paid", "{o}");
    vc.disconnect().await.unwrap();
    let alerts = eventually(20, "the alerts", || async {
        let a = sent(client).await;
        (kinds(&a) == ["anomaly", "device_offline", "restock_needed"]).then_some(a)
    })
    .await;
    let restock: Vec<&Value> = alerts.iter().filter(|a| a["kind"] == "restock_needed").collect();
    assert_eq!(restock.len(), 1, "one per cabinet per window: {alerts:?}");
    assert_eq!(restock[0]["cabinet"], serde_json::json!(cab));
    assert!(restock[0]["text"].as_str().unwrap().contains("door 1 lane 1"), "{}", restock[0]);
    let offline: Vec<&Value> = alerts.iter().filter(|a| a["kind"] == "device_offline").collect();
    assert_eq!(offline.len(), 1);
    assert!(offline[0]["text"].as_str().unwrap().contains("went offline"));
    let anomaly = alerts.iter().find(|a| a["kind"] == "anomaly").unwrap();
    assert_eq!(anomaly["subject"], serde_json::json!(format!("order:{order_id}:lane_heavier:2")));
    assert_eq!(anomaly["cabinet"], serde_json::json!(cab));
    app.stop().await;
    store.cleanup().await;
}

/// A webhook that refuses the first `fail` requests, then takes them, keeping the ids.
async fn webhook(fail: usize) -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    let taken = Arc::new(Mutex::new(Vec::new()));
    let hits = Arc::new(AtomicUsize::new(0));
    let (t, h) = (taken.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (t, h) = (t.clone(), h.clone());
            async move {
                if h.fetch_add(1, Ordering::SeqCst) < fail {
                    return AxumStatus::INTERNAL_SERVER_ERROR;
                }
                let alert: Value = serde_json::from_slice(&body).unwrap_or_default();
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                assert_eq!(alert["alert_id"].as_str(), Some(key.as_str()));
                t.lock().unwrap().push(key);
                AxumStatus::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, taken, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_webhook_gets_the_alert_again_until_it_takes_it() {
    let store = TestStore::new(Store::Sqlite).await;
    let (url, taken, hits) = webhook(2).await;
    let mut cfg = config(&store);
    cfg.alert_webhook = Some(url);
    let app = App::start(cfg).await.expect("app");
    let fleet = Fleet::provision(&app, &spec("alw")).await.expect("fleet");
    let (st, _) = fleet.client.get("/sandbox/alerts", &fleet.client.admin).await.unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND, "alerts go to the webhook");
    fleet.cabinets[0].disconnect().await.unwrap();
    let got = eventually(20, "the webhook to take the alert", || async {
        let t = taken.lock().unwrap().clone();
        (!t.is_empty()).then_some(t)
    })
    .await;
    let cab = fleet.cabinets[0].id().to_string();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with(&format!("device_offline:{cab}:")), "{got:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "two refusals, then taken");
    app.stop().await;
    store.cleanup().await;
}
