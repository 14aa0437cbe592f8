//! Weight → items [O6, B2]: how many items left a lane, judged from two *stable* load-cell
//! readings (before the door opened, after it closed) and the lane's unit weight.
//!
//! The tolerance is linear in the load: `abs_grams + rel × load`, because a load cell's
//! error grows with the weight on it. A lane is counted as
//! `round((before − after) / unit_grams)`; the residual (what rounding threw away) decides
//! the confidence. A negative count means the lane got heavier: an anomaly, never a credit.
//!
//! Must not: read unstable samples (the types make that impossible: a [`StableReading`]
//! is only built from a sample flagged stable), or touch money (pricing is the order's).

use crate::{LaneNo, Sku, UnixMs, ValueError};
use serde::{Deserialize, Serialize};

/// Linear tolerance of a lane's scale: error allowed = `abs_grams + rel × load_grams`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Fixed part, in grams (scale noise at zero load).
    pub abs_grams: f64,
    /// Proportional part (0.005 = 0.5 % of the load).
    pub rel: f64,
}

impl Default for Tolerance {
    /// 3 g plus 0.3 % of the load: typical of the retail load cells in the seeds
    /// (a 3 kg lane allows ±12 g, which still separates 25 g items).
    fn default() -> Self {
        Self {
            abs_grams: 3.0,
            rel: 0.003,
        }
    }
}

impl Tolerance {
    /// Parses a tolerance: both parts finite, `abs_grams` in 0..=1000, `rel` in 0..=0.2.
    pub fn parse(abs_grams: f64, rel: f64) -> Result<Self, ValueError> {
        if !abs_grams.is_finite() || !(0.0..=1000.0).contains(&abs_grams) {
            return Err(ValueError::new("tolerance.abs_grams", "must be between 0 and 1000"));
        }
        if !rel.is_finite() || !(0.0..=0.2).contains(&rel) {
            return Err(ValueError::new("tolerance.rel", "must be between 0 and 0.2"));
        }
        Ok(Self { abs_grams, rel })
    }

    /// The error allowed on a difference between two readings whose larger load is `load`.
    pub fn allowed(&self, load_grams: f64) -> f64 {
        self.abs_grams + self.rel * load_grams.abs()
    }
}

/// Checks that a lane's items can be told apart at full capacity: the tolerance at the
/// heaviest load must stay below half a unit, or one item more or less is invisible [B3].
pub fn check_lane_resolvable(unit_grams: f64, capacity: u32, tolerance: &Tolerance) -> Result<(), ValueError> {
    let full = unit_grams * f64::from(capacity);
    let allowed = tolerance.allowed(full);
    if allowed >= unit_grams / 2.0 {
        return Err(ValueError::new(
            "tolerance",
            format!(
                "at capacity {capacity} the tolerance is {allowed:.1} g, which cannot separate items of {unit_grams} g (must be below half a unit)"
            ),
        ));
    }
    Ok(())
}

/// One lane's reading inside a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LaneGrams {
    /// The lane.
    pub lane: LaneNo,
    /// Grams on the lane, net of the tray.
    pub grams: f64,
}

/// A door's load-cell sample as the device reported it (stable or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightSample {
    /// Device message id (for the evidence trail).
    pub msg_id: String,
    /// Device clock, Unix ms.
    pub device_ts: UnixMs,
    /// Platform receive time, Unix ms.
    pub received_at: UnixMs,
    /// The device's own stability flag.
    pub stable: bool,
    /// Readings per lane.
    pub lanes: Vec<LaneGrams>,
}

/// A stable sample: the only kind the inference accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StableReading(WeightSample);

impl StableReading {
    /// Accepts a sample only if the device flagged it stable and every reading is finite.
    pub fn from_sample(sample: WeightSample) -> Option<Self> {
        if sample.stable && sample.lanes.iter().all(|l| l.grams.is_finite()) {
            Some(Self(sample))
        } else {
            None
        }
    }

    /// The underlying sample.
    pub fn sample(&self) -> &WeightSample {
        &self.0
    }

    /// Grams on `lane`, if the sample has it.
    pub fn grams(&self, lane: LaneNo) -> Option<f64> {
        self.0.lanes.iter().find(|l| l.lane == lane).map(|l| l.grams)
    }
}

