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

use crate::{Grams, LaneNo, Sku, UnixMs, ValueError};
use serde::{Deserialize, Serialize};

/// Linear tolerance of a lane's scale: error allowed = `abs_grams + rel × load_grams`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Fixed part (scale noise at zero load).
    pub abs_grams: Grams,
    /// Proportional part (0.005 = 0.5 % of the load).
    pub rel: f64,
}

impl Default for Tolerance {
    /// 3 g plus 0.3 % of the load: typical of the retail load cells in the seeds
    /// (a 3 kg lane allows ±12 g, which still separates 25 g items).
    fn default() -> Self {
        Self {
            abs_grams: Grams::of(3.0),
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
        Ok(Self {
            abs_grams: Grams::of(abs_grams),
            rel,
        })
    }

    /// The error allowed on a difference between two readings whose larger load is `load`.
    pub fn allowed(&self, load: Grams) -> Grams {
        self.abs_grams + load.abs() * self.rel
    }
}

/// Checks that a lane's items can be told apart at full capacity: the tolerance at the
/// heaviest load must stay below half a unit, or one item more or less is invisible [B3].
pub fn check_lane_resolvable(unit: Grams, capacity: u32, tolerance: &Tolerance) -> Result<(), ValueError> {
    let full = unit * f64::from(capacity);
    let allowed = tolerance.allowed(full);
    if allowed >= unit * 0.5 {
        return Err(ValueError::new(
            "tolerance",
            format!("at capacity {capacity} the tolerance is {allowed}, which cannot separate items of {unit} (must be below half a unit)",),
        ));
    }
    Ok(())
}

/// One lane's reading inside a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LaneGrams {
    /// The lane.
    pub lane: LaneNo,
    /// Weight on the lane, net of the tray.
    pub grams: Grams,
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
    /// Accepts a sample only if the device flagged it stable (every reading is finite:
    /// a [`Grams`] cannot be anything else).
    pub fn from_sample(sample: WeightSample) -> Option<Self> {
        if sample.stable {
            Some(Self(sample))
        } else {
            None
        }
    }

    /// The underlying sample.
    pub fn sample(&self) -> &WeightSample {
        &self.0
    }

    /// The weight on `lane`, if the sample has it.
    pub fn grams(&self, lane: LaneNo) -> Option<Grams> {
        self.0.lanes.iter().find(|l| l.lane == lane).map(|l| l.grams)
    }

    /// Keeps `reading` as a purchase's baseline only if it was taken at or after
    /// `not_before` (the door's previous close): an older reading predates the previous
    /// session's takes, and weighing against it would charge them again [O5]. Without a
    /// fresh baseline the order is judged `no_weight_before` — flagged, never overcharged.
    pub fn fresh(reading: Option<Self>, not_before: Option<UnixMs>) -> Option<Self> {
        match not_before {
            Some(closed) => reading.filter(|r| r.sample().device_ts >= closed),
            None => reading,
        }
    }
}

/// What the platform concluded about one lane, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneInference {
    /// The lane.
    pub lane: LaneNo,
    /// The product the planogram put there.
    pub sku: Sku,
    /// Stable weight before the door opened.
    pub before_grams: Grams,
    /// Stable weight after the door closed.
    pub after_grams: Grams,
    /// The unit weight used.
    pub unit_grams: Grams,
    /// `(before − after) / unit_grams`, unrounded.
    pub raw_count: f64,
    /// Items that left the lane (negative: the lane got heavier).
    pub count: i64,
    /// `(before − after) − count × unit_grams`.
    pub residual_grams: Grams,
    /// The tolerance that applied at this load.
    pub tolerance_grams: Grams,
    /// 1.0 when the residual is zero, falling to 0.0 at half a unit.
    pub confidence: f64,
    /// Whether the residual is within tolerance (otherwise: review, do not charge) [B3].
    pub within_tolerance: bool,
}

/// Counts one lane from two stable readings.
pub fn infer_lane(
    lane: LaneNo,
    sku: &Sku,
    unit_grams: Grams,
    tolerance: &Tolerance,
    before_grams: Grams,
    after_grams: Grams,
) -> LaneInference {
    let delta = before_grams - after_grams;
    let raw_count = delta / unit_grams;
    let count = raw_count.round() as i64;
    let residual = delta - unit_grams * count as f64;
    let tol = tolerance.allowed(before_grams.max(after_grams));
    let half = unit_grams * 0.5;
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
    /// Unit weight.
    pub unit_grams: Grams,
    /// Its tolerance.
    pub tolerance: Tolerance,
}

