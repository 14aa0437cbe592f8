//! The saga runner and the effect executor: plumbing around `tare_sagas`.
//!
//! The runner tails the global feed, asks the sagas for each event's effects and stores
//! them with its checkpoint in one transaction. [`Effects`] runs one effect: it hands it
//! to `tare_sagas::run_effect` with the ports; the executor ([`crate::effect_lanes`])
//! claims, orders and records them. No business rule is decided here.

use crate::feed::{Feed, FeedEvent};
use crate::jobs::{ClaimedJob, Jobs};
use std::sync::atomic::AtomicU64;
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

/// Where a loop stands in the feed, as it last wrote it: read from the table once, then
/// kept in memory, and read again only when a write finds the table elsewhere (another
/// node moved it, or a failure left it unknown). Spares every pass a statement.
#[derive(Debug)]
pub struct Cursor(std::sync::atomic::AtomicI64);

impl Cursor {
    const UNKNOWN: i64 = -1;

    /// A cursor that reads the table first.
    pub fn unknown() -> Self {
        Self(std::sync::atomic::AtomicI64::new(Self::UNKNOWN))
    }

    /// The position, if known.
    pub fn get(&self) -> Option<i64> {
        Some(self.0.load(std::sync::atomic::Ordering::Acquire)).filter(|p| *p != Self::UNKNOWN)
    }

    /// Where the table says the loop stands (after a successful write of it).
    pub fn set(&self, position: i64) {
        self.0.store(position, std::sync::atomic::Ordering::Release);
    }

    /// Read the table next time.
    pub fn forget(&self) {
        self.set(Self::UNKNOWN);
    }
}

/// One pass of the saga runner: decide effects for up to `batch` events after the
/// checkpoint and commit them with the new checkpoint. Returns how many events it read.
pub async fn saga_step(
    feed: &Feed,
    jobs: &Jobs,
    cfg: &SagaConfig,
    now: UnixMs,
    batch: i64,
    cursor: &Cursor,
) -> Result<usize, crate::db::DbError> {
    let from = match cursor.get() {
        Some(p) => p,
        None => jobs.checkpoint(ORDER_SAGA).await?,
    };
    cursor.forget();
    let events = feed.read_after(from, batch).await?;
    match events.last() {
        None => cursor.set(from),
        Some(last) => {
            if saga_events(jobs, ORDER_SAGA, &events, cfg, now).await? {
                cursor.set(last.position);
            }
        }
    }
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

#[async_trait::async_trait]
impl crate::effect_lanes::RunEffect for Effects {
    async fn run(&self, job: &ClaimedJob) -> EffectOutcome {
        Effects::run(self, job).await
    }

    fn counters(&self) -> &EffectCounters {
        &self.counters
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
