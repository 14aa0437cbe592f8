//! Bad input at every door of the HTTP API, on both stores: malformed and invalid bodies,
//! missing or wrong credentials, scans the current state refuses, and forged, stale or
//! duplicate provider callbacks. Each refusal must carry the documented status, error
//! `code` (and, for 422, the offending `field`) and must change nothing: the global feed
//! does not move, and the order, payment, cabinet and shopper involved are as they were.
//!
//! One module per door: bodies, callers, scans, callbacks; the fixture and the
//! assertions they share are here.

mod bodies;
mod callbacks;
mod callers;
mod scans;

use crate::common::{eventually, Harness, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, ShopperHandle};
use tare_domain::{DoorNo, LaneNo, ProviderKind};

/// Waits until the feed head has not moved for a while (background saga steps, door
/// releases and the PostgreSQL sequencer have all finished), and returns it.
pub(super) async fn settle(app: &App) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = app.platform.feed_head().await.unwrap();
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let h = app.platform.feed_head().await.unwrap();
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
pub(super) async fn assert_feed_unchanged(app: &App, before: i64, what: &str) {
    tokio::time::sleep(Duration::from_millis(250)).await;
    let now = app.platform.feed_head().await.unwrap();
    assert_eq!(now, before, "{what}: the refused request moved the feed head ({before} -> {now})");
}

/// Asserts the error shape `{"error": {"code", "message", "field"?}}`.
#[track_caller]
pub(super) fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>, what: &str) {
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
pub(super) fn assert_unknown_field(got: &(StatusCode, Value), field: &str, what: &str) {
    let (st, body) = got;
    assert_eq!(*st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: status (body {body})");
    assert_eq!(body["error"]["code"], json!("invalid_field"), "{what}: code in {body}");
    let f = body["error"]["field"].as_str().unwrap_or_default();
    assert_eq!(f, field, "{what}: field");
}

/// Waits until the projections have processed the whole feed.
pub(super) async fn projections_caught_up(app: &App) {
    let head = app.platform.feed_head().await.unwrap();
    eventually(20, "projections to catch up", || async {
        (app.platform.metrics().await.unwrap().projections_position >= head).then_some(())
    })
    .await;
}

/// The order ids in `GET /api/v1/shoppers/me/orders` for `shopper`.
pub(super) async fn my_order_ids(client: &ApiClient, shopper: &ShopperHandle) -> Vec<String> {
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
pub(super) async fn scan_and_open(fleet: &Fleet, shopper: &ShopperHandle, cab: usize, door: u8) -> String {
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
        vc.wait_open(DoorNo::of(door), Duration::from_secs(15)).await,
        "door {door} never opened"
    );
    // The platform has recorded the open door too.
    eventually(15, "order to be open", || async {
        (app_order_state(fleet, &order_id, &shopper.token).await == "open").then_some(())
    })
    .await;
    order_id
}

pub(super) async fn app_order_state(fleet: &Fleet, order_id: &str, token: &str) -> String {
    let (_, o) = fleet.client.get(&format!("/api/v1/orders/{order_id}"), token).await.unwrap();
    o["state"].as_str().unwrap_or_default().to_string()
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Posts a notification to `/callbacks/{provider}` with `headers`: (status, body text).
pub(super) async fn post_callback(
    http: &reqwest::Client,
    base: &str,
    provider: &str,
    content_type: &str,
    body: &[u8],
    headers: &reqwest::header::HeaderMap,
) -> (StatusCode, String) {
    let resp = http
        .post(format!("{base}/callbacks/{provider}"))
        .header("content-type", content_type)
        .headers(headers.clone())
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.text().await.unwrap())
}
