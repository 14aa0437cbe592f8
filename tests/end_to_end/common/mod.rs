//! Shared helpers for the end-to-end tests: an app per test on a fresh store (an SQLite
//! file in a temporary directory, or a scratch PostgreSQL database on the machine's
//! server), with typed request helpers. Every test runs against both stores.

#![allow(dead_code)]

use std::path::PathBuf;
use tare::app::{App, AppConfig};
use tare_platform::StoreConfig;

/// The PostgreSQL server the tests use (a scratch database per test is made on it).
pub fn postgres_admin_url() -> String {
    std::env::var("TARE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// A fresh store; dropped (directory removed / database dropped) by [`TestStore::cleanup`].
pub struct TestStore {
    pub config: StoreConfig,
    /// The provider keys of the apps on this store (kept across their restarts, as a
    /// deployment keeps its keys).
    pub keys: PathBuf,
    dir: Option<PathBuf>,
    pg_url: Option<String>,
}

impl TestStore {
    pub async fn new(kind: Store) -> Self {
        match kind {
            Store::Sqlite => {
                let dir = std::env::temp_dir().join(format!("tare-test-{}", uuid::Uuid::new_v4().simple()));
                Self {
                    config: StoreConfig::Sqlite(dir.clone()),
                    keys: dir.join("keys"),
                    dir: Some(dir),
                    pg_url: None,
                }
            }
            Store::Postgres => {
                let url = tare_platform::db::create_scratch_postgres(&postgres_admin_url(), "tare_test")
                    .await
                    .expect("scratch database");
                Self {
                    config: StoreConfig::Postgres(url.clone()),
                    keys: std::env::temp_dir().join(format!("tare-test-keys-{}", uuid::Uuid::new_v4().simple())),
                    dir: None,
                    pg_url: Some(url),
                }
            }
        }
    }

    pub async fn cleanup(self) {
        if let Some(d) = self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_dir_all(&self.keys);
        if let Some(url) = self.pg_url {
            let _ = tare_platform::db::drop_scratch_postgres(&postgres_admin_url(), &url).await;
        }
    }
}

/// An app config on `store` with a zero stable-weight wait (tests that need the wait
/// set it themselves).
pub fn config(store: &TestStore) -> AppConfig {
    let mut cfg = AppConfig::embedded(std::env::temp_dir());
    cfg.store = store.config.clone();
    cfg.keys = Some(store.keys.clone());
    cfg.saga.stable_wait_ms = 0;
    // Many tests share the server's 100 connections.
    cfg.pg_max_connections = 4;
    cfg
}

pub async fn start(store: &TestStore) -> App {
    App::start(config(store)).await.expect("app starts")
}

/// Polls `f` until it returns `Some`, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Defines `sqlite` and `postgres` variants of an async test body taking a [`Store`].
macro_rules! on_both_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::common::Store::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($crate::common::Store::Postgres).await
            }
        }
    };
}
pub mod cluster;

/// Serializes the heaviest tests (several processes, private servers, a thousand
/// connections): in one test binary they would otherwise run side by side on two cores
/// and time each other out. Hold the guard for the whole test.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// An app on a fresh store with a fleet provisioned on it (products, cabinets connected
/// and online): the setup most black-box tests share. [`Harness::stop`] stops the app
/// and drops the store.
pub struct Harness {
    /// The running app.
    pub app: tare::app::App,
    /// Its fleet.
    pub fleet: tare::fleet::Fleet,
    store: TestStore,
}

impl Harness {
    /// Starts an app on a fresh `kind` store and provisions `spec` on it.
    pub async fn start(kind: Store, spec: tare::fleet::FleetSpec) -> Self {
        let store = TestStore::new(kind).await;
        let app = start(&store).await;
        let fleet = tare::fleet::Fleet::provision(&app, &spec).await.expect("fleet provisioned");
        Self { app, fleet, store }
    }

    /// Stops the app and drops its store.
    pub async fn stop(self) {
        self.app.stop().await;
        self.store.cleanup().await;
    }
}

