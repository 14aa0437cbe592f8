//! The emergency switch through the API, on both stores [B8]: stopping one provider
//! turns its shoppers away at the scan while an order already open settles and the other
//! provider's shoppers buy on; stopping all turns everyone away; lifting it lets them in
//! again; each change is an event with who and why; bad input names the field.

use crate::common::{config, Store, TestStore};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTransport};
use tare_domain::{DoorNo, LaneNo};

async fn the_switch_stops_new_orders_and_open_ones_settle(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 2,
        pk: "emg".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let ali = fleet.new_shopper("13800000071", "alipay", "once").await.unwrap();
    let wx = fleet.new_shopper("13800000072", "wechat", "once").await.unwrap();
    let scan = |token: String, door: u8| {
        let cab = cab.clone();
        async move {
            client
                .post("/api/v1/orders", &token, &json!({"cabinet": cab, "door": door}))
                .await
                .unwrap()
        }
    };
    let (st, sw) = client.get("/api/v1/emergency-stop", &client.admin).await.unwrap();
    assert_eq!((st, &sw["all"], &sw["providers"]), (StatusCode::OK, &json!(false), &json!([])));

    // An Alipay order is open when Alipay is stopped.
    let (st, o) = scan(ali.token.clone(), 1).await;
    assert_eq!(st, StatusCode::CREATED, "{o}");
    let open_order = o["order_id"].as_str().unwrap().to_string();
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    let stop = json!({"all": false, "providers": ["alipay"], "reason": "alipay incident #42"});
    let (st, sw) = client.put("/api/v1/emergency-stop", &client.admin, &stop).await.unwrap();
    assert_eq!(
        (st, &sw["providers"], &sw["by"], &sw["reason"]),
        (StatusCode::OK, &json!(["alipay"]), &json!("admin"), &json!("alipay incident #42"))
    );
    let (st, e) = scan(ali.token.clone(), 2).await;
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("payments_stopped")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("alipay incident #42"), "{e}");
    // The open one settles and is charged.
    vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let o = fleet.wait_terminal(&open_order, &ali.token, Duration::from_secs(20)).await.unwrap();
    assert_eq!(o["state"], "paid", "{o}");
    // WeChat shoppers buy on.
    let p = fleet.purchase(&wx, 0, DoorNo::of(2), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);

    // Everything stopped, then lifted.
    let (st, _) = client
        .put(
            "/api/v1/emergency-stop",
            &client.admin,
            &json!({"all": true, "providers": [], "reason": "stop all"}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK);
    let (st, e) = scan(wx.token.clone(), 2).await;
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("payments_stopped")));
    let lift = json!({"all": false, "providers": [], "reason": "incident over"});
    let (st, sw) = client.put("/api/v1/emergency-stop", &client.admin, &lift).await.unwrap();
    assert_eq!((st, &sw["all"], &sw["providers"]), (StatusCode::OK, &json!(false), &json!([])));
    let p = fleet.purchase(&ali, 0, DoorNo::of(2), &[(LaneNo::of(2), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    // Setting it as it is records nothing; each change is in the log.
    let (st, _) = client.put("/api/v1/emergency-stop", &client.admin, &lift).await.unwrap();
    assert_eq!(st, StatusCode::OK);
    let feed = app.platform.events_after(0, 100_000).await.unwrap();
    let changes = feed.iter().filter(|e| e.event_type == "EmergencyStopChanged").count();
    assert_eq!(changes, 3);

    for (body, field) in [
        (json!({"all": false, "providers": ["paypal"], "reason": "r"}), "providers[0]"),
        (json!({"all": false, "providers": [], "reason": " "}), "reason"),
        (json!({"all": "yes", "providers": [], "reason": "r"}), "all"),
        (json!({"all": false, "reason": "r"}), "providers"),
    ] {
        let (st, e) = client.put("/api/v1/emergency-stop", &client.admin, &body).await.unwrap();
        assert_eq!(
            (st, &e["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!(field)),
            "{body}: {e}"
        );
    }
    let (st, _) = client.put("/api/v1/emergency-stop", &ali.token, &lift).await.unwrap();
    assert_eq!(st, StatusCode::FORBIDDEN);
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(emergency_stop, the_switch_stops_new_orders_and_open_ones_settle);

/// The open-frequency rule [B8]: a shopper who begins more orders in an hour than the
/// rule allows is turned away at the scan, with nothing begun.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shopper_opening_too_often_is_turned_away() {
    let store = TestStore::new(Store::Sqlite).await;
    let mut cfg = config(&store);
    cfg.max_opens_per_hour = Some(2);
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 1,
        pk: "rsk".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let s = fleet.new_shopper("13800000091", "alipay", "once").await.unwrap();
    for _ in 0..2 {
        let p = fleet.purchase(&s, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
        assert_eq!(p.order["state"], "paid", "{}", p.order);
    }
    let cab = fleet.cabinets[0].id().to_string();
    let (st, e) = crate::common::eventually(10, "the third scan refused", || async {
        let (st, e) = fleet
            .client
            .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
            .await
            .unwrap();
        (e["error"]["code"] != "unpaid_order").then_some((st, e))
    })
    .await;
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("too_many_opens")), "{e}");
    let other = fleet.new_shopper("13800000092", "alipay", "once").await.unwrap();
    let p = fleet.purchase(&other, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "another shopper is not limited by the first");
    app.stop().await;
    store.cleanup().await;
}

/// How many disputes the feed holds for shopper `shopper_id`.
async fn disputes_of(fleet: &Fleet, shopper_id: &str) -> usize {
    let mut after = 0;
    let mut n = 0;
    loop {
        let path = format!("/api/v1/events?after={after}&limit=1000");
        let (_, page) = fleet.client.get(&path, &fleet.client.admin).await.unwrap();
        let events = page["events"].as_array().cloned().unwrap_or_default();
        n += events
            .iter()
            .filter(|e| e["event_type"] == "DisputeRecorded" && e["aggregate_id"] == shopper_id)
            .count();
        if events.is_empty() {
            return n;
        }
        after = page["next"].as_i64().unwrap();
    }
}

/// The dispute-rate rule [B8]: an operator's refund on a shopper's complaint counts as a
/// dispute (several refunds of one order as one); a shopper with as many disputes in 30
/// days as the rule allows is turned away at the scan; an anomaly's refund is not theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shopper_disputing_too_often_is_turned_away() {
    let store = TestStore::new(Store::Sqlite).await;
    let mut cfg = config(&store);
    cfg.max_disputes_per_month = Some(2);
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 1,
        pk: "dsp".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let s = fleet.new_shopper("13800000093", "alipay", "once").await.unwrap();
    let refund = |id: String| {
        let client = &fleet.client;
        async move {
            let body = json!({"amount_cents": 1, "reason": "said the can was empty"});
            let (st, r) = client
                .post(&format!("/api/v1/orders/{id}/refunds"), &client.admin, &body)
                .await
                .unwrap();
            assert_eq!(st, StatusCode::CREATED, "{r}");
        }
    };
    let first = fleet.purchase(&s, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    refund(first.order_id.clone()).await;
    refund(first.order_id.clone()).await;
    crate::common::eventually(10, "one dispute counted", || async {
        (disputes_of(&fleet, &s.id).await == 1).then_some(())
    })
    .await;
    // One dispute (two refunds of one order) is below the limit.
    let second = fleet.purchase(&s, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(second.order["state"], "paid", "{}", second.order);
    refund(second.order_id.clone()).await;
    crate::common::eventually(10, "two disputes counted", || async {
        (disputes_of(&fleet, &s.id).await == 2).then_some(())
    })
    .await;
    let cab = fleet.cabinets[0].id().to_string();
    let (st, e) = crate::common::eventually(10, "the scan refused", || async {
        let (st, e) = fleet
            .client
            .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
            .await
            .unwrap();
        (e["error"]["code"] != "unpaid_order").then_some((st, e))
    })
    .await;
    assert_eq!(
        (st, &e["error"]["code"]),
        (StatusCode::CONFLICT, &json!("too_many_disputes")),
        "{e}"
    );
    let other = fleet.new_shopper("13800000094", "alipay", "once").await.unwrap();
    let p = fleet.purchase(&other, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "another shopper is not limited by the first");
    app.stop().await;
    store.cleanup().await;
}
