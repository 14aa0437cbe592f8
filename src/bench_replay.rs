//! `tare bench replay` [E2]: how fast every read model is rebuilt from the log, against
//! a plain sequential read of the same rows in the same run.
//!
//! Per store: real purchases (and a refund each tenth) are run on a fresh store to get
//! the events of real orders and payments, which are then copied under new ids until the
//! log holds `--events` events; then, twice each, alternating: (a) the baseline — the
//! feed's rows read in position order with their payloads as text, nothing decoded —
//! and (b) the rebuild — the same rows read, decoded and folded into every projection in
//! memory (`tare replay --verify`'s fold). The figure is (b)'s events/s ÷ (a)'s.

use crate::app::{App, AppConfig};
use crate::fleet::{Fleet, FleetSpec, FleetTransport};
use anyhow::Context;
use std::sync::Arc;
use std::time::Instant;
use tare_domain::{DoorNo, LaneNo};
use tare_platform::db::Db;
use tare_platform::feed::Feed;
use tare_platform::{on_db, on_read_db, StoreConfig};

/// The replay benchmark's settings.
pub struct ReplayBench {
    /// Events in the log to rebuild from.
    pub events: usize,
    /// PostgreSQL server for the scratch database.
    pub postgres_admin: String,
    /// Skip PostgreSQL.
    pub sqlite_only: bool,
}

/// One store's figures.
struct Figures {
    store: &'static str,
    events: i64,
    read_per_s: f64,
    rebuild_per_s: f64,
    documents: usize,
}

/// Runs the benchmark and prints its report.
pub async fn run(b: ReplayBench) -> anyhow::Result<()> {
    let mut figures = Vec::new();
    let dir = std::env::temp_dir().join(format!("tare-bench-replay-{}", uuid::Uuid::new_v4().simple()));
    figures.push(on_store(&b, StoreConfig::Sqlite(dir.clone()), "SQLite").await?);
    let _ = std::fs::remove_dir_all(&dir);
    if !b.sqlite_only {
        let url = tare_platform::db::create_scratch_postgres(&b.postgres_admin, "tare_bench_replay").await?;
        let pg = on_store(&b, StoreConfig::Postgres(url.clone()), "PostgreSQL").await;
        let _ = tare_platform::db::drop_scratch_postgres(&b.postgres_admin, &url).await;
        figures.push(pg?);
    }
    println!("\n| store | events | rebuild events/s ÷ plain read events/s | rebuild events/s | plain read events/s | documents |");
    println!("|---|---|---|---|---|---|");
    for f in &figures {
        println!(
            "| {} | {} | **{:.3}** | {:.0} | {:.0} | {} |",
            f.store,
            f.events,
            f.rebuild_per_s / f.read_per_s,
            f.rebuild_per_s,
            f.read_per_s,
            f.documents
        );
    }
    println!("peak memory (VmHWM): {:.1} MiB", crate::bench::peak_rss_mib());
    Ok(())
}

async fn on_store(b: &ReplayBench, store: StoreConfig, name: &'static str) -> anyhow::Result<Figures> {
    let mut cfg = AppConfig::embedded(std::env::temp_dir());
    cfg.store = store.clone();
    cfg.saga.stable_wait_ms = 0;
    let app = App::start(cfg).await.context("starting the app")?;
    let spec = FleetSpec {
        cabinets: 4,
        doors: 2,
        capacity: 40,
        pk: "brp".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await?);
    let shopper = fleet.new_shopper("13800000001", "alipay", "once").await?;
    for n in 0..40_usize {
        let p = fleet
            .purchase(&shopper, n % 4, DoorNo::of(1 + (n % 2) as u8), &[(LaneNo::of(1), 1)])
            .await?;
        if n % 10 == 0 {
            let body = serde_json::json!({"amount_cents": 1, "reason": "bench"});
            fleet
                .client
                .post(&format!("/api/v1/orders/{}/refunds", p.order_id), &fleet.client.admin, &body)
                .await?;
        }
    }
    app.stop().await;
    let db = match &store {
        StoreConfig::Sqlite(dir) => Db::open_sqlite(dir).await?,
        StoreConfig::Postgres(url) => Db::open_postgres(url, 4).await?,
    };
    grow(&db, b.events as i64).await?;
    let feed = Feed::new(db.clone());
    let head = feed.head().await?;
    let projections = tare_projections::all();
    let (mut read, mut rebuild, mut documents) = (f64::MAX, f64::MAX, 0);
    for _ in 0..2 {
        let t = Instant::now();
        let n = plain_read(&db).await?;
        read = read.min(t.elapsed().as_secs_f64());
        anyhow::ensure!(n == head, "the plain read saw {n} of {head} events");
        let t = Instant::now();
        let r = tare_platform::replay::fold(&db, &projections, head, |_, _| {}).await?;
        rebuild = rebuild.min(t.elapsed().as_secs_f64());
        documents = r.docs.len();
        eprintln!("{name}: read {:.2}s, rebuild {:.2}s", read, rebuild);
    }
    db.close().await;
    Ok(Figures {
        store: name,
        events: head,
        read_per_s: head as f64 / read,
        rebuild_per_s: head as f64 / rebuild,
        documents,
    })
}

