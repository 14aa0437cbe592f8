//! The JetStream stream is bound to its store [issue 14, item 9]: a node whose store is
//! not the one the stream was published from (a namespace reused for a new database), or
//! whose feed is behind the stream (the store restored from an older backup), refuses to
//! start with the reason and the remedy instead of relaying nothing, silently; after the
//! documented remedy (delete the stream) the restored store's feed is published again.

use crate::common::cluster::{delete_namespace, fresh_namespace, nats_url};
use crate::common::{config, eventually, postgres_admin_url, Store, TestStore};
use serde_json::json;
use tare::app::{App, AppConfig};
use tare_platform::cluster::NatsConfig;
use tare_platform::StoreConfig;

fn scaled_out(store: &StoreConfig, keys: &TestStore, namespace: &str) -> AppConfig {
    let mut cfg = config(keys);
    cfg.store = store.clone();
    let mut nats = NatsConfig::new(nats_url());
    nats.namespace = namespace.to_string();
    cfg.nats = Some(nats);
    cfg
}

/// Adds a product (one event) and waits until the feed holds it and the relay has
/// published the whole feed.
async fn add_product_relayed(app: &App, sku: &str) {
    let before = app.platform.feed_head().await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/products", app.base_url))
        .bearer_auth(&app.admin_token)
        .json(&json!({"sku": sku, "name": "Tea", "unit_grams": 250.0, "price_cents": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    eventually(30, "the relay to publish the feed", || async {
        let head = app.platform.feed_head().await.ok()?;
        (head > before && app.platform.relayed_head().await.ok() == Some(Some(head))).then_some(())
    })
    .await;
}

async fn refused(cfg: AppConfig) -> String {
    match App::start(cfg).await {
        Ok(app) => {
            app.stop().await;
            panic!("the node started")
        }
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_stream_from_another_store_or_ahead_of_the_feed_is_refused_at_start() {
    let ns = fresh_namespace();
    let a = TestStore::new(Store::Postgres).await;
    let StoreConfig::Postgres(a_url) = a.config.clone() else {
        unreachable!()
    };
    let app = App::start(scaled_out(&a.config, &a, &ns)).await.expect("store A starts");
    add_product_relayed(&app, "BIND-1").await;
    app.stop().await;

    // A backup of A as it is now: a copy of its database.
    let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
    let a_name = a_url.rsplit('/').next().unwrap().to_string();
    let backup_name = format!("{a_name}_bak");
    sqlx::query(&format!("CREATE DATABASE \"{backup_name}\" TEMPLATE \"{a_name}\""))
        .execute(&admin)
        .await
        .unwrap();
    let backup = StoreConfig::Postgres(a_url.replace(&a_name, &backup_name));

    // A goes on (its own stream: it starts), past the backup.
    let app = App::start(scaled_out(&a.config, &a, &ns))
        .await
        .expect("store A restarts on its stream");
    add_product_relayed(&app, "BIND-2").await;
    let a_head = app.platform.feed_head().await.unwrap();
    app.stop().await;

    // Another store on A's namespace: refused, with the reason and the remedy.
    let b = TestStore::new(Store::Postgres).await;
    let e = refused(scaled_out(&b.config, &b, &ns)).await;
    assert!(
        e.contains("holds the events of store") && e.contains("--nats-namespace") && e.contains("nats stream rm"),
        "{e}"
    );

    // A restored from the older backup: its feed is behind the stream.
    let e = refused(scaled_out(&backup, &a, &ns)).await;
    assert!(
        e.contains("is ahead of this store's feed") && e.contains(&format!("position {a_head}")),
        "{e}"
    );

    // The documented remedy: delete the stream; the relay publishes the restored feed again.
    delete_namespace(&nats_url(), &ns).await;
    let app = App::start(scaled_out(&backup, &a, &ns))
        .await
        .expect("the restored store starts on a new stream");
    add_product_relayed(&app, "BIND-3").await;
    assert_eq!(
        app.platform.feed_head().await.unwrap(),
        a_head,
        "the backup's two events and one new"
    );
    app.stop().await;

    delete_namespace(&nats_url(), &ns).await;
    let _ = tare_platform::db::drop_scratch_postgres(&postgres_admin_url(), &a_url.replace(&a_name, &backup_name)).await;
    admin.close().await;
    a.cleanup().await;
    b.cleanup().await;
}
