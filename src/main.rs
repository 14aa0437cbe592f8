//! `tare`: the command line. `serve` runs the platform (embedded default, or scaled out
//! later), `demo` runs a fixed number of purchases and prints a summary, `bench` measures.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tare::app::{App, AppConfig};
use tare::fleet::{Fleet, FleetSpec};
use tare_domain::DoorNo;
use tare_platform::platform::StoreConfig;

#[derive(Parser)]
#[command(name = "tare", version, about = "Event-sourced platform for unmanned retail cabinets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: HTTP API, device hub, sagas and projections.
    Serve(ServeArgs),
    /// Run N purchases on a fresh embedded platform and print a summary.
    Demo(DemoArgs),
    /// Benchmarks (ratios against a baseline measured in the same run).
    Bench(tare::bench::BenchArgs),
    /// A virtual fleet that connects to a running platform exactly as PROTOCOL.md says,
    /// with shoppers and faults on demand.
    Sim(SimArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SimTransport {
    Mqtt,
    Http,
}

#[derive(clap::Args)]
struct SimArgs {
    /// The platform's HTTP API (cabinets are registered there; HTTP devices talk to it).
    #[arg(long, default_value = "http://127.0.0.1:8780")]
    http: String,
    /// The platform's MQTT device endpoint.
    #[arg(long, default_value = "127.0.0.1:8781")]
    mqtt: String,
    /// Operator token of the platform.
    #[arg(long, env = "TARE_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Cabinets to register and connect.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    cabinets: u32,
    /// How the cabinets connect.
    #[arg(long, value_enum, default_value = "mqtt")]
    transport: SimTransport,
    /// Product key of the simulated cabinets (default: `sim` and this process id).
    #[arg(long)]
    pk: Option<String>,
    /// Heartbeat period, seconds [D4].
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_s: u64,
    /// Closed-door weight period, seconds [D6].
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3600))]
    weight_s: u64,
    /// Shoppers buy continuously (one per cabinet).
    #[arg(long)]
    shop: bool,
    /// Run this many purchases, print a summary and exit.
    #[arg(long)]
    orders: Option<usize>,
    /// Percent of messages sent twice.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    duplicate_pct: u8,
    /// Percent of messages sent late, after the next one.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    reorder_pct: u8,
    /// Devices never acknowledge commands.
    #[arg(long)]
    drop_acks: bool,
    /// Doors' own `open` events are lost (the platform must query).
    #[arg(long)]
    lose_open_events: bool,
    /// Every N seconds every cabinet drops its connection and reconnects at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    reconnect_storm_s: Option<u64>,
    /// Random seed (layouts, takes, faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Start a virtual fleet and shoppers buying continuously.
    #[arg(long)]
    demo: bool,
    /// Where the embedded store lives.
    #[arg(long, env = "TARE_DATA", default_value = "data")]
    data: PathBuf,
    /// HTTP API and device HTTP API address.
    #[arg(long, env = "TARE_HTTP", default_value = "127.0.0.1:8780")]
    http: String,
    /// MQTT device endpoint address (`none` to run without one). The default stays clear
    /// of a local Mosquitto on 1883.
    #[arg(long, env = "TARE_MQTT", default_value = "127.0.0.1:8781")]
    mqtt: String,
    /// PostgreSQL URL: use PostgreSQL instead of the embedded SQLite store.
    #[arg(long, env = "TARE_POSTGRES_URL")]
    postgres: Option<String>,
    /// NATS URL (scaled-out mode; not built yet).
    #[arg(long, env = "TARE_NATS_URL")]
    nats: Option<String>,
    /// Operator token; generated and printed once if unset.
    #[arg(long, env = "TARE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Cabinets in the demo fleet.
    #[arg(long, default_value_t = 3)]
    demo_cabinets: usize,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Purchases to run.
    #[arg(long, default_value_t = 20)]
    orders: usize,
    /// Random seed (fleet layout and takes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cabinets.
    #[arg(long, default_value_t = 4)]
    cabinets: usize,
    /// Store directory (a fresh temporary one if unset).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_target(false)
        .init();
    match Cli::parse().command {
        Command::Serve(a) => serve(a).await,
        Command::Demo(a) => demo(a).await,
        Command::Bench(a) => tare::bench::run(a).await,
        Command::Sim(a) => sim(a).await,
    }
}

fn now_hms() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    hms(ms)
}

/// `HH:MM:SS.mmm` (UTC) of a Unix-ms time.
fn hms(ms: i64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, (s / 60) % 60, s % 60, ms % 1000)
}

