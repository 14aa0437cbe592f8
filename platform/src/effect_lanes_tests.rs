//! The executor against a real (SQLite) job table, with a stand-in for the sagas'
//! effects that records the order effects ran in and can hold one back.

use super::*;
use crate::clock::ManualClock;
use crate::db::Db;
use tare_sagas::{Effect, Scheduled};
use tokio::sync::Notify;

/// Runs effects by recording their keys; the first effect of order `held` waits until
/// `release` is notified; every effect of order `refused` is refused by its provider and
/// every effect of order `down` finds its provider unavailable.
#[derive(Default)]
struct Recorder {
    ran: Mutex<Vec<String>>,
    held: String,
    /// Set once the held effect has started (and waits for `release`).
    holding: std::sync::atomic::AtomicBool,
    release: Notify,
    counters: EffectCounters,
}

/// The order whose provider refuses, and the one whose provider is down.
const REFUSED: &str = "refused";
const DOWN: &str = "down";

#[async_trait::async_trait]
impl RunEffect for Recorder {
    async fn run(&self, job: &ClaimedJob) -> EffectOutcome {
        if job.key == format!("{}:1", self.held) {
            self.holding.store(true, Ordering::SeqCst);
            self.release.notified().await;
        }
        self.ran.lock().unwrap().push(job.key.clone());
        match job.key.split(':').next() {
            Some(REFUSED) => EffectOutcome::Refused("provider refused: RISK: declined".into()),
            Some(DOWN) => EffectOutcome::Retry("provider unavailable: timeout".into()),
            _ => EffectOutcome::Done,
        }
    }

    fn counters(&self) -> &EffectCounters {
        &self.counters
    }
}

fn effect(order: &str, n: u32, at: i64) -> (i64, Scheduled) {
    let effect = if n == 1 {
        Effect::OpenPayment { order_id: order.into() }
    } else {
        Effect::AuthorizeOrder { order_id: order.into() }
    };
    let key = format!("{order}:{n}");
    (i64::from(n), Scheduled { key, due_at: at, effect })
}

/// A job table in a fresh SQLite store, a test clock, and an executor (4 lanes, 64
/// held) whose stand-in holds back the first effect of order `held`.
struct Rig {
    db: Db,
    dir: std::path::PathBuf,
    jobs: Jobs,
    clock: PlatformClock,
    recorder: Arc<Recorder>,
    lanes: Arc<EffectLanes>,
}

impl Rig {
    async fn new(name: &str, held: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tare-lanes-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Db::open_sqlite(&dir).await.expect("store");
        let jobs = Jobs::new(db.clone());
        let clock = PlatformClock::Manual(ManualClock::new(1_000));
        let recorder = Arc::new(Recorder {
            held: held.into(),
            ..Recorder::default()
        });
        let lanes = EffectLanes::new(recorder.clone(), jobs.clone(), clock.clone(), 4, 64);
        Self {
            db,
            dir,
            jobs,
            clock,
            recorder,
            lanes,
        }
    }

