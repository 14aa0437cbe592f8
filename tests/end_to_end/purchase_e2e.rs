//! The whole purchase through the HTTP API, on both stores: 200 random purchases on 10
//! virtual cabinets; every order ends, the money equals the true takes × prices −
//! discounts, nobody is charged twice, and every lane's stock equals its opening stock
//! minus what was sold.

use crate::common::{start, Store, TestStore};
use std::collections::BTreeMap;
use std::sync::Arc;
use tare::bench::{audit_provider_charges, run_purchases};
use tare::fleet::{Fleet, FleetSpec, FleetTransport};

async fn two_hundred_purchases_on_ten_cabinets(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = start(&store).await;
    let spec = FleetSpec {
        mqtt_tls: None,
        cabinets: 10,
        doors: 2,
        lanes: 3,
        capacity: 40,
        noise_grams: 1.0,
        seed: 11,
        pk: "e2e".into(),
        // The cabinets are MQTT devices connected to the app's endpoint.
        transport: FleetTransport::Mqtt,
        layout: None,
        more_nodes: Vec::new(),
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.expect("fleet"));
    let opening: BTreeMap<_, _> = fleet.cabinets.iter().map(|c| (c.id().clone(), c.counts())).collect();

    let mut summary = run_purchases(&fleet, 200, 5).await.expect("purchases run");
    audit_provider_charges(&app, &mut summary);

    assert!(summary.errors.is_empty(), "{summary}");
    assert_eq!(summary.states.values().sum::<usize>(), 200, "every order terminal: {summary}");
    assert!(summary.states.keys().all(|s| s == "paid" || s == "cancelled"), "{summary}");
    assert!(summary.mismatched.is_empty(), "{summary}");
    assert_eq!(summary.charged_cents, summary.expected_cents, "{summary}");
    assert_eq!(summary.double_charges, 0, "{summary}");
    assert_eq!(
        summary.provider_charges, summary.states["paid"],
        "one collection per paid order: {summary}"
    );
    let provider_total: i64 = app.sandboxes.values().flat_map(|s| s.charges()).map(|c| c.amount.get()).sum();
    assert_eq!(provider_total, summary.charged_cents, "providers collected what orders say");

    // All of it went over MQTT: ten cabinets connected, every uplink through the endpoint.
    let mqtt = &app.mqtt.as_ref().expect("mqtt endpoint").endpoint.counters;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(mqtt.connections_open.load(Relaxed), 10);
    assert!(
        mqtt.publishes_accepted.load(Relaxed) > 200 * 4,
        "door open/close and weights per purchase"
    );
    assert!(mqtt.publishes_out.load(Relaxed) >= 200, "an open_door command per authorized order");

    // Stock: the ledger (cabinet aggregate and lane-stock view) equals opening − sold,
    // which equals what the virtual shelves really hold.
    for c in &fleet.cabinets {
        let (_, cab) = fleet
            .client
            .get(&format!("/api/v1/cabinets/{}", c.id()), &fleet.client.admin)
            .await
            .unwrap();
        let truth = c.counts();
        for door in cab["doors"].as_array().unwrap() {
            for lane in door["lanes"].as_array().unwrap() {
                let key = (
                    tare_domain::DoorNo::of(door["door"].as_u64().unwrap() as u8),
                    tare_domain::LaneNo::of(lane["lane"].as_u64().unwrap() as u8),
                );
                assert_eq!(lane["stock"].as_i64().unwrap(), i64::from(truth[&key]), "{} {:?}", c.id(), key);
                assert!(truth[&key] <= opening[c.id()][&key]);
            }
        }
    }
    // The lane ledger view agrees once the projections caught up.
    let head = app.platform.feed_head().await.unwrap();
    crate::common::eventually(20, "projections to catch up", || async {
        (app.platform.metrics().await.unwrap().projections_position >= head).then_some(())
    })
    .await;
    for c in &fleet.cabinets {
        let docs = app.platform.lane_stock(c.id()).await.unwrap();
        for d in docs {
            let key = (
                tare_domain::DoorNo::of(d["door"].as_u64().unwrap() as u8),
                tare_domain::LaneNo::of(d["lane"].as_u64().unwrap() as u8),
            );
            assert_eq!(d["stock"].as_i64().unwrap(), i64::from(c.counts()[&key]));
        }
    }
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(purchases_are_exact_end_to_end, two_hundred_purchases_on_ten_cabinets);
