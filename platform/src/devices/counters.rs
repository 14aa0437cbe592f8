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
    /// Doors closed for their session after a reboot, from the device's snapshot [B7].
    pub reboots_reconciled: AtomicU64,
    /// Door closes the platform never received, heard from a later heartbeat [B7].
    pub lost_closes_heard: AtomicU64,
}

impl DeviceCounters {
    /// Counts one door closed by a reboot's reconciliation [B7].
    pub fn reboot_reconciled(&self) {
        self.reboots_reconciled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one lost close heard from a heartbeat [B7].
    pub fn lost_close_heard(&self) {
        self.lost_closes_heard.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one refusal for `reason`.
    pub fn reject(&self, reason: &'static str) {
        *self.rejected.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }
}
