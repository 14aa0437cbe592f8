//! Helpers for scaled-out tests: the library's local cluster ([`tare::local_cluster`]:
//! `tare serve` processes on one PostgreSQL database and one NATS namespace, a shared
//! `tare sandbox` process, free ports) bound to this build's `tare`, and the shoppers
//! that drive it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare::fleet::{Fleet, Purchase};
pub use tare::local_cluster::{delete_namespace, free_port, fresh_namespace, metric, ClusterSpec, Proc, SANDBOX_SECRET};
use tare_domain::DoorNo;

/// The `tare` binary this test build made.
pub fn tare_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tare"))
}

/// The machine's NATS server (overridable).
pub fn nats_url() -> String {
    std::env::var("TARE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Starts `tare args…` and waits until a line containing `ready` is printed.
pub async fn start(args: &[String], env: &[(&str, &str)], ready: &str) -> Proc {
    Proc::start(&tare_exe(), args, env, ready).await.expect("tare starts")
}

/// Starts `tare sandbox` on `port` with the keys in `keys`; a notification whose node
/// does not answer goes to the other `callbacks`.
pub async fn sandbox(port: u16, callbacks: &[String], keys: &std::path::Path) -> Proc {
    tare::local_cluster::sandbox(&tare_exe(), port, callbacks, keys)
        .await
        .expect("tare sandbox starts")
}

/// The `/metrics` text of the node at `base`, read with staff `token`.
pub async fn metrics(base: &str, token: &str) -> String {
    tare::local_cluster::metrics(base, token).await.expect("metrics")
}

#[derive(Default)]
pub struct Ledger {
    /// Every order a shopper created, with the shopper's token.
    pub orders: BTreeMap<String, String>,
    /// Purchases the shopper saw to the end.
    pub done: Vec<Purchase>,
    pub errors: Vec<String>,
}

/// One shopper buying at cabinet `cab` of `fleet` until `stop`.
pub async fn shop(
    fleet: Arc<Fleet>,
    cab: usize,
    phone: String,
    mode: (&'static str, &'static str),
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    count: Arc<AtomicUsize>,
) {
    let shopper = match fleet.new_shopper(&phone, mode.0, mode.1).await {
        Ok(s) => s,
        Err(e) => {
            ledger.lock().unwrap().errors.push(format!("shopper {phone}: {e}"));
            return;
        }
    };
    let mut rng = StdRng::seed_from_u64(phone.parse::<u64>().unwrap_or(1));
    while !stop.load(Ordering::Relaxed) {
        let door = DoorNo::of(rng.random_range(1..=2));
        let takes = fleet.random_takes(&mut rng, cab, door);
        let r = fleet.purchase(&shopper, cab, door, &takes).await;
        // Whatever happened, note every order this shopper has (the API may be gone).
        if let Ok((_, list)) = fleet.client.get("/api/v1/shoppers/me/orders", &shopper.token).await {
            let mut l = ledger.lock().unwrap();
            for o in list["orders"].as_array().into_iter().flatten() {
                if let Some(id) = o["order_id"].as_str() {
                    l.orders.insert(id.to_string(), shopper.token.clone());
                }
            }
        }
        match r {
            Ok(p) => {
                let mut l = ledger.lock().unwrap();
                l.orders.insert(p.order_id.clone(), shopper.token.clone());
                l.done.push(p);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                ledger.lock().unwrap().errors.push(format!("{phone}: {e}"));
                // A scan cut off by an outage may still have made the order (the app
                // would show it): if its door opens, the shopper closes it again.
                for d in 1..=2 {
                    if fleet.cabinets[cab].wait_open(DoorNo::of(d), Duration::from_secs(3)).await {
                        let _ = fleet.cabinets[cab].close(DoorNo::of(d)).await;
                    }
                }
                // This shopper's node may be dead; stop rather than spin.
                if e.to_string().contains("error sending request") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Asserts no sale is in the log twice: one `LaneStockChanged` with a sale reason per
/// (order, cabinet, door, lane). Returns how many sale entries there are.
pub async fn assert_no_sale_twice(pool: &sqlx::PgPool) -> usize {
    let (sales, twice) = tare::soak::checks::sales_recorded_twice(pool).await.expect("the ledger's rows");
    assert!(twice.is_empty(), "sales recorded twice: {twice:?}");
    sales
}
