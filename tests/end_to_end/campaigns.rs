//! Ad and upgrade campaigns end to end over MQTT, on both stores [M5]: an ad set reaches
//! two screens (their rotations change, their plays are counted per ad and cabinet); a
//! firmware upgrade to three cabinets is acked by the two online, takes on the one that
//! reboots, and ends `unknown` on the one away past the expiry (test clock); bad campaigns
//! are refused with the field.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec};
use tare_platform::clock::{ManualClock, PlatformClock};

const T0: i64 = 1_800_000_000_000;

async fn campaign(client: &ApiClient, id: &str) -> Value {
    let (st, c) = client.get(&format!("/api/v1/campaigns/{id}"), &client.admin).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{c}");
    c
}

/// Campaign `id` once `ready` holds of it.
async fn campaign_when(client: &ApiClient, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(20, what, || async {
        let c = campaign(client, id).await;
        ready(&c).then_some(c)
    })
    .await
}

async fn create(client: &ApiClient, body: Value) -> (StatusCode, Value) {
    client.post("/api/v1/campaigns", &client.admin, &body).await.unwrap()
}

async fn campaigns_reach_the_devices_and_report_back(kind: Store) {
    let store = TestStore::new(kind).await;
    let clock = ManualClock::new(T0);
    let mut cfg = config(&store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 3,
        doors: 1,
        pk: "cmp".into(),
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let ids: Vec<String> = fleet.cabinets.iter().map(|c| c.id().to_string()).collect();

    // An ad set to two screens.
    let (st, c) = create(
        client,
        json!({"name": "spring ads", "cabinets": [ids[0], ids[1]], "action": {"kind": "ads",
            "add": [{"ad_id": "a1", "uri": "https://ads.example/a1.mp4"}, {"ad_id": "a2", "uri": "https://ads.example/a2.mp4"}],
            "remove": ["old"]}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(
        (c["kind"].as_str(), c["targets"][0]["commands"].as_array().map(Vec::len)),
        (Some("ads"), Some(3)),
        "{c}"
    );
    let ads = c["campaign_id"].as_str().unwrap().to_string();
    let c = campaign_when(client, &ads, "the ads acked", |c| c["progress"]["done"] == 2).await;
    assert_eq!(c["progress"], json!({"done": 2, "failed": 0, "unknown": 0, "pending": 0}), "{c}");
    for vc in &fleet.cabinets[..2] {
        assert_eq!(vc.ads(), ["a1", "a2"], "the screen's rotation");
    }
    assert!(fleet.cabinets[2].ads().is_empty(), "a cabinet outside the campaign gets nothing");
    let cmd = c["targets"][1]["commands"][2]["cmd_id"].as_str().unwrap();
    let (_, k) = client.get(&format!("/api/v1/commands/{cmd}"), &client.admin).await.unwrap();
    assert_eq!((k["type"].as_str(), k["state"].as_str()), (Some("ad_remove"), Some("done")), "{k}");
    // Plays, per ad and cabinet; a play on a cabinet outside the campaign is not its own.
    fleet.cabinets[0].ad_played("a1", 15_000).await.unwrap();
    fleet.cabinets[0].ad_played("a1", 15_000).await.unwrap();
    fleet.cabinets[1].ad_played("a2", 5_000).await.unwrap();
    fleet.cabinets[2].ad_played("a1", 7_000).await.unwrap();
    let c = campaign_when(client, &ads, "the plays counted", |c| {
        c["plays"]
            .as_array()
            .is_some_and(|p| p.iter().filter_map(|p| p["plays"].as_u64()).sum::<u64>() == 3)
    })
    .await;
    let plays: Vec<(String, String, u64, u64)> = c["plays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ad_id"].as_str().unwrap().to_string(),
                p["cabinet"].as_str().unwrap().to_string(),
                p["plays"].as_u64().unwrap(),
                p["played_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        plays,
        [("a1".into(), ids[0].clone(), 2, 30_000), ("a2".into(), ids[1].clone(), 1, 5_000)],
        "{c}"
    );

    // A firmware upgrade to all three, the third away.
    fleet.cabinets[2].disconnect().await.unwrap();
    let sha = "ab".repeat(32);
    let (st, c) = create(
        client,
        json!({"name": "fw 2.0", "cabinets": ids, "action": {"kind": "upgrade", "component": "fw",
            "version": "vc-2.0", "uri": "https://fw.example/vc-2.0.bin", "sha256": sha}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let fw = c["campaign_id"].as_str().unwrap().to_string();
    let c = campaign_when(client, &fw, "two upgrades acked", |c| c["progress"]["done"] == 2).await;
    assert_eq!(
        c["progress"],
        json!({"done": 2, "failed": 0, "unknown": 0, "pending": 1, "upgraded": 0}),
        "acked is not yet running the new version: {c}"
    );
    assert_eq!(c["targets"][0]["reported_fw"], "vc-1.0", "{c}");
    // The first reboots into the new firmware; the second has not rebooted yet.
    fleet.cabinets[0].reboot().await.unwrap();
    let c = campaign_when(client, &fw, "the reboot reports the version", |c| c["progress"]["upgraded"] == 1).await;
    assert_eq!(
        [
            &c["targets"][0]["upgraded"],
            &c["targets"][1]["upgraded"],
            &c["targets"][2]["upgraded"]
        ],
        [&json!(true), &json!(false), &json!(false)],
        "{c}"
    );
    assert_eq!(c["targets"][0]["reported_fw"], "vc-2.0", "{c}");
    // A day later the third's command expired unanswered.
    clock.advance(25 * 3_600_000);
    let c = campaign_when(client, &fw, "the away cabinet's command expired", |c| c["progress"]["unknown"] == 1).await;
    assert_eq!(c["targets"][2]["commands"][0]["state"], "unknown", "{c}");
    assert_eq!(fleet.cabinets[2].fw(), "vc-1.0", "nothing reached the away cabinet");

    // Bad campaigns: the field and why.
    let bad = |action: Value, cabinets: Value| json!({"name": "x", "cabinets": cabinets, "action": action});
    let upgrade = json!({"kind": "upgrade", "component": "fw", "version": "2", "uri": "https://x", "sha256": sha});
    for (body, status, field) in [
        (bad(upgrade.clone(), json!(["cmp.nope"])), StatusCode::NOT_FOUND, None),
        (
            bad(upgrade.clone(), json!([ids[0], ids[0]])),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("cabinets"),
        ),
        (
            bad(upgrade.clone(), json!(["no-dot"])),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("cabinets[0]"),
        ),
        (
            bad(json!({"kind": "ads"}), json!([ids[0]])),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("action"),
        ),
        (
            bad(
                json!({"kind": "upgrade", "component": "fw", "version": "2", "uri": "https://x", "sha256": "xyz"}),
                json!([ids[0]]),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("action.sha256"),
        ),
    ] {
        let (st, e) = create(client, body.clone()).await;
        assert_eq!(st, status, "{body}: {e}");
        if let Some(field) = field {
            assert_eq!(e["error"]["field"], field, "{body}: {e}");
        }
    }
    let (st, e) = client.get("/api/v1/campaigns/cpnone", &client.admin).await.unwrap();
    assert_eq!((st, &e["error"]["code"]), (StatusCode::NOT_FOUND, &json!("campaign_not_found")));
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(campaigns, campaigns_reach_the_devices_and_report_back);

/// A tagged body's tag must be one of its names: serde alone would read a number as the
/// index of a variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_number_is_not_a_tag() {
    let store = TestStore::new(Store::Sqlite).await;
    let app = App::start(config(&store)).await.expect("app");
    let client = ApiClient::new(&app.base_url, &app.admin_token);
    let (st, e) = client
        .post(
            "/api/v1/campaigns",
            &app.admin_token,
            &json!({"name": "x", "cabinets": ["a.b"], "action": {"kind": 0, "remove": ["a"]}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (st, &e["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("action.kind")),
        "{e}"
    );
    let (st, e) = client
        .post(
            "/api/v1/dead-letters/charges/o1/settle",
            &app.admin_token,
            &json!({"resolution": 1, "note": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (st, &e["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("resolution")),
        "{e}"
    );
    app.stop().await;
    store.cleanup().await;
}
