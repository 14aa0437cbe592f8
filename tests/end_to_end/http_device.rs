//! Conformance of the HTTP device API to PROTOCOL.md [D3], with plain HTTP requests signed
//! by hand: every status code it names, the long poll, and a purchase whose cabinet
//! talks only HTTP.

use crate::common::{config, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, FleetTransport};
use tare_domain::{CabinetId, DoorNo};
use tare_sagas::ports::{DeviceLink, DoorCommandKind};
use tare_sim::transport::HttpTransport;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Dev {
    id: CabinetId,
    secret: String,
}

async fn setup(store: &TestStore, f: impl FnOnce(&mut tare::app::AppConfig)) -> (App, Dev) {
    let mut cfg = config(store);
    f(&mut cfg);
    let app = App::start(cfg).await.expect("app");
    let c = ApiClient::new(&app.base_url, &app.admin_token);
    let (st, _) = c
        .post(
            "/api/v1/products",
            &c.admin,
            &json!({"sku": "cola", "name": "Cola", "unit_grams": 330.0, "price_cents": 350}),
        )
        .await
        .unwrap();
    assert_eq!(st, 201);
    let body = json!({"pk": "hd", "dn": "d1", "kind": "weight", "location": {"lat": 31.2, "lng": 121.4},
        "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola", "capacity": 10, "restock_threshold": 2}]}]});
    let (st, v) = c.post("/api/v1/cabinets", &c.admin, &body).await.unwrap();
    assert_eq!(st, 201);
    let dev = Dev {
        id: CabinetId::new("hd", "d1").unwrap(),
        secret: v["device_secret"].as_str().unwrap().into(),
    };
    (app, dev)
}

/// A request to `path_and_query` signed as PROTOCOL.md says over `sign_path` at `ts`.
async fn send(
    app: &App,
    dev: &Dev,
    method: &str,
    path_and_query: &str,
    body: Vec<u8>,
    ts: i64,
    sign_path: &str,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let headers = HttpTransport::signed_headers(&dev.id, &dev.secret, ts, method, sign_path, &body);
    let mut r = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path_and_query}", app.base_url))
        .body(body);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    let h = resp.headers().clone();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (st, v, h)
}

async fn up(app: &App, dev: &Dev, kind: &str, body: &Value) -> (StatusCode, Value) {
    let path = format!("/device/v1/up/{kind}");
    let (st, v, _) = send(app, dev, "POST", &path, body.to_string().into_bytes(), now_ms(), &path).await;
    (st, v)
}

