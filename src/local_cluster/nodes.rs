//! `tare serve` nodes of one cluster (one PostgreSQL database, one NATS namespace) and
//! the `tare sandbox` they share, as child processes; reading their metrics.

use super::processes::Proc;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A fresh NATS namespace (subjects and stream names of its own).
pub fn fresh_namespace() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// One `tare serve` node of a cluster.
pub struct Node {
    /// Its process.
    pub proc: Proc,
    /// `--node`.
    pub name: String,
    /// `http://127.0.0.1:port` of its API.
    pub http: String,
    /// Its MQTT device endpoint.
    pub mqtt: SocketAddr,
}

/// What the nodes of one cluster share.
#[derive(Clone)]
pub struct ClusterSpec {
    /// The `tare` binary the nodes run.
    pub exe: PathBuf,
    /// The database.
    pub pg_url: String,
    /// The NATS server.
    pub nats_url: String,
    /// The NATS namespace (stream and subject names).
    pub namespace: String,
    /// `TARE_ADMIN_TOKEN`.
    pub admin_token: String,
    /// The shared `tare sandbox` (`serve --payments`).
    pub sandbox_url: String,
    /// The provider keys every node and the sandbox share.
    pub keys: PathBuf,
}

impl ClusterSpec {
    /// Starts node `name` on the given loopback ports, with `extra` flags.
    pub async fn node(&self, name: &str, http_port: u16, mqtt_port: u16, extra: &[&str]) -> anyhow::Result<Node> {
        let http = format!("127.0.0.1:{http_port}");
        let mqtt = format!("127.0.0.1:{mqtt_port}");
        let keys = self.keys.display().to_string();
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
            &keys,
            "--pg-connections",
            "6",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::start(&self.exe, &args, &[("TARE_ADMIN_TOKEN", &self.admin_token)], "listening").await?;
        Ok(Node {
            proc,
            name: name.to_string(),
            http: format!("http://{http}"),
            mqtt: mqtt.parse()?,
        })
    }
}

/// Starts `exe sandbox` on `port` with the provider keys in `keys` and [`SANDBOX_SECRET`];
/// a notification whose node does not answer goes to the other `callbacks`.
pub async fn sandbox(exe: &Path, port: u16, callbacks: &[String], keys: &Path) -> anyhow::Result<Proc> {
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
    Proc::start(exe, &args, &[], "sandbox listening").await
}

/// The secret the cluster's `tare sandbox` wants on a confirm tap and a behaviour change.
pub const SANDBOX_SECRET: &str = "test-sandbox-secret";

/// Deletes namespace `ns`'s streams from the NATS server at `url`.
pub async fn delete_namespace(url: &str, ns: &str) {
    let mut cfg = tare_platform::cluster::NatsConfig::new(url);
    cfg.namespace = ns.to_string();
    if let Ok(n) = tare_platform::cluster::Nats::connect(&cfg).await {
        let _ = n.delete_streams().await;
    }
}

/// A number from a Prometheus text page (0 when it is not there).
pub fn metric(page: &str, name: &str) -> i64 {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The `/metrics` text of the node at `base`, read with staff `token`.
pub async fn metrics(base: &str, token: &str) -> anyhow::Result<String> {
    Ok(reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await?
        .text()
        .await?)
}
