//! Commands with acknowledgement [D7], end to end over MQTT: every command type of
//! PROTOCOL.md reaches its final state, a missing ack is resent and ends `unknown`, an
//! absent device never gets a late command, and the operator API refuses bad commands.

use crate::common::{config, Store, TestStore};
use serde_json::{json, Value};
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec};
use tare_sim::cabinet::Faults;

async fn fleet(store: &TestStore, resend_ms: i64) -> (App, Fleet) {
    let mut cfg = config(store);
    cfg.saga.command_resend_ms = resend_ms;
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        pk: "cmd".into(),
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    (app, fleet)
}

async fn final_state(fleet: &Fleet, cmd_id: &str, secs: u64) -> Value {
    crate::common::eventually(secs, "the command to reach a final state", || async {
        let (_, c) = fleet
            .client
            .get(&format!("/api/v1/commands/{cmd_id}"), &fleet.client.admin)
            .await
            .ok()?;
        ["done", "failed", "unknown"].contains(&c["state"].as_str()?).then_some(c)
    })
    .await
}

async fn issue(fleet: &Fleet, cabinet: &str, body: Value) -> (u16, Value) {
    let (st, v) = fleet
        .client
        .post(&format!("/api/v1/cabinets/{cabinet}/commands"), &fleet.client.admin, &body)
        .await
        .unwrap();
    (st.as_u16(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_type_reaches_its_final_state() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, fleet) = fleet(&store, 3_000).await;
    let cab = fleet.cabinets[0].id().to_string();
    let cases = [
        (
            json!({"type": "query_door", "args": {"door": 1}}),
            "done",
            Some(json!({"state": "closed"})),
        ),
        (
            json!({"type": "set_price_label", "args": {"door": 1, "lane": 1, "price_cents": 450, "name": "Cola"}}),
            "done",
            None,
        ),
        (json!({"type": "lights", "args": {"on": true}}), "done", None),
        (json!({"type": "heating", "args": {"on": false}}), "done", None),
        (
            json!({"type": "ad_add", "args": {"ad_id": "ad1", "uri": "https://ads.example/ad1.mp4"}}),
            "done",
            None,
        ),
        (json!({"type": "ad_remove", "args": {"ad_id": "ad1"}}), "done", None),
        (
            json!({"type": "upgrade", "args": {"component": "fw", "version": "2.0.0", "uri": "https://fw.example/2.0.0.bin", "sha256": "ab".repeat(32)}}),
            "done",
            None,
        ),
        // A weight cabinet has no compartments: the device says so.
        (json!({"type": "pop", "args": {"compartment": 3}}), "failed", None),
    ];
    for (body, want, result) in cases {
        let (st, v) = issue(&fleet, &cab, body.clone()).await;
        assert_eq!(st, 202, "{body}: {v}");
        let c = final_state(&fleet, v["cmd_id"].as_str().unwrap(), 10).await;
        assert_eq!(c["state"], want, "{body}: {c}");
        assert_eq!(c["type"], body["type"]);
        assert_eq!(c["args"], body["args"]);
        assert_eq!(c["attempts"], 1, "acked at the first delivery: {c}");
        if let Some(r) = result {
            assert_eq!(c["result"], r, "{c}");
        }
    }
    // The scale commands [M1]: a tare only of an empty lane, a standard weight only
    // after a tare.
    for body in [
        json!({"type": "tare", "args": {"door": 1, "lane": 1}}),
        json!({"type": "calibrate", "args": {"door": 1, "lane": 2, "standard_grams": 500.0}}),
    ] {
        let (st, v) = issue(&fleet, &cab, body.clone()).await;
        assert_eq!((st, &v["error"]["code"]), (409, &json!("lane_not_empty")), "{body}: {v}");
    }
    crate::common::empty_lane(&fleet, 0, 1, 1).await;
    let (st, v) = issue(
        &fleet,
        &cab,
        json!({"type": "calibrate", "args": {"door": 1, "lane": 1, "standard_grams": 500.0}}),
    )
    .await;
    assert_eq!((st, &v["error"]["code"]), (409, &json!("tare_first")), "{v}");
    let tare = crate::common::run_command(&fleet.client, &cab, json!({"type": "tare", "args": {"door": 1, "lane": 1}})).await;
    assert_eq!((&tare["state"], tare["attempts"].as_i64()), (&json!("done"), Some(1)), "{tare}");
    assert!(tare["result"]["grams"].as_f64().is_some(), "{tare}");
    let calibrated = crate::common::calibrate_lane(&fleet.client, &cab, 1, 1, 500.0).await;
    assert_eq!(
        (&calibrated["state"], &calibrated["result"]),
        (&json!("done"), &json!({"measured_grams": 500.0})),
        "{calibrated}"
    );
    // The command's life is in the event log, in order.
    let (_, feed) = fleet
        .client
        .get("/api/v1/events?after=0&limit=1000", &fleet.client.admin)
        .await
        .unwrap();
    // (The cabinet's initialization price labels are commands too; count the operator's.)
    let events = feed["events"].as_array().unwrap();
    let operators: Vec<&str> = events
        .iter()
        .filter(|e| e["payload"]["CommandIssued"]["issued_by"] == "operator")
        .filter_map(|e| e["aggregate_id"].as_str())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["aggregate_type"] == "device_command")
        .filter(|e| operators.contains(&e["aggregate_id"].as_str().unwrap_or_default()))
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    // 8 in the loop, then two tares and a calibration (refused ones are never issued).
    assert_eq!(kinds.iter().filter(|k| **k == "CommandIssued").count(), 11, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "CommandAcknowledged").count(), 11, "{kinds:?}");
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_ack_is_resent_then_unknown_and_an_absent_device_gets_nothing_late() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, fleet) = fleet(&store, 300).await;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    vc.set_faults(Faults {
        drop_acks: true,
        ..Faults::default()
    });
    let (st, v) = issue(&fleet, &cab, json!({"type": "lights", "args": {"on": true}, "ttl_s": 2})).await;
    assert_eq!(st, 202);
    let c = final_state(&fleet, v["cmd_id"].as_str().unwrap(), 10).await;
    assert_eq!(c["state"], "unknown", "{c}");
    assert!(c["attempts"].as_u64().unwrap() >= 3, "resent while no ack came: {c}");
    assert!(c["finished_at"].as_i64().unwrap() >= c["expires_at"].as_i64().unwrap());

    // The device goes away; a command for it is never delivered, and ends unknown.
    vc.set_faults(Faults::default());
    vc.disconnect().await.unwrap();
    crate::common::eventually(10, "the cabinet offline", || async {
        let (_, c) = fleet
            .client
            .get(&format!("/api/v1/cabinets/{cab}"), &fleet.client.admin)
            .await
            .ok()?;
        (c["status"] == "offline").then_some(())
    })
    .await;
    let (_, v) = issue(&fleet, &cab, json!({"type": "open_door", "args": {"door": 1}, "ttl_s": 1})).await;
    let id = v["cmd_id"].as_str().unwrap().to_string();
    let c = final_state(&fleet, &id, 10).await;
    assert_eq!((c["state"].as_str(), c["attempts"].as_u64()), (Some("unknown"), Some(0)), "{c}");
    // Back online after the expiry: the door does not open late [B7].
    vc.connect().await.unwrap();
    let (_, c) = fleet
        .client
        .get(&format!("/api/v1/commands/{id}"), &fleet.client.admin)
        .await
        .unwrap();
    assert_eq!(c["attempts"], 0);
    assert!(!vc.is_open(tare_domain::DoorNo::of(1)));
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_commands_are_refused_with_the_field() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, fleet) = fleet(&store, 3_000).await;
    let cab = fleet.cabinets[0].id().to_string();
    let cases = [
        (json!({"type": "self_destruct", "args": {}}), 422, "type"),
        (json!({"type": "open_door", "args": {"door": 0}}), 422, "args.door"),
        (json!({"type": "open_door", "args": {"door": "one"}}), 422, "args"),
        (json!({"type": "lights", "args": {"on": true, "brightness": 3}}), 422, "args"),
        (json!({"type": "lights", "args": {"on": true}, "ttl_s": 0}), 422, "ttl_s"),
        (
            json!({"type": "upgrade", "args": {"component": "os", "version": "1", "uri": "u", "sha256": "ab".repeat(32)}}),
            422,
            "args.component",
        ),
        (
            json!({"type": "set_price_label", "args": {"door": 1, "lane": 1, "price_cents": -1, "name": "x"}}),
            422,
            "args.price_cents",
        ),
    ];
    for (body, status, field) in cases {
        let (st, v) = issue(&fleet, &cab, body.clone()).await;
        assert_eq!((st, v["error"]["field"].as_str()), (status, Some(field)), "{body}: {v}");
    }
    let (st, v) = issue(&fleet, "cmd.nosuch", json!({"type": "lights", "args": {"on": true}})).await;
    assert_eq!(st, 404, "{v}");
    let (st, _) = fleet.client.get("/api/v1/commands/cmd-nope", &fleet.client.admin).await.unwrap();
    assert_eq!(st.as_u16(), 404);
    // Nothing was issued.
    let (_, feed) = fleet
        .client
        .get("/api/v1/events?after=0&limit=1000", &fleet.client.admin)
        .await
        .unwrap();
    assert!(!feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"]["CommandIssued"]["issued_by"] == "operator")
        .collect::<Vec<_>>()
        .iter()
        .any(|e| e["aggregate_type"] == "device_command"));
    app.stop().await;
    store.cleanup().await;
}