fn env(id: &str, seq: u64, mut body: Value) -> Value {
    body["id"] = json!(id);
    body["seq"] = json!(seq);
    body["ts"] = json!(now_ms());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uplinks_answer_with_the_contracts_status_codes() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, dev) = setup(&store, |_| {}).await;
    let boot = env("b1", 0, json!({"fw": "1", "hw": "h", "doors": 1, "lanes": [1]}));
    let (st, v) = up(&app, &dev, "boot", &boot).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::ACCEPTED, Some("accepted")));
    let (st, v) = up(&app, &dev, "boot", &boot).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::ACCEPTED, Some("duplicate")));

    // 400: malformed, and a named invalid field.
    let path = "/device/v1/up/weight";
    let (st, v, _) = send(&app, &dev, "POST", path, b"not json".to_vec(), now_ms(), path).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "malformed");
    let w = env(
        "w1",
        1,
        json!({"door": 1, "stable": true, "lanes": [{"lane": 1, "grams": -9000.0}]}),
    );
    let (st, v) = up(&app, &dev, "weight", &w).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["field"], "lanes[0].grams");
    let (st, _) = up(&app, &dev, "nonsense", &env("n", 2, json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // 401: wrong secret, stale timestamp, no headers, unknown device.
    let body = env(
        "h1",
        3,
        json!({"temp_c": 4.0, "battery": 90, "net": 80, "heating": false, "doors": []}),
    )
    .to_string();
    let path = "/device/v1/up/heartbeat";
    let wrong = Dev {
        id: dev.id.clone(),
        secret: "wrong".into(),
    };
    let (st, v, _) = send(&app, &wrong, "POST", path, body.clone().into_bytes(), now_ms(), path).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "auth_bad_signature");
    let (st, v, _) = send(&app, &dev, "POST", path, body.clone().into_bytes(), now_ms() - 301_000, path).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth_stale_timestamp"))
    );
    let ghost = Dev {
        id: CabinetId::new("hd", "ghost").unwrap(),
        secret: "x".into(),
    };
    let (st, v, _) = send(&app, &ghost, "POST", path, body.clone().into_bytes(), now_ms(), path).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth_unknown_device"))
    );
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", app.base_url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A body signed for another path does not pass either.
    let (st, _, _) = send(&app, &dev, "POST", path, body.clone().into_bytes(), now_ms(), "/device/v1/up/boot").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // 413 over 64 KiB.
    let big = vec![b' '; 64 * 1024 + 1];
    let (st, v, _) = send(&app, &dev, "POST", path, big, now_ms(), path).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );

    // Time sync: the reply comes back in the response.
    let sent = now_ms();
    let (st, t) = up(&app, &dev, "time", &env("t1", 4, json!({"device_send_ts": sent}))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["device_send_ts"], sent);
    assert!(t["server_send_ts"].as_i64() >= t["server_recv_ts"].as_i64());

    // Only the boot and the time request were applied; every refusal was counted.
    assert_eq!(app.platform.metrics().await.unwrap().devices.accepted, 2);
    let d = &app.http.addr; // the same server serves /metrics
    let metrics = reqwest::Client::new()
        .get(format!("http://{d}/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "tare_device_http_refused_total{reason=\"auth_bad_signature\"} 2",
        "tare_device_http_refused_total{reason=\"auth_stale_timestamp\"} 1",
        "tare_device_http_refused_total{reason=\"auth_unknown_device\"} 1",
        "tare_device_http_refused_total{reason=\"auth_missing_headers\"} 1",
        "tare_device_http_refused_total{reason=\"too_large\"} 1",
        "tare_device_http_refused_total{reason=\"malformed\"} 1",
        "tare_device_http_refused_total{reason=\"invalid\"} 1",
        "tare_device_http_refused_total{reason=\"unknown_kind\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_http_device_gets_429_with_retry_after() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, dev) = setup(&store, |cfg| {
        cfg.mqtt_config.rate = tare_gateway::rate::RateLimit {
            per_second: 1.0,
            burst: 5.0,
        };
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..8 {
        let hb = env(
            &format!("h{i}"),
            i,
            json!({"temp_c": 4.0, "battery": 90, "net": 80, "heating": false, "doors": []}),
        );
        let path = "/device/v1/up/heartbeat";
        let (st, _, h) = send(&app, &dev, "POST", path, hb.to_string().into_bytes(), now_ms(), path).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            assert!(h.get("retry-after").is_some());
        }
        codes.push(st.as_u16());
    }
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 3, "{codes:?}");
    assert_eq!(app.platform.metrics().await.unwrap().devices.accepted, 5);
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_long_poll_hands_out_commands_oldest_first_and_never_expired_ones() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, dev) = setup(&store, |_| {}).await;
    let path = "/device/v1/down/cmd";
    // Nothing pending: wait_s=0 answers at once with an empty list.
    let (st, v, _) = send(&app, &dev, "GET", "/device/v1/down/cmd?wait_s=0", vec![], now_ms(), path).await;
    assert_eq!((st, v["commands"].as_array().map(|a| a.len())), (StatusCode::OK, Some(0)));
    // Out of range.
    let (st, v, _) = send(&app, &dev, "GET", "/device/v1/down/cmd?wait_s=999", vec![], now_ms(), path).await;
    assert_eq!((st, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("wait_s")));
    // The poll attached the device: commands queue for it between polls.
    let hub = app.platform.devices().clone();
    hub.send_door_command(&dev.id, DoorNo::of(1), DoorCommandKind::OpenDoor, "c1", now_ms() + 30_000)
        .await
        .unwrap();
    hub.send_door_command(&dev.id, DoorNo::of(1), DoorCommandKind::QueryDoor, "c-expired", now_ms() - 1)
        .await
        .unwrap();
    hub.send_door_command(&dev.id, DoorNo::of(1), DoorCommandKind::QueryDoor, "c2", now_ms() + 30_000)
        .await
        .unwrap();
    // A signature over the path with its query is accepted too.
    let (st, v, _) = send(
        &app,
        &dev,
        "GET",
        "/device/v1/down/cmd?wait_s=5",
        vec![],
        now_ms(),
        "/device/v1/down/cmd?wait_s=5",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ids: Vec<_> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cmd_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["c1", "c2"]);
    assert_eq!(v["commands"][0]["type"], "open_door");
    // A poll that waits is answered as soon as a command comes.
    let poll = {
        let base = app.base_url.clone();
        let headers = HttpTransport::signed_headers(&dev.id, &dev.secret, now_ms(), "GET", path, b"");
        tokio::spawn(async move {
            let mut r = reqwest::Client::new().get(format!("{base}{path}?wait_s=30"));
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    crate::common::eventually(10, "the poll to be waiting", || async {
        hub.send_door_command(&dev.id, DoorNo::of(1), DoorCommandKind::OpenDoor, "c3", now_ms() + 30_000)
            .await
            .ok()
    })
    .await;
    let v = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["commands"][0]["cmd_id"], "c3");
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purchase_on_a_cabinet_that_speaks_only_http() {
    let store = TestStore::new(Store::Sqlite).await;
    let app = App::start(config(&store)).await.unwrap();
    let spec = FleetSpec {
        cabinets: 1,
        pk: "http".into(),
        transport: FleetTransport::Http,
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.expect("fleet"));
    let mut summary = tare::bench::run_purchases(&fleet, 5, 3).await.expect("purchases");
    tare::bench::audit_provider_charges(&app, &mut summary);
    assert!(summary.errors.is_empty(), "{summary}");
    assert_eq!(summary.states.values().sum::<usize>(), 5, "{summary}");
    assert_eq!(summary.charged_cents, summary.expected_cents, "{summary}");
    assert_eq!(summary.double_charges, 0);
    assert!(summary.states.get("paid").copied().unwrap_or(0) > 0, "{summary}");
    // No MQTT was involved.
    assert_eq!(app.mqtt.as_ref().unwrap().endpoint.counters.publishes_in.load(Relaxed), 0);
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initialization_waits_for_the_price_labels_and_a_stable_weight() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, dev) = setup(&store, |_| {}).await;
    let status = || async {
        let c = ApiClient::new(&app.base_url, &app.admin_token);
        let (_, v) = c.get(&format!("/api/v1/cabinets/{}", dev.id), &c.admin).await.unwrap();
        v
    };
    // A boot that does not match the planogram (1 door, 1 lane) is refused.
    let (st, v) = up(
        &app,
        &dev,
        "boot",
        &env("b0", 0, json!({"fw": "1", "hw": "h", "doors": 2, "lanes": [1, 1]})),
    )
    .await;
    assert_eq!((st, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("lanes")), "{v}");
    let (st, _) = up(
        &app,
        &dev,
        "boot",
        &env("b1", 0, json!({"fw": "1", "hw": "h", "doors": 1, "lanes": [1]})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // The platform pushes the lane's price label.
    let path = "/device/v1/down/cmd";
    let (_, v, _) = send(&app, &dev, "GET", "/device/v1/down/cmd?wait_s=10", vec![], now_ms(), path).await;
    let label = &v["commands"][0];
    assert_eq!(label["type"], "set_price_label", "{v}");
    assert_eq!(label["args"], json!({"door": 1, "lane": 1, "price_cents": 350, "name": "Cola"}));
    // A stable weight alone is not enough.
    let w = env("w1", 1, json!({"door": 1, "stable": true, "lanes": [{"lane": 1, "grams": 991.0}]}));
    assert_eq!(up(&app, &dev, "weight", &w).await.0, StatusCode::ACCEPTED);
    assert_eq!(status().await["status"], "pending_init");
    // The label's ack completes it: online, opening stock counted from the weight.
    let ack = env("a1", 2, json!({"cmd_id": label["cmd_id"], "status": "ok"}));
    assert_eq!(up(&app, &dev, "ack", &ack).await.0, StatusCode::ACCEPTED);
    let c = status().await;
    assert_eq!(c["status"], "online", "{c}");
    assert_eq!(c["doors"][0]["lanes"][0]["stock"], 3);
    app.stop().await;
    store.cleanup().await;
}

/// A captured signed request is served once, on any node and after a restart; and a
/// message the platform applied stays applied after a restart: the device's own resend of
/// it (signed anew) is a duplicate, because the log records which message caused what
/// [issue 14, item 4].
#[tokio::test]
async fn a_signed_request_is_served_once_and_an_applied_message_stays_applied_across_a_restart() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, dev) = setup(&store, |_| {}).await;
    let path = "/device/v1/up/boot";
    let body = json!({"id": "boot-r1", "seq": 1, "ts": now_ms(), "fw": "1.2.3", "hw": "h1", "doors": 1, "lanes": [1]})
        .to_string()
        .into_bytes();
    let ts = now_ms();
    let (st, v, _) = send(&app, &dev, "POST", path, body.clone(), ts, path).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::ACCEPTED, Some("accepted")), "{v}");
    let (st, v, _) = send(&app, &dev, "POST", path, body.clone(), ts, path).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth_replayed")),
        "{v}"
    );
    app.stop().await;

    let app = App::start(config(&store)).await.expect("app again");
    let (st, v, _) = send(&app, &dev, "POST", path, body.clone(), ts, path).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth_replayed")),
        "{v}"
    );
    let (st, v, _) = send(&app, &dev, "POST", path, body.clone(), ts + 1, path).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::ACCEPTED, Some("duplicate")), "{v}");
    app.stop().await;
    store.cleanup().await;
}
