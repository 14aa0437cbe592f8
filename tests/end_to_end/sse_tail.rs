//! The live saga tail [E3], on both stores: `GET /api/v1/sagas/tail` shows a purchase's
//! steps in order while it happens, each placed (order, cabinet, shopper); a tail joined
//! mid-purchase with `from` misses and repeats nothing at the seam between history and
//! live; `tare tail` prints the same steps as JSON lines.

use crate::common::{config, eventually, Store, TestStore};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTransport};
use tare_domain::{DoorNo, LaneNo};

/// Reads the tail at `query` into a shared list until dropped (aborted); returns once the
/// tail has answered (a live tail starts at the feed's head as of its answer).
async fn follow(app: &App, query: &str) -> (Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = format!("{}/api/v1/sagas/tail?{query}", app.base_url);
    let into = seen.clone();
    let mut resp = reqwest::Client::new().get(&url).bearer_auth(&app.admin_token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let task = tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|s| s.trim().to_string());
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    let v: Value = serde_json::from_str(data.trim()).unwrap();
                    assert_eq!(
                        id.as_deref(),
                        Some(v["position"].to_string().as_str()),
                        "the SSE id is the position"
                    );
                    into.lock().unwrap().push(v);
                }
            }
        }
    });
    (seen, task)
}

fn positions(steps: &[Value]) -> Vec<i64> {
    steps.iter().map(|s| s["position"].as_i64().unwrap()).collect()
}

async fn until_paid(seen: &Arc<Mutex<Vec<Value>>>, order: &str) -> Vec<Value> {
    eventually(20, "the tail shows the order paid", || async {
        let s = seen.lock().unwrap().clone();
        s.iter().any(|v| v["order_id"] == order && v["step"] == "OrderPaid").then_some(s)
    })
    .await
}

async fn the_tail_shows_every_step_once(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 1,
        pk: "tl".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let s = fleet.new_shopper("13800000061", "alipay", "once").await.unwrap();

    // Live: a purchase's steps, in order, placed.
    let (live, live_task) = follow(&app, "").await;
    let p = fleet.purchase(&s, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    let steps = until_paid(&live, &p.order_id).await;
    let mine: Vec<&Value> = steps.iter().filter(|v| v["order_id"] == p.order_id.as_str()).collect();
    let names: Vec<&str> = mine.iter().map(|v| v["step"].as_str().unwrap()).collect();
    for (a, b) in [
        ("OrderCreated", "OrderAuthorized"),
        ("OrderAuthorized", "OrderDoorOpened"),
        ("OrderDoorClosed", "ChargeRequested"),
        ("PaymentCollected", "OrderPaid"),
    ] {
        let (ia, ib) = (names.iter().position(|n| *n == a), names.iter().position(|n| *n == b));
        assert!(ia.is_some() && ia < ib, "{a} before {b}: {names:?}");
    }
    assert!(
        mine.iter()
            .all(|v| v["cabinet"] == cab.as_str() && v["shopper_id"] == s.id.as_str()),
        "{mine:?}"
    );
    assert!(mine.iter().all(|v| v["correlation_id"] == p.order_id.as_str()), "{mine:?}");
    let all = positions(&steps);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in feed order, each once: {all:?}");
    live_task.abort();

    // Joined mid-purchase with `from`: history first, then live, nothing missed or twice.
    let (st, created) = fleet
        .client
        .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(st, 201, "{created}");
    let order = created["order_id"].as_str().unwrap().to_string();
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    let (joined, joined_task) = follow(&app, &format!("from=1&order={order}")).await;
    eventually(10, "the history replayed", || async {
        (joined.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let seen = until_paid(&joined, &order).await;
    joined_task.abort();
    // What a tail of the finished order shows from the start is exactly the same.
    let (after, after_task) = follow(&app, &format!("from=1&order={order}")).await;
    let replayed = until_paid(&after, &order).await;
    after_task.abort();
    let upto = |v: &[Value]| -> Vec<i64> {
        let paid = v.iter().position(|x| x["step"] == "OrderPaid").unwrap();
        positions(&v[..=paid])
    };
    assert_eq!(upto(&seen), upto(&replayed), "no gap and no repeat at the seam");
    assert!(seen.iter().all(|v| v["order_id"] == order.as_str()), "only that order's steps");

    // `tare tail` prints the same as JSON lines.
    let n = upto(&replayed).len();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tare"))
        .args([
            "tail",
            "--http",
            &app.base_url,
            "--order",
            &order,
            "--from",
            "1",
            "--json",
            "--limit",
            &n.to_string(),
        ])
        .env("TARE_ADMIN_TOKEN", &app.admin_token)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("tare tail ends at --limit")
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(positions(&lines), upto(&replayed));
    let (st, e) = fleet.client.get("/api/v1/sagas/tail?from=0", &fleet.client.admin).await.unwrap();
    assert_eq!((st.as_u16(), &e["error"]["field"]), (422, &json!("from")));
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(sse_tail, the_tail_shows_every_step_once);
