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

/// A simulated device signs every CONNECT anew, as firmware must (the signed timestamp
/// may be at most minutes old): a cabinet whose connection drops long after it first
/// connected comes back. Its first credentials, reused, would be refused as stale — the
/// soak found every cabinet of a killed node lost for good after five minutes that way.
#[tokio::test]
async fn a_device_reconnecting_long_after_its_first_connect_signs_anew() {
    use tare_platform::clock::{ManualClock, PlatformClock};
    let store = TestStore::new(Store::Sqlite).await;
    let mut cfg = config(&store);
    let clock = ManualClock::new(tare_providers::sandbox::now_ms());
    cfg.clock = PlatformClock::Manual(clock.clone());
    let mut app = App::start(cfg).await.expect("app");
    let spec = tare::fleet::FleetSpec {
        cabinets: 1,
        pk: "recon".into(),
        ..tare::fleet::FleetSpec::default()
    };
    let _fleet = tare::fleet::Fleet::provision(&app, &spec).await.expect("fleet");
    let first = app.mqtt.take().expect("an MQTT endpoint");
    let (addr, endpoint) = (first.addr, first.endpoint.clone());
    assert_eq!(endpoint.counters.connections_accepted.load(Relaxed), 1);

    // Ten minutes on, the endpoint goes away and comes back on the same address.
    clock.advance(10 * 60_000);
    first.stop().await;
    let again = tare_gateway::mqtt::MqttServer::start(&addr.to_string(), endpoint.clone())
        .await
        .expect("the endpoint again");
    crate::common::eventually(30, "the cabinet reconnected", || async {
        (endpoint.counters.connections_accepted.load(Relaxed) == 2 && endpoint.counters.connections_open.load(Relaxed) == 1).then_some(())
    })
    .await;
    assert_eq!(endpoint.counters.refused("auth_stale_timestamp"), 0);
    again.stop().await;
    app.stop().await;
    store.cleanup().await;
}
