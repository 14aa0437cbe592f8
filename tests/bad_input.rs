//! Bad input at every door of the HTTP API, on both stores: malformed and invalid bodies,
//! missing or wrong credentials, scans the current state refuses, and forged, stale or
//! duplicate provider callbacks. Each refusal must carry the documented status, error
//! `code` (and, for 422, the offending `field`) and must change nothing: the global feed
//! does not move, and the order, payment, cabinet and shopper involved are as they were.

mod common;

use common::{eventually, start, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, ShopperHandle};
use tare_domain::{DoorNo, LaneNo, ProviderKind};
use tare_gateway::sandbox::{sign, SandboxNotification, SIGNATURE_HEADER, TIMESTAMP_HEADER};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Waits until the feed head has not moved for a while (background saga steps, door
/// releases and the PostgreSQL sequencer have all finished), and returns it.
async fn settle(app: &App) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = app.platform.feed.head().await.unwrap();
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let h = app.platform.feed.head().await.unwrap();
        if h != last {
            last = h;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= Duration::from_millis(500) {
            return last;
        }
        assert!(tokio::time::Instant::now() < deadline, "the feed never settled");
    }
}

/// Asserts that the feed head is still `before` (after giving the PostgreSQL sequencer
/// time to number anything that might have been written).
async fn assert_feed_unchanged(app: &App, before: i64, what: &str) {
    tokio::time::sleep(Duration::from_millis(250)).await;
    let now = app.platform.feed.head().await.unwrap();
    assert_eq!(now, before, "{what}: the refused request moved the feed head ({before} -> {now})");
}

/// Asserts the error shape `{"error": {"code", "message", "field"?}}`.
#[track_caller]
fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>, what: &str) {
    let (st, body) = got;
    assert_eq!(*st, status, "{what}: status (body {body})");
    let err = &body["error"];
    assert!(err.is_object(), "{what}: no error object in {body}");
    assert_eq!(err["code"], json!(code), "{what}: code in {body}");
    assert!(err["message"].is_string(), "{what}: message in {body}");
    match field {
        Some(f) => assert_eq!(err["field"], json!(f), "{what}: field in {body}"),
        None => assert!(
            err.get("field").is_none() || err["field"].is_null(),
            "{what}: unexpected field in {body}"
        ),
    }
}

