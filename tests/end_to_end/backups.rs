//! Backups [issue 14, item 5]: `tare backup` copies a running embedded store (and its
//! keys) consistently, `tare restore` puts it into an empty directory and nowhere else,
//! and the restored store serves what it held; on PostgreSQL the documented procedure
//! (`pg_dump -Fc`, `pg_restore`) does the same.

use crate::common::{config, postgres_admin_url, Store, TestStore};
use std::sync::Arc;
use tare::app::App;
use tare::backup;
use tare::fleet::{Fleet, FleetSpec};
use tare_domain::{DoorNo, LaneNo};
use tare_platform::StoreConfig;

/// A paid purchase on `app`; returns the order id and its total.
async fn a_paid_order(app: &App) -> (String, i64) {
    let spec = FleetSpec {
        cabinets: 1,
        pk: "bak".into(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(app, &spec).await.unwrap());
    let s = fleet.new_shopper("13900000061", "alipay", "once").await.unwrap();
    let p = fleet.purchase(&s, 0, DoorNo::of(1), &[(LaneNo::of(1), 2)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    (p.order_id, p.order["total_cents"].as_i64().unwrap())
}

async fn order_of(app: &App, id: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/orders/{id}", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_store_is_backed_up_while_running_and_restored() {
    let store = TestStore::new(Store::Sqlite).await;
    let StoreConfig::Sqlite(data) = store.config.clone() else {
        unreachable!()
    };
    let mut cfg = config(&store);
    cfg.keys = Some(data.join("keys"));
    let app = App::start(cfg.clone()).await.expect("app");
    let (order, total) = a_paid_order(&app).await;

    // While the node runs.
    let out = data.with_extension("backup");
    let taken = backup::backup(&data, &out).await.expect("backup");
    assert!(taken.events > 0 && taken.feed_head > 0, "{taken:?}");
    assert!(out.join("keys").is_dir(), "the provider keys go with it");
    let again = backup::backup(&data, &out).await.unwrap_err().to_string();
    assert!(again.contains("exists"), "{again}");
    // A running store's directory is no backup: its file alone misses the log's tail.
    let live = data.with_extension("x");
    let refused = backup::restore(&data, &live).await.unwrap_err().to_string();
    assert!(refused.contains("not a backup") && !live.join("tare.db").exists(), "{refused}");
    app.stop().await;

    // Into an empty directory only.
    let restored = data.with_extension("restored");
    assert_eq!(backup::restore(&out, &restored).await.expect("restore"), taken);
    let refused = backup::restore(&out, &restored).await.unwrap_err().to_string();
    assert!(refused.contains("already holds a store"), "{refused}");

    let mut cfg = cfg;
    cfg.store = StoreConfig::Sqlite(restored.clone());
    cfg.keys = Some(restored.join("keys"));
    let app = App::start(cfg).await.expect("the restored store starts");
    let o = order_of(&app, &order).await;
    assert_eq!((o["state"].as_str(), o["total_cents"].as_i64()), (Some("paid"), Some(total)), "{o}");
    assert!(app.platform.feed_head().await.unwrap() >= taken.feed_head);
    app.stop().await;
    for d in [&out, &restored] {
        let _ = std::fs::remove_dir_all(d);
    }
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_store_is_backed_up_with_pg_dump_and_restored_with_pg_restore() {
    let store = TestStore::new(Store::Postgres).await;
    let StoreConfig::Postgres(url) = store.config.clone() else {
        unreachable!()
    };
    let app = App::start(config(&store)).await.expect("app");
    let (order, total) = a_paid_order(&app).await;
    let dump = std::env::temp_dir().join(format!("tare-{}.dump", uuid::Uuid::new_v4().simple()));
    let ok = std::process::Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&url)
        .status()
        .expect("pg_dump");
    assert!(ok.success());
    app.stop().await;

    let restored_url = tare_platform::db::create_scratch_postgres(&postgres_admin_url(), "tare_restored")
        .await
        .unwrap();
    let ok = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname", &restored_url])
        .arg(&dump)
        .status()
        .expect("pg_restore");
    assert!(ok.success());
    let mut cfg = config(&store);
    cfg.store = StoreConfig::Postgres(restored_url.clone());
    let app = App::start(cfg).await.expect("the restored store starts");
    let o = order_of(&app, &order).await;
    assert_eq!((o["state"].as_str(), o["total_cents"].as_i64()), (Some("paid"), Some(total)), "{o}");
    app.stop().await;
    let _ = std::fs::remove_file(&dump);
    let _ = tare_platform::db::drop_scratch_postgres(&postgres_admin_url(), &restored_url).await;
    store.cleanup().await;
}
