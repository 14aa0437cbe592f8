//! Counters of device traffic on this node (read into the metrics snapshot).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// Counters of device traffic.
#[derive(Default)]
pub struct DeviceCounters {
    /// Uplinks accepted.
    pub accepted: AtomicU64,
    /// Duplicates dropped.
    pub duplicates: AtomicU64,
    /// Rejected, by reason.
    pub rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Downlinks sent.
    pub sent: AtomicU64,
    /// Devices recorded offline for silence (operator alerts) [D5].
    pub silent_alerts: AtomicU64,
}

impl DeviceCounters {
    /// Counts one refusal for `reason`.
    pub fn reject(&self, reason: &'static str) {
        *self.rejected.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }
}
