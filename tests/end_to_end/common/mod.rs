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
