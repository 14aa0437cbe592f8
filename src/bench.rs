//! Benchmarks and the purchase driver they share with `tare demo` and `tare sim`.
//!
//! Each `tare bench …` reports its figures beside a baseline measured in the same run
//! (ratios first: the machines are shared and noisy); `purchase` lives in
//! [`crate::bench_purchase`].

use crate::app::App;
use crate::fleet::{Fleet, Purchase};
use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;
use tare_domain::DoorNo;

/// What a batch of purchases came to.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Purchases run.
    pub purchases: usize,
    /// Orders by final state.
    pub states: BTreeMap<String, usize>,
    /// Σ total_cents of paid orders.
    pub charged_cents: i64,
    /// Σ (true takes × price − discount) of paid orders.
    pub expected_cents: i64,
    /// Orders whose charge differs from the truth.
    pub mismatched: Vec<String>,
    /// Collections the providers made.
    pub provider_charges: usize,
    /// Orders the providers collected more than once.
    pub double_charges: usize,
    /// Purchases that failed to run.
    pub errors: Vec<String>,
}

impl Summary {
    /// Every order ended, charges equal the truth, nobody paid twice, nothing failed.
    pub fn is_consistent(&self) -> bool {
        self.errors.is_empty() && self.mismatched.is_empty() && self.double_charges == 0 && self.charged_cents == self.expected_cents
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "purchases: {}", self.purchases)?;
        for (s, n) in &self.states {
            writeln!(f, "  {s}: {n}")?;
        }
        writeln!(
            f,
            "charged: {} cents (expected from true takes: {} cents)",
            self.charged_cents, self.expected_cents
        )?;
        writeln!(
            f,
            "provider collections: {}, double charges: {}",
            self.provider_charges, self.double_charges
        )?;
        if !self.mismatched.is_empty() {
            writeln!(f, "MISMATCHED orders: {:?}", self.mismatched)?;
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// Runs `n` purchases spread over the fleet's cabinets (one shopper per cabinet, one
/// purchase at a time per cabinet, all cabinets at once) and checks the outcome against
/// what the shoppers really took.
pub async fn run_purchases(fleet: &Arc<Fleet>, n: usize, seed: u64) -> anyhow::Result<Summary> {
    run_purchases_paced(fleet, n, seed, None).await
}

/// [`run_purchases`], starting at most `pace` purchases a second fleet-wide when given
/// (an open pace, as shoppers arrive; `None`: each cabinet's next purchase at once).
pub async fn run_purchases_paced(fleet: &Arc<Fleet>, n: usize, seed: u64, pace: Option<f64>) -> anyhow::Result<Summary> {
    let cabinets = fleet.cabinets.len();
    let pacer = pace.filter(|r| *r > 0.0).map(|r| {
        let mut every = tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / r));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(tokio::sync::Mutex::new(every))
    });
    let mut tasks = Vec::new();
    for cab in 0..cabinets {
        let share = n / cabinets + usize::from(cab < n % cabinets);
        let fleet = fleet.clone();
        let pacer = pacer.clone();
        tasks.push(tokio::spawn(async move {
            // Shoppers arrive over the first second, not all in the same millisecond.
            tokio::time::sleep(std::time::Duration::from_micros((cab as u64 * 1_000_000) / cabinets.max(1) as u64)).await;
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(cab as u64));
            let modes = [
                ("wechat", "once"),
                ("alipay", "each_time"),
                ("wechat", "each_time"),
                ("alipay", "once"),
            ];
            let (provider, mode) = modes[cab % modes.len()];
            let shopper = fleet.new_shopper(&format!("1390000{:04}", cab), provider, mode).await?;
            let mut out: Vec<anyhow::Result<Purchase>> = Vec::new();
            for _ in 0..share {
                let doors = fleet.cabinets[cab].counts().keys().map(|(d, _)| d.get()).max().unwrap_or(1);
                let door = DoorNo::of(rng.random_range(1..=doors));
                let takes = fleet.random_takes(&mut rng, cab, door);
                if let Some(p) = &pacer {
                    p.lock().await.tick().await;
                }
                out.push(fleet.purchase(&shopper, cab, door, &takes).await);
            }
            anyhow::Ok(out)
        }));
    }
    let mut summary = Summary {
        purchases: n,
        ..Default::default()
    };
    for t in tasks {
        for p in t.await.context("purchase task")?? {
            match p {
                Ok(p) => {
                    let state = p.order["state"].as_str().unwrap_or("?").to_string();
                    if state == "paid" {
                        let total = p.order["total_cents"].as_i64().unwrap_or(-1);
                        let discount = p.order["discount_cents"].as_i64().unwrap_or(0);
                        summary.charged_cents += total;
                        summary.expected_cents += p.true_subtotal() - discount;
                        if total != p.true_subtotal() - discount {
                            summary.mismatched.push(p.order_id.clone());
                        }
                    } else if !(state == "cancelled" && p.taken.is_empty()) {
                        summary.mismatched.push(format!(
                            "{} ended {state} ({}) after taking {:?}",
                            p.order_id, p.order["anomalies"], p.taken
                        ));
                    }
                    *summary.states.entry(state).or_default() += 1;
                }
                Err(e) => summary.errors.push(e.to_string()),
            }
        }
    }
    Ok(summary)
}

