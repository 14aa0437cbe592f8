//! `tare soak`: the chaos soak [issue 14]. Three `tare serve` nodes on a private
//! PostgreSQL and a private NATS JetStream, a shared `tare sandbox`, and a virtual fleet
//! that buys over MQTT — while nodes are killed with SIGKILL and started again, NATS is
//! killed and restarted, PostgreSQL crashes (`pg_ctl -m immediate`) and restarts, the
//! devices duplicate, reorder and lose messages, and the providers drop, duplicate and
//! reorder their notifications. Operators refund paid orders meanwhile, some twice at
//! once. When enough purchases have been seen to the end, the faults stop and the money
//! and the stock are checked ([`checks`]): every order ends, nothing is collected twice
//! or missed, refunds never pass charges, and the ledger, the inventory and the shelves
//! agree. The report ([`report`]) says what happened and what held.
//!
//! The servers are private (see [`crate::local_cluster::servers`]), so a soak disturbs
//! nothing else on the machine; everything it made is removed at the end.

pub mod chaos;
pub mod checks;
pub mod report;
pub mod shoppers;

use crate::fleet::{Fleet, FleetNode, FleetSpec, FleetTarget};
use crate::local_cluster::{free_port, ClusterSpec, PrivateNats, PrivatePostgres, SANDBOX_SECRET};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `tare soak`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Purchases seen through to the end before the faults stop.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub purchases: u64,
    /// Virtual cabinets (two doors of four lanes each), spread over the three nodes.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub cabinets: u64,
    /// Items per lane at the start (the soak takes one or two a purchase).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub capacity: u32,
    /// Seconds between chaos actions (0: no chaos at all, a plain run).
    #[arg(long, default_value_t = 30)]
    pub chaos_every: u64,
    /// Percent of device messages sent twice (same id).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub duplicate_pct: u8,
    /// Percent of device messages held back and sent after the next one.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub reorder_pct: u8,
    /// Every Nth cabinet (the first, the N+1th, …) loses its doors' `open` uplinks (0:
    /// none). Its orders end `abnormal` by design [D8]: an unexpected close is held for
    /// an operator, its takes recorded as uncharged.
    #[arg(long, default_value_t = 8)]
    pub lose_open_every: u64,
    /// Every Nth cabinet (the second, the N+2th, …) sends no command acks (0: none): the
    /// platform must query or retry, and the door opens all the same.
    #[arg(long, default_value_t = 8)]
    pub drop_acks_every: u64,
    /// Seconds between operator refunds (0: none).
    #[arg(long, default_value_t = 2)]
    pub refund_every: u64,
    /// Write the report (Markdown) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Seed of the fleet and the shoppers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up after this many minutes of buying (the report says so; exit status 1).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_minutes: u64,
    /// The `tare` binary the nodes and the sandbox run (default: this one).
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// When a check fails, keep the private PostgreSQL's data directory (its database
    /// holds every event, job and view) and NATS's store, and print how to open them,
    /// to look into the failure.
    #[arg(long)]
    pub keep_on_failure: bool,
}

/// What the faults-off phase waits for at most, per order, before calling it stuck.
const SETTLE: Duration = Duration::from_secs(180);

/// The flags every node runs with: devices heartbeat every second in the soak, so
/// silence is judged after 6 s; a node unseen for 3 s is presumed dead; a shopper who
/// lost their API node before confirming is given up on after 8 s.
pub const NODE_FLAGS: [&str; 6] = [
    "--auth-timeout-secs",
    "8",
    "--heartbeat-threshold-secs",
    "6",
    "--node-timeout-secs",
    "3",
];

