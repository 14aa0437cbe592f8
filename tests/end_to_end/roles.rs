//! Roles by flag [issue 4]: a node serves what its roles say — here a worker-only node
//! (sagas, projections) has no MQTT endpoint, no public API and no HTTP device API, but
//! still its metrics — and bad role or mode flags are refused with the reason.

use crate::common::{config, Store, TestStore};
use tare::app::App;
use tare_platform::Roles;

#[tokio::test]
async fn a_worker_node_serves_no_api_and_holds_no_devices() {
    let store = TestStore::new(Store::Sqlite).await;
    let mut cfg = config(&store);
    cfg.roles = Roles::parse("sagas,projections").expect("roles");
    let app = App::start(cfg).await.expect("app");
    assert!(app.mqtt.is_none(), "no device endpoint without the gateway role");
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/api/v1/orders/x", app.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("roles: sagas,projections"),
        "{body}"
    );
    let r = http
        .post(format!("{}/device/v1/up/heartbeat", app.base_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no HTTP device API without the gateway role");
    let r = http
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{}/metrics", app.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 401, "metrics need a staff token");
    app.stop().await;
    store.cleanup().await;
}

#[test]
fn roles_parse_and_refuse_unknown_ones() {
    assert_eq!(Roles::parse("all").unwrap(), Roles::ALL);
    let r = Roles::parse("gateway,api").unwrap();
    assert!(r.gateway && r.api && !r.sagas && !r.projections);
    assert_eq!(r.to_string(), "gateway,api");
    assert!(Roles::parse("gateway,cron").unwrap_err().contains("\"cron\""));
    assert!(Roles::parse("").is_err());
}

#[tokio::test]
async fn scaled_out_flags_are_checked() {
    let run = |args: &'static [&'static str]| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tare"))
            .args(args)
            .env_remove("TARE_POSTGRES_URL")
            .output()
            .await
            .expect("tare runs")
    };
    // NATS without PostgreSQL: refused by the argument parser, naming the missing flag.
    let out = run(&["serve", "--nats", "nats://127.0.0.1:4222"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--postgres"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["serve", "--roles", "gateway,cron"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cron"));
    let out = run(&["serve", "--node", "bad.name"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node"));
}

#[tokio::test]
async fn help_never_shows_a_secret_from_the_environment() {
    for args in [&["serve", "--help"][..], &["migrate", "--help"][..], &["replay", "--help"][..]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tare"))
            .args(args)
            .env("TARE_POSTGRES_URL", "postgres://tare:pg-s3cret@db.example/tare")
            .env("TARE_NATS_URL", "nats://tare:nats-s3cret@nats.example:4222")
            .env("TARE_ALERT_WEBHOOK", "https://hooks.example/T0/hook-s3cret")
            .env("TARE_ADMIN_TOKEN", "admin-s3cret")
            .output()
            .await
            .expect("tare runs");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && help.contains("TARE_POSTGRES_URL"), "{args:?}: {help}");
        assert!(!help.contains("s3cret"), "{args:?} shows a secret:\n{help}");
    }
}