/// Asserts a 422 for an unknown field, named by its full path.
#[track_caller]
fn assert_unknown_field(got: &(StatusCode, Value), field: &str, what: &str) {
    let (st, body) = got;
    assert_eq!(*st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: status (body {body})");
    assert_eq!(body["error"]["code"], json!("invalid_field"), "{what}: code in {body}");
    let f = body["error"]["field"].as_str().unwrap_or_default();
    assert_eq!(f, field, "{what}: field");
}

/// Waits until the projections have processed the whole feed.
async fn projections_caught_up(app: &App) {
    let head = app.platform.feed.head().await.unwrap();
    eventually(20, "projections to catch up", || async {
        (app.platform.jobs.checkpoint(tare_platform::views::PROJECTIONS).await.unwrap() >= head).then_some(())
    })
    .await;
}

/// The order ids in `GET /api/v1/shoppers/me/orders` for `shopper`.
async fn my_order_ids(client: &ApiClient, shopper: &ShopperHandle) -> Vec<String> {
    let (st, body) = client.get("/api/v1/shoppers/me/orders", &shopper.token).await.unwrap();
    assert_eq!(st, StatusCode::OK, "my orders: {body}");
    body["orders"]
        .as_array()
        .expect("orders array")
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .collect()
}

/// Scans `door` of cabinet `cab`, confirms at the sandbox if asked, and waits until the
/// door is open. Returns the order id.
async fn scan_and_open(fleet: &Fleet, shopper: &ShopperHandle, cab: usize, door: u8) -> String {
    let vc = &fleet.cabinets[cab];
    let (st, created) = fleet
        .client
        .post(
            "/api/v1/orders",
            &shopper.token,
            &json!({"cabinet": vc.id().to_string(), "door": door}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "scan: {created}");
    let order_id = created["order_id"].as_str().unwrap().to_string();
    let confirm = match created["confirm_url"].as_str() {
        Some(u) => Some(u.to_string()),
        None => {
            let (_, o) = fleet
                .client
                .get(&format!("/api/v1/orders/{order_id}"), &shopper.token)
                .await
                .unwrap();
            o["payment"]["confirm_url"].as_str().map(str::to_string)
        }
    };
    if let Some(url) = confirm {
        let path = url.strip_prefix(&fleet.client.base).unwrap_or(&url).to_string();
        let (st, b) = fleet.client.post(&path, &shopper.token, &json!({})).await.unwrap();
        assert_eq!(st, StatusCode::OK, "confirm: {b}");
    }
    assert!(
        vc.wait_open(DoorNo(door), Duration::from_secs(15)).await,
        "door {door} never opened"
    );
    // The platform has recorded the open door too.
    eventually(15, "order to be open", || async {
        (app_order_state(fleet, &order_id, &shopper.token).await == "open").then_some(())
    })
    .await;
    order_id
}

async fn app_order_state(fleet: &Fleet, order_id: &str, token: &str) -> String {
    let (_, o) = fleet.client.get(&format!("/api/v1/orders/{order_id}"), token).await.unwrap();
    o["state"].as_str().unwrap_or_default().to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Posts a callback body with optional timestamp and signature headers.
async fn post_callback(
    http: &reqwest::Client,
    base: &str,
    provider: &str,
    body: &[u8],
    ts: Option<&str>,
    sig: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = http
        .post(format!("{base}/callbacks/{provider}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(ts) = ts {
        req = req.header(TIMESTAMP_HEADER, ts);
    }
    if let Some(sig) = sig {
        req = req.header(SIGNATURE_HEADER, sig);
    }
    let resp = req.send().await.unwrap();
    let st = resp.status();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (st, body)
}

// ---------------------------------------------------------------------------------------
// 1. Malformed and invalid bodies
// ---------------------------------------------------------------------------------------

async fn invalid_bodies_are_refused_and_change_nothing(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = start(&store).await;
    let fleet = Fleet::provision(
        &app,
        &FleetSpec {
            cabinets: 1,
            pk: "bi-body".into(),
            ..FleetSpec::default()
        },
    )
    .await
    .expect("fleet");
    let c = &fleet.client;
    let admin = c.admin.clone();
    let head = settle(&app).await;

    // --- products ---
    let product_absent = |sku: &'static str| {
        let c = c.clone();
        let admin = admin.clone();
        async move {
            let r = c.get(&format!("/api/v1/products/{sku}"), &admin).await.unwrap();
            assert_error(
                &r,
                StatusCode::NOT_FOUND,
                "product_not_found",
                None,
                &format!("product {sku} after refusal"),
            );
        }
    };

    let cases: Vec<(&str, &str, StatusCode, &str, Option<&str>)> = vec![
        (
            "malformed JSON",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 100"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "not JSON at all",
            "sku=bad-1&name=Bad",
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "price as a string",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": "3"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "fractional price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 1.5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "negative price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "absurd price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 100000001}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "zero unit weight",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 0, "price_cents": 100}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("unit_grams"),
        ),
        (
            "negative unit weight",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": -5.5, "price_cents": 100}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("unit_grams"),
        ),
        (
            "missing price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "missing name",
            r#"{"sku": "bad-1", "unit_grams": 10, "price_cents": 100}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("name"),
        ),
    ];
    for (what, body, status, code, field) in cases {
        let r = c.post_raw("/api/v1/products", &admin, body).await.unwrap();
        assert_error(&r, status, code, field, what);
        assert_feed_unchanged(&app, head, what).await;
    }
    // An unknown field (see `assert_unknown_field` for the doubled name).
    let r = c
        .post_raw(
            "/api/v1/products",
            &admin,
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 100, "colour": "red"}"#,
        )
        .await
        .unwrap();
    assert_unknown_field(&r, "colour", "unknown product field");
    assert_feed_unchanged(&app, head, "unknown product field").await;
    product_absent("bad-1").await;

    // Over 64 KiB (valid JSON otherwise: the size alone refuses it).
    let big = json!({"sku": "big-1", "name": "x".repeat(70 * 1024), "unit_grams": 10, "price_cents": 100}).to_string();
    assert!(big.len() > 64 * 1024);
    let r = c.post_raw("/api/v1/products", &admin, &big).await.unwrap();
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large", None, "body over 64 KiB");
    assert_feed_unchanged(&app, head, "body over 64 KiB").await;
    product_absent("big-1").await;

    // A product that exists already is not overwritten.
    let cola_before = c.get("/api/v1/products/cola-330", &admin).await.unwrap();
    let r = c
        .post(
            "/api/v1/products",
            &admin,
            &json!({"sku": "cola-330", "name": "Cheap cola", "unit_grams": 348, "price_cents": 1}),
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::CONFLICT, "product_exists", None, "duplicate sku");
    assert_feed_unchanged(&app, head, "duplicate sku").await;
    assert_eq!(c.get("/api/v1/products/cola-330", &admin).await.unwrap(), cola_before);

    // --- cabinets ---
    let cabinet = |door: Value, capacity: Value, sku: &str| {
        json!({"pk": "bi-bad", "dn": "SN00001", "kind": "weight", "location": {"lat": 31.23, "lng": 121.47},
               "doors": [{"door": door, "lanes": [{"lane": 1, "sku": sku, "capacity": capacity, "restock_threshold": 2}]}]})
    };
    let mut missing_lanes = cabinet(json!(1), json!(10), "cola-330");
    missing_lanes["doors"][0].as_object_mut().unwrap().remove("lanes");
    let mut unknown_lane_field = cabinet(json!(1), json!(10), "cola-330");
    unknown_lane_field["doors"][0]["lanes"][0]["colour"] = json!("red");
    let mut missing_location = cabinet(json!(1), json!(10), "cola-330");
    missing_location.as_object_mut().unwrap().remove("location");
    let cab_cases: Vec<(&str, Value, &str)> = vec![
        (
            "negative capacity",
            cabinet(json!(1), json!(-1), "cola-330"),
            "doors[0].lanes[0].capacity",
        ),
        (
            "capacity as a string",
            cabinet(json!(1), json!("10"), "cola-330"),
            "doors[0].lanes[0].capacity",
        ),
        ("door 0", cabinet(json!(0), json!(10), "cola-330"), "doors[0].door"),
        ("door 17", cabinet(json!(17), json!(10), "cola-330"), "doors[0].door"),
        (
            "unknown product in a lane",
            cabinet(json!(1), json!(10), "ghost-1"),
            "doors[0].lanes[0].sku",
        ),
        ("missing lanes", missing_lanes, "doors[0].lanes"),
        ("missing location", missing_location, "location"),
    ];
    for (what, body, field) in cab_cases {
        let r = c.post("/api/v1/cabinets", &admin, &body).await.unwrap();
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field), what);
        assert_feed_unchanged(&app, head, what).await;
        let r = c.get("/api/v1/cabinets/bi-bad.SN00001", &admin).await.unwrap();
        assert_error(
            &r,
            StatusCode::NOT_FOUND,
            "cabinet_not_found",
            None,
            &format!("{what}: cabinet after refusal"),
        );
    }
    let r = c.post("/api/v1/cabinets", &admin, &unknown_lane_field).await.unwrap();
    assert_unknown_field(&r, "doors[0].lanes[0].colour", "unknown lane field");
    assert_feed_unchanged(&app, head, "unknown lane field").await;
    let r = c
        .post_raw(
            "/api/v1/cabinets",
            &admin,
            r#"{"pk": "bi-bad", "dn": "SN00001", "kind": "weight",, }"#,
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None, "malformed cabinet");
    assert_feed_unchanged(&app, head, "malformed cabinet").await;

    // A cabinet that exists already is not re-registered.
    let existing = fleet.cabinets[0].id().clone();
    let cab_before = app.platform.cabinet(&existing).await.unwrap();
    let mut dup = cabinet(json!(1), json!(10), "cola-330");
    dup["pk"] = json!("bi-body");
    let r = c.post("/api/v1/cabinets", &admin, &dup).await.unwrap();
    assert_error(&r, StatusCode::CONFLICT, "cabinet_exists", None, "duplicate cabinet");
    assert_feed_unchanged(&app, head, "duplicate cabinet").await;
    assert_eq!(app.platform.cabinet(&existing).await.unwrap(), cab_before);

    // --- shoppers and orders ---
    let r = c
        .post(
            "/api/v1/shoppers",
            "",
            &json!({"phone": "13800000001", "provider": "paypal", "confirm_mode": "once"}),
        )
        .await
        .unwrap();
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("provider"),
        "unknown provider",
    );
    assert_feed_unchanged(&app, head, "unknown provider").await;

    let shopper = fleet.new_shopper("13800000002", "alipay", "once").await.unwrap();
    let head = settle(&app).await;
    let shopper_before = app.platform.shopper(&shopper.id).await.unwrap();
    let cab = existing.to_string();
    let order_cases: Vec<(&str, Value, StatusCode, &str, Option<&str>)> = vec![
        (
            "door 0",
            json!({"cabinet": cab, "door": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("door"),
        ),
        (
            "door as a string",
            json!({"cabinet": cab, "door": "1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("door"),
        ),
        (
            "missing door",
            json!({"cabinet": cab}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("door"),
        ),
    ];
    for (what, body, status, code, field) in order_cases {
        let r = c.post("/api/v1/orders", &shopper.token, &body).await.unwrap();
        assert_error(&r, status, code, field, what);
        assert_feed_unchanged(&app, head, what).await;
    }
    let r = c
        .post(
            "/api/v1/orders",
            &shopper.token,
            &json!({"cabinet": cab, "door": 1, "tip_cents": 100}),
        )
        .await
        .unwrap();
    assert_unknown_field(&r, "tip_cents", "unknown order field");
    assert_feed_unchanged(&app, head, "unknown order field").await;
    let r = c.post_raw("/api/v1/orders", &shopper.token, "{\"cabinet\": ").await.unwrap();
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None, "truncated order");
    assert_feed_unchanged(&app, head, "truncated order").await;
    assert_eq!(app.platform.shopper(&shopper.id).await.unwrap(), shopper_before);
    assert_eq!(app.platform.cabinet(&existing).await.unwrap(), cab_before);

    // The control: a valid product is accepted and does move the feed.
    let r = c
        .post(
            "/api/v1/products",
            &admin,
            &json!({"sku": "good-1", "name": "Good", "unit_grams": 10, "price_cents": 100}),
        )
        .await
        .unwrap();
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let after = settle(&app).await;
    assert!(after > head, "a valid request moves the feed");

    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(invalid_bodies, invalid_bodies_are_refused_and_change_nothing);

// ---------------------------------------------------------------------------------------
// 2. Authentication and authorization
// ---------------------------------------------------------------------------------------

async fn wrong_callers_are_refused_and_change_nothing(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = start(&store).await;
    let fleet = Fleet::provision(
        &app,
        &FleetSpec {
            cabinets: 1,
            pk: "bi-auth".into(),
            ..FleetSpec::default()
        },
    )
    .await
    .expect("fleet");
    let c = &fleet.client;
    let admin = c.admin.clone();
    let alice = fleet.new_shopper("13900000001", "alipay", "once").await.unwrap();
    let bob = fleet.new_shopper("13900000002", "wechat", "once").await.unwrap();
    let bought = fleet
        .purchase(&alice, 0, DoorNo(1), &[(LaneNo(1), 1)])
        .await
        .expect("alice's purchase");
    assert_eq!(bought.order["state"], "paid", "{}", bought.order);
    let order_id = bought.order_id.clone();
    let head = settle(&app).await;
    let order_before = app.platform.order(&order_id).await.unwrap();
    let cab_id = fleet.cabinets[0].id().clone();
    let cab_before = app.platform.cabinet(&cab_id).await.unwrap();
    let alice_before = app.platform.shopper(&alice.id).await.unwrap();
    let bob_before = app.platform.shopper(&bob.id).await.unwrap();

    let http = reqwest::Client::new();
    let product = json!({"sku": "auth-1", "name": "Auth", "unit_grams": 10, "price_cents": 100});
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let st = resp.status();
        let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
        (st, body)
    };

    // No token at all.
    let r = send(http.post(format!("{}/api/v1/products", c.base)).json(&product)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "no token");
    assert_feed_unchanged(&app, head, "no token").await;
    // Not a bearer token.
    let r = send(
        http.post(format!("{}/api/v1/products", c.base))
            .header("authorization", format!("Basic {admin}"))
            .json(&product),
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "basic auth");
    // An empty bearer token.
    let r = c.post("/api/v1/products", "", &product).await.unwrap();
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "empty token");
    // Garbage, a token shaped like a shopper's for nobody, and a real shopper id with the
    // wrong secret.
    for (what, token) in [
        ("garbage token", "garbage".to_string()),
        ("token of nobody", "0190aaaabbbbccccddddeeeeffff0000.deadbeef".to_string()),
        ("wrong secret", format!("{}.{}", alice.id, "00".repeat(24))),
        ("admin token with a suffix", format!("{admin}x")),
    ] {
        let r = c.post("/api/v1/products", &token, &product).await.unwrap();
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, what);
        let r = c.get(&format!("/api/v1/orders/{order_id}"), &token).await.unwrap();
        assert_error(
            &r,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
            &format!("{what} reading an order"),
        );
        let r = c
            .post("/api/v1/orders", &token, &json!({"cabinet": cab_id.to_string(), "door": 2}))
            .await
            .unwrap();
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, &format!("{what} scanning"));
        assert_feed_unchanged(&app, head, what).await;
    }
    // No token reading an order.
    let r = send(http.get(format!("{}/api/v1/orders/{order_id}", c.base))).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "no token reading an order");

    // A shopper on operator endpoints.
    let r = c.post("/api/v1/products", &alice.token, &product).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper creating a product");
    assert_feed_unchanged(&app, head, "shopper creating a product").await;
    let r = c
        .post(
            "/api/v1/cabinets",
            &alice.token,
            &json!({"pk": "bi-auth", "dn": "SN00099", "kind": "weight", "location": {"lat": 31.0, "lng": 121.0},
                    "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola-330", "capacity": 10, "restock_threshold": 2}]}]}),
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper creating a cabinet");
    let r = c
        .post(
            &format!("/api/v1/shoppers/{}/coupons", alice.id),
            &alice.token,
            &json!({"type": "cash", "value_cents": 10000, "min_spend_cents": 0}),
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper granting herself a coupon");
    let r = c.get(&format!("/api/v1/cabinets/{cab_id}"), &alice.token).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper reading a cabinet");
    assert_feed_unchanged(&app, head, "shopper on operator endpoints").await;
    let r = c.get("/api/v1/products/auth-1", &admin).await.unwrap();
    assert_error(&r, StatusCode::NOT_FOUND, "product_not_found", None, "product after refusals");
    let r = c.get("/api/v1/cabinets/bi-auth.SN00099", &admin).await.unwrap();
    assert_error(&r, StatusCode::NOT_FOUND, "cabinet_not_found", None, "cabinet after refusal");

    // The operator scanning a cabinet.
    let r = c
        .post("/api/v1/orders", &admin, &json!({"cabinet": cab_id.to_string(), "door": 2}))
        .await
        .unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "operator scanning");
    let r = c.get("/api/v1/shoppers/me/orders", &admin).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "operator listing 'my' orders");
    assert_feed_unchanged(&app, head, "operator on shopper endpoints").await;

    // Bob reading Alice's order.
    let r = c.get(&format!("/api/v1/orders/{order_id}"), &bob.token).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "another shopper's order");
    assert!(
        r.1.get("order_id").is_none() && r.1.get("lines").is_none(),
        "nothing of the order leaks: {}",
        r.1
    );
    assert_feed_unchanged(&app, head, "another shopper's order").await;
    // …while Alice and the operator can.
    let (st, o) = c.get(&format!("/api/v1/orders/{order_id}"), &alice.token).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{o}");
    let (st, _) = c.get(&format!("/api/v1/orders/{order_id}"), &admin).await.unwrap();
    assert_eq!(st, StatusCode::OK);
    // Bob's list does not show it; Alice's does.
    projections_caught_up(&app).await;
    assert!(my_order_ids(c, &bob).await.is_empty());
    assert_eq!(my_order_ids(c, &alice).await, vec![order_id.clone()]);

    // Nothing changed anywhere.
    assert_feed_unchanged(&app, head, "auth refusals").await;
    assert_eq!(app.platform.order(&order_id).await.unwrap(), order_before);
    assert_eq!(app.platform.cabinet(&cab_id).await.unwrap(), cab_before);
    assert_eq!(app.platform.shopper(&alice.id).await.unwrap(), alice_before);
    assert_eq!(app.platform.shopper(&bob.id).await.unwrap(), bob_before);

    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(wrong_callers, wrong_callers_are_refused_and_change_nothing);

