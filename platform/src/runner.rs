//! The saga runner and the effect executor: plumbing around `tare_sagas`.
//!
//! The runner tails the global feed, asks the sagas for each event's effects and stores
//! them with its checkpoint in one transaction. The executor claims due effects (with a
//! lease), hands each to `tare_sagas::run_effect` with the ports, and records what it
//! concluded: done, deferred (timers that re-arm, results still pending), retried with
//! backoff, or buried as a dead letter. No business rule is decided here.

use std::sync::Arc;
use crate::feed::{Feed, FeedEvent};
use crate::jobs::{ClaimedJob, Jobs};
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

/// Effects running now, by order (an effect's serial key): the rest of an order's
/// effects wait for its running lane, other orders' start beside it.
pub struct EffectLanes {
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl EffectLanes {
    /// At most `concurrency` orders' effects at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            running: std::sync::Mutex::new(std::collections::HashSet::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Claims the due effects and starts them (orders side by side, each order's effects in
/// sequence) on tasks of their own, each lane recording its outcomes as it goes. It does
/// not wait for them: one slow effect — a provider call waiting out its timeout — must
/// not hold back every other order's. An effect whose order already has a lane running
/// is given back (claimed again once that lane ends, which wakes the loop). Returns how
/// many it started.
pub async fn execute_due(
    ctx: &Arc<crate::Platform>,
    lanes_now: &Arc<EffectLanes>,
    limit: i64,
) -> Result<usize, crate::db::DbError> {
    let (jobs, clock) = (&ctx.jobs, &ctx.clock);
    let free = lanes_now.permits.available_permits();
    if free == 0 {
        return Ok(0);
    }
    let claimed = jobs.claim_due(clock.now_ms(), limit, 30_000).await?;
    // One lane per order: its effects run one after another in commit order (a door's
    // open is recorded before its close), different orders run side by side.
    let mut lanes: Vec<(String, Vec<ClaimedJob>)> = Vec::new();
    let mut lane_of: HashMap<String, usize> = HashMap::new();
    for job in claimed {
        let key = job.effect.serial_key().to_string();
        let i = *lane_of.entry(key.clone()).or_insert_with(|| {
            lanes.push((key, Vec::new()));
            lanes.len() - 1
        });
        lanes[i].1.push(job);
    }
    let mut started = 0;
    for (key, lane) in lanes {
        let permit = match lanes_now.permits.clone().try_acquire_owned() {
            Ok(p) if lanes_now.running().insert(key.clone()) => p,
            _ => {
                for job in &lane {
                    jobs.release(&job.key).await?;
                }
                continue;
            }
        };
        started += lane.len();
        let (ctx, lanes_now) = (ctx.clone(), lanes_now.clone());
        tokio::spawn(async move {
            for job in lane {
                let outcome = ctx.effects.run(&job).await;
                if let Err(e) = record(&ctx.effects, &ctx.jobs, &job, outcome, ctx.clock.now_ms()).await {
                    // The claim's lease runs out and the effect is run again (effects are
                    // idempotent: a crash between running and recording does the same).
                    tracing::error!(key = %job.key, error = %e, "recording an effect's outcome failed");
                }
            }
            lanes_now.running().remove(&key);
            drop(permit);
            ctx.jobs.wake();
        });
    }
    Ok(started)
}

/// Records what running `job` came to.
async fn record(ctx: &Effects, jobs: &Jobs, job: &ClaimedJob, outcome: EffectOutcome, now: UnixMs) -> Result<(), crate::db::DbError> {
    match outcome {
        EffectOutcome::Done => {
            ctx.counters.done.fetch_add(1, Ordering::Relaxed);
            jobs.complete(&job.key, now).await
        }
        EffectOutcome::Defer(t) => jobs.defer(&job.key, t, None, now).await,
        EffectOutcome::Retry(err) => {
            ctx.counters.retried.fetch_add(1, Ordering::Relaxed);
            let backoff = (250_i64 << job.attempts.clamp(0, 8)).min(60_000);
            tracing::warn!(key = %job.key, attempts = job.attempts + 1, error = %err, "effect failed, will retry");
            jobs.defer(&job.key, now + backoff, Some(&err), now).await
        }
        EffectOutcome::Bury(err) => {
            ctx.counters.buried.fetch_add(1, Ordering::Relaxed);
            tracing::error!(key = %job.key, error = %err, "effect dead-lettered");
            jobs.bury(&job.key, &err, now).await
        }
    }
}
