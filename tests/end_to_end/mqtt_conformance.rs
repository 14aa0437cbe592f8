//! Conformance of the MQTT device endpoint to PROTOCOL.md, driven by MQTT clients this
//! project did not write: `mosquitto_pub`, `mosquitto_sub` and `mosquitto_rr` from
//! Debian's mosquitto-clients, over MQTT 3.1.1 and 5. Every refusal is checked for its
//! counted reason and for the valid traffic around it.

use crate::common::{config, Store, TestStore};
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::atomic::Ordering::Relaxed;
use tare::app::App;
use tare::fleet::ApiClient;
use tare_domain::{CabinetId, DoorNo};
use tare_protocol::signing::{mqtt_username, sign};
use tare_sagas::ports::{DeviceLink, DoorCommandKind};
use tokio::process::Command;

const VERSIONS: [&str; 2] = ["mqttv311", "mqttv5"];

struct Device {
    id: CabinetId,
    secret: String,
}

impl Device {
    fn topic(&self, dir: &str, kind: &str) -> String {
        format!("{}/{}/{dir}/{kind}", self.id.pk(), self.id.dn())
    }

    /// `-h -p -i -u -P` for a correctly signed connection at `ts`.
    fn conn_args(&self, app: &App, ts: i64) -> Vec<String> {
        let user = mqtt_username(&self.id, ts);
        let pass = sign(&self.secret, &user);
        let addr = app.mqtt.as_ref().expect("mqtt").addr;
        vec![
            "-h".into(),
            addr.ip().to_string(),
            "-p".into(),
            addr.port().to_string(),
            "-i".into(),
            self.id.to_string(),
            "-u".into(),
            user,
            "-P".into(),
            pass,
        ]
    }
}

async fn app_with(store: &TestStore, f: impl FnOnce(&mut tare::app::AppConfig)) -> (App, ApiClient) {
    let mut cfg = config(store);
    f(&mut cfg);
    let app = App::start(cfg).await.expect("app");
    let client = ApiClient::new(&app.base_url, &app.admin_token);
    let (st, _) = client
        .post(
            "/api/v1/products",
            &client.admin,
            &json!({"sku": "cola", "name": "Cola", "unit_grams": 330.0, "price_cents": 350}),
        )
        .await
        .unwrap();
    assert_eq!(st, 201);
    (app, client)
}