// ---------------------------------------------------------------------------------------
// 3. Scans the current state refuses
// ---------------------------------------------------------------------------------------

async fn refused_scans_leave_no_order_and_the_open_order_goes_on(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = start(&store).await;
    let fleet = Fleet::provision(
        &app,
        &FleetSpec {
            cabinets: 2,
            doors: 2,
            lanes: 2,
            pk: "bi-scan".into(),
            ..FleetSpec::default()
        },
    )
    .await
    .expect("fleet");
    let c = &fleet.client;
    let alice = fleet.new_shopper("13700000001", "alipay", "each_time").await.unwrap();
    let bob = fleet.new_shopper("13700000002", "wechat", "once").await.unwrap();
    let cab0 = fleet.cabinets[0].id().clone();
    let cab1 = fleet.cabinets[1].id().clone();

    // Alice's order is open at cabinet 0, door 1.
    let first = scan_and_open(&fleet, &alice, 0, 1).await;
    let head = settle(&app).await;
    let first_before = app.platform.order(&first).await.unwrap();
    let bob_before = app.platform.shopper(&bob.id).await.unwrap();
    assert_eq!(bob_before.open_order, None);
    let holder =
        |cab: &tare_domain::cabinet::Cabinet, door: u8| cab.door(DoorNo(door)).unwrap().holder.as_ref().map(|h| h.session_id().to_string());
    let cab0_before = app.platform.cabinet(&cab0).await.unwrap();
    assert_eq!(holder(&cab0_before, 1), Some(first.clone()));
    assert_eq!(holder(&cab0_before, 2), None);

    let scan = |who: &ShopperHandle, cabinet: &str, door: u8| {
        let (c, token) = (c.clone(), who.token.clone());
        let body = json!({"cabinet": cabinet, "door": door});
        async move { c.post("/api/v1/orders", &token, &body).await.unwrap() }
    };

    // Unknown cabinet, unknown door: 404, and nothing is written.
    let r = scan(&bob, "bi-scan.SN99999", 1).await;
    assert_error(&r, StatusCode::NOT_FOUND, "cabinet_not_found", None, "unknown cabinet");
    assert_feed_unchanged(&app, head, "unknown cabinet").await;
    let r = scan(&bob, &cab0.to_string(), 9).await;
    assert_error(&r, StatusCode::NOT_FOUND, "door_not_found", None, "unknown door");
    assert_feed_unchanged(&app, head, "unknown door").await;
    let r = scan(&bob, "not-a-cabinet-id", 1).await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "malformed cabinet id: {}", r.1);
    assert_eq!(r.1["error"]["code"], "invalid_field", "{}", r.1);
    assert_feed_unchanged(&app, head, "malformed cabinet id").await;

    // A second shopper on the busy door: 409 cabinet_busy, and nothing written.
    let head = settle(&app).await;
    let r = scan(&bob, &cab0.to_string(), 1).await;
    assert_error(&r, StatusCode::CONFLICT, "cabinet_busy", None, "busy door");
    assert_feed_unchanged(&app, head, "busy door").await;
    assert_eq!(
        app.platform.shopper(&bob.id).await.unwrap().open_order,
        None,
        "busy door: Bob's slot"
    );
    let cab0_now = app.platform.cabinet(&cab0).await.unwrap();
    assert_eq!(holder(&cab0_now, 1), Some(first.clone()), "busy door: the door is still Alice's");
    assert_eq!(cab0_now.doors, cab0_before.doors, "busy door: cabinet 0 unchanged");

    // Alice again while her order is open, on the other (free) door: 409 unpaid_order.
    let alice_before = app.platform.shopper(&alice.id).await.unwrap();
    assert_eq!(alice_before.open_order, Some(first.clone()));
    let head = settle(&app).await;
    let r = scan(&alice, &cab0.to_string(), 2).await;
    assert_error(&r, StatusCode::CONFLICT, "unpaid_order", None, "unpaid order");
    assert_feed_unchanged(&app, head, "unpaid order").await;
    let r = scan(&alice, &cab1.to_string(), 1).await;
    assert_error(&r, StatusCode::CONFLICT, "unpaid_order", None, "unpaid order, other cabinet");
    assert_feed_unchanged(&app, head, "unpaid order, other cabinet").await;
    assert_eq!(app.platform.shopper(&alice.id).await.unwrap(), alice_before);
    let cab0_now = app.platform.cabinet(&cab0).await.unwrap();
    assert_eq!(holder(&cab0_now, 2), None, "unpaid order: door 2 not taken");

    // An offline cabinet: 409.
    fleet.cabinets[1].disconnect().await.unwrap();
    fleet
        .wait_status(&cab1, "offline", Duration::from_secs(10))
        .await
        .expect("cabinet 1 offline");
    settle(&app).await;
    let cab1_before = app.platform.cabinet(&cab1).await.unwrap();
    let head = settle(&app).await;
    let r = scan(&bob, &cab1.to_string(), 1).await;
    assert_error(&r, StatusCode::CONFLICT, "cabinet_unavailable", None, "offline cabinet");
    assert_feed_unchanged(&app, head, "offline cabinet").await;
    assert_eq!(app.platform.shopper(&bob.id).await.unwrap().open_order, None, "offline: Bob's slot");
    let cab1_now = app.platform.cabinet(&cab1).await.unwrap();
    assert_eq!(cab1_now, cab1_before, "offline: cabinet 1 unchanged");

    // Alice's order is untouched by all of it, and goes on to be paid.
    assert_eq!(app.platform.order(&first).await.unwrap(), first_before);
    let vc = &fleet.cabinets[0];
    let price = fleet.planogram[0][&(DoorNo(1), LaneNo(1))].1;
    assert_eq!(vc.take(DoorNo(1), LaneNo(1), 1).await.unwrap(), 1);
    vc.close(DoorNo(1)).await.unwrap();
    let done = fleet
        .wait_terminal(&first, &alice.token, Duration::from_secs(30))
        .await
        .expect("alice's order ends");
    assert_eq!(done["state"], "paid", "{done}");
    assert_eq!(done["total_cents"], json!(price), "{done}");
    assert_eq!(done["lines"].as_array().unwrap().len(), 1, "{done}");
    let charges: Vec<_> = app.sandboxes[&ProviderKind::Alipay]
        .charges()
        .into_iter()
        .filter(|ch| ch.order_id == first)
        .collect();
    assert_eq!(charges.len(), 1, "one collection for Alice's order");
    assert_eq!(charges[0].amount.0, price);

    // No order was ever made for Bob; Alice has exactly her one.
    settle(&app).await;
    projections_caught_up(&app).await;
    assert!(my_order_ids(c, &bob).await.is_empty(), "refused scans left an order for Bob");
    assert_eq!(my_order_ids(c, &alice).await, vec![first.clone()]);
    assert!(app.sandboxes[&ProviderKind::Wechat].charges().is_empty(), "Bob was never charged");

    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(refused_scans, refused_scans_leave_no_order_and_the_open_order_goes_on);

