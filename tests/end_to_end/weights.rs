//! Weight history [D6], on both stores: the samples behind a charge — the stable reading
//! before the open and after the close that the receipt names — are kept and found by
//! door and time window, paged; bad windows are refused with the field.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTransport};
use tare_domain::{DoorNo, LaneNo};

async fn the_evidence_behind_a_charge_is_kept(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 2,
        pk: "wh".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let cab = fleet.cabinets[0].id().to_string();
    let s = fleet.new_shopper("13800000051", "wechat", "once").await.unwrap();
    let p = fleet.purchase(&s, 0, DoorNo::of(2), &[(LaneNo::of(1), 1)]).await.unwrap();
    let (_, receipt) = client.get(&format!("/api/v1/orders/{}", p.order_id), &client.admin).await.unwrap();
    let ev = &receipt["evidence"];
    let (before, after) = (
        ev["weight_before"]["msg_id"].as_str().unwrap(),
        ev["weight_after"]["msg_id"].as_str().unwrap(),
    );
    let cab = cab.as_str();
    let weights = |q: String| async move {
        client
            .get(&format!("/api/v1/cabinets/{cab}/weights?{q}"), &client.admin)
            .await
            .unwrap()
    };
    let items = eventually(20, "the history written", || async {
        let (st, page) = weights("door=2&from=0&limit=5000".into()).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let items = page["items"].as_array()?.clone();
        let ids: Vec<&str> = items.iter().filter_map(|i| i["msg_id"].as_str()).collect();
        (ids.contains(&before) && ids.contains(&after)).then_some(items)
    })
    .await;
    assert!(items.iter().all(|i| i["door"] == 2), "only door 2");
    let ts: Vec<i64> = items.iter().map(|i| i["device_ts"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "by device time");
    let after_sample = items.iter().find(|i| i["msg_id"] == after).unwrap();
    assert_eq!(after_sample["stable"], true);
    assert_eq!(
        after_sample["lanes"], ev["weight_after"]["lanes"],
        "the receipt's reading, as stored"
    );
    // A window around the session; pages.
    let (from, to) = (ts[0], ts[ts.len() - 1] + 1);
    let (_, p1) = weights(format!("door=2&from={from}&to={to}&limit=2")).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let (_, p2) = weights(format!("door=2&from={}&to={to}&limit=5000", p1["next_from"])).await;
    assert_eq!(
        p1["items"].as_array().unwrap().len() + p2["items"].as_array().unwrap().len(),
        items.len()
    );
    assert!(p2["next_from"].is_null());
    let (_, both) = weights("from=0&limit=5000".into()).await;
    assert!(
        both["items"].as_array().unwrap().iter().any(|i| i["door"] == 1),
        "all doors without `door`"
    );
    let (st, empty) = weights("from=10&to=10".into()).await;
    assert_eq!((st, &empty["items"]), (StatusCode::OK, &json!([])), "an empty window");
    for (q, field) in [("door=0", "door"), ("limit=0", "limit"), ("from=-1", "from"), ("x=1", "query")] {
        let (st, e) = weights(q.into()).await;
        assert_eq!(
            (st, &e["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!(field)),
            "{q}: {e}"
        );
    }
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let written: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tare_weight_history_written_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(written >= items.len() as u64, "{written} written: {metrics}");
    assert!(metrics.contains("tare_weight_history_dropped_total 0"), "nothing dropped");
    let (st, _): (StatusCode, Value) = client.get("/api/v1/cabinets/wh.nope/weights", &client.admin).await.unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND);
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(weight_history, the_evidence_behind_a_charge_is_kept);
