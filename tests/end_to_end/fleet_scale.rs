//! A thousand simulated cabinets connected at once over real MQTT: every one registered,
//! initialized and online, and every one heartbeating on its own cadence.

use crate::common::{config, Store, TestStore};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_cabinets_online_and_heartbeating() {
    let _heavy = crate::common::exclusive().await;
    let store = TestStore::new(Store::Sqlite).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1_000,
        doors: 1,
        lanes: 2,
        pk: "k".into(),
        ..FleetSpec::default()
    };
    // Provisioning waits until each cabinet is online (boot, then a stable weight).
    let fleet = Fleet::provision(&app, &spec).await.expect("1,000 cabinets online");
    let mqtt = &app.mqtt.as_ref().unwrap().endpoint.counters;
    assert_eq!(mqtt.connections_open.load(Relaxed), 1_000);
    assert_eq!(app.platform.devices().connection_count(), 1_000);

    let started = app.platform.now_ms();
    let cadences: Vec<_> = fleet
        .cabinets
        .iter()
        .map(|c| c.spawn_cadence(Duration::from_millis(500), Duration::from_secs(60)))
        .collect();
    crate::common::eventually(60, "a heartbeat from every cabinet", || async {
        let silent = fleet
            .cabinets
            .iter()
            .filter(|c| app.platform.devices().last_seen(c.id()).is_none_or(|t| t <= started))
            .count();
        (silent == 0).then_some(())
    })
    .await;
    // And they keep coming: a second round from everyone.
    let round2 = app.platform.now_ms();
    crate::common::eventually(60, "a second heartbeat from every cabinet", || async {
        fleet
            .cabinets
            .iter()
            .all(|c| app.platform.devices().last_seen(c.id()).is_some_and(|t| t > round2))
            .then_some(())
    })
    .await;
    let (_, sample) = fleet
        .client
        .get(&format!("/api/v1/cabinets/{}", fleet.cabinets[999].id()), &fleet.client.admin)
        .await
        .unwrap();
    assert_eq!(sample["status"], "online");
    assert!(sample["last_heartbeat_ts"].as_i64().unwrap() > round2);
    // What the heartbeat said [D4], and every heartbeat went on to the telemetry bus.
    assert_eq!(sample["heartbeat"]["battery"], 100);
    assert_eq!(sample["heartbeat"]["doors"][0], serde_json::json!([1, "closed"]));
    assert!(app.platform.metrics().await.unwrap().devices.telemetry_published >= 2_000);
    assert_eq!(mqtt.refused.total(), 0, "nothing refused");
    for c in cadences {
        c.abort();
    }
    app.stop().await;
    store.cleanup().await;
}
