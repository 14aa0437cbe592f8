//! Device liveness with self-protection [D5, B1].
//!
//! A device is alive while its application heartbeats keep coming (30 s in the field). Each
//! heartbeat moves the device's deadline to `receive time + threshold`; deadlines sit in a
//! min-heap, so a sweep pops only the devices that have expired — its cost follows the
//! devices that fall silent, not the fleet (stale heap entries of devices that heartbeated
//! since are skipped, and there are at most a few per device).
//!
//! Before it marks anyone offline, the sweep checks the platform itself: the share of the
//! heartbeats the tracked fleet should have sent in the last window that actually arrived,
//! and how old heartbeats are when they arrive (ingest lag). Below the watermark (default
//! 80 %) or above the lag limit, a silent device is *undecided*: it shows `unknown`, no
//! alarm is raised, and once the platform is healthy again every undecided device is
//! recomputed from its last heartbeat. Heartbeats are ordered by device time: a late one
//! does not move the deadline back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use tare_domain::{CabinetId, UnixMs};

/// Liveness settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivenessConfig {
    /// How often devices heartbeat (ms).
    pub heartbeat_ms: i64,
    /// Silence after which a device is offline (ms; default three heartbeats).
    pub threshold_ms: i64,
    /// The window over which received/expected heartbeats are compared (ms).
    pub window_ms: i64,
    /// Below this share of expected heartbeats the platform presumes the fault is its own.
    pub min_received_share: f64,
    /// Median heartbeat age at arrival above which ingest counts as lagging (ms).
    pub max_ingest_lag_ms: i64,
    /// Scaled out: a gateway node not seen for this long is presumed dead, and the
    /// devices it held are judged by another node (ms).
    pub node_timeout_ms: i64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 30_000,
            threshold_ms: 90_000,
            window_ms: 60_000,
            min_received_share: 0.8,
            max_ingest_lag_ms: 15_000,
            node_timeout_ms: 15_000,
        }
    }
}

/// What the platform knows about its own health right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Health {
    /// Heartbeats received in the window.
    pub received: u64,
    /// Heartbeats the tracked fleet should have sent in the window.
    pub expected: f64,
    /// Median age of heartbeats at arrival (ms).
    pub ingest_lag_ms: i64,
    /// Whether offline marking may proceed.
    pub healthy: bool,
}

/// The outcome of a sweep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sweep {
    /// Devices to record offline (silent past the threshold, platform healthy), with
    /// their last heartbeat's receive time.
    pub silent: Vec<(CabinetId, UnixMs)>,
    /// Devices newly undecided (silent while the platform is unhealthy).
    pub undecided: usize,
    /// Heap entries looked at (work done).
    pub examined: usize,
}

struct Device {
    /// Receive time of the last heartbeat (or of the connect).
    last_seen: UnixMs,
    /// Device time of the newest heartbeat.
    last_device_ts: UnixMs,
    deadline: UnixMs,
}

#[derive(Default)]
struct State {
    devices: HashMap<CabinetId, Device>,
    deadlines: BinaryHeap<Reverse<(UnixMs, CabinetId)>>,
    undecided: HashSet<CabinetId>,
    /// Receive times of the heartbeats in the current window (pruned as it slides).
    recent: VecDeque<UnixMs>,
    /// Age at arrival of the last few heartbeats (for the ingest-lag median).
    ages: VecDeque<i64>,
    /// Devices that started being tracked within the window (they owe less).
    young: VecDeque<UnixMs>,
}

/// Heartbeat ages kept for the lag median.
const AGE_SAMPLES: usize = 1024;

/// The liveness tracker of one node's devices.
pub struct Liveness {
    cfg: LivenessConfig,
    state: Mutex<State>,
}

