//! The recent weight samples of every door, as received [D6]. The order saga reads the
//! stable reading before an open and after a close from here; the samples it uses are
//! then copied into the order's events, so replay never depends on this buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tare_domain::weight::{StableReading, WeightSample};
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_sagas::ports::TelemetryView;

/// How much device time of samples a door keeps: two minutes covers an open door and
/// the settling after its close; older samples are dropped except the newest stable one
/// (the reading before the next open, at the 90 s closed-door cadence).
const WINDOW_MS: i64 = 120_000;
/// A hard cap per door (a flooding device cannot grow the buffer).
const SAMPLES_PER_DOOR: usize = 512;

/// Recent samples per (cabinet, door).
#[derive(Default)]
pub struct TelemetryBuffer {
    doors: Mutex<HashMap<(CabinetId, DoorNo), VecDeque<WeightSample>>>,
}

impl TelemetryBuffer {
    /// Records a sample (kept in device-time order; a late sample is inserted in place;
    /// the very same sample twice is kept once).
    pub fn push(&self, cabinet: &CabinetId, door: DoorNo, sample: WeightSample) {
        let mut doors = self.doors.lock().unwrap_or_else(|p| p.into_inner());
        let q = doors.entry((cabinet.clone(), door)).or_default();
        let at = q.partition_point(|s| s.device_ts <= sample.device_ts);
        // The same sample again (a telemetry stream read again after a reconnect): once.
        if q.range(..at)
            .rev()
            .take_while(|s| s.device_ts == sample.device_ts)
            .any(|s| *s == sample)
        {
            return;
        }
        q.insert(at, sample);
        let cutoff = q.back().map_or(0, |s| s.device_ts) - WINDOW_MS;
        let old = q.partition_point(|s| s.device_ts < cutoff);
        if old > 0 {
            let keep = q.range(..old).rposition(|s| s.stable);
            let kept: Option<WeightSample> = q.drain(..old).enumerate().find(|(i, _)| Some(*i) == keep).map(|(_, s)| s);
            if let Some(s) = kept {
                q.push_front(s);
            }
        }
        while q.len() > SAMPLES_PER_DOOR {
            q.pop_front();
        }
    }

    /// The door's recent samples, oldest first (for investigation and tests).
    pub fn recent(&self, cabinet: &CabinetId, door: DoorNo) -> Vec<WeightSample> {
        let doors = self.doors.lock().unwrap_or_else(|p| p.into_inner());
        doors
            .get(&(cabinet.clone(), door))
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn find<F: Fn(&VecDeque<WeightSample>) -> Option<WeightSample>>(
        &self,
        cabinet: &CabinetId,
        door: DoorNo,
        f: F,
    ) -> Option<StableReading> {
        let doors = self.doors.lock().unwrap_or_else(|p| p.into_inner());
        doors.get(&(cabinet.clone(), door)).and_then(f).and_then(StableReading::from_sample)
    }
}

impl TelemetryView for TelemetryBuffer {
    fn stable_at_or_before(&self, cabinet: &CabinetId, door: DoorNo, device_ts: UnixMs) -> Option<StableReading> {
        self.find(cabinet, door, |q| {
            q.iter().rev().find(|s| s.stable && s.device_ts <= device_ts).cloned()
        })
    }

    fn newest_stable_since(&self, cabinet: &CabinetId, door: DoorNo, device_ts: UnixMs) -> Option<StableReading> {
        self.find(cabinet, door, |q| {
            q.iter().rev().find(|s| s.stable && s.device_ts >= device_ts).cloned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::weight::LaneGrams;
    use tare_domain::{Grams, LaneNo};

    fn s(ts: i64, stable: bool, g: f64) -> WeightSample {
        WeightSample {
            msg_id: format!("m{ts}"),
            device_ts: ts,
            received_at: ts,
            stable,
            lanes: vec![LaneGrams {
                lane: LaneNo::of(1),
                grams: Grams::of(g),
            }],
        }
    }

    #[test]
    fn never_returns_unstable_or_pre_close_samples() {
        let b = TelemetryBuffer::default();
        let c = CabinetId::parse("a.b").unwrap();
        b.push(&c, DoorNo::of(1), s(100, true, 1000.0));
        b.push(&c, DoorNo::of(1), s(300, false, 500.0));
        b.push(&c, DoorNo::of(1), s(200, true, 990.0)); // late, inserted in order
        assert_eq!(b.stable_at_or_before(&c, DoorNo::of(1), 250).unwrap().sample().device_ts, 200);
        assert!(b.newest_stable_since(&c, DoorNo::of(1), 250).is_none());
        b.push(&c, DoorNo::of(1), s(400, true, 670.0));
        assert_eq!(
            b.newest_stable_since(&c, DoorNo::of(1), 250).unwrap().grams(LaneNo::of(1)),
            Some(Grams::of(670.0))
        );
        assert!(b.stable_at_or_before(&c, DoorNo::of(2), 1000).is_none());
    }

    #[test]
    fn keeps_two_minutes_and_the_last_stable_reading_before_them() {
        let b = TelemetryBuffer::default();
        let c = CabinetId::parse("a.b").unwrap();
        b.push(&c, DoorNo::of(1), s(1_000, true, 1000.0));
        b.push(&c, DoorNo::of(1), s(2_000, true, 999.0));
        b.push(&c, DoorNo::of(1), s(3_000, false, 500.0));
        b.push(&c, DoorNo::of(1), s(200_000, false, 700.0));
        let kept: Vec<i64> = b.recent(&c, DoorNo::of(1)).iter().map(|s| s.device_ts).collect();
        assert_eq!(kept, [2_000, 200_000]);
        assert_eq!(b.stable_at_or_before(&c, DoorNo::of(1), 150_000).unwrap().sample().device_ts, 2_000);
    }

    #[test]
    fn the_same_sample_twice_is_kept_once() {
        let b = TelemetryBuffer::default();
        let c = CabinetId::parse("a.b").unwrap();
        b.push(&c, DoorNo::of(1), s(100, true, 1000.0));
        b.push(&c, DoorNo::of(1), s(100, true, 1000.0));
        b.push(&c, DoorNo::of(1), s(100, true, 990.0)); // same time, another reading: kept
        assert_eq!(b.recent(&c, DoorNo::of(1)).len(), 2);
    }
}