/// Adds the providers' view: collections made and orders collected twice.
pub fn audit_provider_charges(app: &App, summary: &mut Summary) {
    audit_sandbox_charges(&app.sandboxes, summary);
}

/// Adds what `sandboxes` collected: collections made and orders collected twice.
pub fn audit_sandbox_charges(sandboxes: &crate::app::Sandboxes, summary: &mut Summary) {
    let mut per_order: BTreeMap<String, usize> = BTreeMap::new();
    for s in sandboxes.values() {
        for c in s.charges() {
            *per_order.entry(c.order_id).or_default() += 1;
        }
    }
    summary.provider_charges = per_order.values().sum();
    summary.double_charges = per_order.values().filter(|n| **n > 1).count();
}

/// `tare bench …` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure: `purchase`, `gateway`, `store`, `callbacks`, `providers` or
    /// `replay`.
    pub what: String,
    /// `callbacks`: genuine notifications sent per provider.
    #[arg(long, default_value_t = 2_000)]
    pub notifications: usize,
    /// `callbacks`: concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// `providers`: adapter calls of each kind per provider.
    #[arg(long, default_value_t = 300)]
    pub calls: usize,
    /// `gateway`: idle cabinets to connect (each costs two file descriptors here, the
    /// endpoint's and the benchmark client's).
    #[arg(long, default_value_t = 5_000)]
    pub connections: usize,
    /// `gateway`: connections that publish telemetry.
    #[arg(long, default_value_t = 50)]
    pub publishers: usize,
    /// `gateway`: telemetry messages in all.
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    /// `gateway`: the plain MQTT broker of the baseline.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// Purchases per store (`purchase`: 2,000 at the peak; `store`: 400).
    #[arg(long)]
    pub orders: Option<usize>,
    /// Cabinets buying at once (`purchase`: 500, over MQTT; `store`: 8).
    #[arg(long)]
    pub cabinets: Option<usize>,
    /// PostgreSQL server for the PostgreSQL run (a scratch database is made and dropped).
    #[arg(long, env = "TARE_BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres_admin: String,
    /// Skip the PostgreSQL run.
    #[arg(long, conflicts_with = "postgres_only")]
    pub sqlite_only: bool,
    /// `purchase`: skip the SQLite run.
    #[arg(long)]
    pub postgres_only: bool,
    /// `purchase`: also run scaled out (PostgreSQL + NATS JetStream) on each of these
    /// node counts, e.g. `1,2,3`.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=8))]
    pub scaled_out: Vec<u64>,
    /// `store`: events to append; `replay`: events in the log to rebuild from (default
    /// 1,000,000 for `replay`).
    #[arg(long)]
    pub events: Option<usize>,
    /// `store`: concurrent writers appending.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub writers: u64,
    /// `purchase`: print the figures as one JSON object (`sqlite.purchases_per_s`,
    /// `postgres.purchases_per_s`, …) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// `store`: the NATS server (fresh streams are made and deleted).
    #[arg(long, env = "TARE_BENCH_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
}

/// A memory field of this process's `/proc/self/status` (`VmHWM`, `VmRSS`), in KiB.
pub fn proc_status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    proc_status_kib("VmHWM") / 1024.0
}

