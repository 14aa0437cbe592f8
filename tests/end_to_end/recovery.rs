//! The scaled-out platform recovers by itself when its servers restart [issue 4]: a
//! node on PostgreSQL and NATS JetStream keeps shoppers buying while NATS is killed and
//! started again, then while PostgreSQL is stopped (the API answering 503
//! `store_unavailable` meanwhile) and started again. Nothing is lost: every order in
//! the log ends, the providers collected exactly once per paid order, no sale is
//! recorded twice, the relay brings JetStream back level with the feed, and purchases
//! succeed after each restart.
//!
//! The servers here are private instances (a `nats-server` and a PostgreSQL cluster of
//! this test's own, on free ports, from the machine's binaries), so restarting them
//! disturbs no other test.

use crate::common::cluster::{shop, Ledger};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare::app::{App, AppConfig};
use tare::fleet::{Fleet, FleetSpec};
use tare::local_cluster::{PgStop, PrivateNats, PrivatePostgres};
use tare_platform::StoreConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_platform_recovers_when_nats_and_postgres_restart() {
    let _heavy = crate::common::exclusive().await;
    let dir = std::env::temp_dir().join(format!("tare-recovery-{}", uuid::Uuid::new_v4().simple()));
    let mut nats = PrivateNats::start(&dir.join("nats")).expect("a private nats-server");
    let pg = PrivatePostgres::start(&dir.join("pg")).expect("a private PostgreSQL");

    let mut cfg = AppConfig::embedded(&dir);
    cfg.store = StoreConfig::Postgres(pg.url());
    cfg.nats = Some(tare_platform::cluster::NatsConfig::new(nats.url()));
    cfg.pg_max_connections = 8;
    cfg.saga.stable_wait_ms = 0;
    // A scan cut off by the restart leaves an order the shopper never confirmed; it is
    // cancelled at the authorization timeout, shortened here.
    cfg.saga.auth_timeout_ms = 8_000;
    let app = App::start(cfg).await.expect("app");
    let fleet = Arc::new(
        Fleet::provision(
            &app,
            &FleetSpec {
                cabinets: 2,
                capacity: 80,
                pk: "rec".into(),
                ..FleetSpec::default()
            },
        )
        .await
        .expect("fleet"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let shoppers: Vec<_> = (0..2)
        .map(|cab| {
            let modes = [("wechat", "once"), ("alipay", "each_time")];
            tokio::spawn(shop(
                fleet.clone(),
                cab,
                format!("136000000{cab:02}"),
                modes[cab],
                stop.clone(),
                ledger.clone(),
                count.clone(),
            ))
        })
        .collect();
    let at_least = |n: usize| {
        let count = count.clone();
        async move {
            crate::common::eventually(120, &format!("{n} purchases"), || async {
                (count.load(Ordering::Relaxed) >= n).then_some(())
            })
            .await
        }
    };
    at_least(3).await;
    nats.restart().expect("nats-server restarts");
    let after_nats = count.load(Ordering::Relaxed);
    at_least(after_nats + 3).await;
    // PostgreSQL down: a request that needs the store is told to come back (503,
    // `store_unavailable`), not that something broke (500).
    let waiting = fleet.new_shopper("13600000099", "wechat", "once").await.expect("a shopper");
    pg.ctl("stop", PgStop::Fast).expect("PostgreSQL stops");
    let (status, body) = fleet
        .client
        .get("/api/v1/anomalies?state=open", &fleet.client.admin)
        .await
        .expect("an answer while the store is down");
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    // A shopper's token that cannot be checked is not called invalid (an app would log
    // its shopper out).
    let (status, body) = fleet
        .client
        .post(
            "/api/v1/orders",
            &waiting.token,
            &serde_json::json!({"cabinet": fleet.cabinets[0].id().to_string(), "door": 1}),
        )
        .await
        .expect("an answer while the store is down");
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    pg.ctl("start", PgStop::Fast).expect("PostgreSQL starts again");
    let after_pg = count.load(Ordering::Relaxed);
    at_least(after_pg + 3).await;
    stop.store(true, Ordering::Relaxed);
    for s in shoppers {
        let _ = s.await;
    }

    // Every order in the log ended.
    let pool = sqlx::PgPool::connect(&pg.url()).await.expect("pg");
    let orders: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'order'")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut paid = BTreeMap::new();
    for (id,) in &orders {
        let o = match fleet.wait_terminal(id, &app.admin_token, Duration::from_secs(60)).await {
            Ok(o) => o,
            Err(e) => {
                let log: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT aggregate_type, event_type, payload::text FROM events WHERE aggregate_id = $1 OR metadata::text LIKE '%' || $1 || '%' ORDER BY global_position",
                )
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap();
                let jobs: Vec<(String, String, i64)> =
                    sqlx::query_as("SELECT key, status, attempts::bigint FROM jobs WHERE key LIKE '%' || $1 || '%'")
                        .bind(id)
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                let doors: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT aggregate_id, event_type, payload::text FROM events WHERE aggregate_type = 'cabinet' AND (payload::text LIKE '%' || $1 || '%' OR event_type LIKE 'Device%') ORDER BY global_position DESC LIMIT 12",
                )
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap();
                let rejected = app.platform.metrics().await.map(|m| m.devices.rejected);
                panic!(
                    "{e}\nevents: {log:?}\njobs: {jobs:?}\ncabinet events (newest first): {doors:#?}\nshopper errors: {:?}\nrejected: {:?} mqtt: {}",
                    ledger.lock().unwrap().errors,
                    rejected,
                    app.mqtt.as_ref().unwrap().endpoint.counters.prometheus()
                );
            }
        };
        let state = o["state"].as_str().unwrap_or("?").to_string();
        assert!(["paid", "cancelled", "abnormal"].contains(&state.as_str()), "{id}: {o}");
        if state == "paid" {
            paid.insert(id.clone(), o["total_cents"].as_i64().unwrap());
        }
    }
    // Charged exactly once per paid order, exactly its total.
    let mut collected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in app.sandboxes.values() {
        for c in s.charges() {
            collected.entry(c.order_id).or_default().push(c.amount.get());
        }
    }
    assert_eq!(collected.keys().collect::<BTreeSet<_>>(), paid.keys().collect::<BTreeSet<_>>());
    for (id, total) in &paid {
        assert_eq!(collected[id], vec![*total], "order {id}");
    }
    for p in &ledger.lock().unwrap().done {
        if p.order["state"] == "paid" {
            let discount = p.order["discount_cents"].as_i64().unwrap_or(0);
            assert_eq!(p.order["total_cents"].as_i64().unwrap(), p.true_subtotal() - discount);
        }
    }
    // No sale twice, and the shelves hold what the ledger says.
    assert!(
        crate::common::cluster::assert_no_sale_twice(&pool).await > 0,
        "sales are in the ledger"
    );
    // A door session's end is an effect of its own, after the charge: one that met the
    // PostgreSQL restart is retried on its backoff, so the shelves agree eventually.
    let mismatches = || async {
        let mut wrong = Vec::new();
        for c in &fleet.cabinets {
            let state = app.platform.cabinet(c.id()).await.unwrap();
            let truth = c.counts();
            for (door, d) in &state.doors {
                for (lane, l) in &d.lanes {
                    let weighed = i64::from(truth[&(*door, *lane)]);
                    if l.stock != weighed {
                        wrong.push(format!("{} {door:?} {lane:?}: ledger {} shelf {weighed}", c.id(), l.stock));
                    }
                }
            }
        }
        wrong
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let wrong = mismatches().await;
        if wrong.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ledger and shelves disagree: {wrong:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // JetStream is level with the feed again (nothing lost with the NATS restart). The
    // feed may still grow after its head is read (timers, a door session's end), so the
    // relay must reach at least that head.
    let head = app.platform.feed_head().await.unwrap();
    crate::common::eventually(60, "the relay to catch up", || async {
        (app.platform.relayed_head().await.ok().flatten() >= Some(head)).then_some(())
    })
    .await;

    app.stop().await;
    pool.close().await;
    drop(pg);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