// ---------------------------------------------------------------------------------------
// 4. Provider callbacks
// ---------------------------------------------------------------------------------------

async fn forged_and_duplicate_callbacks_change_nothing(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = start(&store).await;
    let fleet = Fleet::provision(
        &app,
        &FleetSpec {
            cabinets: 1,
            doors: 2,
            lanes: 2,
            pk: "bi-cb".into(),
            ..FleetSpec::default()
        },
    )
    .await
    .expect("fleet");
    let c = &fleet.client;
    let admin = c.admin.clone();
    let alipay = app.sandboxes[&ProviderKind::Alipay].clone();
    let key = alipay.key().to_vec();
    let http = reqwest::Client::new();

    // Alice has a paid order.
    let alice = fleet.new_shopper("13600000001", "alipay", "once").await.unwrap();
    let paid = fleet
        .purchase(&alice, 0, DoorNo(1), &[(LaneNo(1), 2)])
        .await
        .expect("alice's purchase");
    assert_eq!(paid.order["state"], "paid", "{}", paid.order);
    let paid_id = paid.order_id.clone();

    // Bob's order waits for his confirmation.
    let bob = fleet.new_shopper("13600000002", "alipay", "each_time").await.unwrap();
    let (st, created) = c
        .post(
            "/api/v1/orders",
            &bob.token,
            &json!({"cabinet": fleet.cabinets[0].id().to_string(), "door": 2}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let waiting_id = created["order_id"].as_str().unwrap().to_string();
    eventually(10, "bob's payment to await confirmation", || async {
        let (_, o) = c.get(&format!("/api/v1/orders/{waiting_id}"), &admin).await.unwrap();
        (o["payment"]["state"] == "awaiting_confirmation").then_some(())
    })
    .await;

    let head = settle(&app).await;
    let waiting_order = app.platform.order(&waiting_id).await.unwrap();
    let waiting_payment = app.platform.payment(&waiting_id).await.unwrap();
    let paid_order = app.platform.order(&paid_id).await.unwrap();
    let paid_payment = app.platform.payment(&paid_id).await.unwrap();
    let charges_before = alipay.charges();

    // A notification that would authorize Bob's order if it were believed.
    let authorize = serde_json::to_vec(&SandboxNotification {
        id: format!("n-forged-{waiting_id}"),
        event_type: "AUTHORIZED".into(),
        out_order_no: waiting_id.clone(),
        transaction_id: None,
        amount_cents: None,
        reason: None,
    })
    .unwrap();
    let now = now_ms().to_string();
    let good_sig = sign(&key, &now, &authorize);
    let stale = (now_ms() - 10 * 60 * 1000).to_string();
    let future = (now_ms() + 10 * 60 * 1000).to_string();
    let tampered = {
        let mut v: Value = serde_json::from_slice(&authorize).unwrap();
        v["id"] = json!(format!("n-other-{waiting_id}"));
        serde_json::to_vec(&v).unwrap()
    };
    let wechat_key = app.sandboxes[&ProviderKind::Wechat].key().to_vec();

    type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<String>, Option<String>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no signature headers",
            "alipay",
            authorize.clone(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "timestamp without signature",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "signature without timestamp",
            "alipay",
            authorize.clone(),
            None,
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "signed with the wrong key",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            Some(sign(b"not-the-key", &now, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "signature that is not hex",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            Some("zz-not-hex".into()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "body changed after signing",
            "alipay",
            tampered,
            Some(now.clone()),
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "timestamp changed after signing",
            "alipay",
            authorize.clone(),
            Some((now_ms() - 1000).to_string()),
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "stale timestamp, correctly signed",
            "alipay",
            authorize.clone(),
            Some(stale.clone()),
            Some(sign(&key, &stale, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "future timestamp, correctly signed",
            "alipay",
            authorize.clone(),
            Some(future.clone()),
            Some(sign(&key, &future, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "non-numeric timestamp",
            "alipay",
            authorize.clone(),
            Some("yesterday".into()),
            Some(sign(&key, "yesterday", &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "another provider's key",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            Some(sign(&wechat_key, &now, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "alipay's signature at the wechat path",
            "wechat",
            authorize.clone(),
            Some(now.clone()),
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "unknown provider path",
            "paypal",
            authorize.clone(),
            Some(now.clone()),
            Some(good_sig.clone()),
            StatusCode::NOT_FOUND,
            "provider_not_found",
        ),
    ];
    for (what, provider, body, ts, sig, status, code) in cases {
        let r = post_callback(&http, &c.base, provider, &body, ts.as_deref(), sig.as_deref()).await;
        assert_error(&r, status, code, None, what);
        assert_feed_unchanged(&app, head, what).await;
        assert_eq!(
            app.platform.payment(&waiting_id).await.unwrap(),
            waiting_payment,
            "{what}: payment changed"
        );
    }
    assert_eq!(
        app.platform.order(&waiting_id).await.unwrap(),
        waiting_order,
        "forged callbacks changed the order"
    );
    let (_, o) = c.get(&format!("/api/v1/orders/{waiting_id}"), &admin).await.unwrap();
    assert_eq!(o["payment"]["state"], "awaiting_confirmation", "{o}");
    assert!(!fleet.cabinets[0].is_open(DoorNo(2)), "a forged callback opened the door");

    // A correctly signed duplicate COLLECTED for Alice's paid order: accepted, no effect.
    let txn = paid.order["payment"]["transaction_id"]
        .as_str()
        .expect("transaction id")
        .to_string();
    let total = paid.order["total_cents"].as_i64().expect("total");
    assert!(total > 0);
    let duplicate = serde_json::to_vec(&SandboxNotification {
        id: format!("n-paid-{paid_id}-again"),
        event_type: "COLLECTED".into(),
        out_order_no: paid_id.clone(),
        transaction_id: Some(txn.clone()),
        amount_cents: Some(total),
        reason: None,
    })
    .unwrap();
    for attempt in 0..2 {
        let ts = now_ms().to_string();
        let sig = sign(&key, &ts, &duplicate);
        let r = post_callback(&http, &c.base, "alipay", &duplicate, Some(&ts), Some(&sig)).await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "duplicate COLLECTED #{attempt}: {}", r.1);
        assert_feed_unchanged(&app, head, "duplicate COLLECTED").await;
    }
    assert_eq!(app.platform.order(&paid_id).await.unwrap(), paid_order);
    assert_eq!(app.platform.payment(&paid_id).await.unwrap(), paid_payment);
    assert_eq!(alipay.charges(), charges_before, "the sandbox ledger changed");
    assert_eq!(
        alipay.charges().iter().filter(|ch| ch.order_id == paid_id).count(),
        1,
        "exactly one charge for the paid order"
    );
    let (_, o) = c.get(&format!("/api/v1/orders/{paid_id}"), &alice.token).await.unwrap();
    assert_eq!(o["state"], "paid");
    assert_eq!(o["total_cents"], json!(total));
    assert_eq!(o["payment"]["transaction_id"], json!(txn));

    // The control: Bob's genuine confirmation (a real signed callback) still works, and
    // his order goes on to be paid once.
    let url = created["confirm_url"].as_str().expect("confirm url").to_string();
    let path = url.strip_prefix(&c.base).unwrap_or(&url).to_string();
    let (st, b) = c.post(&path, &bob.token, &json!({})).await.unwrap();
    assert_eq!(st, StatusCode::OK, "confirm: {b}");
    let vc = &fleet.cabinets[0];
    assert!(vc.wait_open(DoorNo(2), Duration::from_secs(15)).await, "bob's door never opened");
    assert_eq!(vc.take(DoorNo(2), LaneNo(1), 1).await.unwrap(), 1);
    vc.close(DoorNo(2)).await.unwrap();
    let done = fleet
        .wait_terminal(&waiting_id, &bob.token, Duration::from_secs(30))
        .await
        .expect("bob's order ends");
    assert_eq!(done["state"], "paid", "{done}");
    assert_eq!(alipay.charges().iter().filter(|ch| ch.order_id == waiting_id).count(), 1);
    assert_eq!(alipay.charges().iter().filter(|ch| ch.order_id == paid_id).count(), 1);

    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(callbacks, forged_and_duplicate_callbacks_change_nothing);