async fn register(client: &ApiClient, pk: &str, dn: &str) -> Device {
    let body = json!({"pk": pk, "dn": dn, "kind": "weight", "location": {"lat": 31.2, "lng": 121.4},
        "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola", "capacity": 10, "restock_threshold": 2}]}]});
    let (st, v) = client.post("/api/v1/cabinets", &client.admin, &body).await.unwrap();
    assert_eq!(st, 201, "{v}");
    Device {
        id: CabinetId::new(pk, dn).unwrap(),
        secret: v["device_secret"].as_str().unwrap().to_string(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(tool: &str, args: &[String], stdin: Option<String>) -> Ran {
    let mut cmd = Command::new(tool);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} (Debian's mosquitto-clients) must be installed: {e}"));
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut w = child.stdin.take().unwrap();
        w.write_all(input.as_bytes()).await.unwrap();
        drop(w);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("client finished")
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn msg(id: &str, seq: u64, body: Value) -> String {
    let mut v = body;
    v["id"] = json!(id);
    v["seq"] = json!(seq);
    v["ts"] = json!(now_ms());
    v.to_string()
}

fn boot(id: &str, seq: u64) -> String {
    msg(id, seq, json!({"fw": "1.2.3", "hw": "h1", "doors": 1, "lanes": [1]}))
}

fn weight(id: &str, seq: u64, grams: Value) -> String {
    msg(id, seq, json!({"door": 1, "stable": true, "lanes": [{"lane": 1, "grams": grams}]}))
}

async fn pub_one(app: &App, dev: &Device, version: &str, topic: &str, payload: &str) -> Ran {
    let mut args = dev.conn_args(app, now_ms());
    args.extend(["-V", version, "-q", "1", "-t", topic, "-m", payload].map(String::from));
    run("mosquitto_pub", &args, None).await
}

/// The gateway node holding the device's connection (null when it has none) [D1].
async fn node(client: &ApiClient, dev: &Device) -> Value {
    let (_, v) = client.get(&format!("/api/v1/cabinets/{}", dev.id), &client.admin).await.unwrap();
    v["gateway_node"].clone()
}

/// A never-connected cabinet shows `pending_init` too (API.md's statuses); whether it has
/// connected shows in `gateway_node`.
async fn status(client: &ApiClient, dev: &Device) -> String {
    let (_, v) = client.get(&format!("/api/v1/cabinets/{}", dev.id), &client.admin).await.unwrap();
    v["status"].as_str().unwrap_or_default().to_string()
}

fn refused(app: &App, reason: &str) -> u64 {
    app.mqtt.as_ref().unwrap().endpoint.counters.refused(reason)
}

async fn hub_rejected(app: &App, reason: &str) -> u64 {
    app.platform
        .metrics()
        .await
        .unwrap()
        .devices
        .rejected
        .get(reason)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_is_signed_per_device_on_both_versions() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |_| {}).await;
    let dev = register(&client, "cf", "d1").await;
    let other = register(&client, "cf", "d2").await;
    for (i, v) in VERSIONS.iter().enumerate() {
        // A correct connection: the boot lands and the cabinet awaits initialization [D1].
        let r = pub_one(&app, &dev, v, &dev.topic("up", "boot"), &boot(&format!("boot-{v}"), 0)).await;
        assert_eq!(r.code, 0, "{v}: {}", r.stderr);
        crate::common::eventually(10, "boot applied", || async {
            (app.platform.metrics().await.unwrap().devices.accepted == i as u64 + 1).then_some(())
        })
        .await;
        // A wrong signature.
        let mut args = dev.conn_args(&app, now_ms());
        args[9] = sign("not-the-secret", &args[7]);
        args.extend(["-V", v, "-t", &dev.topic("up", "boot"), "-m", "{}"].map(String::from));
        let r = run("mosquitto_pub", &args, None).await;
        assert_ne!(r.code, 0, "{v}: a bad signature must be refused");
        assert!(r.stderr.to_lowercase().contains("authori"), "{v}: {}", r.stderr);
        // A timestamp 6 minutes old (correctly signed).
        let mut args = dev.conn_args(&app, now_ms() - 6 * 60 * 1000);
        args.extend(["-V", v, "-t", &dev.topic("up", "boot"), "-m", "{}"].map(String::from));
        assert_ne!(run("mosquitto_pub", &args, None).await.code, 0, "{v}: stale timestamp");
        // Another device's credentials under this client id.
        let mut args = other.conn_args(&app, now_ms());
        args[5] = dev.id.to_string();
        args.extend(["-V", v, "-t", &dev.topic("up", "boot"), "-m", "{}"].map(String::from));
        assert_ne!(run("mosquitto_pub", &args, None).await.code, 0, "{v}: identity mismatch");
        // An unregistered device signing with a secret of its own choosing.
        let ghost = Device {
            id: CabinetId::new("cf", "ghost").unwrap(),
            secret: "whatever".into(),
        };
        let mut args = ghost.conn_args(&app, now_ms());
        args.extend(["-V", v, "-t", &ghost.topic("up", "boot"), "-m", "{}"].map(String::from));
        assert_ne!(run("mosquitto_pub", &args, None).await.code, 0, "{v}: unknown device");
    }
    assert_eq!(refused(&app, "auth_bad_signature"), 2);
    assert_eq!(refused(&app, "auth_stale_timestamp"), 2);
    assert_eq!(refused(&app, "auth_identity_mismatch"), 2);
    assert_eq!(refused(&app, "auth_unknown_device"), 2);
    // MQTT 3.1 is not spoken.
    let mut args = dev.conn_args(&app, now_ms());
    args.extend(["-V", "mqttv31", "-t", &dev.topic("up", "boot"), "-m", "{}"].map(String::from));
    let r = run("mosquitto_pub", &args, None).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("protocol version"), "{}", r.stderr);
    assert_eq!(refused(&app, "unsupported_protocol"), 1);
    // Nothing refused reached the hub; the two good boots did.
    assert_eq!(app.platform.metrics().await.unwrap().devices.accepted, 2);
    assert_eq!(node(&client, &other).await, Value::Null, "never connected");
    assert_eq!(app.mqtt.as_ref().unwrap().endpoint.counters.connections_accepted.load(Relaxed), 2);
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_uses_only_its_own_topics() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |_| {}).await;
    let dev = register(&client, "tp", "d1").await;
    let other = register(&client, "tp", "d2").await;
    for v in VERSIONS {
        let r = pub_one(&app, &dev, v, &other.topic("up", "boot"), &boot(&format!("x-{v}"), 0)).await;
        if v == "mqttv5" {
            // MQTT 5 carries the refusal back in the PUBACK.
            assert!(r.stderr.contains("Not authorized"), "{}", r.stderr);
        }
        // Publishing on one's own down/ is not allowed either.
        pub_one(&app, &dev, v, &dev.topic("down", "cmd"), "{}").await;
        for filter in [other.topic("down", "cmd"), dev.topic("up", "#"), "#".to_string()] {
            let mut args = dev.conn_args(&app, now_ms());
            args.extend(["-V", v, "-t", &filter, "-C", "1", "-W", "2"].map(String::from));
            let r = run("mosquitto_sub", &args, None).await;
            assert!(r.stderr.contains("denied"), "{v} {filter}: {}", r.stderr);
        }
    }
    assert_eq!(refused(&app, "topic_denied"), 4);
    assert_eq!(refused(&app, "subscribe_denied"), 6);
    assert_eq!(app.platform.metrics().await.unwrap().devices.accepted, 0);
    assert_eq!(node(&client, &other).await, Value::Null, "never connected");
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_messages_are_refused_and_the_good_ones_around_them_kept() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |_| {}).await;
    let dev = register(&client, "bad", "d1").await;
    // One connection, one line per message (`mosquitto_pub -l`), QoS 1. MQTT 3.1.1 so the
    // client itself does not hold back the oversized one (an MQTT 5 client is told the
    // maximum packet size at CONNACK and never sends it).
    let lines = [
        weight("w1", 1, json!(330.0)),
        "not json at all".to_string(),
        json!({"seq": 2, "ts": now_ms(), "door": 1, "stable": true, "lanes": []}).to_string(),
        r#"{"id":"nan","seq":3,"ts":1,"door":1,"stable":true,"lanes":[{"lane":1,"grams":NaN}]}"#.to_string(),
        weight("neg", 4, json!(-9000.0)),
        weight("huge", 5, json!(1e12)),
        weight("w2", 6, json!(331.0)),
        weight("w1", 1, json!(330.0)), // a resend of w1: ignored
        format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024)),
        weight("w3", 7, json!(329.0)),
    ];
    let mut args = dev.conn_args(&app, now_ms());
    args.extend(["-V", "mqttv311", "-q", "1", "-t", &dev.topic("up", "weight"), "-l"].map(String::from));
    let r = run("mosquitto_pub", &args, Some(lines.join("\n") + "\n")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    crate::common::eventually(10, "all lines handled", || async {
        (app.platform.metrics().await.unwrap().devices.accepted == 3).then_some(())
    })
    .await;
    assert_eq!(app.platform.metrics().await.unwrap().devices.duplicates, 1);
    assert_eq!(hub_rejected(&app, "malformed").await, 3, "non-JSON, missing id, NaN");
    assert_eq!(hub_rejected(&app, "invalid").await, 2, "negative and absurd grams");
    assert_eq!(refused(&app, "too_large"), 1);
    let samples = app.platform.devices().telemetry().recent(&dev.id, DoorNo::of(1));
    let ids: Vec<_> = samples.iter().map(|s| s.msg_id.as_str()).collect();
    assert_eq!(ids, ["w1", "w2", "w3"]);
    // A seq far behind the latest, with no boot between, is refused (not silently dropped).
    let r = pub_one(&app, &dev, "mqttv5", &dev.topic("up", "weight"), &weight("old", 6000, json!(330.0))).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = pub_one(&app, &dev, "mqttv5", &dev.topic("up", "weight"), &weight("older", 2, json!(330.0))).await;
    assert!(r.stderr.contains("Payload format invalid"), "{}", r.stderr);
    assert_eq!(hub_rejected(&app, "stale_seq").await, 1);
    // After a boot the device may count from 0 again.
    let r = pub_one(&app, &dev, "mqttv5", &dev.topic("up", "boot"), &boot("b1", 0)).await;
    assert_eq!(r.code, 0);
    let r = pub_one(&app, &dev, "mqttv5", &dev.topic("up", "weight"), &weight("fresh", 1, json!(330.0))).await;
    assert_eq!(r.code, 0);
    assert_eq!(hub_rejected(&app, "stale_seq").await, 1);
    let body = reqwest::Client::new()
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("tare_mqtt_refused_total{reason=\"too_large\"} 1"), "{body}");
    assert!(
        body.contains("tare_device_uplinks_rejected_total{reason=\"stale_seq\"} 1"),
        "{body}"
    );
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_reach_the_device_and_time_is_synced() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |_| {}).await;
    for v in VERSIONS {
        // D1: a first boot gets a price label for every lane before anything else.
        let dev = register(&client, "lbl", &format!("d-{}", &v[4..])).await;
        let mut args = dev.conn_args(&app, now_ms());
        args.extend(
            [
                "-V",
                v,
                "-q",
                "1",
                "-t",
                &dev.topic("up", "boot"),
                "-e",
                &dev.topic("down", "cmd"),
                "-m",
                &boot(&format!("boot-{v}"), 0),
                "-W",
                "20",
            ]
            .map(String::from),
        );
        let r = run("mosquitto_rr", &args, None).await;
        assert_eq!(r.code, 0, "{v}: {}", r.stderr);
        let label: Value = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{v}: {e}: {}", r.stdout));
        assert_eq!(label["type"], "set_price_label", "{label}");
        assert_eq!(label["args"], json!({"door": 1, "lane": 1, "price_cents": 350, "name": "Cola"}));
        assert!(label["expires_at"].as_i64().unwrap() > label["ts"].as_i64().unwrap());

        // A command to a connected device: mosquitto_sub waits on the device's down/cmd.
        let dev = register(&client, "cmd", &format!("d-{}", &v[4..])).await;
        let mut args = dev.conn_args(&app, now_ms());
        args.extend(["-V", v, "-q", "1", "-t", &dev.topic("down", "cmd"), "-C", "1", "-W", "20"].map(String::from));
        let waiting = tokio::spawn(async move { run("mosquitto_sub", &args, None).await });
        crate::common::eventually(10, "the device connected and subscribed", || async {
            app.platform.devices().is_attached(&dev.id).then_some(())
        })
        .await;
        let cmd_id = format!("c-{v}");
        let expires = now_ms() + 30_000;
        // Sent until the subscription is in place (held by the endpoint till then).
        app.platform
            .devices()
            .send_door_command(&dev.id, DoorNo::of(1), DoorCommandKind::OpenDoor, &cmd_id, expires)
            .await
            .unwrap();
        let r = waiting.await.unwrap();
        assert_eq!(r.code, 0, "{v}: {}", r.stderr);
        let cmd: Value = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{v}: {e}: {}", r.stdout));
        assert_eq!(cmd["cmd_id"], cmd_id);
        assert_eq!(cmd["type"], "open_door");
        assert_eq!(cmd["args"]["door"], 1);
        assert_eq!(cmd["expires_at"], expires);
        assert!(cmd["ts"].as_i64().unwrap() > 0);
    }
    let dev = register(&client, "cmd", "d-time").await;
    // Time sync: request on up/time, answer on down/time with the server's receive and
    // send times around the device's send time.
    for v in VERSIONS {
        let sent = now_ms();
        let mut args = dev.conn_args(&app, sent);
        args.extend(
            [
                "-V",
                v,
                "-t",
                &dev.topic("up", "time"),
                "-e",
                &dev.topic("down", "time"),
                "-m",
                &msg(&format!("t-{v}"), 1, json!({"device_send_ts": sent})),
                "-W",
                "10",
            ]
            .map(String::from),
        );
        let r = run("mosquitto_rr", &args, None).await;
        assert_eq!(r.code, 0, "{v}: {}", r.stderr);
        let t: Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(t["device_send_ts"], sent);
        let recv = t["server_recv_ts"].as_i64().unwrap();
        let send = t["server_send_ts"].as_i64().unwrap();
        assert!(recv >= sent && send >= recv, "{t}");
    }
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_will_fires_on_a_lost_connection_and_on_keepalive_expiry() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |_| {}).await;
    let dev = register(&client, "will", "d1").await;
    for (round, signal) in ["KILL", "STOP"].iter().enumerate() {
        let mut args = dev.conn_args(&app, now_ms());
        let will = msg(&format!("will-{round}"), 0, json!({"state": "offline"}));
        args.extend(
            [
                "-V",
                "mqttv311",
                "-k",
                "5",
                "-t",
                &dev.topic("up", "boot"),
                // A response topic nothing is sent on: mosquitto_rr exits on its first
                // response, and the price labels a pending cabinet gets on `down/cmd`
                // would end the connection before the signal under load.
                "-e",
                &dev.topic("down", "time"),
                "-m",
                &boot(&format!("boot-{round}"), 0),
                "-W",
                "30",
                "--will-topic",
                &dev.topic("up", "status"),
                "--will-payload",
                &will,
                "--will-qos",
                "1",
                "--will-retain",
            ]
            .map(String::from),
        );
        let mut child = Command::new("mosquitto_rr")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto_rr");
        crate::common::eventually(10, "connected", || async {
            (status(&client, &dev).await == "pending_init" && node(&client, &dev).await == "node-1").then_some(())
        })
        .await;
        // KILL: the socket closes with no DISCONNECT. STOP: the socket stays open but the
        // client falls silent, and the 1.5 × keep-alive deadline (7.5 s) ends it.
        let pid = child.id().unwrap().to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        crate::common::eventually(15, "the will marked the device offline", || async {
            (status(&client, &dev).await == "offline").then_some(())
        })
        .await;
        let _ = child.kill().await;
    }
    let c = &app.mqtt.as_ref().unwrap().endpoint.counters;
    assert_eq!(c.wills_fired.load(Relaxed), 2);
    assert_eq!(c.keepalive_timeouts.load(Relaxed), 1);
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_device_is_slowed_without_losing_messages_or_starving_others() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |cfg| {
        cfg.mqtt_config.rate = tare_gateway::mqtt::RateLimit {
            per_second: 200.0,
            burst: 20.0,
        };
    })
    .await;
    let flooder = register(&client, "fl", "d1").await;
    let calm = register(&client, "fl", "d2").await;
    let n = 600;
    let lines: Vec<String> = (0..n).map(|i| weight(&format!("f{i}"), i + 1, json!(330.0))).collect();
    let mut args = flooder.conn_args(&app, now_ms());
    args.extend(["-V", "mqttv311", "-q", "1", "-t", &flooder.topic("up", "weight"), "-l"].map(String::from));
    let flood = tokio::spawn(async move { run("mosquitto_pub", &args, Some(lines.join("\n") + "\n")).await });
    crate::common::eventually(10, "the flooder is being slowed", || async {
        (refused(&app, "rate_limited") > 0).then_some(())
    })
    .await;
    // While the flooder waits for tokens, another device is served at once.
    let r = pub_one(&app, &calm, "mqttv5", &calm.topic("up", "boot"), &boot("calm", 0)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        app.platform.devices().last_seen(&calm.id).is_some(),
        "the calm device's boot was applied"
    );
    let accepted_so_far = app.platform.metrics().await.unwrap().devices.accepted;
    assert!(accepted_so_far < n + 1, "the calm device was served before the flood ended");
    assert_eq!(flood.await.unwrap().code, 0);
    // Nothing of the flood was lost: every message was eventually accepted.
    crate::common::eventually(20, "every flooded message accepted", || async {
        (app.platform.metrics().await.unwrap().devices.accepted == n + 1).then_some(())
    })
    .await;
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_device_is_shut_out_and_let_back_in() {
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |_| {}).await;
    let dev = register(&client, "dis", "d1").await;
    // Connected and waiting for commands.
    let mut args = dev.conn_args(&app, now_ms());
    args.extend(["-V", "mqttv5", "-t", &dev.topic("down", "cmd"), "-C", "1", "-W", "30"].map(String::from));
    let waiting = tokio::spawn(async move { run("mosquitto_sub", &args, None).await });
    crate::common::eventually(10, "connected", || async {
        app.platform.devices().is_attached(&dev.id).then_some(())
    })
    .await;
    let (st, v) = client
        .put(
            &format!("/api/v1/cabinets/{}/device", dev.id),
            &client.admin,
            &json!({"enabled": false}),
        )
        .await
        .unwrap();
    assert_eq!(st.as_u16(), 200, "{v}");
    // The live connection is closed at once (long before the client's 30 s wait).
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("closed")
        .unwrap();
    assert_ne!(r.code, 0);
    assert!(!app.platform.devices().is_attached(&dev.id));
    // New connections are refused.
    let r = pub_one(&app, &dev, "mqttv5", &dev.topic("up", "boot"), &boot("b1", 0)).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Not authorized"), "{}", r.stderr);
    // (mosquitto_sub's own reconnect attempt is refused too.)
    assert!(refused(&app, "auth_unknown_device") >= 1);
    let (_, c) = client.get(&format!("/api/v1/cabinets/{}", dev.id), &client.admin).await.unwrap();
    assert_eq!(c["device_enabled"], false);
    // Let back in.
    let (st, _) = client
        .put(
            &format!("/api/v1/cabinets/{}/device", dev.id),
            &client.admin,
            &json!({"enabled": true}),
        )
        .await
        .unwrap();
    assert_eq!(st.as_u16(), 200);
    let r = pub_one(&app, &dev, "mqttv5", &dev.topic("up", "boot"), &boot("b2", 0)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Both switches are in the log for auditors.
    let events = app.platform.events_after(0, 10_000).await.unwrap();
    let switches: Vec<bool> = events
        .iter()
        .filter(|e| e.event_type == "DeviceAccessChanged")
        .map(|e| e.payload["DeviceAccessChanged"]["enabled"].as_bool().unwrap())
        .collect();
    assert_eq!(switches, [false, true]);
    // A body that is not the contract's.
    let (st, v) = client
        .put(
            &format!("/api/v1/cabinets/{}/device", dev.id),
            &client.admin,
            &json!({"enabled": "no"}),
        )
        .await
        .unwrap();
    assert_eq!(st.as_u16(), 422, "{v}");
    app.stop().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_before_authentication_are_bounded_apart_from_devices() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = TestStore::new(Store::Sqlite).await;
    let (app, client) = app_with(&store, |c| {
        c.mqtt_config.max_connections = 1;
        c.mqtt_config.max_pending_connects = 2;
    })
    .await;
    let a = register(&client, "cap", "a").await;
    let b = register(&client, "cap", "b").await;
    let addr = app.mqtt.as_ref().unwrap().addr;
    let counters = &app.mqtt.as_ref().unwrap().endpoint.counters;

    // Two idle sockets fill the pool of unauthenticated connections; a third is closed
    // unread.
    let idle = [
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ];
    crate::common::eventually(10, "two pending connections", || async {
        (counters.connections_pending.load(Relaxed) == 2).then_some(())
    })
    .await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed at once: {read:?}");
    assert_eq!(refused(&app, "too_many_pending_connects"), 1);
    drop(idle);
    crate::common::eventually(10, "the idle sockets gone", || async {
        (counters.connections_pending.load(Relaxed) == 0).then_some(())
    })
    .await;

    // A CONNECT over 4 KiB is refused before it is buffered whole.
    let mut big = tokio::net::TcpStream::connect(addr).await.unwrap();
    big.write_all(&[0x10, 0x88, 0x27]).await.unwrap(); // CONNECT, remaining length 5,000
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), big.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    assert_eq!(refused(&app, "connect_too_large"), 1);

    // One device is the capacity: a second is refused before its signature is checked,
    // and the first stays connected.
    let mut args = a.conn_args(&app, now_ms());
    args.extend(["-V", "mqttv311", "-t", &a.topic("down", "cmd")].map(String::from));
    let _sub = Command::new("mosquitto_sub")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub");
    crate::common::eventually(10, "device a connected", || async {
        (counters.connections_accepted.load(Relaxed) == 1).then_some(())
    })
    .await;
    let r = pub_one(&app, &b, "mqttv311", &b.topic("up", "heartbeat"), "{}").await;
    assert_ne!(r.code, 0, "refused at capacity: {}", r.stderr);
    assert_eq!(refused(&app, "at_capacity"), 1);
    assert_eq!(counters.connections_accepted.load(Relaxed), 1);
    app.stop().await;
    store.cleanup().await;
}