/// What the platform concluded about one lane, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneInference {
    /// The lane.
    pub lane: LaneNo,
    /// The product the planogram put there.
    pub sku: Sku,
    /// Stable grams before the door opened.
    pub before_grams: f64,
    /// Stable grams after the door closed.
    pub after_grams: f64,
    /// The unit weight used.
    pub unit_grams: f64,
    /// `(before − after) / unit_grams`, unrounded.
    pub raw_count: f64,
    /// Items that left the lane (negative: the lane got heavier).
    pub count: i64,
    /// `(before − after) − count × unit_grams`.
    pub residual_grams: f64,
    /// The tolerance that applied at this load.
    pub tolerance_grams: f64,
    /// 1.0 when the residual is zero, falling to 0.0 at half a unit.
    pub confidence: f64,
    /// Whether the residual is within tolerance (otherwise: review, do not charge) [B3].
    pub within_tolerance: bool,
}

/// Counts one lane from two stable readings.
pub fn infer_lane(lane: LaneNo, sku: &Sku, unit_grams: f64, tolerance: &Tolerance, before_grams: f64, after_grams: f64) -> LaneInference {
    let delta = before_grams - after_grams;
    let raw_count = delta / unit_grams;
    let count = raw_count.round() as i64;
    let residual = delta - count as f64 * unit_grams;
    let tol = tolerance.allowed(before_grams.max(after_grams));
    let half = unit_grams / 2.0;
    let confidence = (1.0 - residual.abs() / half).clamp(0.0, 1.0);
    LaneInference {
        lane,
        sku: sku.clone(),
        before_grams,
        after_grams,
        unit_grams,
        raw_count,
        count,
        residual_grams: residual,
        tolerance_grams: tol,
        confidence,
        within_tolerance: residual.abs() <= tol,
    }
}

/// Why a door could not be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// A planogram lane has no reading in one of the samples.
    #[error("lane {lane} has no reading in the {which} sample")]
    MissingLane {
        /// The lane without a reading.
        lane: u8,
        /// `before` or `after`.
        which: &'static str,
    },
}

/// The planogram facts the inference needs for one lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneScale {
    /// The lane.
    pub lane: LaneNo,
    /// Its product.
    pub sku: Sku,
    /// Unit weight in grams.
    pub unit_grams: f64,
    /// Its tolerance.
    pub tolerance: Tolerance,
}

