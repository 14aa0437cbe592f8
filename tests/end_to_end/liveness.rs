//! Liveness with self-protection [D5, B1] on a test clock: a silent device goes offline
//! on time and comes back when it heartbeats; when the platform loses 30 % of the fleet's
//! heartbeats nobody is marked offline (they show `unknown`), and once it is healthy again
//! the silent are recomputed from their last heartbeat.

use crate::common::{config, Store, TestStore};
use std::sync::Arc;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTransport};
use tare_platform::clock::{ManualClock, PlatformClock};

const T0: i64 = 1_800_000_000_000;

async fn rig(store: &TestStore) -> (App, ManualClock, Arc<Fleet>) {
    let clock = ManualClock::new(T0);
    let mut cfg = config(store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 10,
        doors: 1,
        lanes: 1,
        pk: "lv".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.expect("fleet"));
    (app, clock, fleet)
}

async fn statuses(fleet: &Fleet) -> Vec<String> {
    let mut out = Vec::new();
    for c in &fleet.cabinets {
        let (_, v) = fleet
            .client
            .get(&format!("/api/v1/cabinets/{}", c.id()), &fleet.client.admin)
            .await
            .unwrap();
        out.push(v["status"].as_str().unwrap().to_string());
    }
    out
}

/// Polls the statuses until `ok` holds (a background sweep may be recording them).
async fn eventually_statuses(fleet: &Fleet, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    crate::common::eventually(10, "the statuses", || async {
        let st = statuses(fleet).await;
        ok(&st).then_some(st)
    })
    .await
}

/// 30 s pass; the cabinets `beating` heartbeat; one sweep.
async fn period(app: &App, clock: &ManualClock, fleet: &Fleet, beating: impl Fn(usize) -> bool) {
    clock.advance(30_000);
    for (i, c) in fleet.cabinets.iter().enumerate() {
        if beating(i) {
            c.heartbeat().await.unwrap();
        }
    }
    app.platform.sweep_liveness().await.unwrap();
}

/// Waits until the feed (numbered asynchronously on PostgreSQL) shows exactly `want`.
async fn expect_silence_events(app: &App, want: Vec<(String, String)>) {
    crate::common::eventually(10, "the silence events in the feed", || {
        let want = want.clone();
        async move { (silence_events(app).await == want).then_some(()) }
    })
    .await;
}

async fn silence_events(app: &App) -> Vec<(String, String)> {
    let events = app.platform.events_after(0, 100_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.event_type == "DeviceWentSilent" || e.event_type == "DeviceResumed")
        .map(|e| (e.aggregate_id, e.event_type))
        .collect()
}

async fn a_silent_device_goes_offline_on_time_and_comes_back(kind: Store) {
    let store = TestStore::new(kind).await;
    let (app, clock, fleet) = rig(&store).await;
    let first = fleet.cabinets[0].id().to_string();
    // Cabinet 0 never heartbeats after its boot at T0; the threshold is 90 s.
    period(&app, &clock, &fleet, |i| i != 0).await; // T0+30
    period(&app, &clock, &fleet, |i| i != 0).await; // T0+60
    assert!(statuses(&fleet).await.iter().all(|s| s == "online"));
    clock.advance(29_999);
    app.platform.sweep_liveness().await.unwrap();
    assert_eq!(statuses(&fleet).await[0], "online", "not before its deadline");
    clock.advance(1);
    for c in fleet.cabinets.iter().skip(1) {
        c.heartbeat().await.unwrap();
    }
    app.platform.sweep_liveness().await.unwrap(); // T0+90
                                                  // (The background sweep, woken by the clock, may be the one recording it.)
    let st = eventually_statuses(&fleet, |st| st[0] == "offline").await;
    assert!(st[1..].iter().all(|s| s == "online"), "{st:?}");
    expect_silence_events(&app, vec![(first.clone(), "DeviceWentSilent".to_string())]).await;
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tare_liveness_silent_alerts_total 1"), "{metrics}");
    // It heartbeats again on its connection: back online.
    clock.advance(5_000);
    fleet.cabinets[0].heartbeat().await.unwrap();
    assert_eq!(statuses(&fleet).await[0], "online");
    expect_silence_events(
        &app,
        vec![
            (first.clone(), "DeviceWentSilent".to_string()),
            (first, "DeviceResumed".to_string()),
        ],
    )
    .await;
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(silent_device, a_silent_device_goes_offline_on_time_and_comes_back);

async fn losing_30_percent_of_heartbeats_marks_nobody_offline(kind: Store) {
    let store = TestStore::new(kind).await;
    let (app, clock, fleet) = rig(&store).await;
    let lost = |i: usize| i < 3; // 30 % of the fleet's heartbeats do not reach the platform
    for _ in 0..5 {
        period(&app, &clock, &fleet, |i| !lost(i)).await; // up to T0+150
    }
    let st = statuses(&fleet).await;
    assert_eq!(&st[..3], ["unknown", "unknown", "unknown"], "{st:?}");
    assert!(st[3..].iter().all(|s| s == "online"), "{st:?}");
    assert_eq!(app.platform.metrics().await.unwrap().devices.silent_alerts, 0, "no alarm storm");
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tare_liveness_healthy 0"), "{metrics}");
    assert!(metrics.contains("tare_liveness_undecided 3"), "{metrics}");
    // Heartbeats get through again, except cabinet 2's (that one really is silent).
    period(&app, &clock, &fleet, |i| i != 2).await; // T0+180: healthy again
                                                    // Recomputed from its last heartbeat once healthy.
    let st = eventually_statuses(&fleet, |st| st[2] == "offline").await;
    assert!(st.iter().enumerate().all(|(i, s)| i == 2 || s == "online"), "{st:?}");
    expect_silence_events(&app, vec![(fleet.cabinets[2].id().to_string(), "DeviceWentSilent".to_string())]).await;
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(platform_side_loss, losing_30_percent_of_heartbeats_marks_nobody_offline);

async fn devices_lost_with_a_restart_are_tracked_again(kind: Store) {
    let store = TestStore::new(kind).await;
    let (app, clock, fleet) = rig(&store).await;
    let admin = app.admin_token.clone();
    // The process goes away with every connection; only cabinet 1 comes back.
    app.stop().await;
    let mut cfg = config(&store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    cfg.admin_token = admin.clone();
    let app = App::start(cfg).await.expect("restart");
    let back = fleet.cabinets[1].with_transport(tare::in_process::InProcessTransport::new(
        app.platform.devices().clone(),
        fleet.cabinets[1].id().clone(),
    ));
    back.connect().await.unwrap();
    let client = tare::fleet::ApiClient::new(&app.base_url, &admin);
    let status = |i: usize| {
        let client = &client;
        let id = fleet.cabinets[i].id().to_string();
        async move {
            let (_, v) = client.get(&format!("/api/v1/cabinets/{id}"), &client.admin).await.unwrap();
            v["status"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(status(0).await, "online", "the log still says online right after the restart");
    for _ in 0..3 {
        clock.advance(30_000);
        back.heartbeat().await.unwrap();
        app.platform.sweep_liveness().await.unwrap();
    }
    // Nine of ten went silent at once: that looks like the platform's own fault, so they
    // are undecided, not offline.
    assert_eq!(status(0).await, "unknown");
    assert_eq!(status(1).await, "online");
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(lost_with_restart, devices_lost_with_a_restart_are_tracked_again);
