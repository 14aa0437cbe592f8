//! The effect executor: claims due effects and runs them in lanes, one lane per order
//! (or device command, restock, …), without waiting for the slowest.
//!
//! An order's effects must run one after another in the order their causes were
//! committed (a door's open is recorded before its close); different orders' effects are
//! independent. A lane is a task that runs its order's claimed effects in turn and
//! records each outcome as it goes; an effect claimed while its order's lane is running
//! joins the back of that lane. The loop keeps claiming while lanes run, so one provider
//! call waiting out its timeout holds back only its own order — where a batch that waited
//! for all its lanes held back every order behind it.
//!
//! A claim is a lease in the job table: if this process dies, its claimed effects come
//! back to whoever looks after the lease, and effects are idempotent by key. Within this
//! process, a key already in a lane is never run twice (a lease that ran out while the
//! effect waited in its lane is renewed by the claim that returns it, nothing more).

use crate::clock::PlatformClock;
use crate::db::DbError;
use crate::jobs::{ClaimedJob, Jobs};
use crate::runner::EffectCounters;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tare_sagas::EffectOutcome;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// What runs one claimed effect and counts the outcomes: the sagas' effects
/// ([`crate::runner::Effects`]) in the platform, a stand-in in tests.
#[async_trait::async_trait]
pub trait RunEffect: Send + Sync + 'static {
    /// Runs `job` and says what it concluded.
    async fn run(&self, job: &ClaimedJob) -> EffectOutcome;
    /// Where outcomes are counted.
    fn counters(&self) -> &EffectCounters;
}

/// How long a claim holds an effect before anyone may claim it again.
const LEASE_MS: i64 = 30_000;

/// Which effects this process holds, and in which lane each waits.
#[derive(Default)]
struct LaneBook {
    /// Per serial key (an order, a command, …): the claimed effects waiting behind the
    /// one its lane is running. A key is present exactly while its lane runs.
    waiting: HashMap<String, VecDeque<ClaimedJob>>,
    /// Every claimed effect's key, from its claim until its outcome is recorded.
    held: HashSet<String>,
}

/// The effect executor (see the module documentation).
pub struct EffectLanes {
    ctx: Arc<dyn RunEffect>,
    jobs: Jobs,
    clock: PlatformClock,
    book: Mutex<LaneBook>,
    /// Lanes running effects at once.
    running: Arc<Semaphore>,
    /// Effects held at once (claimed, running or waiting in a lane).
    max_held: usize,
    /// The lanes' tasks (dropped handles detach: a platform dropped without stopping
    /// leaves its lanes to finish, as a stopped one does).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
    /// Effects done and not yet marked so in the table: marked together, one statement
    /// for many, by the next claim (until then their leases keep them from being claimed
    /// again; after a crash they run again, as any effect whose outcome was not recorded).
    done: Mutex<Vec<String>>,
    /// When done effects were last pruned (Unix ms; see [`Self::prune`]).
    last_prune: std::sync::atomic::AtomicI64,
}

/// How long a done effect is kept: a week of history for people looking into an order's
/// effects, then pruned ([`Jobs::prune_done`]).
pub const DONE_RETENTION_MS: i64 = 7 * 24 * 3_600_000;

/// Pruning runs at most once a minute and deletes at most this many rows a time, so the
/// embedded store's one writer is never held long.
const PRUNE_BATCH: i64 = 5_000;

