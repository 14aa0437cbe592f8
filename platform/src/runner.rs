//! The saga runner and the effect executor: plumbing around `tare_sagas`.
//!
//! The runner tails the global feed, asks the sagas for each event's effects and stores
//! them with its checkpoint in one transaction. The executor claims due effects (with a
//! lease), hands each to `tare_sagas::run_effect` with the ports, and records what it
//! concluded: done, deferred (timers that re-arm, results still pending), retried with
//! backoff, or buried as a dead letter. No business rule is decided here.

use crate::clock::PlatformClock;
use crate::feed::{Feed, FeedEvent};
use crate::jobs::{ClaimedJob, Jobs};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tare_domain::coupon::CouponPolicy;
use tare_domain::{AnyEvent, UnixMs};
use tare_sagas::ports::{EffectPorts, Settings};
use tare_sagas::{decide, run_effect, EffectOutcome, SagaConfig, Scheduled};
use tokio::sync::watch;

/// The name of the order saga's feed checkpoint.
pub const ORDER_SAGA: &str = "saga:order";

/// Decodes a feed event into a domain event (`None`: an aggregate type this build does
/// not know, or a payload it cannot read — logged and skipped, never fatal).
pub fn decode(ev: &FeedEvent) -> Option<AnyEvent> {
    match AnyEvent::decode(&ev.aggregate_type, ev.payload.clone()) {
        Some(Ok(e)) => Some(e),
        Some(Err(err)) => {
            tracing::error!(position = ev.position, event_type = %ev.event_type, error = %err, "undecodable event skipped");
            None
        }
        None => None,
    }
}

/// One pass of the saga runner: decide effects for up to `batch` events after the
/// checkpoint and commit them with the new checkpoint. Returns how many events it read.
pub async fn saga_step(feed: &Feed, jobs: &Jobs, cfg: &SagaConfig, now: UnixMs, batch: i64) -> Result<usize, crate::db::DbError> {
    let from = jobs.checkpoint(ORDER_SAGA).await?;
    let events = feed.read_after(from, batch).await?;
    saga_events(jobs, ORDER_SAGA, &events, cfg, now).await?;
    Ok(events.len())
}

/// Decides the order saga's effects for `events` (in feed order) and stores them with
/// checkpoint `name` in one transaction. Every effect has a key, so deciding an event
/// twice (a redelivery, or two nodes handed it) schedules nothing new.
/// Returns whether the checkpoint moved (false: decided before).
pub async fn saga_events(jobs: &Jobs, name: &str, events: &[FeedEvent], cfg: &SagaConfig, now: UnixMs) -> Result<bool, crate::db::DbError> {
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(false);
    };
    let scheduled: Vec<(i64, Scheduled)> = events
        .iter()
        .filter_map(|ev| decode(ev).map(|e| decide(&ev.aggregate_id, &e, cfg).into_iter().map(move |s| (ev.position, s))))
        .flatten()
        .collect();
    jobs.schedule_with_checkpoint(name, last, &scheduled, now).await
}

/// Counters of the effect executor.
#[derive(Default)]
pub struct EffectCounters {
    /// Effects finished.
    pub done: AtomicU64,
    /// Transient failures.
    pub retried: AtomicU64,
    /// Dead letters.
    pub buried: AtomicU64,
}

/// The effect executor's view of the sagas: their ports (implemented over the store, the
/// providers, the device link and telemetry), their timings and this process's counters.
pub struct Effects {
    /// What the effects act on.
    pub ports: EffectPorts,
    /// Saga timings.
    pub cfg: SagaConfig,
    /// Counters.
    pub counters: EffectCounters,
    /// The platform, for its own timers (the nightly bill reconciliation), which read
    /// views and record results rather than act through the sagas' ports.
    pub platform: std::sync::OnceLock<std::sync::Weak<crate::Platform>>,
}

impl Effects {
    /// Runs one effect (plumbing: the saga's code decides everything).
    pub async fn run(&self, job: &ClaimedJob) -> EffectOutcome {
        if let tare_sagas::Effect::ReconcileBills { date } = &job.effect {
            return match self.platform.get().and_then(std::sync::Weak::upgrade) {
                Some(p) => p.run_nightly_bills(date).await,
                None => EffectOutcome::Retry("the platform is stopping".into()),
            };
        }
        run_effect(&self.ports, &self.cfg, &job.effect, &job.key).await
    }
}

/// The operator's settings as the platform keeps them current (a watch on the stored
/// coupon policy).
pub struct WatchedSettings(pub watch::Receiver<CouponPolicy>);

impl Settings for WatchedSettings {
    fn coupon_policy(&self) -> CouponPolicy {
        *self.0.borrow()
    }
}

/// Claims the due effects, runs them (orders side by side, each order's effects in
/// sequence) and records their outcomes. Returns how many it claimed.
pub async fn execute_due(
    ctx: &Effects,
    jobs: &Jobs,
    clock: &PlatformClock,
    limit: i64,
    concurrency: usize,
) -> Result<usize, crate::db::DbError> {
    let now = clock.now_ms();
    let claimed = jobs.claim_due(now, limit, 30_000).await?;
    let n = claimed.len();
    // One lane per order: its effects run one after another in commit order (a door's
    // open is recorded before its close), different orders run side by side.
    let mut lanes: Vec<Vec<ClaimedJob>> = Vec::new();
    let mut lane_of: HashMap<String, usize> = HashMap::new();
    for job in claimed {
        let i = *lane_of.entry(job.effect.serial_key().to_string()).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[i].push(job);
    }
    let results: Vec<(ClaimedJob, EffectOutcome)> = futures::stream::iter(lanes)
        .map(|lane| async move {
            let mut out = Vec::with_capacity(lane.len());
            for job in lane {
                let outcome = ctx.run(&job).await;
                out.push((job, outcome));
            }
            out
        })
        .buffer_unordered(concurrency)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    let now = clock.now_ms();
    for (job, outcome) in results {
        match outcome {
            EffectOutcome::Done => {
                ctx.counters.done.fetch_add(1, Ordering::Relaxed);
                jobs.complete(&job.key, now).await?;
            }
            EffectOutcome::Defer(t) => jobs.defer(&job.key, t, None, now).await?,
            EffectOutcome::Retry(err) => {
                ctx.counters.retried.fetch_add(1, Ordering::Relaxed);
                let backoff = (250_i64 << job.attempts.clamp(0, 8)).min(60_000);
                tracing::warn!(key = %job.key, attempts = job.attempts + 1, error = %err, "effect failed, will retry");
                jobs.defer(&job.key, now + backoff, Some(&err), now).await?;
            }
            EffectOutcome::Bury(err) => {
                ctx.counters.buried.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %job.key, error = %err, "effect dead-lettered");
                jobs.bury(&job.key, &err, now).await?;
            }
        }
    }
    Ok(n)
}
