//! The device's own clock. A simulated cabinet reads time only through this, so a test
//! can run its devices on the same controllable clock as the platform.

use std::sync::Arc;
use tare_domain::UnixMs;

/// A source of the device's current time (Unix ms).
pub trait DeviceClock: Send + Sync {
    /// Now.
    fn now_ms(&self) -> UnixMs;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl DeviceClock for SystemClock {
    fn now_ms(&self) -> UnixMs {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Any function returning the time is a clock (a test's clock, shared with the platform).
impl<F: Fn() -> UnixMs + Send + Sync> DeviceClock for F {
    fn now_ms(&self) -> UnixMs {
        self()
    }
}

/// The wall clock, shared.
pub fn system() -> Arc<dyn DeviceClock> {
    Arc::new(SystemClock)
}
