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
use tare_platform::{Roles, StoreConfig};

/// mimalloc: many small JSON values on the read side (see `tare bench replay`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tare", version, about = "Event-sourced platform for unmanned retail cabinets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: HTTP API, device hub, sagas and projections.
    Serve(Box<ServeArgs>),
    /// Run N purchases on a fresh embedded platform and print a summary.
    Demo(DemoArgs),
    /// The payment sandboxes as a service of their own, shared by a cluster's nodes
    /// (`serve --payments URL`).
    Sandbox(SandboxArgs),
    /// Apply the database migrations (`migrations/`) and exit.
    Migrate(MigrateArgs),
    /// Make the provider keys that are missing in the keys directory, and say what to
    /// give each provider (the public keys, never a private one) [API.md "Provider keys"].
    Keys(KeysArgs),
    /// Benchmarks (ratios against a baseline measured in the same run).
    Bench(tare::bench::BenchArgs),
    /// A virtual fleet that connects to a running platform exactly as PROTOCOL.md says,
    /// with shoppers and faults on demand.
    Sim(SimArgs),
    /// Reconcile through a running node (`reconcile bills --provider P --date D`); exit
    /// status 1 when discrepancies were found.
    Reconcile(tare::reconcile::ReconcileArgs),
    /// Rebuild the read models from the log (`--only VIEW`), check them against it
    /// (`--verify`: exit 1 with every difference), or audit one stream or time window
    /// (`--stream order:ID`, `--from-ts`, `--to-ts`).
    Replay(tare::replay::ReplayArgs),
    /// A consistent copy of the embedded store (it may be running) and its provider keys,
    /// into a new directory (`--out DIR`); checked before it is called done.
    Backup(tare::backup::BackupArgs),
    /// Puts a `tare backup` into an empty data directory (`--from DIR --data DIR`).
    Restore(tare::backup::RestoreArgs),
    /// Every saga step of a running node, live (`--from P` replays from a feed position
    /// first), one line a step or `--json`; `--cabinet`, `--order`, `--shopper` narrow it.
    Tail(tare::tail_cli::TailArgs),
    /// The chaos soak: three nodes on a private PostgreSQL and NATS, a fleet buying over
    /// MQTT while nodes are killed (-9), NATS and PostgreSQL restart, and devices and
    /// providers drop and duplicate messages; then every order, charge, refund and lane
    /// is checked. Prints the report (`--report FILE` writes it); exit status 1 when a
    /// check failed.
    Soak(tare::soak::SoakArgs),
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
    /// Connect to `--mqtt` over TLS (a `serve --mqtts` address), trusting the
    /// certificates in this PEM file (the platform's own, if self-signed, or its CA). The
    /// certificate must name the IP address `--mqtt` resolves to.
    #[arg(long)]
    mqtt_ca: Option<PathBuf>,
    /// Operator token of the platform.
    #[arg(long, env = "TARE_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// The secret of the `tare sandbox` the shoppers confirm at, when the platform uses
    /// one (`serve --payments`).
    #[arg(long, env = "TARE_SANDBOX_SECRET", hide_env_values = true)]
    sandbox_secret: Option<String>,
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
    /// The payment sandboxes misbehave on demand (the node must run them): a comma-separated
    /// list of duplicate, reorder, drop, reject-risk, delay=MS, system-errors=N,
    /// fail-collections=N, fail-refunds=N, slow=MS, pending=N.
    #[arg(long, value_parser = tare::provider_faults::parse)]
    provider_faults: Option<serde_json::Value>,
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
    #[arg(long, env = "TARE_POSTGRES_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// NATS URL (scaled-out mode: JetStream relay, partitioned workers, commands across
    /// nodes); needs --postgres.
    #[arg(long, env = "TARE_NATS_URL", requires = "postgres", hide_env_values = true)]
    nats: Option<String>,
    /// Subject and stream prefix on NATS (one per deployment sharing a NATS server).
    #[arg(long, env = "TARE_NATS_NAMESPACE", default_value = "tare")]
    nats_namespace: String,
    /// What this node does: any of gateway, sagas, projections, api (comma-separated), or all.
    #[arg(long, env = "TARE_ROLES", default_value = "all", value_parser = parse_roles)]
    roles: Roles,
    /// This node's name (which gateway node holds a device's connection). Default:
    /// `node-1` embedded; `{hostname}-{pid}` with --nats, so every process differs.
    #[arg(long, env = "TARE_NODE", value_parser = parse_node)]
    node: Option<String>,
    /// How long an order waits for the shopper's payment authorization before it is
    /// cancelled and the door freed [O3].
    #[arg(long, env = "TARE_AUTH_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    auth_timeout_secs: u64,
    /// Silence after which a device is recorded offline [D5] (devices heartbeat every 30 s).
    #[arg(long, env = "TARE_HEARTBEAT_THRESHOLD_SECS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(2..=3600))]
    heartbeat_threshold_secs: u64,
    /// Scaled out: a gateway node not seen for this long is presumed dead and its devices
    /// are judged by another node.
    #[arg(long, env = "TARE_NODE_TIMEOUT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    node_timeout_secs: u64,
    /// The provider keys' directory [API.md "Provider keys"]: made on first start when
    /// absent (default `{data}/keys`). Every node of a cluster, and `tare sandbox`, must
    /// use the same keys.
    #[arg(long, env = "TARE_KEYS")]
    keys: Option<PathBuf>,
    /// The providers' sandboxes served elsewhere (`tare sandbox` at this URL) instead of
    /// on this node's own listener (every node of a cluster must reach the same provider).
    #[arg(long, env = "TARE_PAYMENTS_URL", value_parser = parse_http_url, conflicts_with_all = ["wechat_url", "alipay_url"])]
    payments: Option<String>,
    /// Where shoppers reach the `--payments` sandboxes' confirm page, when not at the URL
    /// the nodes use (e.g. `http://localhost:8790` for a sandbox the nodes call
    /// `http://sandbox:8790`).
    #[arg(long, env = "TARE_PAYMENTS_CONFIRM_URL", value_parser = parse_http_url, requires = "payments")]
    payments_confirm_url: Option<String>,
    /// WeChat Pay's API base (e.g. `https://api.mch.weixin.qq.com`): the real provider, with
    /// --alipay-url.
    #[arg(long, env = "TARE_WECHAT_URL", value_parser = parse_http_url, requires = "alipay_url")]
    wechat_url: Option<String>,
    /// Alipay's gateway (e.g. `https://openapi.alipay.com/gateway.do`), with --wechat-url.
    #[arg(long, env = "TARE_ALIPAY_URL", value_parser = parse_http_url, requires = "wechat_url")]
    alipay_url: Option<String>,
    /// The base URL the providers call this node back at (`{url}/callbacks/{provider}`);
    /// default: this node's own HTTP address.
    #[arg(long, env = "TARE_PUBLIC_URL", value_parser = parse_http_url)]
    public_url: Option<String>,
    /// Where alerts go: each is POSTed as JSON (the alert id in `Idempotency-Key`) and
    /// retried until answered 2xx; default: the recording sandbox (`GET /sandbox/alerts`).
    #[arg(long, env = "TARE_ALERT_WEBHOOK", value_parser = parse_http_url, hide_env_values = true)]
    alert_webhook: Option<String>,
    /// At most this many alerts a minute leave this node (the rest wait).
    #[arg(long, default_value_t = tare_platform::config::ALERTS_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    alerts_per_minute: u32,
    /// The open-frequency risk rule: at most this many orders a shopper may begin in an
    /// hour (409 `too_many_opens` beyond); 0 (the default) turns it off.
    #[arg(long, env = "TARE_MAX_OPENS_PER_HOUR", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    max_opens_per_hour: u32,
    /// The dispute-rate risk rule: a shopper refunded on this many disputed charges in
    /// 30 days is turned away at the scan (409 `too_many_disputes`); 0 (the default)
    /// turns it off.
    #[arg(long, env = "TARE_MAX_DISPUTES_PER_MONTH", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    max_disputes_per_month: u32,
    /// The local (China) hour the daily settlements' business day closes at (0: midnight).
    #[arg(long, env = "TARE_SETTLEMENT_CLOSE_HOUR", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=23))]
    settlement_close_hour: i64,
    /// How long after a door closes the shelves' weight is first looked at for a stable
    /// reading [O5]; cabinets whose load cells settle faster can shorten it (0: at once,
    /// as `tare bench purchase` runs it).
    #[arg(long, env = "TARE_STABLE_WAIT_MS", default_value_t = 500, value_parser = clap::value_parser!(i64).range(0..=10_000))]
    stable_wait_ms: i64,
    /// WeChat Pay's fee in parts per million of the amount, for the daily settlements
    /// (6000 = 0.6 %).
    #[arg(long, env = "TARE_WECHAT_FEE_PPM", default_value_t = 6_000, value_parser = clap::value_parser!(i64).range(0..=100_000))]
    wechat_fee_ppm: i64,
    /// Alipay's fee in parts per million of the amount, for the daily settlements.
    #[arg(long, env = "TARE_ALIPAY_FEE_PPM", default_value_t = 6_000, value_parser = clap::value_parser!(i64).range(0..=100_000))]
    alipay_fee_ppm: i64,
    /// Requests this node serves at once (the device long poll aside); past it 503
    /// `overloaded`.
    #[arg(long, env = "TARE_HTTP_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    http_max_in_flight: u32,
    /// Each HTTP client's sustained requests per second (by bearer token, else by
    /// address; burst ten times that); past it 429 `rate_limited`. 0 turns it off.
    #[arg(long, env = "TARE_HTTP_RATE_PER_CLIENT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    http_rate_per_client: u32,
    /// The largest refund (in cents) an `operator` may make; above it an `admin` must.
    #[arg(long, env = "TARE_REFUND_LIMIT_CENTS", default_value_t = tare::app::DEFAULT_REFUND_LIMIT_CENTS, value_parser = clap::value_parser!(i64).range(0..=100_000_000))]
    refund_limit_cents: i64,
    /// Also serve `/metrics` without a token on this address (for a Prometheus on a
    /// private network); on the API's listener it needs a staff token.
    #[arg(long, env = "TARE_METRICS_LISTEN")]
    metrics: Option<String>,
    /// The TLS certificate chain (PEM, leaf first) of `--https` and `--mqtts`.
    #[arg(long, env = "TARE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TARE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also serve the HTTP API (and the device HTTP API) over TLS on this address, e.g.
    /// `0.0.0.0:8443`; keep `--http` on loopback for local tools then.
    #[arg(long, env = "TARE_HTTPS", requires = "tls_cert")]
    https: Option<String>,
    /// Also take device connections as MQTT over TLS on this address, e.g. `0.0.0.0:8883`
    /// (`--mqtt none` leaves TLS the only way in).
    #[arg(long, env = "TARE_MQTTS", requires = "tls_cert")]
    mqtts: Option<String>,
    /// PostgreSQL connections of this node (the server's max_connections is shared by all).
    #[arg(long, env = "TARE_PG_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=500))]
    pg_connections: u32,
    /// Operator token; generated and printed once if unset.
    #[arg(long, env = "TARE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// With --demo: the payment sandboxes misbehave on demand (see `tare sim
    /// --provider-faults`).
    #[arg(long, value_parser = tare::provider_faults::parse, requires = "demo")]
    provider_faults: Option<serde_json::Value>,
    /// Cabinets in the demo fleet.
    #[arg(long, default_value_t = 3)]
    demo_cabinets: usize,
}