/// One door, one holder [O2]: an operator's `open_door`, `tare` and `calibrate` take the
/// door like a purchase, so they are refused while a shopper holds it, a shopper cannot
/// scan a door an operator opened until it closes, and a finished `tare` gives the door
/// back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_door_commands_take_the_door_like_a_purchase() {
    use tare_domain::DoorNo;
    let store = TestStore::new(Store::Sqlite).await;
    let (app, fleet) = fleet(&store, 3_000).await;
    let vc = &fleet.cabinets[0];
    let cab = vc.id().to_string();
    let door = DoorNo::of(1);
    let s = fleet.new_shopper("13800000051", "alipay", "once").await.unwrap();
    let scan = || async {
        fleet
            .client
            .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
            .await
            .unwrap()
    };

    // A shopper holds door 1: what opens or weighs it is refused, what only reads it is not.
    let (st, o) = scan().await;
    assert_eq!(st, 201, "{o}");
    let order_id = o["order_id"].as_str().unwrap().to_string();
    assert!(vc.wait_open(door, std::time::Duration::from_secs(10)).await);
    for body in [
        json!({"type": "open_door", "args": {"door": 1}}),
        json!({"type": "tare", "args": {"door": 1, "lane": 1}}),
        json!({"type": "calibrate", "args": {"door": 1, "lane": 1, "standard_grams": 500.0}}),
    ] {
        let (st, v) = issue(&fleet, &cab, body.clone()).await;
        assert_eq!((st, &v["error"]["code"]), (409, &json!("cabinet_busy")), "{body}: {v}");
    }
    let (st, v) = issue(&fleet, &cab, json!({"type": "query_door", "args": {"door": 1}})).await;
    assert_eq!(st, 202, "{v}");
    let (st, v) = issue(&fleet, &cab, json!({"type": "tare", "args": {"door": 2, "lane": 1}})).await;
    assert_eq!(
        (st, &v["error"]["code"]),
        (409, &json!("lane_not_empty")),
        "another door is free, its lane only not empty: {v}"
    );
    vc.take(door, tare_domain::LaneNo::of(1), 1).await.unwrap();
    vc.close(door).await.unwrap();
    let o = fleet
        .wait_terminal(&order_id, &s.token, std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(o["state"], "paid", "{o}");

    // The operator opens door 1: it is theirs until it closes.
    let (st, v) = crate::common::eventually(10, "door 1 free for the operator", || async {
        let (st, v) = issue(&fleet, &cab, json!({"type": "open_door", "args": {"door": 1}})).await;
        (st == 202).then_some((st, v))
    })
    .await;
    assert_eq!(st, 202);
    assert_eq!(final_state(&fleet, v["cmd_id"].as_str().unwrap(), 10).await["state"], "done");
    assert!(vc.wait_open(door, std::time::Duration::from_secs(10)).await);
    let (st, e) = scan().await;
    assert_eq!(
        (st, &e["error"]["code"]),
        (reqwest::StatusCode::CONFLICT, &json!("cabinet_busy")),
        "{e}"
    );
    let (st, _) = issue(&fleet, &cab, json!({"type": "tare", "args": {"door": 1, "lane": 1}})).await;
    assert_eq!(st, 409, "the open door is still the operator's first command's");
    vc.close(door).await.unwrap();
    let c = crate::common::eventually(10, "the door freed by its close", || async {
        let (_, c) = fleet
            .client
            .get(&format!("/api/v1/cabinets/{cab}"), &fleet.client.admin)
            .await
            .ok()?;
        c["doors"][0]["held_by"].is_null().then_some(c)
    })
    .await;
    assert_eq!(c["doors"][0]["state"], "closed", "{c}");

    // A tare refused (its lane holds stock) gives the door straight back.
    let (st, v) = issue(&fleet, &cab, json!({"type": "tare", "args": {"door": 1, "lane": 1}})).await;
    assert_eq!((st, &v["error"]["code"]), (409, &json!("lane_not_empty")), "{v}");
    let (st, o) = scan().await;
    assert_eq!(st, 201, "a refused tare holds nothing: {o}");
    app.stop().await;
    store.cleanup().await;
}
