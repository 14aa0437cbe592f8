//! `tare bench purchase`: complete purchases per second with the platform in a process
//! of its own (`tare serve`, as deployed) and this process as everything outside it —
//! the cabinets over MQTT, the shoppers over HTTP, and the payment providers (the
//! sandboxes, on a listener of this process, as `tare sandbox` would serve them).
//!
//! Per store it runs the fleet flat out (the peak), then again paced at half that rate
//! (where latency is judged), and reports: purchases/s, events/s, the store's raw rate of
//! inserting the same event rows ten to a statement (the baseline, measured in the same
//! run with the platform stopped) and the ratio, p50/p99 of every saga step (from the
//! events' own times), the platform's CPU per purchase and its peak RSS. Every order must
//! end, every charge must equal what the shoppers took, and no order may be collected
//! twice, or the run is reported inconsistent.

use crate::bench::{audit_sandbox_charges, run_purchases_paced};
use crate::fleet::{Fleet, FleetSpec, FleetTarget, FleetTransport};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tare_platform::feed::{Feed, FeedEvent};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What to run.
#[derive(Debug, Clone)]
pub struct PurchaseBench {
    /// Purchases at the peak, per store (the half-rate run makes half as many).
    pub orders: usize,
    /// Cabinets buying at once.
    pub cabinets: usize,
    /// PostgreSQL server for the PostgreSQL run (a scratch database is made and dropped).
    pub postgres_admin: String,
    /// Skip PostgreSQL.
    pub sqlite_only: bool,
    /// Skip SQLite.
    pub postgres_only: bool,
    /// Also run scaled out (PostgreSQL + NATS JetStream) on this many nodes each, one
    /// run per entry (e.g. 1, 2, 3), the fleet spread over the nodes.
    pub scaled_out: Vec<usize>,
    /// NATS server for the scaled-out runs (fresh streams, deleted after).
    pub nats: String,
    /// Print one JSON object instead of tables.
    pub json: bool,
}

/// One store's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreFigures {
    /// `sqlite`, `postgres`, or `scaled_out_N` (N nodes on PostgreSQL + NATS JetStream).
    pub store: String,
    /// Complete purchases a second at the peak.
    pub purchases_per_s: f64,
    /// Events the purchases appended, each.
    pub events_per_purchase: f64,
    /// Events appended a second at the peak.
    pub events_per_s: f64,
    /// The same rows inserted ten to a statement, a second (the baseline).
    pub batched_inserts_per_s: f64,
    /// `events_per_s ÷ batched_inserts_per_s`.
    pub ratio: f64,
    /// The platform processes' CPU (user + system, every node's) per purchase at the
    /// peak, ms.
    pub cpu_ms_per_purchase: f64,
    /// This process's (driver and providers) CPU per purchase at the peak, ms.
    pub driver_cpu_ms_per_purchase: f64,
    /// The platform process's peak resident memory (the largest node's), MiB.
    pub peak_rss_mib: f64,
    /// The paced run's rate (half the peak), purchases/s.
    pub half_rate_purchases_per_s: f64,
    /// Saga steps at half the peak rate, p50 and p99 in ms: the named spans (`A ⇒ B`,
    /// first A to the first B after it) then every pair of consecutive events (`A → B`).
    pub steps: Vec<StepFigures>,
    /// Door closed (the device's message) → charge requested, p99 at half the peak, ms
    /// (the stable-weight wait is zero in this benchmark).
    pub close_to_charge_p99_ms: f64,
    /// Every order ended, charges exact, nobody collected twice, in both runs.
    pub consistent: bool,
}

/// One saga step's latency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepFigures {
    /// `EventA → EventB`.
    pub step: String,
    /// Orders in which it was seen.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// Runs the benchmark on SQLite, then PostgreSQL.
