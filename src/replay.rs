//! `tare replay` [E2]: the auditor's and the operator's way back through the log.
//!
//! - rebuild: fold the whole feed again into one or all read models and install them
//!   (each rebuilt view gets its own floor, so the live runners go on from there);
//! - `--verify`: fold into memory and compare with the live views, document by document
//!   (exit 1 and every difference when they disagree);
//! - `--stream order:ID|cabinet:ID|shopper:ID` and/or `--from-ts/--to-ts`: print the
//!   events of one stream (an order's with its payment's) or time window, each with the saga steps it caused and where
//!   each step stands.

use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;
use tare_platform::db::Db;
use tare_platform::feed::Feed;
use tare_platform::replay;

/// `tare replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// PostgreSQL URL (otherwise the embedded store in --data).
    #[arg(long, env = "TARE_POSTGRES_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Where the embedded store lives.
    #[arg(long, env = "TARE_DATA", default_value = "data")]
    data: PathBuf,
    /// Only these views (repeatable); all by default.
    #[arg(long = "only", value_name = "VIEW")]
    only: Vec<String>,
    /// Compare a rebuild in memory with the live views instead of replacing them.
    #[arg(long)]
    verify: bool,
    /// Audit one stream: `order:ID`, `cabinet:ID`, `shopper:ID` (or any
    /// `aggregate_type:ID`).
    #[arg(long, value_name = "TYPE:ID")]
    stream: Option<String>,
    /// Audit from this time (Unix ms, inclusive).
    #[arg(long)]
    from_ts: Option<i64>,
    /// Audit up to this time (Unix ms, exclusive).
    #[arg(long)]
    to_ts: Option<i64>,
}

/// Runs `tare replay`; the exit status (1 when `--verify` found differences).
pub async fn run(a: ReplayArgs) -> anyhow::Result<i32> {
    let db = match &a.postgres {
        Some(url) => Db::open_postgres(url, 4).await,
        None => Db::open_sqlite(&a.data).await,
    }
    .context("opening the store")?;
    let code = if a.stream.is_some() || a.from_ts.is_some() || a.to_ts.is_some() {
        audit(&db, &a).await.map(|()| 0)
    } else {
        rebuild(&db, &a).await
    };
    db.close().await;
    code
}

/// The projections `only` names (all when empty); an unknown name is refused with the
/// list of known ones.
fn selected(only: &[String]) -> anyhow::Result<Vec<Box<dyn tare_projections::Projection>>> {
    let all = tare_projections::all();
    let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
    if let Some(bad) = only.iter().find(|o| !known.contains(&o.as_str())) {
        bail!("--only {bad}: no such view (views: {})", known.join(", "));
    }
    Ok(all
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|o| o == p.name()))
        .collect())
}

async fn rebuild(db: &Db, a: &ReplayArgs) -> anyhow::Result<i32> {
    let projections = selected(&a.only)?;
    let views: BTreeSet<String> = projections.iter().map(|p| p.name().to_string()).collect();
    let through = if a.verify {
        replay::live_position(db).await?
    } else {
        Feed::new(db.clone()).head().await?
    };
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let rebuilt = replay::fold(db, &projections, through, |at, events| progress(tty, at, through, events, started)).await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "\rfolded {} events through position {} into {} documents of {} view(s) in {secs:.2}s ({:.0} events/s)",
        rebuilt.events,
        rebuilt.through,
        rebuilt.docs.len(),
        views.len(),
        rebuilt.events as f64 / secs
    );
    if a.verify {
        let live = replay::live(db, &views).await?;
        let diffs = replay::differences(&live, &rebuilt.docs);
        for d in &diffs {
            println!("{d}");
        }
        if diffs.is_empty() {
            println!(
                "verified: {} documents of {} view(s) are what the log makes",
                live.len(),
                views.len()
            );
            return Ok(0);
        }
        println!("{} difference(s)", diffs.len());
        return Ok(1);
    }
    replay::install(db, &rebuilt, &views).await?;
    println!(
        "rebuilt {} view(s) through position {}: {}",
        views.len(),
        rebuilt.through,
        views.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(0)
}

/// A progress bar with the rate, redrawn in place on a terminal.
fn progress(tty: bool, at: i64, through: i64, events: u64, started: Instant) {
    if !tty {
        return;
    }
    let done = if through > 0 { at as f64 / through as f64 } else { 1.0 };
    let width = 30;
    let filled = (done * width as f64).round() as usize;
    let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r[{}{}] {:>5.1}% {at}/{through} {rate:.0} events/s",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width)),
        done * 100.0
    );
    let _ = err.flush();
}

async fn audit(db: &Db, a: &ReplayArgs) -> anyhow::Result<()> {
    let stream = match a.stream.as_deref() {
        Some(s) => Some(
            s.split_once(':')
                .with_context(|| format!("--stream {s}: expected TYPE:ID (order:…, cabinet:…, shopper:…)"))?,
        ),
        None => None,
    };
    let feed = Feed::new(db.clone());
    let jobs = tare_platform::jobs::Jobs::new(db.clone());
    let cfg = tare_sagas::SagaConfig::default();
    let mut at = 0;
    let mut shown = 0;
    loop {
        let batch = feed.read_after(at, 5_000).await?;
        let Some(last) = batch.last().map(|e| e.position) else { break };
        at = last;
        for ev in &batch {
            // An order's stream includes its payment (same id): the money of the purchase.
            let in_stream = |(t, id): (&str, &str)| {
                ev.aggregate_id == id && (ev.aggregate_type == t || (t == "order" && ev.aggregate_type == "payment"))
            };
            if stream.is_some_and(|s| !in_stream(s)) {
                continue;
            }
            let time = ev.time();
            if a.from_ts.is_some_and(|f| time < f) || a.to_ts.is_some_and(|t| time >= t) {
                continue;
            }
            shown += 1;
            println!(
                "#{} {} {}:{} {} {}",
                ev.position, time, ev.aggregate_type, ev.aggregate_id, ev.event_type, ev.payload
            );
            let Some(event) = tare_platform::runner::decode(ev) else { continue };
            for step in tare_sagas::decide(&ev.aggregate_id, &event, &cfg) {
                let state = jobs.describe(&step.key).await?.unwrap_or_else(|| "not stored".into());
                println!("    -> {} [{state}]", step.key);
            }
        }
    }
    eprintln!("{shown} event(s)");
    Ok(())
}