/// Prints one line per saga step as the feed grows.
fn spawn_step_log(app: &App) {
    let platform = app.platform.clone();
    tokio::spawn(async move {
        let mut pos = platform.feed.head().await.unwrap_or(0);
        loop {
            match platform.feed.read_after(pos, 500).await {
                Ok(events) if !events.is_empty() => {
                    for ev in &events {
                        if let Some(line) = tare::tail::describe(ev) {
                            println!("{} {line}", hms(ev.time()));
                        }
                        pos = ev.position;
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if a.nats.is_some() {
        bail!("--nats (scaled-out mode with JetStream) is not available in this build yet; run without it for the embedded default");
    }
    let mut cfg = AppConfig::embedded(&a.data);
    if let Some(url) = &a.postgres {
        cfg.store = StoreConfig::Postgres(url.clone());
    }
    cfg.http = a.http.clone();
    cfg.mqtt = (a.mqtt != "none").then(|| a.mqtt.clone());
    let generated = a.admin_token.is_none();
    cfg.admin_token = a.admin_token.clone().unwrap_or_else(tare::app::random_token);
    let app = App::start(cfg).await?;
    println!(
        "listening http={} mqtt={}",
        app.http.addr,
        app.mqtt.as_ref().map_or("none".to_string(), |m| m.addr.to_string())
    );
    if generated {
        println!("admin token (shown once): {}", app.admin_token);
    }
    if a.demo {
        spawn_step_log(&app);
        let spec = FleetSpec {
            cabinets: a.demo_cabinets,
            pk: format!("demo{}", std::process::id()),
            ..FleetSpec::default()
        };
        let fleet = Arc::new(Fleet::provision(&app, &spec).await?);
        println!(
            "demo fleet: {} cabinets online; shoppers are buying (Ctrl-C to stop)",
            fleet.cabinets.len()
        );
        spawn_shoppers(&fleet);
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    app.stop().await;
    Ok(())
}

/// One shopper per cabinet, buying continuously.
fn spawn_shoppers(fleet: &Arc<Fleet>) {
    for cab in 0..fleet.cabinets.len() {
        let fleet = fleet.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(cab as u64);
            let modes = [
                ("wechat", "once"),
                ("alipay", "each_time"),
                ("wechat", "each_time"),
                ("alipay", "once"),
            ];
            let (provider, mode) = modes[cab % modes.len()];
            let Ok(shopper) = fleet.new_shopper(&format!("1380{:07}", cab), provider, mode).await else {
                return;
            };
            loop {
                let door = DoorNo(rng.random_range(1..=2));
                let takes = fleet.random_takes(&mut rng, cab, door);
                if let Err(e) = fleet.purchase(&shopper, cab, door, &takes).await {
                    println!("{} shopper at cabinet {cab}: {e}", now_hms());
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
            }
        });
    }
}

async fn sim(a: SimArgs) -> anyhow::Result<()> {
    use tare::fleet::{FleetTarget, FleetTransport};
    let mqtt = tokio::net::lookup_host(&a.mqtt)
        .await
        .with_context(|| format!("--mqtt {}", a.mqtt))?
        .next()
        .with_context(|| format!("--mqtt {} resolves to no address", a.mqtt))?;
    if !(a.http.starts_with("http://") || a.http.starts_with("https://")) {
        bail!("--http must be a URL such as http://127.0.0.1:8780");
    }
    let target = FleetTarget {
        base_url: a.http.trim_end_matches('/').to_string(),
        admin_token: a.token.clone(),
        mqtt: Some(mqtt),
        clock: tare_platform::clock::PlatformClock::System,
        hub: None,
    };
    let spec = FleetSpec {
        cabinets: a.cabinets as usize,
        seed: a.seed,
        pk: a.pk.clone().unwrap_or_else(|| format!("sim{}", std::process::id())),
        transport: match a.transport {
            SimTransport::Mqtt => FleetTransport::Mqtt,
            SimTransport::Http => FleetTransport::Http,
        },
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision_at(&target, &spec).await?);
    println!("sim: {} cabinets ({}) online", fleet.cabinets.len(), spec.pk);
    for c in &fleet.cabinets {
        c.set_faults(tare_sim::cabinet::Faults {
            duplicate_pct: a.duplicate_pct,
            reorder_pct: a.reorder_pct,
            drop_acks: a.drop_acks,
            lose_open_events: a.lose_open_events,
            ..Default::default()
        });
        c.spawn_cadence(Duration::from_secs(a.heartbeat_s), Duration::from_secs(a.weight_s));
    }
    if let Some(every) = a.reconnect_storm_s {
        let fleet = fleet.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(every)).await;
                println!("{} sim: reconnect storm ({} cabinets)", now_hms(), fleet.cabinets.len());
                futures::future::join_all(fleet.cabinets.iter().map(|c| async move {
                    let _ = c.disconnect().await;
                    if let Err(e) = c.connect().await {
                        println!("{} sim: {} did not reconnect: {e}", now_hms(), c.id());
                    }
                }))
                .await;
            }
        });
    }
    if let Some(n) = a.orders {
        let summary = tare::bench::run_purchases(&fleet, n, a.seed).await?;
        println!("{summary}");
        if !summary.is_consistent() {
            bail!("inconsistent outcome (see the summary above)");
        }
        return Ok(());
    }
    if a.shop {
        spawn_shoppers(&fleet);
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    for c in &fleet.cabinets {
        let _ = c.disconnect().await;
    }
    Ok(())
}

async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &a.data {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("tare-demo-{}", uuid::Uuid::new_v4().simple()));
            tmp.clone()
        }
    };
    let mut cfg = AppConfig::embedded(&dir);
    cfg.saga.stable_wait_ms = 0;
    let app = App::start(cfg).await?;
    let spec = FleetSpec {
        cabinets: a.cabinets,
        seed: a.seed,
        ..FleetSpec::default()
    };
    let started = std::time::Instant::now();
    let fleet = Arc::new(Fleet::provision(&app, &spec).await?);
    let mut summary = tare::bench::run_purchases(&fleet, a.orders, a.seed).await?;
    tare::bench::audit_provider_charges(&app, &mut summary);
    let elapsed = started.elapsed();
    println!("{summary}");
    println!(
        "elapsed {:.2}s ({:.1} purchases/s)",
        elapsed.as_secs_f64(),
        a.orders as f64 / elapsed.as_secs_f64()
    );
    let ok = summary.is_consistent();
    app.stop().await;
    if a.data.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !ok {
        bail!("inconsistent outcome (see the summary above)");
    }
    Ok(())
}
