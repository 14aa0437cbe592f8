//! Restocking through the API and a simulated cabinet over MQTT, on both stores [O10,
//! M2, O2]: a sale that takes a lane to its threshold opens one restock task saying what
//! to bring; a restock cannot take a door a shopper holds, and a shopper cannot scan a
//! door being restocked; what the operator puts on the lanes is counted from the weights
//! and booked on the ledger (reason `restock`), never beyond capacity — the excess is an
//! anomaly; the task closes and the door serves shoppers again.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, FleetTransport};
use tare_domain::{DoorNo, LaneNo};

async fn get(client: &ApiClient, path: &str) -> Value {
    let (st, b) = client.get(path, &client.admin).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{path}: {b}");
    b
}

async fn tasks(client: &ApiClient) -> Vec<Value> {
    get(client, "/api/v1/restock-tasks").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The ledger's entries of `lane` (door 1) with reason `restock`.
async fn restock_entries(client: &ApiClient, cab: &str, lane: u8) -> Vec<Value> {
    let l = get(client, &format!("/api/v1/cabinets/{cab}/ledger?door=1&lane={lane}")).await;
    let entries = l["items"].as_array().cloned().unwrap_or_default();
    assert!(entries.iter().all(|e| e["door"] == 1 && e["lane"] == lane), "{l}");
    entries.into_iter().filter(|e| e["reason"] == "restock").collect()
}

async fn a_restock_fills_the_lanes_by_weight_and_closes_the_task(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 1,
        lanes: 2,
        capacity: 10,
        pk: "rst".into(),
        transport: FleetTransport::Mqtt,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let door = DoorNo::of(1);
    let restocks = format!("/api/v1/cabinets/{cab}/restocks");
    assert_eq!(tasks(client).await, Vec::<Value>::new(), "full lanes need nothing");

    // A shopper takes 8 of lane 1's 10 (threshold 2). While the door is theirs, no restock.
    let s = fleet.new_shopper("13800000041", "alipay", "once").await.unwrap();
    let (st, o) = client
        .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{o}");
    let order_id = o["order_id"].as_str().unwrap().to_string();
    assert!(vc.wait_open(door, Duration::from_secs(10)).await);
    let (st, e) = client.post(&restocks, &client.admin, &json!({"door": 1})).await.unwrap();
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("cabinet_busy")), "{e}");
    vc.take(door, LaneNo::of(1), 8).await.unwrap();
    vc.close(door).await.unwrap();
    let paid = fleet.wait_terminal(&order_id, &s.token, Duration::from_secs(20)).await.unwrap();
    assert_eq!(paid["state"], "paid", "{paid}");

    let task = eventually(20, "the restock task", || async {
        let t = tasks(client).await;
        (t.len() == 1).then_some(t)
    })
    .await;
    assert_eq!(task[0]["cabinet"], json!(cab));
    // Paged by cabinet id: one task fills a page of one, and nothing follows it.
    let page = get(client, "/api/v1/restock-tasks?limit=1").await;
    assert_eq!(
        (page["items"].as_array().map(Vec::len), &page["next_after"]),
        (Some(1), &Value::Null),
        "{page}"
    );
    let past = get(client, &format!("/api/v1/restock-tasks?after={cab}")).await;
    assert_eq!(past["items"], json!([]), "{past}");
    for (query, field) in [("limit=0", "limit"), ("limit=1001", "limit"), ("page=2", "query")] {
        let (st, e) = client.get(&format!("/api/v1/restock-tasks?{query}"), &client.admin).await.unwrap();
        assert_eq!(
            (st, &e["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!(field)),
            "{query}: {e}"
        );
    }
    assert_eq!(
        task[0]["lanes"],
        json!([{"door": 1, "lane": 1, "sku": paid["lines"][0]["sku"], "stock": 2, "capacity": 10, "threshold": 2, "bring": 8}])
    );

    // The operator restocks: the door is theirs, and shoppers wait.
    let (st, r) = client.post(&restocks, &client.admin, &json!({"door": 1})).await.unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(
        (&r["state"], &r["cabinet"], &r["door"], &r["by"]),
        (&json!("opening"), &json!(cab), &json!(1), &json!("admin"))
    );
    let restock_id = r["restock_id"].as_str().unwrap().to_string();
    assert!(vc.wait_open(door, Duration::from_secs(10)).await, "the restock opened the door");
    let (st, e) = client
        .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CONFLICT, "a shopper cannot scan a door being restocked: {e}");
    let (st, e) = client.post(&restocks, &client.admin, &json!({"door": 1})).await.unwrap();
    assert_eq!((st, &e["error"]["code"]), (StatusCode::CONFLICT, &json!("cabinet_busy")));
    // Lane 1 is filled; lane 2 was full and gets 3 more it has no room for.
    vc.put(door, LaneNo::of(1), 8).await.unwrap();
    vc.put(door, LaneNo::of(2), 3).await.unwrap();
    vc.close(door).await.unwrap();
    let done = eventually(20, "the restock to be counted", || async {
        let r = get(client, &format!("/api/v1/restocks/{restock_id}")).await;
        (r["state"] == "done").then_some(r)
    })
    .await;
    let lines: Vec<(i64, i64, i64, i64)> = done["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["lane"].as_i64().unwrap(),
                l["counted"].as_i64().unwrap(),
                l["added"].as_i64().unwrap(),
                l["excess"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, [(1, 8, 8, 0), (2, 3, 0, 3)]);

    // The ledger books it; the lanes are full; the task is gone; the excess is queued.
    let entries = eventually(20, "the restock on the ledger", || async {
        let e = restock_entries(client, &cab, 1).await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (&entries[0]["before"], &entries[0]["change"], &entries[0]["after"]),
        (&json!(2), &json!(8), &json!(10))
    );
    assert_eq!(entries[0]["restock_id"], json!(restock_id));
    assert!(restock_entries(client, &cab, 2).await.is_empty(), "nothing booked beyond capacity");
    eventually(20, "the task to close", || async { tasks(client).await.is_empty().then_some(()) }).await;
    let c = get(client, &format!("/api/v1/cabinets/{cab}")).await;
    let stock: Vec<&Value> = c["doors"][0]["lanes"].as_array().unwrap().iter().map(|l| &l["stock"]).collect();
    assert_eq!(stock, [&json!(10), &json!(10)]);
    let queue = eventually(20, "the excess in the anomaly queue", || async {
        let q = get(client, &format!("/api/v1/anomalies?state=open&cabinet={cab}")).await;
        let items = q["items"].as_array().cloned().unwrap_or_default();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(
        (&queue[0]["anomaly_id"], &queue[0]["kind"], &queue[0]["door"], &queue[0]["lane"]),
        (
            &json!(format!("restock:{restock_id}:over_capacity:2")),
            &json!("restock_over_capacity"),
            &json!(1),
            &json!(2)
        )
    );
    assert_eq!(queue[0]["restock_id"], json!(restock_id));

    // The door serves shoppers again.
    let p = fleet.purchase(&s, 0, door, &[(LaneNo::of(2), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);

    // Bad input names the field; nothing starts.
    for (body, st_want, field) in [
        (json!({"door": 0}), StatusCode::UNPROCESSABLE_ENTITY, Some("door")),
        (json!({"door": 1, "lane": 1}), StatusCode::UNPROCESSABLE_ENTITY, Some("lane")),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, Some("door")),
        (json!({"door": 9}), StatusCode::NOT_FOUND, None),
    ] {
        let (st, e) = client.post(&restocks, &client.admin, &body).await.unwrap();
        assert_eq!(st, st_want, "{body}: {e}");
        if let Some(f) = field {
            assert_eq!(e["error"]["field"], json!(f), "{body}: {e}");
        }
    }
    let (st, _) = client
        .post("/api/v1/cabinets/rst.nope/restocks", &client.admin, &json!({"door": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = client.get("/api/v1/restocks/rsnope", &client.admin).await.unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = client.post(&restocks, &s.token, &json!({"door": 1})).await.unwrap();
    assert_eq!(st, StatusCode::FORBIDDEN);
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(restock, a_restock_fills_the_lanes_by_weight_and_closes_the_task);