#[derive(clap::Args)]
struct SandboxArgs {
    /// Listen address.
    #[arg(long, env = "TARE_SANDBOX_LISTEN", default_value = "127.0.0.1:8790")]
    listen: String,
    /// The provider keys' directory the nodes use too (made when absent).
    #[arg(long, env = "TARE_KEYS")]
    keys: PathBuf,
    /// What a shopper's confirm tap must present (`Authorization: Bearer …`): the
    /// sandbox stands in for the provider's app, so strangers must not authorize doors.
    #[arg(long, env = "TARE_SANDBOX_SECRET", hide_env_values = true)]
    secret: String,
    /// The platform nodes' base URLs: a notification whose `notify_url` does not answer
    /// goes to these in turn (comma-separated).
    #[arg(long, env = "TARE_SANDBOX_CALLBACKS", value_delimiter = ',', value_parser = parse_http_url)]
    callback: Vec<String>,
}

#[derive(clap::Args)]
struct KeysArgs {
    /// The keys directory (made when absent).
    #[arg(long, env = "TARE_KEYS", default_value = "data/keys")]
    keys: PathBuf,
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// PostgreSQL URL (otherwise the embedded store in --data).
    #[arg(long, env = "TARE_POSTGRES_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Where the embedded store lives.
    #[arg(long, env = "TARE_DATA", default_value = "data")]
    data: PathBuf,
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
        Command::Serve(a) => serve(*a).await,
        Command::Demo(a) => demo(a).await,
        Command::Migrate(a) => migrate(a).await,
        Command::Keys(a) => keys(a),
        Command::Sandbox(a) => sandbox(a).await,
        Command::Bench(a) => tare::bench::run(a).await,
        Command::Sim(a) => sim(a).await,
        Command::Reconcile(a) => match tare::reconcile::run(a).await? {
            true => Ok(()),
            false => std::process::exit(1),
        },
        Command::Tail(a) => tare::tail_cli::run(a).await,
        Command::Soak(a) => soak(a).await,
        Command::Backup(a) => tare::backup::run_backup(a).await,
        Command::Restore(a) => tare::backup::run_restore(a).await,
        Command::Replay(a) => match tare::replay::run(a).await? {
            0 => Ok(()),
            code => std::process::exit(code),
        },
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
        let mut pos = platform.feed_head().await.unwrap_or(0);
        loop {
            match platform.events_after(pos, 500).await {
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
    let mut cfg = AppConfig::embedded(&a.data);
    if let Some(url) = &a.postgres {
        cfg.store = StoreConfig::Postgres(url.clone());
    }
    cfg.pg_max_connections = a.pg_connections;
    cfg.saga.auth_timeout_ms = a.auth_timeout_secs as i64 * 1000;
    cfg.saga.settlement_close_hour = a.settlement_close_hour;
    cfg.saga.stable_wait_ms = a.stable_wait_ms;
    cfg.saga.fees = tare_domain::reconciliation::daily::FeeRates {
        wechat_ppm: a.wechat_fee_ppm,
        alipay_ppm: a.alipay_fee_ppm,
    };
    cfg.liveness.threshold_ms = a.heartbeat_threshold_secs as i64 * 1000;
    cfg.liveness.node_timeout_ms = a.node_timeout_secs as i64 * 1000;
    cfg.roles = a.roles;
    if let Some(url) = &a.nats {
        let mut n = tare_platform::cluster::NatsConfig::new(url.clone());
        n.namespace = a.nats_namespace.clone();
        cfg.nats = Some(n);
        cfg.node = default_node_name();
    }
    if let Some(node) = &a.node {
        cfg.node = node.clone();
    }
    cfg.keys = Some(a.keys.clone().unwrap_or_else(|| a.data.join("keys")));
    cfg.payments = match (&a.payments, &a.wechat_url, &a.alipay_url) {
        (Some(url), _, _) => Some(tare::app::ProviderEndpoints {
            confirm: a.payments_confirm_url.clone(),
            ..tare::app::ProviderEndpoints::sandboxes_at(url)
        }),
        (None, Some(wechat), Some(alipay)) => Some(tare::app::ProviderEndpoints {
            wechat: wechat.trim_end_matches('/').to_string(),
            alipay: alipay.clone(),
            confirm: None,
        }),
        _ => None,
    };
    cfg.public_url = a.public_url.clone();
    cfg.alert_webhook = a.alert_webhook.clone();
    cfg.alerts_per_minute = a.alerts_per_minute;
    cfg.max_opens_per_hour = (a.max_opens_per_hour > 0).then_some(a.max_opens_per_hour);
    cfg.max_disputes_per_month = (a.max_disputes_per_month > 0).then_some(a.max_disputes_per_month);
    cfg.refund_limit = tare_domain::Cents::new(a.refund_limit_cents);
    cfg.metrics = a.metrics.clone();
    cfg.http_limits.max_in_flight = a.http_max_in_flight as usize;
    cfg.http_limits.per_client = (a.http_rate_per_client > 0).then(|| tare_gateway::api::guard::rate_of(a.http_rate_per_client));
    if a.demo && !(a.roles.api && a.roles.gateway) {
        bail!("--demo needs the api and gateway roles on this node");
    }
    cfg.http = a.http.clone();
    cfg.mqtt = (a.mqtt != "none").then(|| a.mqtt.clone());
    cfg.tls = a
        .tls_cert
        .clone()
        .zip(a.tls_key.clone())
        .map(|(cert, key)| tare_gateway::tls::TlsFiles { cert, key });
    cfg.https = a.https.clone();
    cfg.mqtts = a.mqtts.clone();
    let generated = a.admin_token.is_none();
    cfg.admin_token = a.admin_token.clone().unwrap_or_else(tare::app::random_token);
    let app = App::start(cfg).await?;
    println!(
        "listening http={} mqtt={} node={} roles={} store={} bus={}",
        app.http.addr,
        app.mqtt.as_ref().map_or("none".to_string(), |m| m.addr.to_string()),
        app.platform.devices().node(),
        a.roles,
        if a.postgres.is_some() { "postgres" } else { "sqlite" },
        if a.nats.is_some() { "nats" } else { "in-process" },
    );
    if let Some(m) = &app.metrics {
        println!("metrics listening http={}", m.addr);
    }
    if app.http.tls_addr.is_some() || app.mqtts.is_some() {
        let show = |a: Option<std::net::SocketAddr>| a.map_or("none".to_string(), |a| a.to_string());
        println!(
            "tls listening https={} mqtts={}",
            show(app.http.tls_addr),
            show(app.mqtts.as_ref().map(|m| m.addr))
        );
    }
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
        if let Some(body) = &a.provider_faults {
            tare::provider_faults::apply(&fleet.client, &app.admin_token, body).await?;
            println!("demo: the payment sandboxes behave as {body}");
        }
        println!(
            "demo fleet: {} cabinets online; shoppers are buying (Ctrl-C to stop)",
            fleet.cabinets.len()
        );
        spawn_shoppers(&fleet);
    }
    let signal = shutdown_signal().await?;
    println!("{signal}: stopping (finishing in-flight requests and commands, closing connections)");
    match tokio::time::timeout(STOP_GRACE, app.stop()).await {
        Ok(()) => {
            println!("stopped cleanly");
            Ok(())
        }
        Err(_) => bail!("the platform did not stop within {} s", STOP_GRACE.as_secs()),
    }
}

/// How long a graceful stop may take before `tare` gives up on it: inside the 10 s
/// that `docker stop` and systemd allow before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// Resolves on Ctrl-C (SIGINT) or SIGTERM — what `docker stop`, `docker compose stop`
/// and systemd send — and names the signal; both stop the process the same graceful way.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("listening for Ctrl-C")?;
            Ok("SIGINT")
        }
        _ = term.recv() => Ok("SIGTERM"),
    }
}