/// Copies the orders' and payments' events under new ids until the log holds `target`.
async fn grow(db: &Db, target: i64) -> anyhow::Result<()> {
    type Row = (String, String, i64, String, String, String, String);
    let sql = if db.is_postgres() {
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, metadata::text FROM events WHERE aggregate_type IN ('order', 'payment') ORDER BY aggregate_id, aggregate_type, sequence"
    } else {
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata FROM events WHERE aggregate_type IN ('order', 'payment') ORDER BY aggregate_id, aggregate_type, sequence"
    };
    let template: Vec<Row> = on_read_db!(db, pool => sqlx::query_as(sql).fetch_all(pool).await?);
    anyhow::ensure!(!template.is_empty(), "no purchase events to copy");
    let feed = Feed::new(db.clone());
    let mut have = feed.head().await?;
    let cast = if db.is_postgres() { "::json" } else { "" };
    let mut copy = 0;
    while have < target {
        copy += 1;
        for chunk in template.chunks(1_000) {
            on_db!(db, pool => {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ");
                q.push_values(chunk, |mut r, e| {
                    r.push_bind(e.0.clone())
                        .push_bind(format!("{}-r{copy}", e.1))
                        .push_bind(e.2)
                        .push_bind(e.3.clone())
                        .push_bind(e.4.clone())
                        .push_bind(e.5.clone())
                        .push_unseparated(cast)
                        .push_bind(e.6.clone())
                        .push_unseparated(cast);
                });
                q.build().execute(pool).await?;
            });
        }
        while feed.sequence_postgres(100_000).await? > 0 {}
        have = feed.head().await?;
        if copy % 100 == 0 {
            eprintln!("log: {have} events");
        }
    }
    // A store in service has its statistics; one just filled has not until autovacuum
    // gets to it (meanwhile PostgreSQL plans the bounded feed ⋈ events read badly).
    if db.is_postgres() {
        on_db!(db, pool => { sqlx::query("ANALYZE feed, events").execute(pool).await?; });
    }
    Ok(())
}

/// Reads every feed row in position order, payloads as text, decoding nothing; returns
/// how many.
async fn plain_read(db: &Db) -> anyhow::Result<i64> {
    let cast = if db.is_postgres() { "::text" } else { "" };
    let sql = format!(
        "SELECT f.position, f.aggregate_type, f.aggregate_id, f.sequence, e.event_type, e.payload{cast}, e.metadata{cast} \
         FROM feed f JOIN events e ON e.aggregate_type = f.aggregate_type AND e.aggregate_id = f.aggregate_id AND e.sequence = f.sequence \
         WHERE f.position > $1 ORDER BY f.position LIMIT 5000"
    );
    let (mut at, mut n) = (0_i64, 0_i64);
    loop {
        let rows: Vec<(i64, String, String, i64, String, String, String)> =
            on_read_db!(db, pool => sqlx::query_as(&sql).bind(at).fetch_all(pool).await?);
        let Some(last) = rows.last() else { break };
        at = last.0;
        n += rows.len() as i64;
    }
    Ok(n)
}
