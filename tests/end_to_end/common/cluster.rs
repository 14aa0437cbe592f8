//! Helpers for scaled-out tests: `tare serve` processes on one PostgreSQL database and
//! one NATS namespace, a shared `tare sandbox` process, free ports, and reading what
//! the processes print.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare::fleet::{Fleet, Purchase};
use tare_domain::DoorNo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A free loopback port (bound then released; the process that gets it binds it again).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A fresh NATS namespace (subjects and stream names of its own).
pub fn fresh_namespace() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The machine's NATS server (overridable).
pub fn nats_url() -> String {
    std::env::var("TARE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A child process whose output is drained (and kept for failure messages).
pub struct Proc {
    pub child: Child,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `tare args…` and waits until a line containing `ready` is printed.
    pub async fn start(args: &[String], env: &[(&str, &str)], ready: &str) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tare"));
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("tare starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (log, tx) = (log.clone(), tx.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let _ = tx.send(l.clone());
                    let mut g = log.lock().unwrap();
                    if g.len() < 5000 {
                        g.push(l);
                    }
                }
            });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(l)) if l.contains(ready) => break,
                Ok(Some(_)) => {}
                _ => panic!("{args:?} did not print {ready:?}: {:?}", log.lock().unwrap()),
            }
        }
        Self { child, log }
    }

    /// kill -9.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }

    /// The last lines it printed.
    pub fn tail(&self) -> String {
        let g = self.log.lock().unwrap();
        g.iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// One `tare serve` node of a cluster.
pub struct Node {
    pub proc: Proc,
    pub name: String,
    pub http: String,
    pub mqtt: SocketAddr,
}

/// What the nodes of one cluster share.
#[derive(Clone)]
pub struct ClusterSpec {
    pub pg_url: String,
    pub nats_url: String,
    pub namespace: String,
    pub admin_token: String,
    pub sandbox_url: String,
    /// The provider keys every node and the sandbox share.
    pub keys: std::path::PathBuf,
}

impl ClusterSpec {
    /// Starts node `name` on the given ports.
    pub async fn node(&self, name: &str, http_port: u16, mqtt_port: u16, extra: &[&str]) -> Node {
        let http = format!("127.0.0.1:{http_port}");
        let mqtt = format!("127.0.0.1:{mqtt_port}");
        let mut args: Vec<String> = [
            "serve",
            "--postgres",
            &self.pg_url,
            "--nats",
            &self.nats_url,
            "--nats-namespace",
            &self.namespace,
            "--node",
            name,
            "--http",
            &http,
            "--mqtt",
            &mqtt,
            "--payments",
            &self.sandbox_url,
            "--keys",
            &self.keys.display().to_string(),
            "--pg-connections",
            "6",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::start(&args, &[("TARE_ADMIN_TOKEN", &self.admin_token)], "listening").await;
        Node {
            proc,
            name: name.to_string(),
            http: format!("http://{http}"),
            mqtt: mqtt.parse().expect("addr"),
        }
    }
}

/// The secret the tests' `tare sandbox` wants on a confirm tap.
pub const SANDBOX_SECRET: &str = "test-sandbox-secret";

/// Starts `tare sandbox` on `port` with the keys in `keys`; a notification whose node
/// does not answer goes to the other `callbacks`.
pub async fn sandbox(port: u16, callbacks: &[String], keys: &std::path::Path) -> Proc {
    let args: Vec<String> = vec![
        "sandbox".into(),
        "--secret".into(),
        SANDBOX_SECRET.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--keys".into(),
        keys.display().to_string(),
        "--callback".into(),
        callbacks.join(","),
    ];
    Proc::start(&args, &[], "sandbox listening").await
}

/// Deletes namespace `ns`'s streams from the NATS server at `url`.
pub async fn delete_namespace(url: &str, ns: &str) {
    let mut cfg = tare_platform::cluster::NatsConfig::new(url);
    cfg.namespace = ns.to_string();
    if let Ok(n) = tare_platform::cluster::Nats::connect(&cfg).await {
        let _ = n.delete_streams().await;
    }
}

/// A number from a Prometheus text page.
pub fn metric(page: &str, name: &str) -> i64 {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The `/metrics` text of the node at `base`, read with staff `token`.
pub async fn metrics(base: &str, token: &str) -> String {
    reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
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
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_id, payload::text FROM events WHERE aggregate_type = 'cabinet' AND event_type = 'LaneStockChanged'",
    )
    .fetch_all(pool)
    .await
    .expect("ledger rows");
    let mut sales = std::collections::BTreeSet::new();
    for (cab, payload) in &rows {
        let v: serde_json::Value = serde_json::from_str(payload).expect("event json");
        let e = &v["LaneStockChanged"];
        if let Some(order) = e["reason"]["Sale"]["order_id"].as_str() {
            assert!(
                sales.insert((order.to_string(), cab.clone(), e["door"].to_string(), e["lane"].to_string())),
                "sale recorded twice: {order} {cab} {e}"
            );
        }
    }
    sales.len()
}

impl Proc {
    /// Sends `signal` (`TERM`, `INT`, …) to the process, as `docker stop` or a terminal would.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process is running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Whether it printed a line containing `text`.
    pub fn printed(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }
}