impl Liveness {
    /// A tracker with `cfg`.
    pub fn new(cfg: LivenessConfig) -> Self {
        Self {
            cfg,
            state: Mutex::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> LivenessConfig {
        self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device connected (booted): tracked from now.
    pub fn connected(&self, device: &CabinetId, now: UnixMs) {
        let mut st = self.lock();
        let deadline = now + self.cfg.threshold_ms;
        st.devices.insert(
            device.clone(),
            Device {
                last_seen: now,
                last_device_ts: i64::MIN,
                deadline,
            },
        );
        st.undecided.remove(device);
        st.deadlines.push(Reverse((deadline, device.clone())));
        st.young.push_back(now);
    }

    /// The device disconnected (or its will fired): no longer tracked.
    pub fn disconnected(&self, device: &CabinetId) {
        let mut st = self.lock();
        st.devices.remove(device);
        st.undecided.remove(device);
    }

    /// A heartbeat with device time `device_ts` arrived at `now`. Returns whether the
    /// device was tracked (a heartbeat from an untracked device — e.g. one marked offline
    /// for silence — starts tracking it again, and the caller records it alive).
    pub fn heartbeat(&self, device: &CabinetId, device_ts: UnixMs, now: UnixMs) -> bool {
        let mut st = self.lock();
        st.recent.push_back(now);
        st.ages.push_back((now - device_ts).max(0));
        if st.ages.len() > AGE_SAMPLES {
            st.ages.pop_front();
        }
        let threshold = self.cfg.threshold_ms;
        let (tracked, push) = match st.devices.get_mut(device) {
            Some(d) => {
                if device_ts < d.last_device_ts {
                    // Late: it says nothing newer about the device.
                    return true;
                }
                d.last_device_ts = device_ts;
                d.last_seen = now;
                d.deadline = now + threshold;
                (true, d.deadline)
            }
            None => {
                st.devices.insert(
                    device.clone(),
                    Device {
                        last_seen: now,
                        last_device_ts: device_ts,
                        deadline: now + threshold,
                    },
                );
                st.young.push_back(now);
                (false, now + threshold)
            }
        };
        st.undecided.remove(device);
        st.deadlines.push(Reverse((push, device.clone())));
        tracked
    }

    /// The platform's health at `now`. Costs the heartbeats that left the window since
    /// the last call plus a fixed sample, not the fleet.
    pub fn health(&self, now: UnixMs) -> Health {
        let mut st = self.lock();
        // The window is (now − window, now]: one window holds window ÷ period heartbeats
        // per device.
        let window_start = now - self.cfg.window_ms;
        while st.recent.front().is_some_and(|t| *t <= window_start) {
            st.recent.pop_front();
        }
        while st.young.front().is_some_and(|t| *t <= window_start) {
            st.young.pop_front();
        }
        let received = st.recent.len() as u64;
        // Every tracked device owes window ÷ period, less what the young ones were not
        // yet around for.
        let period = self.cfg.heartbeat_ms as f64;
        let deficit: f64 = st.young.iter().map(|since| (since - window_start) as f64 / period).sum();
        let expected = (st.devices.len() as f64 * self.cfg.window_ms as f64 / period - deficit).max(0.0);
        let mut ages: Vec<i64> = st.ages.iter().copied().collect();
        ages.sort_unstable();
        let ingest_lag_ms = ages.get(ages.len() / 2).copied().unwrap_or(0);
        let share_ok = expected < 1.0 || received as f64 >= self.cfg.min_received_share * expected;
        Health {
            received,
            expected,
            ingest_lag_ms,
            healthy: share_ok && ingest_lag_ms <= self.cfg.max_ingest_lag_ms,
        }
    }

    /// Pops the expired deadlines at `now`: silent devices are returned to be recorded
    /// offline when the platform is healthy, and become undecided when it is not. When
    /// healthy, earlier undecided devices are recomputed from their last heartbeat.
    pub fn sweep(&self, now: UnixMs) -> Sweep {
        let health = self.health(now);
        let mut st = self.lock();
        let mut out = Sweep::default();
        while let Some(Reverse((deadline, _))) = st.deadlines.peek() {
            if *deadline > now {
                break;
            }
            let Some(Reverse((deadline, device))) = st.deadlines.pop() else {
                break;
            };
            out.examined += 1;
            let Some(d) = st.devices.get(&device) else {
                continue; // disconnected since
            };
            if d.deadline != deadline {
                continue; // heartbeated since: a newer entry is in the heap
            }
            if health.healthy {
                out.silent.push((device.clone(), d.last_seen));
                st.devices.remove(&device);
            } else if st.undecided.insert(device) {
                out.undecided += 1;
            }
        }
        if health.healthy && !st.undecided.is_empty() {
            // Recompute from last-seen: still silent → offline; heard from → stays.
            let undecided: Vec<CabinetId> = st.undecided.drain().collect();
            for device in undecided {
                out.examined += 1;
                if let Some(d) = st.devices.get(&device) {
                    if d.deadline <= now {
                        out.silent.push((device.clone(), d.last_seen));
                        st.devices.remove(&device);
                    }
                }
            }
        }
        out
    }

    /// Whether `device` is silent while the platform is unhealthy (shown as `unknown`).
    pub fn is_undecided(&self, device: &CabinetId) -> bool {
        self.lock().undecided.contains(device)
    }

    /// Devices tracked.
    pub fn tracked(&self) -> usize {
        self.lock().devices.len()
    }

    /// Devices undecided now.
    pub fn undecided_count(&self) -> usize {
        self.lock().undecided.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> CabinetId {
        CabinetId::new("lv", &format!("d{i}")).unwrap()
    }

    fn cfg() -> LivenessConfig {
        LivenessConfig::default()
    }

    /// `n` devices connected at 0; `beat(i, t)` says whether device i heartbeats at t.
    fn run(l: &Liveness, n: usize, until: i64, beat: impl Fn(usize, i64) -> bool) -> Vec<Sweep> {
        for i in 0..n {
            l.connected(&id(i), 0);
        }
        let mut sweeps = Vec::new();
        let mut t = 0;
        while t <= until {
            for i in 0..n {
                if beat(i, t) {
                    l.heartbeat(&id(i), t, t);
                }
            }
            sweeps.push(l.sweep(t));
            t += 10_000;
        }
        sweeps
    }

    #[test]
    fn a_silent_device_goes_offline_once_its_threshold_passes() {
        let l = Liveness::new(cfg());
        let sweeps = run(&l, 10, 200_000, |i, t| t % 30_000 == 0 && (i != 3 || t < 60_000));
        let silent: Vec<_> = sweeps
            .iter()
            .flat_map(|s| s.silent.iter().map(|(d, seen)| (d.clone(), *seen)))
            .collect();
        assert_eq!(silent, vec![(id(3), 30_000)]);
        // Recorded in the first sweep at or after 30 s + 90 s.
        let when = sweeps.iter().position(|s| !s.silent.is_empty()).unwrap() as i64 * 10_000;
        assert_eq!(when, 120_000);
        assert_eq!(l.tracked(), 9);
    }

    #[test]
    fn when_the_platform_misses_30_percent_nobody_goes_offline_and_all_are_recomputed_later() {
        let l = Liveness::new(cfg());
        // From 60 s on, the platform loses the heartbeats of devices 0-2 of 10 (30 %).
        let lost = |i: usize, t: i64| i < 3 && (60_000..300_000).contains(&t);
        let sweeps = run(&l, 10, 290_000, |i, t| t % 30_000 == 0 && !lost(i, t));
        assert!(sweeps.iter().all(|s| s.silent.is_empty()), "no alarm storm");
        assert_eq!(l.undecided_count(), 3);
        assert!(l.is_undecided(&id(0)) && !l.is_undecided(&id(5)));
        assert!(!l.health(290_000).healthy);
        // Devices 0 and 1 come back; device 2 stays silent. Healthy again after a window.
        let mut silent = Vec::new();
        let mut t = 300_000;
        while t <= 400_000 {
            for i in 0..10 {
                if t % 30_000 == 0 && i != 2 {
                    l.heartbeat(&id(i), t, t);
                }
            }
            silent.extend(l.sweep(t).silent.into_iter().map(|(d, _)| d));
            t += 10_000;
        }
        assert_eq!(silent, vec![id(2)], "recomputed from last-seen once healthy");
        assert_eq!(l.undecided_count(), 0);
    }

    #[test]
    fn a_sweep_does_work_for_the_expired_not_for_the_fleet() {
        let l = Liveness::new(cfg());
        for i in 0..10_000 {
            l.connected(&id(i), 0);
            l.heartbeat(&id(i), 1_000, 1_000);
        }
        // Nothing expired yet: nothing examined.
        assert_eq!(l.sweep(50_000).examined, 0);
        // Only the one silent device's entries are touched at its deadline.
        for i in 1..10_000 {
            l.heartbeat(&id(i), 60_000, 60_000);
        }
        let s = l.sweep(91_000);
        assert!(s.examined <= 2 * 10_000, "stale entries are popped once");
        assert_eq!(l.sweep(91_500).examined, 0);
    }

    #[test]
    fn late_heartbeats_do_not_count_as_news_and_lag_makes_the_platform_unhealthy() {
        let l = Liveness::new(cfg());
        for i in 0..5 {
            l.connected(&id(i), 0);
        }
        let mut t = 0;
        let mut silent = Vec::new();
        while t <= 150_000 {
            if t % 30_000 == 0 {
                for i in 1..5 {
                    l.heartbeat(&id(i), t, t);
                }
            }
            if t == 50_000 {
                l.heartbeat(&id(0), 50_000, 50_000);
            }
            if t == 100_000 {
                l.heartbeat(&id(0), 20_000, 100_000); // an old one arriving late
            }
            silent.extend(l.sweep(t).silent.into_iter().map(|(d, seen)| (d, seen, t)));
            t += 10_000;
        }
        assert_eq!(silent, vec![(id(0), 50_000, 140_000)], "the late heartbeat did not keep it alive");
        let l = Liveness::new(cfg());
        for i in 0..5 {
            l.connected(&id(i), 0);
            l.heartbeat(&id(i), 0, 20_000); // arriving 20 s late
        }
        let h = l.health(20_000);
        assert_eq!(h.ingest_lag_ms, 20_000);
        assert!(!h.healthy);
    }
}