pub async fn run(b: PurchaseBench) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    if !b.postgres_only {
        rows.push(on_store(&b, &Store::Sqlite).await?);
    }
    if !b.sqlite_only {
        let url = tare_platform::db::create_scratch_postgres(&b.postgres_admin, "tare_bench").await?;
        let r = on_store(&b, &Store::Postgres(&url)).await;
        if std::env::var_os("TARE_BENCH_KEEP").is_some() {
            eprintln!("postgres: the store is kept in {url}");
        } else {
            tare_platform::db::drop_scratch_postgres(&b.postgres_admin, &url).await?;
        }
        rows.push(r?);
    }
    for &nodes in &b.scaled_out {
        let url = tare_platform::db::create_scratch_postgres(&b.postgres_admin, "tare_bench").await?;
        let ns = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let cluster = Cluster {
            postgres: url.clone(),
            nats: b.nats.clone(),
            namespace: ns.clone(),
            nodes: nodes.max(1),
        };
        let r = on_store(&b, &Store::ScaledOut(&cluster)).await;
        tare_platform::db::drop_scratch_postgres(&b.postgres_admin, &url).await?;
        let mut cfg = tare_platform::cluster::NatsConfig::new(b.nats.clone());
        cfg.namespace = ns;
        if let Ok(n) = tare_platform::cluster::Nats::connect(&cfg).await {
            let _ = n.delete_streams().await;
        }
        rows.push(r?);
    }
    if b.json {
        println!("{}", as_json(&rows, &b));
    } else {
        print_tables(&rows, &b);
    }
    Ok(())
}

fn as_json(rows: &[StoreFigures], b: &PurchaseBench) -> serde_json::Value {
    let mut out = serde_json::json!({"orders": b.orders, "cabinets": b.cabinets});
    for r in rows {
        out[r.store.as_str()] = serde_json::to_value(r).unwrap_or_default();
    }
    out
}

fn print_tables(rows: &[StoreFigures], b: &PurchaseBench) {
    println!(
        "\n## tare bench purchase ({} purchases at the peak, {} cabinets over MQTT, platform in its own process, zero stable-weight wait)\n",
        b.orders, b.cabinets
    );
    println!("| store | purchases/s | events/s ÷ batched inserts/s | events/purchase | batched inserts/s | platform CPU ms/purchase | driver CPU ms/purchase | platform peak RSS MiB | close→charge p99 ms (at half rate) | outcome |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} | {:.3} | {:.1} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} (at {:.0}/s) | {} |",
            r.store,
            r.purchases_per_s,
            r.ratio,
            r.events_per_purchase,
            r.batched_inserts_per_s,
            r.cpu_ms_per_purchase,
            r.driver_cpu_ms_per_purchase,
            r.peak_rss_mib,
            r.close_to_charge_p99_ms,
            r.half_rate_purchases_per_s,
            if r.consistent {
                "all terminal, charges exact, no double charge"
            } else {
                "INCONSISTENT"
            }
        );
    }
    for r in rows {
        println!("\n### {}: saga steps at half the peak rate (ms)\n", r.store);
        println!("| step | orders | p50 | p99 |");
        println!("|---|---|---|---|");
        for s in &r.steps {
            println!("| {} | {} | {:.0} | {:.0} |", s.step, s.count, s.p50_ms, s.p99_ms);
        }
    }
}

/// Where a run's platform keeps its store.
enum Store<'a> {
    /// The embedded default.
    Sqlite,
    /// One PostgreSQL node.
    Postgres(&'a str),
    /// PostgreSQL and NATS JetStream, several nodes.
    ScaledOut(&'a Cluster),
}

impl Store<'_> {
    fn name(&self) -> String {
        match self {
            Store::Sqlite => "sqlite".into(),
            Store::Postgres(_) => "postgres".into(),
            Store::ScaledOut(c) => format!("scaled_out_{}", c.nodes),
        }
    }

    fn postgres(&self) -> Option<&str> {
        match self {
            Store::Sqlite => None,
            Store::Postgres(url) => Some(url),
            Store::ScaledOut(c) => Some(&c.postgres),
        }
    }

    fn nodes(&self) -> usize {
        match self {
            Store::ScaledOut(c) => c.nodes,
            _ => 1,
        }
    }
}