/// Counts every lane of a door.
pub fn infer_door(lanes: &[LaneScale], before: &StableReading, after: &StableReading) -> Result<Vec<LaneInference>, InferenceError> {
    lanes
        .iter()
        .map(|l| {
            let b = before.grams(l.lane).ok_or(InferenceError::MissingLane {
                lane: l.lane.0,
                which: "before",
            })?;
            let a = after.grams(l.lane).ok_or(InferenceError::MissingLane {
                lane: l.lane.0,
                which: "after",
            })?;
            Ok(infer_lane(l.lane, &l.sku, l.unit_grams, &l.tolerance, b, a))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(stable: bool, grams: &[f64]) -> WeightSample {
        WeightSample {
            msg_id: "m".into(),
            device_ts: 1,
            received_at: 1,
            stable,
            lanes: grams
                .iter()
                .enumerate()
                .map(|(i, g)| LaneGrams {
                    lane: LaneNo(i as u8 + 1),
                    grams: *g,
                })
                .collect(),
        }
    }

    #[test]
    fn unstable_or_nan_samples_never_count() {
        assert!(StableReading::from_sample(sample(false, &[100.0])).is_none());
        assert!(StableReading::from_sample(sample(true, &[f64::NAN])).is_none());
        assert!(StableReading::from_sample(sample(true, &[100.0])).is_some());
    }

    #[test]
    fn small_shortfall_is_noise_large_is_an_item() {
        let sku = Sku("cola".into());
        let t = Tolerance::default();
        let noise = infer_lane(LaneNo(1), &sku, 330.0, &t, 3300.0, 3296.0);
        assert_eq!(noise.count, 0);
        assert!(noise.within_tolerance);
        let one = infer_lane(LaneNo(1), &sku, 330.0, &t, 3300.0, 2972.0);
        assert_eq!(one.count, 1);
        assert!(one.within_tolerance);
        assert!(one.confidence > 0.9);
    }

    #[test]
    fn heavier_lane_is_negative_and_halfway_is_low_confidence() {
        let sku = Sku("cola".into());
        let t = Tolerance::default();
        let heavier = infer_lane(LaneNo(1), &sku, 330.0, &t, 990.0, 1320.0);
        assert_eq!(heavier.count, -1);
        let ambiguous = infer_lane(LaneNo(1), &sku, 330.0, &t, 990.0, 830.0);
        assert!(!ambiguous.within_tolerance);
        assert!(ambiguous.confidence < 0.1);
    }

    #[test]
    fn missing_lane_is_an_error() {
        let lanes = vec![LaneScale {
            lane: LaneNo(2),
            sku: Sku("x".into()),
            unit_grams: 100.0,
            tolerance: Tolerance::default(),
        }];
        let b = StableReading::from_sample(sample(true, &[100.0])).unwrap();
        let err = infer_door(&lanes, &b, &b).unwrap_err();
        assert_eq!(err, InferenceError::MissingLane { lane: 2, which: "before" });
    }

    #[test]
    fn unresolvable_lanes_are_refused() {
        assert!(check_lane_resolvable(330.0, 10, &Tolerance::default()).is_ok());
        assert!(check_lane_resolvable(5.0, 100, &Tolerance::default()).is_err());
    }

    /// A random resolvable lane: (unit, capacity, tolerance, stock, take, noise1, noise2).
    fn lane_case() -> impl Strategy<Value = (f64, u32, Tolerance, u32, u32, f64, f64)> {
        (
            20.0f64..800.0,
            1u32..30,
            0.0f64..3.0,
            0.0f64..0.95,
            0.0f64..=1.0,
            0.0f64..=1.0,
            -0.5f64..0.5,
            -0.5f64..0.5,
        )
            .prop_map(|(unit, capacity, abs, rel_frac, stock_frac, take_frac, n1, n2)| {
                // The largest proportional part that keeps the lane resolvable at capacity.
                let max_rel = ((unit / 2.0 - abs) / (unit * f64::from(capacity))).clamp(0.0, 0.01);
                let tol = Tolerance {
                    abs_grams: abs,
                    rel: max_rel * rel_frac,
                };
                let stock = (stock_frac * f64::from(capacity)).floor() as u32;
                let take = (take_frac * f64::from(stock)).floor() as u32;
                (unit, capacity, tol, stock, take, n1, n2)
            })
    }

    proptest! {
        /// For any resolvable planogram and any take, readings whose noise stays within
        /// half the tolerance each (so the difference stays within the tolerance) give
        /// exactly the true count, within tolerance.
        #[test]
        fn counts_equal_true_takes_under_tolerance_noise(
            lanes in proptest::collection::vec(lane_case(), 1..8)
        ) {
            let mut scales = Vec::new();
            let mut before = Vec::new();
            let mut after = Vec::new();
            let mut truth = Vec::new();
            for (i, (unit, capacity, tol, stock, take, n1, n2)) in lanes.iter().enumerate() {
                prop_assume!(check_lane_resolvable(*unit, *capacity, tol).is_ok());
                let b_true = unit * f64::from(*stock);
                let a_true = unit * f64::from(stock - take);
                // Each reading errs by at most 0.49 × the tolerance at the lighter load, so
                // the difference of two readings stays within the tolerance.
                let t = tol.allowed(a_true);
                before.push(b_true + n1 * 0.98 * t);
                after.push(a_true + n2 * 0.98 * t);
                scales.push(LaneScale { lane: LaneNo(i as u8 + 1), sku: Sku(format!("s{i}")), unit_grams: *unit, tolerance: *tol });
                truth.push(i64::from(*take));
            }
            let b = StableReading::from_sample(sample(true, &before)).unwrap();
            let a = StableReading::from_sample(sample(true, &after)).unwrap();
            let got = infer_door(&scales, &b, &a).unwrap();
            for (inf, want) in got.iter().zip(truth) {
                prop_assert_eq!(inf.count, want);
                prop_assert!(inf.within_tolerance, "{:?}", inf);
            }
        }
    }
}
