//! `tare sim` as its own process: a virtual fleet that knows the platform only through the
//! HTTP API and the MQTT device endpoint buys through it — with duplicated and reordered
//! device messages — and every cent it says it was charged, the provider collected once.

use crate::common::{config, Store, TestStore};
use std::sync::atomic::Ordering::Relaxed;
use tare::app::App;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_by_a_sim_process_over_mqtt_are_exact() {
    let store = TestStore::new(Store::Sqlite).await;
    let app = App::start(config(&store)).await.expect("app");
    let mqtt = app.mqtt.as_ref().unwrap().addr.to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tare"))
        .args([
            "sim",
            "--http",
            &app.base_url,
            "--mqtt",
            &mqtt,
            "--cabinets",
            "3",
            "--orders",
            "12",
            "--duplicate-pct",
            "20",
            "--reorder-pct",
            "10",
            "--pk",
            "simproc",
        ])
        .env("TARE_ADMIN_TOKEN", &app.admin_token)
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("tare sim runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("sim: 3 cabinets (simproc) online"), "{stdout}");
    assert!(stdout.contains("purchases: 12"), "{stdout}");
    let charged: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("charged: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a charged line");
    // The providers (in this process) collected exactly that, once per paid order.
    let charges: Vec<_> = app.sandboxes.values().flat_map(|s| s.charges()).collect();
    assert_eq!(charges.iter().map(|c| c.amount.get()).sum::<i64>(), charged);
    let mut refs: Vec<_> = charges.iter().map(|c| c.order_id.clone()).collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), charges.len(), "no order collected twice");
    // Everything came over MQTT, duplicates included (and dropped).
    let m = &app.mqtt.as_ref().unwrap().endpoint.counters;
    assert!(m.connections_accepted.load(Relaxed) >= 3);
    assert!(app.platform.metrics().await.unwrap().devices.duplicates > 0);
    app.stop().await;
    store.cleanup().await;
}
