//! Lockers [seed 000] over MQTT: a locker registers with compartments (its doors, no
//! lanes), is online as soon as it connects, pops a compartment on command, reports items
//! taken and returned, and plays ads it was told to add — each a fact in the log.

use crate::common::{config, Store, TestStore};
use serde_json::{json, Value};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet};
use tare_domain::{CabinetId, DoorNo};
use tare_sim::cabinet::{Faults, VirtualCabinet, VirtualCabinetSpec};
use tare_sim::transport::{MqttDeviceConfig, MqttTransport};

async fn feed_events(app: &App, kind: &str) -> Vec<Value> {
    let events = app.platform.events_after(0, 100_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.event_type == kind)
        .map(|e| e.payload[kind].clone())
        .collect()
}

async fn wait_command(client: &ApiClient, id: &str) -> Value {
    crate::common::eventually(10, "the command to settle", || async {
        let (_, c) = client.get(&format!("/api/v1/commands/{id}"), &client.admin).await.ok()?;
        ["done", "failed", "unknown"].contains(&c["state"].as_str()?).then_some(c)
    })
    .await
}

async fn lockers_pop_report_and_play_ads(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let client = ApiClient::new(&app.base_url, &app.admin_token);
    // A compartment with lanes is not a locker compartment.
    let bad = json!({"pk": "lk", "dn": "L0", "kind": "locker", "location": {"lat": 31.2, "lng": 121.4},
        "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "x", "capacity": 1, "restock_threshold": 0}]}]});
    let (st, v) = client.post("/api/v1/cabinets", &client.admin, &bad).await.unwrap();
    assert_eq!((st.as_u16(), v["error"]["field"].as_str()), (422, Some("doors[0].lanes")), "{v}");
    let body = json!({"pk": "lk", "dn": "L1", "kind": "locker", "location": {"lat": 31.2, "lng": 121.4},
        "doors": [{"door": 1, "lanes": []}, {"door": 2, "lanes": []}, {"door": 3, "lanes": []}]});
    let (st, v) = client.post("/api/v1/cabinets", &client.admin, &body).await.unwrap();
    assert_eq!(st.as_u16(), 201, "{v}");
    let id = CabinetId::new("lk", "L1").unwrap();
    let mqtt = app.mqtt.as_ref().unwrap().addr;
    let locker = VirtualCabinet::new(
        VirtualCabinetSpec {
            id: id.clone(),
            doors: Vec::new(),
            noise_grams: 0.0,
            seed: 1,
            faults: Faults::default(),
            compartments: vec![(DoorNo::of(1), true), (DoorNo::of(2), true), (DoorNo::of(3), false)],
        },
        MqttTransport::new(
            id.clone(),
            v["device_secret"].as_str().unwrap().to_string(),
            tare::in_process::device_clock(app.platform.clock()),
            MqttDeviceConfig {
                host: mqtt.ip().to_string(),
                port: mqtt.port(),
                keep_alive: Duration::from_secs(30),
                tls: None,
            },
        ),
        tare::in_process::device_clock(app.platform.clock()),
    );
    locker.connect().await.unwrap();
    let fleet = Fleet {
        client: client.clone(),
        cabinets: vec![locker.clone()],
        planogram: vec![Default::default()],
        more_clients: Vec::new(),
        sandbox_secret: None,
    };
    // No opening stock to count: online as soon as it connects.
    fleet.wait_status(&id, "online", Duration::from_secs(10)).await.unwrap();

    // Pop compartment 2: acknowledged, and the locker reports it popped.
    let (st, v) = client
        .post(
            &format!("/api/v1/cabinets/{id}/commands"),
            &client.admin,
            &json!({"type": "pop", "args": {"compartment": 2}}),
        )
        .await
        .unwrap();
    assert_eq!(st.as_u16(), 202, "{v}");
    assert_eq!(wait_command(&client, v["cmd_id"].as_str().unwrap()).await["state"], "done");
    // The recipient takes the parcel; someone returns a borrowed item to compartment 3.
    locker.compartment_item(DoorNo::of(2), true).await.unwrap();
    locker.compartment_item(DoorNo::of(3), false).await.unwrap();
    let c = crate::common::eventually(10, "compartment states", || async {
        let (_, c) = client.get(&format!("/api/v1/cabinets/{id}"), &client.admin).await.ok()?;
        (c["compartments"][1]["occupied"] == false && c["compartments"][2]["occupied"] == true).then_some(c)
    })
    .await;
    assert_eq!(c["compartments"][1]["state"], "open");
    assert_eq!(c["compartments"][0]["occupied"], Value::Null, "not reported yet");
    // A compartment that does not exist: the device says so.
    let (_, v) = client
        .post(
            &format!("/api/v1/cabinets/{id}/commands"),
            &client.admin,
            &json!({"type": "pop", "args": {"compartment": 9}}),
        )
        .await
        .unwrap();
    let c = wait_command(&client, v["cmd_id"].as_str().unwrap()).await;
    assert_eq!(
        (c["state"].as_str(), c["detail"].as_str()),
        (Some("failed"), Some("no such compartment"))
    );

    // Ads: added by command, played by the screen, recorded.
    let (_, v) = client
        .post(
            &format!("/api/v1/cabinets/{id}/commands"),
            &client.admin,
            &json!({"type": "ad_add", "args": {"ad_id": "spring-sale", "uri": "https://ads.example/spring.mp4"}}),
        )
        .await
        .unwrap();
    assert_eq!(wait_command(&client, v["cmd_id"].as_str().unwrap()).await["state"], "done");
    locker.ad_played("spring-sale", 15_000).await.unwrap();
    let plays = crate::common::eventually(10, "the ad play in the log", || async {
        let p = feed_events(&app, "AdPlayed").await;
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(plays.len(), 1);
    assert_eq!(
        (plays[0]["ad_id"].as_str(), plays[0]["duration_ms"].as_u64()),
        (Some("spring-sale"), Some(15_000))
    );
    let changes = crate::common::eventually(10, "the compartment changes in the log", || async {
        let c = feed_events(&app, "CompartmentChanged").await;
        (c.len() == 3).then_some(c)
    })
    .await;
    let seen: Vec<(u64, &str)> = changes
        .iter()
        .map(|c| (c["compartment"].as_u64().unwrap(), c["change"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(2, "popped"), (2, "taken"), (3, "returned")]);
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(lockers, lockers_pop_report_and_play_ads);