/// A scaled-out run's servers.
struct Cluster {
    postgres: String,
    nats: String,
    namespace: String,
    nodes: usize,
}

/// The platform as a child process.
struct Platform {
    child: tokio::process::Child,
    pid: u32,
    base_url: String,
    mqtt: std::net::SocketAddr,
}

impl Platform {
    /// Starts `tare serve` on free ports and waits for its `listening` line.
    async fn start(data: &Path, keys: &Path, payments: &str, store: &Store<'_>, node: usize, token: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the tare executable")?;
        // Real ports, not 0: the providers call back at the address the node is given.
        let (http, mqtt) = (free_port()?, free_port()?);
        let mut cmd = tokio::process::Command::new(exe);
        // One process plays every shopper and the fleet's installer from one address:
        // the per-client rate is the edge's guard against abuse, not what is measured.
        cmd.args(["serve", "--stable-wait-ms", "0", "--http-rate-per-client", "0"])
            .args(["--http", &format!("127.0.0.1:{http}"), "--mqtt", &format!("127.0.0.1:{mqtt}")])
            .arg("--data")
            .arg(data)
            .arg("--keys")
            .arg(keys)
            .args(["--payments", payments])
            .env("TARE_ADMIN_TOKEN", token)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = store.postgres() {
            cmd.args(["--postgres", url, "--pg-connections", "16"]);
        }
        if let Store::ScaledOut(c) = store {
            cmd.args([
                "--nats",
                &c.nats,
                "--nats-namespace",
                &c.namespace,
                "--node",
                &format!("node{node}"),
            ]);
        }
        let mut child = cmd.spawn().context("starting tare serve")?;
        let pid = child.id().context("the platform's pid")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(l) = lines.next_line().await? {
                if l.starts_with("listening ") {
                    return anyhow::Ok(l);
                }
            }
            bail!("tare serve exited before listening")
        })
        .await
        .context("tare serve did not start within 60 s")??;
        // Keep draining its output so it never blocks on a full pipe (shown with
        // `RUST_LOG` set).
        let show = std::env::var_os("RUST_LOG").is_some();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if show {
                    eprintln!("platform: {l}");
                }
            }
        });
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_string)
                .with_context(|| format!("`{k}` in {line}"))
        };
        Ok(Self {
            child,
            pid,
            base_url: format!("http://{}", field("http=")?),
            mqtt: field("mqtt=")?.parse().context("mqtt address")?,
        })
    }

    /// User + system CPU seconds so far.
    fn cpu_s(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// Peak resident memory (VmHWM), MiB.
    fn peak_rss_mib(&self) -> f64 {
        proc_kib(&format!("/proc/{}/status", self.pid), "VmHWM") / 1024.0
    }

    /// SIGTERM, then waits for the exit (a kill after 30 s).
    async fn stop(mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// A port free on loopback now (the kernel's pick for a listener that is then closed).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `utime + stime` of a `/proc/…/stat` file, seconds.
fn cpu_seconds(stat: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(stat) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / clock_ticks_per_s()
}

fn clock_ticks_per_s() -> f64 {
    // Linux has reported USER_HZ = 100 to user space on every architecture since 2.6.
    100.0
}

fn proc_kib(status: &str, field: &str) -> f64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// The feed's head from the platform's `/metrics`.
async fn feed_head(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<i64> {
    let page = client
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await?
        .text()
        .await?;
    page.lines()
        .find_map(|l| l.strip_prefix("tare_feed_head_position "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
        .context("tare_feed_head_position in /metrics")
}

async fn on_store(b: &PurchaseBench, store: &Store<'_>) -> anyhow::Result<StoreFigures> {
    let name = store.name();
    let dir = std::env::temp_dir().join(format!("tare-bench-{}", uuid::Uuid::new_v4().simple()));
    let r = on_store_in(b, store, &dir).await;
    if std::env::var_os("TARE_BENCH_KEEP").is_some() {
        eprintln!("{name}: the store is kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

async fn on_store_in(b: &PurchaseBench, store: &Store<'_>, dir: &Path) -> anyhow::Result<StoreFigures> {
    let name = store.name();
    let keys_dir: PathBuf = dir.join("keys");
    let keys = tare_providers::keys::ProviderKeys::load_or_generate(&keys_dir).context("provider keys")?;
    // The providers: this process, on a listener of its own.
    let sandboxes = crate::app::sandboxes(&keys)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sandbox_url = format!("http://{}", listener.local_addr()?);
    let sandbox_secret = crate::app::random_token();
    let router = tare_gateway::sandbox_service::router(&sandboxes, &sandbox_secret);
    let provider = tokio::spawn(async move { axum::serve(listener, router).await });
    let token = crate::app::random_token();
    let mut nodes = Vec::new();
    for node in 1..=store.nodes() {
        let data = dir.join(format!("node{node}"));
        nodes.push(Platform::start(&data, &keys_dir, &sandbox_url, store, node, &token).await?);
    }
    let platform = &nodes[0];
    let target = FleetTarget {
        base_url: platform.base_url.clone(),
        admin_token: token.clone(),
        mqtt: Some(platform.mqtt),
        clock: tare_platform::clock::PlatformClock::System,
        hub: None,
        sandbox_secret: Some(sandbox_secret.clone()),
    };
    let spec = FleetSpec {
        cabinets: b.cabinets,
        // The largest stock whose load-cell tolerance still tells the lightest item apart.
        capacity: 40,
        pk: "bench".into(),
        transport: FleetTransport::Mqtt,
        more_nodes: nodes[1..]
            .iter()
            .map(|n| crate::fleet::FleetNode {
                base_url: n.base_url.clone(),
                mqtt: n.mqtt,
            })
            .collect(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision_at(&target, &spec).await?);
    eprintln!("{name}: {} cabinets online over MQTT", fleet.cabinets.len());
    let http = reqwest::Client::new();

    // The peak: every cabinet buying, one purchase after another.
    let head0 = feed_head(&http, &platform.base_url, &token).await?;
    let cpu = || nodes.iter().map(Platform::cpu_s).sum::<f64>();
    let (cpu0, driver0) = (cpu(), cpu_seconds("/proc/self/stat"));
    let started = Instant::now();
    let mut peak = run_purchases_paced(&fleet, b.orders, 42, None).await?;
    let secs = started.elapsed().as_secs_f64();
    let (cpu1, driver1) = (cpu(), cpu_seconds("/proc/self/stat"));
    let head1 = feed_head(&http, &platform.base_url, &token).await?;
    audit_sandbox_charges(&sandboxes, &mut peak);
    eprintln!("{name} (peak): {peak}");
    let purchases_per_s = b.orders as f64 / secs;

    // Half the peak rate, paced: where the latency of each step is judged.
    let half_rate = purchases_per_s / 2.0;
    let half_orders = (b.orders / 2).max(1);
    let started = Instant::now();
    let mut half = run_purchases_paced(&fleet, half_orders, 43, Some(half_rate)).await?;
    let half_secs = started.elapsed().as_secs_f64();
    let head2 = feed_head(&http, &platform.base_url, &token).await?;
    audit_sandbox_charges(&sandboxes, &mut half);
    eprintln!("{name} (half rate): {half}");
    let peak_rss_mib = nodes.iter().map(Platform::peak_rss_mib).fold(0.0, f64::max);
    for c in &fleet.cabinets {
        let _ = c.disconnect().await;
    }
    for node in nodes {
        node.stop().await;
    }
    provider.abort();

    // The platform stopped: read its log and measure the store's raw rate.
    let db = match store.postgres() {
        Some(url) => tare_platform::db::Db::open_postgres(url, 4).await?,
        None => tare_platform::db::Db::open_sqlite(&dir.join("node1")).await?,
    };
    let feed = Feed::new(db.clone());
    let steps = saga_steps(&feed, head1, head2).await?;
    let close_to_charge_p99_ms = steps
        .iter()
        .find(|s| s.step == "DoorClosed ⇒ ChargeRequested")
        .map_or(f64::NAN, |s| s.p99_ms);
    let rows = feed.read_after(head0, 3000).await?;
    let batched = crate::bench::batched_insert_rate(&db, &rows, 10).await?;
    db.close().await;

    let events = (head1 - head0) as f64;
    let events_per_s = events / secs;
    Ok(StoreFigures {
        store: name,
        purchases_per_s,
        events_per_purchase: events / b.orders as f64,
        events_per_s,
        batched_inserts_per_s: batched,
        ratio: events_per_s / batched,
        cpu_ms_per_purchase: (cpu1 - cpu0) * 1000.0 / b.orders as f64,
        driver_cpu_ms_per_purchase: (driver1 - driver0) * 1000.0 / b.orders as f64,
        peak_rss_mib,
        half_rate_purchases_per_s: half_orders as f64 / half_secs,
        steps,
        close_to_charge_p99_ms,
        consistent: peak.is_consistent() && half.is_consistent(),
    })
}

/// The order an event belongs to: its own aggregate's id for orders, payments and door
/// commands; the holder's order for a cabinet's door events.
fn order_of(e: &FeedEvent) -> Option<String> {
    match e.aggregate_type.as_str() {
        "order" | "payment" => Some(e.aggregate_id.clone()),
        // A door command's id is its own (`{order}-open`); its correlation is the order.
        "device_command" => e
            .metadata
            .get("correlation_id")
            .and_then(|v| v.as_str())
            .map(|c| c.strip_prefix("order:").unwrap_or(c).to_string()),
        "cabinet" => e
            .payload
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|inner| inner.pointer("/holder/order_id"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// Every step between consecutive events of one order, in feed order, over the feed's
/// `(from, to]`: p50 and p99 of the time between them, the most frequent first.
async fn saga_steps(feed: &Feed, from: i64, to: i64) -> anyhow::Result<Vec<StepFigures>> {
    let mut by_order: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let mut after = from;
    while after < to {
        let page = feed.read_after(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in page.iter().filter(|e| e.position <= to) {
            if let Some(order) = order_of(e) {
                by_order.entry(order).or_default().push((e.event_type.clone(), e.time()));
            }
        }
    }
    let mut steps = spans(by_order.values());
    steps.extend(step_latencies(by_order.values()));
    Ok(steps)
}

/// The spans the issue names, from the first `from` of an order to the first `to` after
/// it: the scan to the door's open command reaching the device, the door's close (the
/// device's message) to the charge request, the charge request to paid, and the whole.
const SPANS: [(&str, &str); 4] = [
    ("OrderCreated", "CommandDelivered"),
    ("DoorClosed", "ChargeRequested"),
    ("ChargeRequested", "OrderPaid"),
    ("OrderCreated", "OrderPaid"),
];

fn spans<'a>(orders: impl Iterator<Item = &'a Vec<(String, i64)>> + Clone) -> Vec<StepFigures> {
    SPANS
        .iter()
        .map(|(from, to)| {
            let mut v: Vec<i64> = orders
                .clone()
                .filter_map(|events| {
                    let start = events.iter().position(|(t, _)| t == from)?;
                    let end = events[start..].iter().find(|(t, _)| t == to)?;
                    Some(end.1 - events[start].1)
                })
                .collect();
            v.sort_unstable();
            StepFigures {
                step: format!("{from} ⇒ {to}"),
                count: v.len(),
                p50_ms: percentile(&v, 0.50),
                p99_ms: percentile(&v, 0.99),
            }
        })
        .collect()
}

/// p50/p99 of each `A → B` between consecutive events of each sequence, most frequent
/// first (ties by name).
fn step_latencies<'a>(orders: impl Iterator<Item = &'a Vec<(String, i64)>>) -> Vec<StepFigures> {
    let mut samples: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for events in orders {
        for w in events.windows(2) {
            samples.entry(format!("{} → {}", w[0].0, w[1].0)).or_default().push(w[1].1 - w[0].1);
        }
    }
    let mut out: Vec<StepFigures> = samples
        .into_iter()
        .map(|(step, mut v)| {
            v.sort_unstable();
            StepFigures {
                step,
                count: v.len(),
                p50_ms: percentile(&v, 0.50),
                p99_ms: percentile(&v, 0.99),
            }
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.step.cmp(&b.step)));
    out
}

/// The nearest-rank percentile of sorted `v`.
fn percentile(v: &[i64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_the_gaps_between_an_order_s_consecutive_events() {
        let a = vec![("OrderCreated".to_string(), 100), ("OrderPaid".to_string(), 130)];
        let b = vec![("OrderCreated".to_string(), 200), ("OrderPaid".to_string(), 210)];
        let c = vec![("OrderCreated".to_string(), 300), ("OrderCancelled".to_string(), 301)];
        let steps = step_latencies([a, b, c].iter());
        assert_eq!(steps[0].step, "OrderCreated → OrderPaid");
        assert_eq!((steps[0].count, steps[0].p50_ms, steps[0].p99_ms), (2, 10.0, 30.0));
        assert_eq!((steps[1].step.as_str(), steps[1].count), ("OrderCreated → OrderCancelled", 1));
    }

    #[test]
    fn spans_run_from_the_first_start_to_the_first_end_after_it() {
        let e = |t: &str, at| (t.to_string(), at);
        let a = vec![
            e("OrderCreated", 0),
            e("DoorClosed", 50),
            e("WeightsSettled", 52),
            e("ChargeRequested", 53),
            e("OrderPaid", 70),
        ];
        let cancelled = vec![e("OrderCreated", 0), e("DoorClosed", 9), e("OrderCancelled", 10)];
        let s = spans([a, cancelled].iter());
        let close = s.iter().find(|s| s.step == "DoorClosed ⇒ ChargeRequested").unwrap();
        assert_eq!((close.count, close.p99_ms), (1, 3.0));
        let whole = s.iter().find(|s| s.step == "OrderCreated ⇒ OrderPaid").unwrap();
        assert_eq!((whole.count, whole.p50_ms), (1, 70.0));
    }

    #[test]
    fn the_json_names_each_store_s_rate() {
        let b = PurchaseBench {
            orders: 10,
            cabinets: 500,
            postgres_admin: String::new(),
            sqlite_only: true,
            postgres_only: false,
            scaled_out: vec![],
            nats: String::new(),
            json: true,
        };
        let rows = [StoreFigures {
            store: "sqlite".into(),
            purchases_per_s: 50.0,
            ratio: 0.1,
            consistent: true,
            ..StoreFigures::default()
        }];
        let v = as_json(&rows, &b);
        assert_eq!(v.pointer("/sqlite/purchases_per_s"), Some(&serde_json::json!(50.0)));
        assert_eq!(v.pointer("/sqlite/ratio"), Some(&serde_json::json!(0.1)));
        assert_eq!((v["orders"].as_u64(), v["cabinets"].as_u64()), (Some(10), Some(500)));
        assert!(v.get("postgres").is_none(), "a store not run is absent");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!((percentile(&v, 0.5), percentile(&v, 0.99)), (50.0, 99.0));
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn cpu_is_read_after_the_command_name() {
        let p = std::env::temp_dir().join(format!("tare-stat-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&p, "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0").unwrap();
        assert_eq!(cpu_seconds(p.to_str().unwrap()), 3.0);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_cabinet_door_event_belongs_to_its_holder_s_order() {
        let e = FeedEvent {
            position: 1,
            event_id: "x".into(),
            aggregate_type: "cabinet".into(),
            aggregate_id: "pk.dn".into(),
            sequence: 1,
            event_type: "DoorClosed".into(),
            event_version: "1".into(),
            payload: serde_json::json!({"DoorClosed": {"holder": {"kind": "order", "order_id": "o1"}}}),
            metadata: serde_json::json!({}),
        };
        assert_eq!(order_of(&e).as_deref(), Some("o1"));
        let heartbeat = FeedEvent {
            payload: serde_json::json!({"Heartbeat": {}}),
            ..e
        };
        assert_eq!(order_of(&heartbeat), None);
    }
}