/// Runs the soak and returns its report (whether every check held is
/// [`report::SoakReport::passed`]).
pub async fn run(args: SoakArgs) -> anyhow::Result<report::SoakReport> {
    let exe = match &args.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().context("the tare binary")?,
    };
    let dir = std::env::temp_dir().join(format!("tare-soak-{}", uuid::Uuid::new_v4().simple()));
    let result = soak_in(&args, exe, &dir).await;
    if args.keep_on_failure && !result.as_ref().is_ok_and(|r| r.passed) {
        let data = dir.join("pg").join("data");
        println!(
            "soak: kept {} — open it with: su postgres -c 'pg_ctl -D {} -o \"-p 5499 -k {}\" start' and psql -h 127.0.0.1 -p 5499 -U postgres (the soak's database is the one named tare_soak_…)",
            dir.display(),
            data.display(),
            dir.join("pg").display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn soak_in(args: &SoakArgs, exe: PathBuf, dir: &std::path::Path) -> anyhow::Result<report::SoakReport> {
    let started = Instant::now();
    println!("soak: private PostgreSQL and NATS under {}", dir.display());
    let pg = tokio::task::block_in_place(|| PrivatePostgres::start(&dir.join("pg")))?;
    let nats = tokio::task::block_in_place(|| PrivateNats::start(&dir.join("nats")))?;
    let pg_url = tare_platform::db::create_scratch_postgres(&pg.url(), "tare_soak")
        .await
        .context("the soak's database")?;
    let migrated = tokio::process::Command::new(&exe)
        .args(["migrate", "--postgres", &pg_url])
        .output()
        .await
        .context("tare migrate")?;
    if !migrated.status.success() {
        bail!("tare migrate: {}", String::from_utf8_lossy(&migrated.stderr));
    }
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let sandbox_port = free_port();
    let spec = ClusterSpec {
        exe: exe.clone(),
        pg_url: pg_url.clone(),
        nats_url: nats.url(),
        namespace: crate::local_cluster::fresh_namespace(),
        admin_token: crate::app::random_token(),
        sandbox_url: format!("http://127.0.0.1:{sandbox_port}"),
        keys: dir.join("keys"),
    };
    let callbacks: Vec<String> = ports.iter().map(|(h, _)| format!("http://127.0.0.1:{h}")).collect();
    let sandbox = crate::local_cluster::sandbox(&exe, sandbox_port, &callbacks, &spec.keys).await?;
    let mut nodes = Vec::new();
    for (i, (h, m)) in ports.iter().enumerate() {
        nodes.push(Some(spec.node(&format!("n{i}"), *h, *m, &NODE_FLAGS).await?));
    }
    let fleet = Arc::new(provision(args, &spec, &ports).await?);
    println!(
        "soak: 3 nodes, {} cabinets of {} items a lane, ready in {:.1} s",
        args.cabinets,
        args.capacity,
        started.elapsed().as_secs_f64()
    );
    let cluster = chaos::Cluster {
        spec: spec.clone(),
        ports,
        nodes,
        nats,
        pg,
        sandbox,
    };
    // The devices keep their cadence to the end, as in the field: their heartbeats and
    // closed-door weights are what the platform settles and reconciles from.
    let _cadences: Vec<_> = fleet
        .cabinets
        .iter()
        .map(|c| shoppers::Cadence(c.spawn_cadence(Duration::from_secs(1), Duration::from_secs(2))))
        .collect();
    let outcome = buy_under_chaos(args, fleet.clone(), cluster).await;
    let (mut cluster, buying) = outcome?;
    // Faults off, every node up, then let everything settle and check. A door that
    // opens once its shopper has gone (an authorization the outage held back) is shut
    // by the shop's staff.
    fleet.cabinets.iter().for_each(|c| c.set_faults(Default::default()));
    let _staff = shoppers::Cadence(tokio::spawn(shoppers::close_doors_left_open(fleet.clone())));
    cluster.all_up().await?;
    chaos::notification_faults(&spec.sandbox_url, false).await?;
    let checked = checks::run(&fleet, &cluster, &buying.tally, SETTLE).await?;
    let report = report::SoakReport::new(args, &buying, checked, started.elapsed());
    cluster.shut_down().await;
    if report.passed || !args.keep_on_failure {
        let _ = tare_platform::db::drop_scratch_postgres(&cluster.pg.url(), &pg_url).await;
    }
    Ok(report)
}

/// The fleet: `args.cabinets` cabinets of two doors and four lanes, spread over the
/// three nodes (cabinet `i` on node `i mod 3`, its shoppers on that node's API), with
/// the device faults of `args`.
async fn provision(args: &SoakArgs, spec: &ClusterSpec, ports: &[(u16, u16)]) -> anyhow::Result<Fleet> {
    let node = |(h, m): (u16, u16)| FleetNode {
        base_url: format!("http://127.0.0.1:{h}"),
        mqtt: std::net::SocketAddr::from(([127, 0, 0, 1], m)),
    };
    let first = node(ports[0]);
    let target = FleetTarget {
        base_url: first.base_url.clone(),
        admin_token: spec.admin_token.clone(),
        mqtt: Some(first.mqtt),
        clock: tare_platform::clock::PlatformClock::System,
        hub: None,
        sandbox_secret: Some(SANDBOX_SECRET.to_string()),
    };
    let fleet = Fleet::provision_at(
        &target,
        &FleetSpec {
            cabinets: usize::try_from(args.cabinets)?,
            doors: 2,
            lanes: 4,
            capacity: args.capacity,
            seed: args.seed,
            pk: "soak".into(),
            more_nodes: vec![node(ports[1]), node(ports[2])],
            ..FleetSpec::default()
        },
    )
    .await
    .context("provisioning the fleet")?;
    for (i, c) in fleet.cabinets.iter().enumerate() {
        c.set_faults(tare_sim::cabinet::Faults {
            duplicate_pct: args.duplicate_pct,
            reorder_pct: args.reorder_pct,
            lose_open_events: args.lose_open_every > 0 && (i as u64).is_multiple_of(args.lose_open_every),
            drop_acks: args.drop_acks_every > 0 && (i as u64) % args.drop_acks_every == 1 % args.drop_acks_every,
            ..Default::default()
        });
    }
    Ok(fleet)
}

/// What the buying phase did.
pub struct Buying {
    /// Purchases, refunds and errors as the shoppers and operators saw them.
    pub tally: Arc<shoppers::Tally>,
    /// Every chaos action, in order.
    pub chaos: Vec<chaos::Done>,
    /// How long the buying phase took.
    pub took: Duration,
    /// Whether it reached its purchases before `--max-minutes`.
    pub reached: bool,
    /// Why the chaos stopped early, if an action could not be completed.
    pub chaos_failure: Option<String>,
}

/// Shoppers buy and operators refund until `args.purchases` purchases were seen to the
/// end (or time runs out) while the chaos task works on `cluster`.
async fn buy_under_chaos(args: &SoakArgs, fleet: Arc<Fleet>, cluster: chaos::Cluster) -> anyhow::Result<(chaos::Cluster, Buying)> {
    let tally = Arc::new(shoppers::Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for cab in 0..fleet.cabinets.len() {
        tasks.push(tokio::spawn(shoppers::shopper(
            fleet.clone(),
            cab,
            args.seed,
            tally.clone(),
            stop.clone(),
        )));
    }
    if args.refund_every > 0 {
        let clients = cluster.api_clients();
        let every = Duration::from_secs(args.refund_every);
        tasks.push(tokio::spawn(shoppers::refunder(
            clients,
            every,
            args.seed,
            tally.clone(),
            stop.clone(),
        )));
    }
    let chaos_stop = stop.clone();
    let every = Duration::from_secs(args.chaos_every);
    let chaos = tokio::spawn(chaos::run(cluster, every, chaos_stop));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_minutes * 60);
    let mut last_print = Instant::now();
    let reached = loop {
        let done = tally.completed();
        if done >= args.purchases {
            break true;
        }
        if Instant::now() > deadline || tasks.iter().all(|t| t.is_finished()) || chaos.is_finished() {
            break false;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "soak: {done} purchases in {:.0} s ({:.1}/s), {} failed attempts",
                started.elapsed().as_secs_f64(),
                done as f64 / started.elapsed().as_secs_f64(),
                tally.failures()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let (cluster, done, chaos_failure) = chaos.await.context("the chaos task")?;
    Ok((
        cluster,
        Buying {
            tally,
            chaos: done,
            took: started.elapsed(),
            reached,
            chaos_failure,
        },
    ))
}