impl EffectLanes {
    /// An executor running at most `concurrency` lanes at once and holding at most
    /// `max_held` claimed effects.
    pub fn new(ctx: Arc<dyn RunEffect>, jobs: Jobs, clock: PlatformClock, concurrency: usize, max_held: usize) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            jobs,
            clock,
            book: Mutex::default(),
            running: Arc::new(Semaphore::new(concurrency.max(1))),
            max_held: max_held.max(1),
            tasks: Mutex::default(),
            last_prune: std::sync::atomic::AtomicI64::new(0),
            stopping: AtomicBool::new(false),
            done: Mutex::default(),
        })
    }

    fn book(&self) -> MutexGuard<'_, LaneBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many effects this process holds (claimed and not yet recorded).
    pub fn held(&self) -> usize {
        self.book().held.len()
    }

    /// Marks the effects done since the last claim, then claims due effects while there
    /// is room and puts each in its lane, starting the lanes that were idle. Returns how many new effects it took (0: nothing due, or no
    /// room until a lane records an outcome, which wakes the loop).
    pub async fn claim(self: &Arc<Self>) -> Result<usize, DbError> {
        self.mark_done().await?;
        self.prune().await?;
        if self.stopping.load(Ordering::Acquire) {
            return Ok(0);
        }
        let room = self.max_held.saturating_sub(self.held());
        if room == 0 {
            return Ok(0);
        }
        let claimed = self.jobs.claim_due(self.clock.now_ms(), room as i64, LEASE_MS).await?;
        let mut taken = 0;
        let mut start = Vec::new();
        {
            let mut book = self.book();
            for job in claimed {
                // Its lease ran out while it waited in its lane: the claim renewed it.
                if !book.held.insert(job.key.clone()) {
                    continue;
                }
                taken += 1;
                match book.waiting.get_mut(job.effect.serial_key()) {
                    Some(lane) => lane.push_back(job),
                    None => {
                        book.waiting.insert(job.effect.serial_key().to_string(), VecDeque::new());
                        start.push(job);
                    }
                }
            }
        }
        if !start.is_empty() {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.retain(|t| !t.is_finished());
            for job in start {
                tasks.push(tokio::spawn(self.clone().run_lane(job)));
            }
        }
        Ok(taken)
    }

    /// Deletes a batch of effects done more than [`DONE_RETENTION_MS`] ago, at most once a
    /// minute.
    async fn prune(&self) -> Result<(), DbError> {
        let now = self.clock.now_ms();
        let last = self.last_prune.load(Ordering::Relaxed);
        if now - last < 60_000
            || self
                .last_prune
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let pruned = self.jobs.prune_done(now - DONE_RETENTION_MS, PRUNE_BATCH).await?;
        if pruned > 0 {
            tracing::info!(pruned, "done effects past their retention pruned");
        }
        Ok(())
    }

    /// Runs a lane from `first` until no effect waits in it.
    async fn run_lane(self: Arc<Self>, first: ClaimedJob) {
        let Ok(_permit) = self.running.clone().acquire_owned().await else {
            return;
        };
        let lane = first.effect.serial_key().to_string();
        let mut job = first;
        loop {
            if self.stopping.load(Ordering::Acquire) {
                self.give_back(&lane, job).await;
                return;
            }
            // One span per saga step: the effect, its order (the lane) and its attempt.
            let span = tracing::info_span!("effect", key = %job.key, lane = %lane, attempt = job.attempts + 1);
            let outcome = tracing::Instrument::instrument(self.ctx.run(&job), span).await;
            if let Err(e) = self.record(&job, outcome).await {
                // Still leased: it runs again once the lease ends (effects are idempotent).
                tracing::error!(key = %job.key, error = %e, "recording an effect's outcome failed");
            }
            let (next, was_full) = {
                let mut book = self.book();
                let was_full = book.held.len() >= self.max_held;
                book.held.remove(&job.key);
                let next = book.waiting.get_mut(&lane).and_then(VecDeque::pop_front);
                if next.is_none() {
                    book.waiting.remove(&lane);
                }
                (next, was_full)
            };
            if was_full {
                self.jobs.nudge();
            }
            match next {
                Some(n) => job = n,
                None => return,
            }
        }
    }

    /// Records what an effect concluded.
    async fn record(&self, job: &ClaimedJob, outcome: EffectOutcome) -> Result<(), DbError> {
        let now = self.clock.now_ms();
        let counters = self.ctx.counters();
        match outcome {
            EffectOutcome::Done => {
                counters.done.fetch_add(1, Ordering::Relaxed);
                self.done.lock().unwrap_or_else(|p| p.into_inner()).push(job.key.clone());
                Ok(())
            }
            EffectOutcome::Defer(t) => self.jobs.defer(&job.key, t, None, now).await,
            EffectOutcome::Refused(err) if job.attempts + 1 >= tare_sagas::effect::MAX_REFUSALS => {
                counters.buried.fetch_add(1, Ordering::Relaxed);
                let err = format!("refused {} times, last: {err}", job.attempts + 1);
                tracing::error!(key = %job.key, error = %err, "effect dead-lettered");
                self.jobs.bury(&job.key, &err, now).await
            }
            EffectOutcome::Retry(err) | EffectOutcome::Refused(err) => {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                let backoff = (250_i64 << job.attempts.clamp(0, 8)).min(60_000);
                tracing::warn!(key = %job.key, attempts = job.attempts + 1, error = %err, "effect failed, will retry");
                self.jobs.defer(&job.key, now + backoff, Some(&err), now).await
            }
            EffectOutcome::Bury(err) => {
                counters.buried.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %job.key, error = %err, "effect dead-lettered");
                self.jobs.bury(&job.key, &err, now).await
            }
        }
    }

    /// Marks the effects done since the last call done in the table.
    async fn mark_done(&self) -> Result<(), DbError> {
        let keys = std::mem::take(&mut *self.done.lock().unwrap_or_else(|p| p.into_inner()));
        if keys.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.jobs.complete_many(&keys, self.clock.now_ms()).await {
            // Kept for the next claim; their leases hold meanwhile.
            self.done.lock().unwrap_or_else(|p| p.into_inner()).extend(keys);
            return Err(e);
        }
        Ok(())
    }

    /// On the way out: `job` and everything waiting behind it in `lane` go back to the
    /// table unclaimed, so the next process (or another node) takes them at once.
    async fn give_back(&self, lane: &str, job: ClaimedJob) {
        let mut back = vec![job];
        {
            let mut book = self.book();
            back.extend(book.waiting.remove(lane).unwrap_or_default());
            for j in &back {
                book.held.remove(&j.key);
            }
        }
        for j in back {
            if let Err(e) = self.jobs.release(&j.key).await {
                tracing::warn!(key = %j.key, error = %e, "giving an effect back failed; it returns when its lease ends");
            }
        }
    }

    /// Stops taking effects, lets each running effect finish and be recorded, and gives
    /// back what waits behind it.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = self.mark_done().await {
            tracing::warn!(error = %e, "marking effects done on the way out failed; they run again after their leases");
        }
    }
}

#[cfg(test)]
#[path = "effect_lanes_tests.rs"]
mod tests;