fn parse_roles(s: &str) -> Result<Roles, String> {
    Roles::parse(s)
}

/// A node name goes into NATS subjects: letters, digits, '-' and '_' only.
fn parse_node(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("1 to 64 letters, digits, '-' or '_'".into());
    }
    Ok(s.to_string())
}

/// `{hostname}-{pid}`, made safe for a NATS subject.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "node".into());
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .take(40)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// Runs `tare soak`, prints (and writes) its report, fails when a check did.
async fn soak(a: tare::soak::SoakArgs) -> anyhow::Result<()> {
    let out = a.report.clone();
    let report = tare::soak::run(a).await?;
    println!("{}", report.markdown);
    if let Some(path) = out {
        std::fs::write(&path, &report.markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.passed {
        bail!("the soak failed (see the report)");
    }
    Ok(())
}

/// Serves the two payment sandboxes for a cluster until Ctrl-C.
async fn sandbox(a: SandboxArgs) -> anyhow::Result<()> {
    let keys =
        tare_providers::keys::ProviderKeys::load_or_generate(&a.keys).with_context(|| format!("provider keys in {}", a.keys.display()))?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    let sandboxes = tare::app::sandboxes(&keys)?;
    for s in sandboxes.values() {
        s.set_failover(&a.callback);
    }
    println!("sandbox listening http={addr}");
    let app = tare_gateway::sandbox_service::router(&sandboxes, &a.secret);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = shutdown_signal().await;
        })
        .await
        .context("serving the sandbox")?;
    Ok(())
}