/// Empties `lane` of `door` the way an operator does: a restock session in which every
/// item of the lane is taken out, counted by the weights and booked. Returns the
/// restock's record once it is done.
pub async fn empty_lane(fleet: &tare::fleet::Fleet, cabinet: usize, door: u8, lane: u8) -> serde_json::Value {
    let client = &fleet.client;
    let vc = &fleet.cabinets[cabinet];
    let cab = vc.id().to_string();
    let (d, l) = (tare_domain::DoorNo::of(door), tare_domain::LaneNo::of(lane));
    let (st, r) = eventually(20, "the door free for a restock", || async {
        let (st, r) = client
            .post(
                &format!("/api/v1/cabinets/{cab}/restocks"),
                &client.admin,
                &serde_json::json!({"door": door}),
            )
            .await
            .ok()?;
        (st != reqwest::StatusCode::CONFLICT).then_some((st, r))
    })
    .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{r}");
    let restock_id = r["restock_id"].as_str().unwrap().to_string();
    assert!(
        vc.wait_open(d, std::time::Duration::from_secs(10)).await,
        "the restock opened the door"
    );
    let on_lane = vc.counts()[&(d, l)];
    vc.take(d, l, on_lane).await.unwrap();
    vc.close(d).await.unwrap();
    let done = eventually(20, "the restock counted", || async {
        let (_, r) = client.get(&format!("/api/v1/restocks/{restock_id}"), &client.admin).await.ok()?;
        (r["state"] == "done").then_some(r)
    })
    .await;
    // The session frees its door right after booking the counts.
    eventually(20, "the restocked door free", || async {
        let (_, c) = client.get(&format!("/api/v1/cabinets/{cab}"), &client.admin).await.ok()?;
        let d = c["doors"].as_array()?.iter().find(|d| d["door"] == door)?.clone();
        d["held_by"].is_null().then_some(())
    })
    .await;
    done
}

/// Runs device command `body` on cabinet `cab` to its end; returns the command's record.
pub async fn run_command(client: &tare::fleet::ApiClient, cab: &str, body: serde_json::Value) -> serde_json::Value {
    let (st, v) = eventually(20, "the door free for the command", || async {
        let (st, v) = client
            .post(&format!("/api/v1/cabinets/{cab}/commands"), &client.admin, &body)
            .await
            .ok()?;
        (v["error"]["code"] != "cabinet_busy").then_some((st, v))
    })
    .await;
    assert_eq!(st, reqwest::StatusCode::ACCEPTED, "{body}: {v}");
    let cmd_id = v["cmd_id"].as_str().unwrap().to_string();
    eventually(20, "the command done", || async {
        let (_, c) = client.get(&format!("/api/v1/commands/{cmd_id}"), &client.admin).await.ok()?;
        ["done", "failed", "unknown"].contains(&c["state"].as_str()?).then_some(c)
    })
    .await
}

/// Calibrates an empty lane as M1 says: tare, then the standard weight. Returns the
/// calibrate command's record.
pub async fn calibrate_lane(client: &tare::fleet::ApiClient, cab: &str, door: u8, lane: u8, standard_grams: f64) -> serde_json::Value {
    let tare = run_command(
        client,
        cab,
        serde_json::json!({"type": "tare", "args": {"door": door, "lane": lane}}),
    )
    .await;
    assert_eq!(tare["state"], "done", "{tare}");
    // The tare is recorded on the lane when its door is freed.
    let body = serde_json::json!({"type": "calibrate", "args": {"door": door, "lane": lane, "standard_grams": standard_grams}});
    eventually(20, "the tare recorded", || async {
        let (st, v) = client
            .post(&format!("/api/v1/cabinets/{cab}/commands"), &client.admin, &body)
            .await
            .ok()?;
        if st != reqwest::StatusCode::ACCEPTED {
            return None;
        }
        let cmd_id = v["cmd_id"].as_str()?.to_string();
        eventually(20, "the calibration done", || async {
            let (_, c) = client.get(&format!("/api/v1/commands/{cmd_id}"), &client.admin).await.ok()?;
            ["done", "failed", "unknown"].contains(&c["state"].as_str()?).then_some(c)
        })
        .await
        .into()
    })
    .await
}
