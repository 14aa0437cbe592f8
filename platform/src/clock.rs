//! Clocks: the system clock, and a manual clock that tests drive.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tare_domain::UnixMs;
use tare_sagas::ports::Clock;
use tokio::sync::watch;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMs {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when a test advances it; waiters are woken on every move.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
    moved: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: UnixMs) -> Self {
        let (tx, _) = watch::channel(start);
        Self {
            now: Arc::new(AtomicI64::new(start)),
            moved: Arc::new(tx),
        }
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        let t = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.moved.send_replace(t);
    }

    /// A receiver that changes whenever the clock moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.moved.subscribe()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMs {
        self.now.load(Ordering::SeqCst)
    }
}

/// The platform's clock: either kind, cheaply cloned.
#[derive(Debug, Clone)]
pub enum PlatformClock {
    /// Wall clock.
    System,
    /// Test clock.
    Manual(ManualClock),
}

impl PlatformClock {
    /// Now, Unix ms.
    pub fn now_ms(&self) -> UnixMs {
        match self {
            Self::System => SystemClock.now_ms(),
            Self::Manual(c) => c.now_ms(),
        }
    }

    /// Waits until `ms` of real time passed or (for a manual clock) the clock moved.
    pub async fn nap(&self, ms: u64) {
        match self {
            Self::System => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
            Self::Manual(c) => {
                let mut rx = c.subscribe();
                let _ = tokio::time::timeout(std::time::Duration::from_millis(ms), rx.changed()).await;
            }
        }
    }
}

impl Clock for PlatformClock {
    fn now_ms(&self) -> UnixMs {
        PlatformClock::now_ms(self)
    }
}