/// Counts every lane of a door.
pub fn infer_door(lanes: &[LaneScale], before: &StableReading, after: &StableReading) -> Result<Vec<LaneInference>, InferenceError> {
    lanes
        .iter()
        .map(|l| {
            let b = before.grams(l.lane).ok_or(InferenceError::MissingLane {
                lane: l.lane.get(),
                which: "before",
            })?;
            let a = after.grams(l.lane).ok_or(InferenceError::MissingLane {
                lane: l.lane.get(),
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
                    lane: LaneNo::of(i as u8 + 1),
                    grams: Grams::of(*g),
                })
                .collect(),
        }
    }

    #[test]
    fn unstable_or_nan_samples_never_count() {
        assert!(StableReading::from_sample(sample(false, &[100.0])).is_none());
        assert!(StableReading::from_sample(sample(true, &[100.0])).is_some());
        // A NaN reading cannot even be written down.
        assert!(serde_json::from_str::<LaneGrams>(r#"{"lane":1,"grams":null}"#).is_err());
    }

    #[test]
    fn small_shortfall_is_noise_large_is_an_item() {
        let sku = Sku::of("cola");
        let t = Tolerance::default();
        let noise = infer_lane(LaneNo::of(1), &sku, Grams::of(330.0), &t, Grams::of(3300.0), Grams::of(3296.0));
        assert_eq!(noise.count, 0);
        assert!(noise.within_tolerance);
        let one = infer_lane(LaneNo::of(1), &sku, Grams::of(330.0), &t, Grams::of(3300.0), Grams::of(2972.0));
        assert_eq!(one.count, 1);
        assert!(one.within_tolerance);
        assert!(one.confidence > 0.9);
    }

    #[test]
    fn heavier_lane_is_negative_and_halfway_is_low_confidence() {
        let sku = Sku::of("cola");
        let t = Tolerance::default();
        let heavier = infer_lane(LaneNo::of(1), &sku, Grams::of(330.0), &t, Grams::of(990.0), Grams::of(1320.0));
        assert_eq!(heavier.count, -1);
        let ambiguous = infer_lane(LaneNo::of(1), &sku, Grams::of(330.0), &t, Grams::of(990.0), Grams::of(830.0));
        assert!(!ambiguous.within_tolerance);
        assert!(ambiguous.confidence < 0.1);
    }

    #[test]
    fn missing_lane_is_an_error() {
        let lanes = vec![LaneScale {
            lane: LaneNo::of(2),
            sku: Sku::of("x"),
            unit_grams: Grams::of(100.0),
            tolerance: Tolerance::default(),
        }];
        let b = StableReading::from_sample(sample(true, &[100.0])).unwrap();
        let err = infer_door(&lanes, &b, &b).unwrap_err();
        assert_eq!(err, InferenceError::MissingLane { lane: 2, which: "before" });
    }

    #[test]
    fn unresolvable_lanes_are_refused() {
        assert!(check_lane_resolvable(Grams::of(330.0), 10, &Tolerance::default()).is_ok());
        assert!(check_lane_resolvable(Grams::of(5.0), 100, &Tolerance::default()).is_err());
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
                    abs_grams: Grams::of(abs),
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
                prop_assume!(check_lane_resolvable(Grams::of(*unit), *capacity, tol).is_ok());
                let b_true = unit * f64::from(*stock);
                let a_true = unit * f64::from(stock - take);
                // Each reading errs by at most 0.49 × the tolerance at the lighter load, so
                // the difference of two readings stays within the tolerance.
                let t = tol.allowed(Grams::of(a_true)).get();
                before.push(b_true + n1 * 0.98 * t);
                after.push(a_true + n2 * 0.98 * t);
                scales.push(LaneScale { lane: LaneNo::of(i as u8 + 1), sku: Sku::of(&format!("s{i}")), unit_grams: Grams::of(*unit), tolerance: *tol });
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
