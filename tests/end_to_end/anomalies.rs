//! The anomaly queue through the API, on both stores [M3, R4, O9]: what a purchase found
//! lands in the queue once, at its cabinet, door and lane; an operator refunds an upheld
//! one (once, however often or concurrently asked), writes off or resolves the others,
//! each kept with who, when and why; a refund the order cannot take leaves the anomaly
//! open; a door left open past the limit is raised; bad input names the field. Only the API and the sandbox's charges are relied on.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, FleetTransport, ShopperHandle};
use tare_domain::{DoorNo, LaneNo};
use tare_platform::clock::{ManualClock, PlatformClock};
use tare_sim::cabinet::Faults;

async fn order(client: &ApiClient, id: &str) -> Value {
    client.get(&format!("/api/v1/orders/{id}"), &client.admin).await.unwrap().1
}

async fn wait_state(client: &ApiClient, id: &str, want: &str) -> Value {
    eventually(20, want, || async {
        let o = order(client, id).await;
        (o["state"] == want).then_some(o)
    })
    .await
}

async fn scan(fleet: &Fleet, shopper: &ShopperHandle) -> String {
    let cab = fleet.cabinets[0].id().to_string();
    let (st, b) = fleet
        .client
        .post("/api/v1/orders", &shopper.token, &json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b["order_id"].as_str().unwrap().to_string()
}

/// The anomalies listed for `query`, once `count` of them are.
async fn listed(client: &ApiClient, query: &str, count: usize) -> Vec<Value> {
    eventually(20, &format!("{count} anomalies for {query}"), || async {
        let (st, b) = client.get(&format!("/api/v1/anomalies?{query}"), &client.admin).await.unwrap();
        assert_eq!(st, StatusCode::OK, "{b}");
        let items = b["items"].as_array().cloned().unwrap_or_default();
        (items.len() == count).then_some(items)
    })
    .await
}

async fn act(client: &ApiClient, id: &str, body: Value) -> (StatusCode, Value) {
    client
        .post(&format!("/api/v1/anomalies/{id}/actions"), &client.admin, &body)
        .await
        .unwrap()
}

async fn the_queue_takes_what_purchases_find_and_operators_close_it(kind: Store) {
    let store = TestStore::new(kind).await;
    let mut cfg = config(&store);
    // A driven clock: no door check fires before the shopper closes.
    let clock = ManualClock::new(1_800_000_000_000);
    cfg.clock = PlatformClock::Manual(clock.clone());
    cfg.saga.stable_wait_ms = 0;
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        mqtt_tls: None,
        cabinets: 1,
        doors: 1,
        lanes: 3,
        capacity: 10,
        noise_grams: 1.0,
        seed: 5,
        pk: "anq".into(),
        transport: FleetTransport::InProcess,
        layout: None,
        more_nodes: Vec::new(),
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let s = fleet.new_shopper("13800000031", "alipay", "once").await.unwrap();

    // A paid purchase with an item put back in the wrong lane.
    let paid = scan(&fleet, &s).await;
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(1), 2).await.unwrap();
    vc.put(DoorNo::of(1), LaneNo::of(3), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let o = wait_state(client, &paid, "paid").await;
    let total = o["total_cents"].as_i64().unwrap();

    // An order sent to review: the open event is lost and the door closes unexpectedly.
    vc.set_faults(Faults {
        lose_open_events: true,
        ..Faults::default()
    });
    let review = scan(&fleet, &s).await;
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(2), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    wait_state(client, &review, "abnormal").await;

    let open = listed(client, &format!("state=open&cabinet={cab}"), 2).await;
    let heavier = format!("order:{paid}:lane_heavier:3");
    let reviewed = format!("order:{review}");
    let ids: Vec<&str> = open.iter().map(|a| a["anomaly_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [heavier.as_str(), reviewed.as_str()], "by id: in the order found");
    // Paged: a full page says where the next starts; the last says there is none.
    let page = |query: String| async move {
        let (st, b) = client.get(&format!("/api/v1/anomalies?{query}"), &client.admin).await.unwrap();
        assert_eq!(st, StatusCode::OK, "{b}");
        let ids: Vec<String> = b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["anomaly_id"].as_str().unwrap().to_string())
            .collect();
        (ids, b["next_after"].as_str().map(str::to_string))
    };
    let first = page(format!("state=open&cabinet={cab}&limit=1")).await;
    assert_eq!(first, (vec![heavier.clone()], Some(heavier.clone())));
    let second = page(format!("state=open&limit=1&after={}", first.1.unwrap())).await;
    assert_eq!(second.0, vec![reviewed.clone()]);
    assert_eq!(page(format!("state=open&limit=1&after={reviewed}")).await, (vec![], None));
    assert_eq!(page("limit=2".into()).await, (vec![heavier.clone(), reviewed.clone()], None));
    assert_eq!(
        (
            &open[0]["kind"],
            &open[0]["cabinet"],
            &open[0]["door"],
            &open[0]["lane"],
            &open[0]["order_id"],
            &open[0]["state"]
        ),
        (
            &json!("lane_heavier"),
            &json!(cab),
            &json!(1),
            &json!(3),
            &json!(paid),
            &json!("open")
        )
    );
    assert_eq!(
        (&open[1]["kind"], &open[1]["order_id"]),
        (&json!("unexpected_close"), &json!(review))
    );
    assert!(open[1].get("closing").is_none(), "{}", open[1]);
    listed(client, "state=open", 2).await;
    listed(client, "state=closed", 0).await;
    listed(client, "cabinet=anq.nowhere", 0).await;

    // Bad input names the field; nothing is closed by it.
    for (query, field) in [
        ("state=done", "state"),
        ("cabinet=nodot", "cabinet"),
        ("x=1", "query"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        let (st, e) = client.get(&format!("/api/v1/anomalies?{query}"), &client.admin).await.unwrap();
        assert_eq!(
            (st, &e["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!(field)),
            "{query}: {e}"
        );
    }
    for (body, field) in [
        (json!({"action": "refund", "note": "n"}), "amount_cents"),
        (json!({"action": "refund", "amount_cents": 0, "note": "n"}), "amount_cents"),
        (json!({"action": "resolve", "amount_cents": 5, "note": "n"}), "amount_cents"),
        (json!({"action": "undo", "note": "n"}), "action"),
        (json!({"action": "resolve", "note": "  "}), "note"),
        (json!({"action": "resolve", "note": "n", "by": "me"}), "by"),
    ] {
        let (st, e) = act(client, &heavier, body.clone()).await;
        assert_eq!(
            (st, &e["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!(field)),
            "{body}: {e}"
        );
    }
    let (st, e) = act(client, "order:nope", json!({"action": "resolve", "note": "n"})).await;
    assert_eq!((st, &e["error"]["code"]), (StatusCode::NOT_FOUND, &json!("anomaly_not_found")));
    let (st, _) = client
        .post(
            &format!("/api/v1/anomalies/{heavier}/actions"),
            &s.token,
            &json!({"action": "resolve", "note": "n"}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::FORBIDDEN, "shoppers do not close anomalies");

    // Upheld: the shopper is refunded part of the order, once, however often (and
    // concurrently) the operator asks.
    let refund = json!({"action": "refund", "amount_cents": 100, "note": "shopper put one back; refund one"});
    let (a, b) = tokio::join!(act(client, &heavier, refund.clone()), act(client, &heavier, refund.clone()));
    for (st, body) in [&a, &b] {
        assert!(
            *st == StatusCode::OK || body["error"]["code"] == "concurrent_update",
            "{st}: {body}"
        );
    }
    let (st, closed) = act(client, &heavier, refund.clone()).await;
    assert_eq!(st, StatusCode::OK, "{closed}");
    assert_eq!(closed["state"], "closed");
    let closing = &closed["closing"];
    assert_eq!(
        (&closing["action"], &closing["amount_cents"], &closing["by"], &closing["note"]),
        (
            &json!("refund"),
            &json!(100),
            &json!("admin"),
            &json!("shopper put one back; refund one")
        )
    );
    let refund_id = closing["refund_id"].as_str().unwrap().to_string();
    let o = eventually(20, "the refund to succeed", || async {
        let o = order(client, &paid).await;
        (o["state"] == "partially_refunded").then_some(o)
    })
    .await;
    assert_eq!(o["refunded_cents"], 100);
    assert_eq!(
        o["refunds"],
        json!([{"refund_id": refund_id, "amount_cents": 100, "state": "succeeded"}])
    );
    assert!(total > 100);
    let refunds_at_provider: usize = app.sandboxes.values().map(|sb| sb.refunds().len()).sum();
    assert_eq!(refunds_at_provider, 1, "refunded once");
    let (st, e) = act(client, &heavier, json!({"action": "resolve", "note": "n"})).await;
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("anomaly_closed")));
    let (st, e) = act(client, &heavier, json!({"action": "refund", "amount_cents": 50, "note": "n"})).await;
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("anomaly_closed")), "{e}");

    // Nothing was charged on the order in review: a refund is refused and it stays open;
    // the operator writes the taken item off instead.
    let (st, e) = act(client, &reviewed, json!({"action": "refund", "amount_cents": 10, "note": "n"})).await;
    assert_eq!(
        (st, &e["error"]["code"]),
        (StatusCode::CONFLICT, &json!("order_not_refundable")),
        "{e}"
    );
    listed(client, &format!("state=open&cabinet={cab}"), 1).await;
    let (st, w) = act(
        client,
        &reviewed,
        json!({"action": "write_off", "amount_cents": 350, "note": "camera shows one cola, shopper unreachable"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{w}");
    assert_eq!(
        (&w["closing"]["action"], &w["closing"]["amount_cents"]),
        (&json!("write_off"), &json!(350))
    );
    assert_eq!(order(client, &review).await["state"], "abnormal", "a write-off charges nobody");

    listed(client, "state=open", 0).await;
    let closed = listed(client, &format!("state=closed&cabinet={cab}"), 2).await;
    let actions: Vec<&Value> = closed.iter().map(|a| &a["closing"]["action"]).collect();
    assert_eq!(actions, [&json!("refund"), &json!("write_off")]);
    listed(client, "", 2).await;

    // A door left open past the limit is raised for an operator [B8]; its session ends
    // safely: when it closes, what was taken is counted and booked, but not charged to
    // the shopper without an operator (anyone could have reached in).
    vc.set_faults(Faults::default());
    let lingering = scan(&fleet, &s).await;
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    wait_state(client, &lingering, "open").await;
    clock.advance(300_001);
    let left = listed(client, "state=open", 1).await;
    assert_eq!(
        (&left[0]["anomaly_id"], &left[0]["kind"], &left[0]["cabinet"], &left[0]["door"]),
        (
            &json!(format!("order:{lingering}:door_left_open")),
            &json!("door_left_open"),
            &json!(cab),
            &json!(1)
        )
    );
    vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let o = wait_state(client, &lingering, "abnormal").await;
    assert_eq!(o["anomalies"][0]["code"], "door_left_open", "{o}");
    assert_eq!(o["lines"].as_array().map(Vec::len), Some(1), "counted: {o}");
    let review = listed(client, "state=open", 2).await;
    assert!(
        review
            .iter()
            .any(|a| a["anomaly_id"] == json!(format!("order:{lingering}")) && a["kind"] == "door_left_open"),
        "{review:?}"
    );
    let charged: usize = app
        .sandboxes
        .values()
        .flat_map(|s| s.charges())
        .filter(|c| c.order_id == lingering)
        .count();
    assert_eq!(charged, 0, "nothing charged without an operator");
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(anomaly_queue, the_queue_takes_what_purchases_find_and_operators_close_it);