/// Runs a benchmark.
pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    match a.what.as_str() {
        "purchase" => {
            crate::bench_purchase::run(crate::bench_purchase::PurchaseBench {
                orders: a.orders.unwrap_or(2_000).max(1),
                cabinets: a.cabinets.unwrap_or(500).max(1),
                postgres_admin: a.postgres_admin.clone(),
                sqlite_only: a.sqlite_only,
                postgres_only: a.postgres_only,
                scaled_out: a.scaled_out.iter().map(|&n| n as usize).collect(),
                nats: a.nats.clone(),
                json: a.json,
            })
            .await
        }
        "gateway" => {
            crate::bench_gateway::run(crate::bench_gateway::GatewayBench {
                connections: a.connections,
                publishers: a.publishers,
                messages: a.messages,
                broker: a.broker.clone(),
            })
            .await
        }
        "store" => {
            crate::bench_store::run(crate::bench_store::StoreBench {
                postgres_admin: a.postgres_admin.clone(),
                nats: a.nats.clone(),
                events: a.events.unwrap_or(5_000).max(1),
                writers: a.writers as usize,
                orders: a.orders.unwrap_or(400).max(1),
                cabinets: a.cabinets.unwrap_or(8).max(1),
            })
            .await
        }
        "callbacks" => {
            crate::bench_callbacks::run(crate::bench_callbacks::CallbacksBench {
                notifications: a.notifications,
                concurrency: a.concurrency,
            })
            .await
        }
        "providers" => crate::bench_providers::run(crate::bench_providers::ProvidersBench { calls: a.calls }).await,
        "replay" => {
            crate::bench_replay::run(crate::bench_replay::ReplayBench {
                events: a.events.unwrap_or(1_000_000).max(1),
                postgres_admin: a.postgres_admin.clone(),
                sqlite_only: a.sqlite_only,
            })
            .await
        }
        other => anyhow::bail!("unknown benchmark `{other}` (known: purchase, gateway, store, callbacks, providers, replay)"),
    }
}

/// Inserts copies of `n` real event rows one by one (autocommit) into a bare table with
/// the events table's columns and primary key: the store's raw write rate.
pub(crate) async fn raw_insert_rate(app: &App, from: i64, n: i64) -> anyhow::Result<f64> {
    let events = app.platform.events_after(from, n).await?;
    let db = &app.platform.store();
    let ddl_sqlite = "CREATE TABLE IF NOT EXISTS bench_raw_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence integer NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload text NOT NULL, metadata text NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))";
    let ddl_pg = "CREATE TABLE IF NOT EXISTS bench_raw_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))";
    let insert = "INSERT INTO bench_raw_events VALUES ($1, $2, $3, $4, $5, $6, $7)";
    let started = Instant::now();
    match db {
        tare_platform::db::Db::Sqlite { write, .. } => {
            sqlx::query(ddl_sqlite).execute(write).await?;
            for e in &events {
                sqlx::query(insert)
                    .bind(&e.aggregate_type)
                    .bind(&e.aggregate_id)
                    .bind(e.sequence)
                    .bind(&e.event_type)
                    .bind(&e.event_version)
                    .bind(e.payload.to_string())
                    .bind(e.metadata.to_string())
                    .execute(write)
                    .await?;
            }
        }
        tare_platform::db::Db::Postgres(pool) => {
            sqlx::query(ddl_pg).execute(pool).await?;
            let insert = "INSERT INTO bench_raw_events VALUES ($1, $2, $3, $4, $5, $6::json, $7::json)";
            for e in &events {
                sqlx::query(insert)
                    .bind(&e.aggregate_type)
                    .bind(&e.aggregate_id)
                    .bind(e.sequence)
                    .bind(&e.event_type)
                    .bind(&e.event_version)
                    .bind(e.payload.to_string())
                    .bind(e.metadata.to_string())
                    .execute(pool)
                    .await?;
            }
        }
    }
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

/// Inserts copies of `rows` into a bare table with the events table's columns and primary
/// key, `per_statement` rows to a statement, each statement its own transaction: the
/// store's raw rate for batched appends (`tare bench purchase`'s baseline), rows a second.
pub(crate) async fn batched_insert_rate(
    db: &tare_platform::db::Db,
    rows: &[tare_platform::feed::FeedEvent],
    per_statement: usize,
) -> anyhow::Result<f64> {
    let ddl_sqlite = "CREATE TABLE IF NOT EXISTS bench_batched_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence integer NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload text NOT NULL, metadata text NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))";
    let ddl_pg = "CREATE TABLE IF NOT EXISTS bench_batched_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))";
    let ddl = if db.is_postgres() { ddl_pg } else { ddl_sqlite };
    let started = Instant::now();
    tare_platform::on_db!(db, pool => {
        sqlx::query(ddl).execute(pool).await?;
        for chunk in rows.chunks(per_statement.max(1)) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO bench_batched_events ");
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.aggregate_type)
                    .push_bind(&e.aggregate_id)
                    .push_bind(e.sequence)
                    .push_bind(&e.event_type)
                    .push_bind(&e.event_version)
                    .push_bind(&e.payload)
                    .push_bind(&e.metadata);
            });
            q.build().execute(pool).await?;
        }
    });
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}
