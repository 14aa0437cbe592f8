//! Registration leaves no cabinet that can never log in [issue 14, item 5]: the device
//! secret is written before the cabinet, so a crash between the two leaves only a secret
//! of no cabinet, which the next registration replaces; of concurrent registrations of
//! one id exactly one wins, and the secret stored is the one its caller was given.

use crate::common::{config, Store, TestStore};
use serde_json::json;
use tare::app::App;
use tare::fleet::ApiClient;
use tare_domain::CabinetId;
use tare_platform::StoreConfig;

fn cabinet(dn: &str) -> serde_json::Value {
    json!({"pk": "reg", "dn": dn, "kind": "weight", "location": {"lat": 31.2, "lng": 121.4},
        "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "REG-1", "capacity": 10, "restock_threshold": 2}]}]})
}

async fn registration_is_all_or_nothing(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let c = ApiClient::new(&app.base_url, &app.admin_token);
    let (st, b) = c
        .post(
            "/api/v1/products",
            &c.admin,
            &json!({"sku": "REG-1", "name": "Tea", "unit_grams": 250.0, "price_cents": 300}),
        )
        .await
        .unwrap();
    assert_eq!(st, 201, "{b}");

    // A crash after the secret and before the cabinet: the secret of no cabinet is
    // replaced by the next registration's.
    if let StoreConfig::Postgres(url) = &store.config {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query("INSERT INTO device_credentials (cabinet, secret) VALUES ('reg.crashed', 'stale')")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (st, b) = c.post("/api/v1/cabinets", &c.admin, &cabinet("crashed")).await.unwrap();
        assert_eq!(st, 201, "{b}");
        let stored = app
            .platform
            .device_secret(&CabinetId::new("reg", "crashed").unwrap())
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), b["device_secret"].as_str(), "the new secret, not the stale one");
    }

    // Eight registrations of one id at once: one wins, and its secret is the one kept.
    let body = cabinet("race");
    let answers = futures::future::join_all((0..8).map(|_| c.post("/api/v1/cabinets", &c.admin, &body))).await;
    let won: Vec<_> = answers.iter().map(|r| r.as_ref().unwrap()).filter(|(st, _)| *st == 201).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(
        answers.iter().map(|r| r.as_ref().unwrap().0).all(|st| st == 201 || st == 409),
        "{answers:?}"
    );
    let stored = app.platform.device_secret(&CabinetId::new("reg", "race").unwrap()).await.unwrap();
    assert_eq!(stored.as_deref(), won[0].1["device_secret"].as_str());
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_is_all_or_nothing_on_sqlite() {
    registration_is_all_or_nothing(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_is_all_or_nothing_on_postgres() {
    registration_is_all_or_nothing(Store::Postgres).await;
}
