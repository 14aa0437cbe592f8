//! The recent weight samples of every door, as received [D6]. The order saga reads the
//! stable reading before an open and after a close from here; the samples it uses are
//! then copied into the order's events, so replay never depends on this buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tare_domain::weight::{StableReading, WeightSample};
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_sagas::ports::TelemetryView;

/// Samples kept per door: about a minute at the open-door cadence (300 ms).
const SAMPLES_PER_DOOR: usize = 256;

/// Recent samples per (cabinet, door).
#[derive(Default)]
pub struct TelemetryBuffer {
    doors: Mutex<HashMap<(CabinetId, DoorNo), VecDeque<WeightSample>>>,
}

impl TelemetryBuffer {
    /// Records a sample (kept in device-time order; a late sample is inserted in place).
    pub fn push(&self, cabinet: &CabinetId, door: DoorNo, sample: WeightSample) {
        let mut doors = self.doors.lock().unwrap_or_else(|p| p.into_inner());
        let q = doors.entry((cabinet.clone(), door)).or_default();
        let at = q.partition_point(|s| s.device_ts <= sample.device_ts);
        q.insert(at, sample);
        while q.len() > SAMPLES_PER_DOOR {
            q.pop_front();
        }
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
    use tare_domain::LaneNo;

    fn s(ts: i64, stable: bool, g: f64) -> WeightSample {
        WeightSample {
            msg_id: format!("m{ts}"),
            device_ts: ts,
            received_at: ts,
            stable,
            lanes: vec![LaneGrams { lane: LaneNo(1), grams: g }],
        }
    }

    #[test]
    fn never_returns_unstable_or_pre_close_samples() {
        let b = TelemetryBuffer::default();
        let c = CabinetId::parse("a.b").unwrap();
        b.push(&c, DoorNo(1), s(100, true, 1000.0));
        b.push(&c, DoorNo(1), s(300, false, 500.0));
        b.push(&c, DoorNo(1), s(200, true, 990.0)); // late, inserted in order
        assert_eq!(b.stable_at_or_before(&c, DoorNo(1), 250).unwrap().sample().device_ts, 200);
        assert!(b.newest_stable_since(&c, DoorNo(1), 250).is_none());
        b.push(&c, DoorNo(1), s(400, true, 670.0));
        assert_eq!(b.newest_stable_since(&c, DoorNo(1), 250).unwrap().grams(LaneNo(1)), Some(670.0));
        assert!(b.stable_at_or_before(&c, DoorNo(2), 1000).is_none());
    }
}
