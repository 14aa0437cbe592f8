//! Replay [E2], on both stores: after a day of purchases, a restock, a refund and an ad
//! campaign, the read models the live runners built are byte for byte what the log
//! folds to; folding twice gives the same bytes; a corrupted document is found and named
//! by `--verify`, and a rebuild of its view puts it right without touching the others.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTransport};
use tare_domain::{DoorNo, LaneNo};
use tare_platform::db::Db;
use tare_platform::feed::Feed;
use tare_platform::replay as rp;
use tare_platform::StoreConfig;

async fn open(cfg: &StoreConfig) -> Db {
    match cfg {
        StoreConfig::Sqlite(dir) => Db::open_sqlite(dir).await.unwrap(),
        StoreConfig::Postgres(url) => Db::open_postgres(url, 2).await.unwrap(),
    }
}

async fn exec(db: &Db, sql: &str) {
    tare_platform::on_db!(db, pool => { sqlx::query(sql).execute(pool).await.unwrap(); });
}

fn all_views() -> BTreeSet<String> {
    tare_projections::all().iter().map(|p| p.name().to_string()).collect()
}

/// A day on one cabinet: purchases on both doors, a restock, a refund, an ad campaign.
async fn a_day(app: &App) -> Fleet {
    let spec = FleetSpec {
        cabinets: 1,
        doors: 2,
        pk: "rpl".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let s = fleet.new_shopper("13800000071", "alipay", "once").await.unwrap();
    let w = fleet.new_shopper("13800000072", "wechat", "once").await.unwrap();
    let mut paid = Vec::new();
    for (n, shopper) in [&s, &w, &s, &w, &s].into_iter().enumerate() {
        let door = DoorNo::of(1 + (n % 2) as u8);
        let p = fleet
            .purchase(shopper, 0, door, &[(LaneNo::of(1), 2), (LaneNo::of(2), 1)])
            .await
            .unwrap();
        assert_eq!(p.order["state"], "paid", "{}", p.order);
        paid.push(p.order_id);
    }
    let (st, r) = client
        .post(&format!("/api/v1/cabinets/{cab}/restocks"), &client.admin, &json!({"door": 1}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.put(DoorNo::of(1), LaneNo::of(1), 4).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let id = r["restock_id"].as_str().unwrap().to_string();
    eventually(20, "the restock counted", || async {
        let (_, r) = client.get(&format!("/api/v1/restocks/{id}"), &client.admin).await.ok()?;
        (r["state"] == "done").then_some(())
    })
    .await;
    let body = json!({"amount_cents": 50, "reason": "dented"});
    let (st, r) = client
        .post(&format!("/api/v1/orders/{}/refunds", paid[0]), &client.admin, &body)
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let body = json!({"name": "ads", "cabinets": [cab], "action": {"kind": "ads", "add": [{"ad_id": "a1", "uri": "https://a/1"}]}});
    let (st, r) = client.post("/api/v1/campaigns", &client.admin, &body).await.unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    vc.ad_played("a1", 10_000).await.unwrap();
    fleet
}

/// `GET /api/v1/events` by stream and by time window.
async fn feed_filters(fleet: &Fleet) {
    let client = &fleet.client;
    let get = |q: String| async move { client.get(&format!("/api/v1/events?{q}"), &client.admin).await.unwrap() };
    let (_, all) = get("limit=1000".into()).await;
    let all = all["events"].as_array().unwrap().clone();
    let order = all.iter().find(|e| e["event_type"] == "RefundRequested").unwrap()["aggregate_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, page) = get(format!("stream=order:{order}&limit=1000")).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    // (Events may land after `all` was read: compare up to its end.)
    let end = all.last().unwrap()["position"].as_i64().unwrap();
    let mine: Vec<&serde_json::Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["position"].as_i64() <= Some(end))
        .collect();
    let expected: Vec<&serde_json::Value> = all.iter().filter(|e| e["aggregate_id"] == order.as_str()).collect();
    let positions = |v: &[&serde_json::Value]| v.iter().map(|e| e["position"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(
        positions(&mine),
        positions(&expected),
        "an order's stream is its events and its payment's, in feed order"
    );
    assert_eq!(mine, expected);
    assert!(mine.iter().any(|e| e["event_type"] == "PaymentCollected") && mine.iter().any(|e| e["event_type"] == "OrderPaid"));
    // Paged: the next page starts after `next`.
    let cab = fleet.cabinets[0].id().to_string();
    let (_, p1) = get(format!("stream=cabinet:{cab}&limit=3")).await;
    let (_, p2) = get(format!("stream=cabinet:{cab}&limit=3&after={}", p1["next"])).await;
    let cabinet_events: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["aggregate_type"] == "cabinet" && e["aggregate_id"] == cab.as_str())
        .take(6)
        .collect();
    let paged: Vec<&serde_json::Value> = p1["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["events"].as_array().unwrap())
        .collect();
    assert_eq!(paged, cabinet_events);
    // A time window: [the 10th event's time, the 40th's).
    let (from, to) = (
        all[9]["metadata"]["time"].as_i64().unwrap(),
        all[39]["metadata"]["time"].as_i64().unwrap(),
    );
    let (_, w) = get(format!("from_ts={from}&to_ts={to}&limit=1000")).await;
    let expected: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| (from..to).contains(&e["metadata"]["time"].as_i64().unwrap()))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(w["events"].as_array().unwrap().iter().collect::<Vec<_>>(), expected);
    for bad in ["stream=nope:1", "stream=order:", "from_ts=-1"] {
        let (st, e) = get(bad.into()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
    }
}

/// `GET /api/v1/orders` by cabinet, shopper and state, paged.
async fn order_listing(fleet: &Fleet) {
    let client = &fleet.client;
    let list = |q: String| async move {
        let (st, page) = client.get(&format!("/api/v1/orders?{q}"), &client.admin).await.unwrap();
        assert_eq!(st, StatusCode::OK, "{q}: {page}");
        page
    };
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order_id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = list(String::new()).await;
    let every = ids(&all);
    assert_eq!(every.len(), 5, "{all}");
    assert!(every.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert!(all["next_after"].is_null());
    let p1 = list("limit=2".into()).await;
    let p2 = list(format!("limit=2&after={}", p1["next_after"].as_str().unwrap())).await;
    let p3 = list(format!("limit=2&after={}", p2["next_after"].as_str().unwrap())).await;
    assert_eq!([ids(&p1), ids(&p2), ids(&p3)].concat(), every);
    let first_shopper = all["items"][0]["shopper_id"].as_str().unwrap().to_string();
    let theirs = list(format!("shopper={first_shopper}")).await;
    assert_eq!(ids(&theirs), [every[0].clone(), every[2].clone(), every[4].clone()]);
    let cab = fleet.cabinets[0].id().to_string();
    assert_eq!(ids(&list(format!("cabinet={cab}")).await), every);
    assert_eq!(ids(&list("cabinet=rpl.none".into()).await), Vec::<String>::new());
    let refunded = eventually(20, "the refund confirmed", || async {
        let p = list("state=partially_refunded".into()).await;
        (p["items"].as_array()?.len() == 1).then_some(p)
    })
    .await;
    assert_eq!(ids(&refunded), [every[0].clone()]);
    assert_eq!(
        ids(&list(format!("state=paid&shopper={first_shopper}")).await),
        [every[2].clone(), every[4].clone()]
    );
    for bad in ["state=lost", "limit=0", "nope=1"] {
        let (st, e) = client.get(&format!("/api/v1/orders?{bad}"), &client.admin).await.unwrap();
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
    }
}

async fn the_views_are_what_the_log_makes(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let fleet = a_day(&app).await;
    let db = open(&store.config).await;
    let feed = Feed::new(db.clone());
    // Quiet: every saga step ran and the projections caught up with the feed.
    eventually(30, "the projections caught up", || async {
        let head = feed.head().await.ok()?;
        let plays = app
            .platform
            .events_after(0, 100_000)
            .await
            .ok()?
            .iter()
            .any(|e| e.event_type == "AdPlayed");
        let campaign_done = {
            let (_, c) = fleet.client.get("/api/v1/restock-tasks", &fleet.client.admin).await.ok()?;
            c.is_object()
        };
        (plays && campaign_done && rp::live_position(&db).await.ok()? == head && head > 0).then_some(())
    })
    .await;
    feed_filters(&fleet).await;
    order_listing(&fleet).await;
    app.stop().await;

    let views = all_views();
    let projections = tare_projections::all();
    let through = rp::live_position(&db).await.unwrap();
    let rebuilt = rp::fold(&db, &projections, through, |_, _| {}).await.unwrap();
    assert_eq!(rebuilt.through, through);
    assert!(
        rebuilt.events as i64 >= through - 1 && rebuilt.docs.len() > 20,
        "{} events, {} docs",
        rebuilt.events,
        rebuilt.docs.len()
    );
    let again = rp::fold(&db, &projections, through, |_, _| {}).await.unwrap();
    assert_eq!(rebuilt.docs, again.docs, "the same log folds to the same bytes");
    let live = rp::live(&db, &views).await.unwrap();
    let diffs = rp::differences(&live, &rebuilt.docs);
    assert!(
        diffs.is_empty(),
        "rebuild differs from incremental:\n{}",
        diffs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
    let touched: BTreeSet<&str> = live.keys().map(|(v, _)| v.as_str()).collect();
    for v in [
        "order_summary",
        "orders_by_cabinet",
        "orders_by_state",
        "lane_ledger",
        "restock_tasks",
        "money_movements",
        "ad_plays",
        "cabinet_locations",
    ] {
        assert!(touched.contains(v), "the day wrote no {v} documents: {touched:?}");
    }

    // A corrupted document is named by --verify (the CLI, exit 1), and a rebuild of its
    // view alone puts it right.
    let ((view, id), doc) = live
        .iter()
        .find(|((v, _), _)| v == "money_movements")
        .or_else(|| live.iter().next())
        .unwrap();
    let tampered = format!(
        r#"UPDATE views SET doc = '{{"tampered":true}}' WHERE view = '{view}' AND id = '{}'"#,
        id.replace('\'', "''")
    );
    exec(&db, &tampered).await;
    let diffs = rp::differences(&rp::live(&db, &views).await.unwrap(), &rebuilt.docs);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(matches!(&diffs[0], rp::Difference::Differs { key, rebuilt: r, .. } if key == &(view.clone(), id.clone()) && r == doc));
    let store_args: Vec<String> = match &store.config {
        StoreConfig::Sqlite(dir) => vec!["--data".into(), dir.display().to_string()],
        StoreConfig::Postgres(url) => vec!["--postgres".into(), url.clone()],
    };
    let cli = |extra: &[&str]| {
        let mut args = vec!["replay".to_string()];
        args.extend(store_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tare"))
            .args(args)
            .env_remove("TARE_POSTGRES_URL")
            .output()
    };
    let out = cli(&["--verify"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("differs {view}/{id}")) && stdout.contains("1 difference(s)"),
        "{stdout}"
    );
    let out = cli(&["--only", view]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["--verify"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let out = cli(&["--only", "no_such_view"]).await.unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such view"));
    // An audit of one order's stream shows its events and the saga steps they caused.
    let order = live.keys().find(|(v, _)| v == "order_summary").map(|(_, id)| id.clone()).unwrap();
    let out = cli(&["--stream", &format!("order:{order}")]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("OrderCreated") && text.contains("-> ") && text.contains("[done"),
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.starts_with('#'))
            .all(|l| l.contains(&format!("order:{order}")) || l.contains(&format!("payment:{order}"))),
        "{text}"
    );
    assert!(text.contains("PaymentCollected"), "an order's stream shows its payment: {text}");

    // A node that was behind its views (its checkpoint half way) after a rebuild of all
    // of them: it reads from its checkpoint again but applies nothing twice.
    exec(
        &db,
        &format!("UPDATE checkpoints SET position = {} WHERE name = 'projections'", through / 2),
    )
    .await;
    let out = cli(&[]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app = App::start(config(&store)).await.expect("app again");
    eventually(30, "caught up again", || async {
        (rp::live_position(&db).await.ok()? >= through).then_some(())
    })
    .await;
    app.stop().await;
    let through = rp::live_position(&db).await.unwrap();
    let rebuilt = rp::fold(&db, &projections, through, |_, _| {}).await.unwrap();
    let diffs = rp::differences(&rp::live(&db, &views).await.unwrap(), &rebuilt.docs);
    assert!(
        diffs.is_empty(),
        "after the restart:\n{}",
        diffs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
    db.close().await;
    store.cleanup().await;
}
on_both_stores!(replay, the_views_are_what_the_log_makes);