/// Makes the missing provider keys and prints the public facts: what a merchant uploads
/// to each provider and what the providers' answers are checked with.
fn keys(a: KeysArgs) -> anyhow::Result<()> {
    let k =
        tare_providers::keys::ProviderKeys::load_or_generate(&a.keys).with_context(|| format!("provider keys in {}", a.keys.display()))?;
    let dir = a.keys.display();
    println!("provider keys in {dir}");
    println!(
        "wechat: mchid {} appid {} service_id {}; merchant key serial {} (upload {dir}/wechat/merchant_public_key.pem); platform key serial {}",
        k.wechat.merchant.mchid, k.wechat.merchant.appid, k.wechat.merchant.service_id, k.wechat.merchant.serial_no, k.wechat.platform.serial_no
    );
    println!(
        "alipay: app_id {} seller_id {} (upload {dir}/alipay/app_public_key.pem)",
        k.alipay.app.app_id, k.alipay.app.seller_id
    );
    Ok(())
}

/// An `http://` or `https://` URL (a base or an endpoint), without a trailing slash.
fn parse_http_url(s: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("`{s}` must be an http:// or https:// URL with a host"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// Applies the migrations of `migrations/` to the chosen store and reports them.
async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let db = match &a.postgres {
        Some(url) => tare_platform::db::Db::open_postgres(url, 2).await,
        None => tare_platform::db::Db::open_sqlite(&a.data).await,
    }
    .context("applying migrations")?;
    let applied = db.applied_migrations().await.context("listing applied migrations")?;
    for (version, description) in &applied {
        println!("applied {version:04} {description}");
    }
    println!("{} migrations applied; the store is up to date", applied.len());
    db.close().await;
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
                let door = DoorNo::of(rng.random_range(1..=2));
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
        sandbox_secret: a.sandbox_secret.clone(),
    };
    let spec = FleetSpec {
        cabinets: a.cabinets as usize,
        seed: a.seed,
        pk: a.pk.clone().unwrap_or_else(|| format!("sim{}", std::process::id())),
        transport: match a.transport {
            SimTransport::Mqtt => FleetTransport::Mqtt,
            SimTransport::Http => FleetTransport::Http,
        },
        mqtt_tls: match &a.mqtt_ca {
            Some(ca) => Some(tare_sim::transport::tls_trusting(ca).map_err(|e| anyhow::anyhow!("--mqtt-ca: {e}"))?),
            None => None,
        },
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision_at(&target, &spec).await?);
    if let Some(body) = &a.provider_faults {
        tare::provider_faults::apply(&fleet.client, &a.token, body).await?;
        println!("sim: the payment sandboxes now behave as {body}");
    }
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
    shutdown_signal().await?;
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
