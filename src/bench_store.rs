//! `tare bench store`: the scaled-out store on PostgreSQL and NATS JetStream, each figure
//! beside a raw baseline measured in the same run (the machines are shared and noisy):
//!
//! - events appended per second by concurrent writers through the aggregates (load,
//!   decide, append with metadata, sequenced into the feed) ÷ plain single-row inserts
//!   of the same rows into a bare table;
//! - complete purchases per second on the same node (relay, partitioned JetStream
//!   workers, effects), as event rows per second ÷ the same raw inserts;
//! - the global feed's tail lag: from a writer's commit to a tailing reader seeing the
//!   event (p50 / p99 / max), measured while the writers run;
//! - the JetStream relay's rate (a fresh relay catching up on the whole feed) ÷ a raw
//!   asynchronous publish of the same messages, with message ids, to a bare stream.

use crate::app::{App, AppConfig};
use crate::bench::{audit_provider_charges, raw_insert_rate, run_purchases};
use crate::fleet::{Fleet, FleetSpec, FleetTransport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tare_domain::{Cents, Sku};
use tare_platform::cluster::{Nats, NatsConfig, Relay};
use tare_platform::StoreConfig;

/// What to run.
#[derive(Debug, Clone)]
pub struct StoreBench {
    /// PostgreSQL server (a scratch database is made and dropped).
    pub postgres_admin: String,
    /// NATS server (fresh streams are made and deleted).
    pub nats: String,
    /// Events to append.
    pub events: usize,
    /// Concurrent writers.
    pub writers: usize,
    /// Purchases.
    pub orders: usize,
    /// Cabinets buying at once.
    pub cabinets: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the benchmark and prints a Markdown table.
pub async fn run(b: StoreBench) -> anyhow::Result<()> {
    let url = tare_platform::db::create_scratch_postgres(&b.postgres_admin, "tare_bench").await?;
    let ns = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let result = run_on(&b, &url, &ns).await;
    tare_platform::db::drop_scratch_postgres(&b.postgres_admin, &url).await?;
    for n in [ns.clone(), format!("{ns}relay"), format!("{ns}raw")] {
        let mut cfg = NatsConfig::new(b.nats.clone());
        cfg.namespace = n;
        if let Ok(n) = Nats::connect(&cfg).await {
            let _ = n.delete_streams().await;
        }
    }
    result
}

/// What the appends phase measured.
struct AppendFigures {
    per_s: f64,
    raw_per_s: f64,
    /// Commit → seen by a tailing reader, ms, sorted.
    lags: Vec<f64>,
}

/// What the purchases phase measured.
struct PurchaseFigures {
    per_s: f64,
    events_per_purchase: f64,
    raw_rows_per_s: f64,
    summary: crate::bench::Summary,
}

/// What the relay phase measured.
struct RelayFigures {
    relayed: usize,
    per_s: f64,
    raw_publish_per_s: f64,
}

async fn run_on(b: &StoreBench, url: &str, ns: &str) -> anyhow::Result<()> {
    let mut cfg = AppConfig::embedded(std::env::temp_dir());
    cfg.store = StoreConfig::Postgres(url.to_string());
    let mut nats_cfg = NatsConfig::new(b.nats.clone());
    nats_cfg.namespace = ns.to_string();
    cfg.nats = Some(nats_cfg);
    cfg.saga.stable_wait_ms = 0;
    cfg.pg_max_connections = (b.writers as u32 + 8).min(40);
    let app = App::start(cfg).await?;

    let appends = measure_appends(b, &app).await?;
    let purchases = measure_purchases(b, &app).await?;
    let head = app.platform.feed_head().await?;
    // The node's own relay holds the lead on the same lock key: stop the node first.
    app.stop().await;
    let relay = measure_relay(b, url, ns, head).await?;
    print_report(b, &appends, &purchases, &relay);
    Ok(())
}

/// Phase 1, appends by concurrent writers, with a reader tailing the feed meanwhile.
async fn measure_appends(b: &StoreBench, app: &App) -> anyhow::Result<AppendFigures> {
    let platform = app.platform.clone();
    let head0 = platform.feed_head().await?;
    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tailer = {
        let (platform, committed, done) = (platform.clone(), committed.clone(), done.clone());
        let target = b.events;
        tokio::spawn(async move {
            let mut lags = Vec::with_capacity(target);
            let mut pos = head0;
            while lags.len() < target {
                let batch = platform.events_after(pos, 1000).await.unwrap_or_default();
                if batch.is_empty() {
                    if done.load(std::sync::atomic::Ordering::Relaxed) && lags.len() >= target {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let seen = Instant::now();
                let map = committed.lock().unwrap_or_else(|p| p.into_inner());
                for ev in &batch {
                    pos = ev.position;
                    if ev.aggregate_type == "product" {
                        // Seen before the writer noted its commit: no lag to speak of.
                        let lag = map
                            .get(&ev.aggregate_id)
                            .map_or(0.0, |t| seen.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                        lags.push(lag);
                    }
                }
            }
            lags
        })
    };
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..b.writers {
        let (platform, committed) = (platform.clone(), committed.clone());
        let share = b.events / b.writers + usize::from(w < b.events % b.writers);
        writers.push(tokio::spawn(async move {
            for i in 0..share {
                let sku = format!("bench-{w}-{i}");
                platform
                    .register_product(
                        Sku::parse("sku", &sku)?,
                        format!("Bench item {w}/{i}"),
                        tare_domain::Grams::of(100.0),
                        Cents::new(100),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("append: {e}"))?;
                committed.lock().unwrap_or_else(|p| p.into_inner()).insert(sku, Instant::now());
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let append_secs = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lags = tokio::time::timeout(Duration::from_secs(60), tailer).await??;
    lags.sort_by(|a, b| a.total_cmp(b));
    let appends_per_s = b.events as f64 / append_secs;
    let raw_events = raw_insert_rate(app, head0, b.events.min(3000) as i64).await?;

    Ok(AppendFigures {
        per_s: appends_per_s,
        raw_per_s: raw_events,
        lags,
    })
}

/// Phase 2, purchases on the same scaled-out node.
async fn measure_purchases(b: &StoreBench, app: &App) -> anyhow::Result<PurchaseFigures> {
    let platform = app.platform.clone();
    let fleet = Arc::new(
        Fleet::provision(
            app,
            &FleetSpec {
                cabinets: b.cabinets,
                capacity: 40,
                transport: FleetTransport::InProcess,
                ..FleetSpec::default()
            },
        )
        .await?,
    );
    let head1 = platform.feed_head().await?;
    let started = Instant::now();
    let mut summary = run_purchases(&fleet, b.orders, 42).await?;
    let purchase_secs = started.elapsed().as_secs_f64();
    audit_provider_charges(app, &mut summary);
    let head2 = platform.feed_head().await?;
    let events_per_purchase = (head2 - head1) as f64 / b.orders as f64;
    let purchases_per_s = b.orders as f64 / purchase_secs;
    let raw_purchase_rows = raw_insert_rate(app, head1, 3000).await?;
    eprintln!("{summary}");

    Ok(PurchaseFigures {
        per_s: purchases_per_s,
        events_per_purchase,
        raw_rows_per_s: raw_purchase_rows,
        summary,
    })
}

/// Phase 3, the relay: a fresh relay (its own streams) catches up on the whole feed up
/// to `head`, against a raw asynchronous publish of the same messages to a bare stream.
async fn measure_relay(b: &StoreBench, url: &str, ns: &str, head: i64) -> anyhow::Result<RelayFigures> {
    let mut relay_cfg = NatsConfig::new(b.nats.clone());
    relay_cfg.namespace = format!("{ns}relay");
    let relay_nats = Nats::connect(&relay_cfg).await?;
    let mut relayed = 0usize;
    let db = tare_platform::db::Db::open_postgres(url, 4).await?;
    let relay = Relay::new(relay_nats.clone(), tare_platform::feed::Feed::new(db.clone()), db.clone());
    let started_relay = Instant::now();
    loop {
        let n = relay.step(1000).await?;
        relayed += n;
        if n == 0 && relay_nats.relayed_head().await? >= head {
            break;
        }
    }
    let relay_secs = started_relay.elapsed().as_secs_f64();
    let relay_rate = relayed as f64 / relay_secs;

    let mut raw_cfg = NatsConfig::new(b.nats.clone());
    raw_cfg.namespace = format!("{ns}raw");
    let raw_nats = Nats::connect(&raw_cfg).await?;
    let feed = tare_platform::feed::Feed::new(db.clone());
    let mut messages = Vec::new();
    let mut pos = 0;
    loop {
        let batch = feed.read_after(pos, 5000).await?;
        let Some(last) = batch.last() else { break };
        pos = last.position;
        for ev in batch {
            messages.push((ev.event_id.clone(), serde_json::to_vec(&ev)?));
        }
    }
    let subject = raw_nats.event_subject(0, "raw");
    let started_raw = Instant::now();
    for chunk in messages.chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (id, payload) in chunk {
            acks.push(
                raw_nats
                    .js
                    .send_publish(
                        subject.clone(),
                        async_nats::jetstream::message::PublishMessage::build()
                            .payload(payload.clone().into())
                            .message_id(id),
                    )
                    .await?,
            );
        }
        for a in acks {
            a.await?;
        }
    }
    let raw_publish_rate = messages.len() as f64 / started_raw.elapsed().as_secs_f64();
    db.close().await;

    Ok(RelayFigures {
        relayed,
        per_s: relay_rate,
        raw_publish_per_s: raw_publish_rate,
    })
}

fn print_report(b: &StoreBench, a: &AppendFigures, p: &PurchaseFigures, r: &RelayFigures) {
    let (appends_per_s, raw_events, lags) = (a.per_s, a.raw_per_s, &a.lags);
    let (purchases_per_s, events_per_purchase, raw_purchase_rows, summary) = (p.per_s, p.events_per_purchase, p.raw_rows_per_s, &p.summary);
    let (relayed, relay_rate, raw_publish_rate) = (r.relayed, r.per_s, r.raw_publish_per_s);
    println!(
        "\n## tare bench store (PostgreSQL + NATS JetStream; {} appends by {} writers, {} purchases on {} cabinets)\n",
        b.events, b.writers, b.orders, b.cabinets
    );
    println!("| figure | measured | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| events appended through the aggregates | {appends_per_s:.0} events/s | raw single-row inserts of the same rows: {raw_events:.0}/s | {:.3} |",
        appends_per_s / raw_events
    );
    println!(
        "| complete purchases (relay + partitioned JetStream workers + effects) | {purchases_per_s:.1} purchases/s = {:.0} event rows/s ({events_per_purchase:.1} per purchase) | raw inserts of the same rows: {raw_purchase_rows:.0}/s | {:.3} |",
        purchases_per_s * events_per_purchase,
        purchases_per_s * events_per_purchase / raw_purchase_rows
    );
    println!(
        "| JetStream relay (fresh relay catching up on {relayed} feed events) | {relay_rate:.0} events/s | raw async JetStream publish of the same messages: {raw_publish_rate:.0}/s | {:.3} |",
        relay_rate / raw_publish_rate
    );
    println!(
        "| global-feed tail lag (commit → a tailing reader sees it), during the appends | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | — | — |",
        percentile(lags, 0.5),
        percentile(lags, 0.99),
        lags.last().copied().unwrap_or(0.0)
    );
    println!(
        "\npurchases: {} ({}); peak memory (VmHWM, whole process): {:.1} MiB",
        b.orders,
        if summary.is_consistent() {
            "all terminal, charges exact, no double charge"
        } else {
            "INCONSISTENT"
        },
        crate::bench::peak_rss_mib()
    );
}