    async fn done(self) {
        self.db.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Claims until `done` effects are recorded done, with a deadline.
async fn claim_until(lanes: &Arc<EffectLanes>, jobs: &Jobs, done: i64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        lanes.claim().await.expect("claim");
        if jobs.counts().await.expect("counts").done >= done {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", jobs.counts().await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_order_holds_back_only_itself_and_each_order_keeps_its_sequence() {
    let rig = Rig::new("slow", "slow").await;
    let (jobs, recorder, lanes) = (&rig.jobs, &rig.recorder, &rig.lanes);
    let first = [effect("slow", 1, 1_000), effect("fast", 1, 1_000), effect("fast", 2, 1_000)];
    jobs.schedule_with_checkpoint("t", 1, &first, 1_000).await.unwrap();

    // The fast order's two effects finish while the slow one's first is still running.
    claim_until(lanes, jobs, 2).await;
    assert_eq!(*recorder.ran.lock().unwrap(), ["fast:1", "fast:2"]);
    assert_eq!(lanes.held(), 1, "the slow effect is still held");

    // An effect of the slow order claimed meanwhile waits behind it, and is not claimed
    // twice when claimed again.
    jobs.schedule_with_checkpoint("t", 2, &[effect("slow", 2, 1_000)], 1_000)
        .await
        .unwrap();
    assert_eq!(lanes.claim().await.unwrap(), 1);
    assert_eq!(lanes.claim().await.unwrap(), 0);
    assert_eq!(lanes.held(), 2);
    recorder.release.notify_one();
    claim_until(lanes, jobs, 4).await;
    assert_eq!(*recorder.ran.lock().unwrap(), ["fast:1", "fast:2", "slow:1", "slow:2"]);
    assert_eq!(recorder.counters.done.load(Ordering::Relaxed), 4);
    assert_eq!(lanes.held(), 0);
    lanes.stop().await;
    rig.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_the_running_effect_finish_and_gives_back_what_waits() {
    let rig = Rig::new("stop", "o").await;
    let (jobs, recorder, lanes) = (&rig.jobs, &rig.recorder, &rig.lanes);
    jobs.schedule_with_checkpoint("t", 2, &[effect("o", 1, 1_000), effect("o", 2, 1_000)], 1_000)
        .await
        .unwrap();
    assert_eq!(lanes.claim().await.unwrap(), 2);
    // Stop only once the first effect is running (a lane not started yet when stopping
    // gives its effect back unrun, rightly).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !recorder.holding.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "the first effect never started");
        tokio::task::yield_now().await;
    }
    let stopping = tokio::spawn({
        let lanes = lanes.clone();
        async move { lanes.stop().await }
    });
    // Nothing new is taken once stopping.
    while !lanes.stopping.load(Ordering::Acquire) {
        tokio::task::yield_now().await;
    }
    assert_eq!(lanes.claim().await.unwrap(), 0);
    recorder.release.notify_one();
    stopping.await.unwrap();
    assert_eq!(*recorder.ran.lock().unwrap(), ["o:1"]);
    // The one given back is claimable at once by the next executor, unrun so far.
    let again = jobs.claim_due(rig.clock.now_ms(), 10, 30_000).await.unwrap();
    assert_eq!(again.iter().map(|j| (j.key.as_str(), j.attempts)).collect::<Vec<_>>(), [("o:2", 0)]);
    rig.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_retried_a_bounded_number_of_times_then_buried_and_unavailability_is_not() {
    let rig = Rig::new("refused", "none").await;
    let (jobs, recorder, lanes) = (&rig.jobs, &rig.recorder, &rig.lanes);
    jobs.schedule_with_checkpoint("t", 2, &[effect(REFUSED, 1, 1_000), effect(DOWN, 1, 1_000)], 1_000)
        .await
        .unwrap();
    let runs = |order: &str| recorder.ran.lock().unwrap().iter().filter(|k| k.starts_with(order)).count() as i64;
    // Each round: claim what is due, wait for the lanes to record it, then let the
    // longest backoff pass on the test clock.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while jobs.counts().await.unwrap().dead == 0 {
        lanes.claim().await.unwrap();
        while lanes.held() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "lanes stuck");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        if let PlatformClock::Manual(clock) = &rig.clock {
            clock.advance(60_001);
        }
        assert!(runs(REFUSED) <= tare_sagas::effect::MAX_REFUSALS, "refused without end");
    }
    assert_eq!(runs(REFUSED), tare_sagas::effect::MAX_REFUSALS);
    let buried = jobs.buried(10).await.unwrap();
    assert_eq!(buried.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(), ["refused:1"]);
    assert!(
        buried[0].error.starts_with("refused 12 times, last: provider refused: RISK"),
        "{}",
        buried[0].error
    );
    // An unavailable provider is still retried: its outcome may be unknown, never given up.
    assert_eq!(runs(DOWN), tare_sagas::effect::MAX_REFUSALS);
    assert_eq!(jobs.counts().await.unwrap().pending, 1);
    // What /metrics reads: the open jobs only, the same counts.
    let open = jobs.open_counts().await.unwrap();
    assert_eq!((open.pending, open.dead, open.done), (1, 1, 0));
    lanes.stop().await;
    rig.done().await;
}
