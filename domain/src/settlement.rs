//! The settlement [O6, O7, B2, B3]: the one function that decides what a shopper pays.
//!
//! From the door's frozen planogram and two stable readings (before the door opened,
//! after it closed) it counts each lane, prices what left, lets the coupon policy pick a
//! coupon, and judges the result: charge, free, nothing taken, or review by an operator
//! (never a charge when the count is uncertain). It is pure: the order aggregate records
//! its result as `WeightsSettled` and the verdict's event, and a replay of the same
//! inputs gives the same receipt.
//!
//! Must not: read a clock, a store or telemetry (the caller passes the readings), or
//! charge for a lane that got heavier (a put-back is an anomaly, never a credit or a
//! debit).

use crate::cabinet::LanePlan;
use crate::coupon::{choose_coupon, Coupon, CouponChoice, CouponPolicy, PricedLine};
use crate::order::{Anomaly, OrderLine};
use crate::weight::{infer_door, LaneInference, StableReading};
use crate::{Cents, UnixMs};

/// What the settlement decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// The two readings cannot be compared (no baseline, or a lane missing from one):
    /// no receipt; an operator looks at it with these anomalies.
    Unweighable {
        /// The order's anomalies so far plus the reason.
        anomalies: Vec<Anomaly>,
    },
    /// The door was weighed: a receipt, and what to do with it.
    Weighed(Receipt),
}

/// The receipt of a weighed door session, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// Per-lane inference (the evidence behind every line).
    pub inference: Vec<LaneInference>,
    /// Priced lines: one per lane that lost items.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines.
    pub subtotal: Cents,
    /// The coupon applied (none when the receipt goes to review).
    pub coupon: Option<CouponChoice>,
    /// What the shopper pays: subtotal minus the coupon's discount.
    pub total: Cents,
    /// Anomalies so far plus those the weighing found.
    pub anomalies: Vec<Anomaly>,
    /// What happens next.
    pub verdict: Verdict,
}

/// What a receipt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Charge the total through the provider.
    Charge,
    /// Something was taken but the coupon covers it all: paid with no charge.
    Free,
    /// Nothing left the door: cancel, nothing charged.
    NothingTaken,
    /// An anomaly blocks the charge: an operator decides (nothing charged).
    Review,
}

/// Settles one door session: `before` is the last stable reading before the door opened
/// (if any was known), `after` the first stable reading after it closed;
/// `prior_anomalies` are those already recorded on the order (an unexpected close).
pub fn settle(
    lanes: &[LanePlan],
    before: Option<&StableReading>,
    after: &StableReading,
    prior_anomalies: &[Anomaly],
    coupons: &[Coupon],
    policy: &CouponPolicy,
    now: UnixMs,
) -> Settlement {
    let mut anomalies = prior_anomalies.to_vec();
    let Some(before) = before else {
        anomalies.push(Anomaly::NoWeightBefore);
        return Settlement::Unweighable { anomalies };
    };
    let scales: Vec<_> = lanes.iter().map(LanePlan::scale).collect();
    let Ok(inference) = infer_door(&scales, before, after) else {
        anomalies.push(Anomaly::NoStableWeight);
        return Settlement::Unweighable { anomalies };
    };
    for i in &inference {
        if !i.within_tolerance {
            anomalies.push(Anomaly::LowConfidence {
                lane: i.lane,
                confidence: i.confidence,
            });
        } else if i.count < 0 {
            anomalies.push(Anomaly::LaneHeavier {
                lane: i.lane,
                items: -i.count,
            });
        }
    }
    let lines = price_lines(lanes, &inference);
    let priced: Vec<PricedLine> = lines
        .iter()
        .map(|l| PricedLine {
            sku: l.sku.clone(),
            qty: l.qty,
            unit_price: l.unit_price,
        })
        .collect();
    let subtotal: Cents = lines.iter().map(|l| l.unit_price * l.qty).sum();
    let blocked = anomalies.iter().any(Anomaly::blocks_charge);
    let coupon = if blocked {
        None
    } else {
        choose_coupon(&priced, coupons, policy, now)
    };
    let discount = coupon.as_ref().map_or(Cents::ZERO, |c| c.discount);
    let total = subtotal - discount;
    let verdict = if blocked {
        Verdict::Review
    } else if lines.is_empty() {
        Verdict::NothingTaken
    } else if total == Cents::ZERO {
        Verdict::Free
    } else {
        Verdict::Charge
    };
    Settlement::Weighed(Receipt {
        inference,
        lines,
        subtotal,
        coupon,
        total,
        anomalies,
        verdict,
    })
}

/// The lines the weights say were taken (positive counts only), priced from the frozen
/// planogram.
fn price_lines(lanes: &[LanePlan], inference: &[LaneInference]) -> Vec<OrderLine> {
    inference
        .iter()
        .filter(|i| i.count > 0)
        .filter_map(|i| {
            let plan = lanes.iter().find(|l| l.lane == i.lane)?;
            Some(OrderLine {
                lane: i.lane,
                sku: plan.sku.clone(),
                name: plan.name.clone(),
                qty: u32::try_from(i.count).ok()?,
                unit_price: plan.price,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coupon::CouponKind;
    use crate::weight::{check_lane_resolvable, LaneGrams, Tolerance, WeightSample};
    use crate::{Grams, LaneNo, Sku};
    use proptest::prelude::*;

    fn reading(grams: &[f64]) -> StableReading {
        StableReading::from_sample(WeightSample {
            msg_id: "m".into(),
            device_ts: 1,
            received_at: 1,
            stable: true,
            lanes: grams
                .iter()
                .enumerate()
                .map(|(i, g)| LaneGrams {
                    lane: LaneNo::of(i as u8 + 1),
                    grams: Grams::of(*g),
                })
                .collect(),
        })
        .expect("stable")
    }

    fn plan(n: u8, unit: f64, price: i64, capacity: u32) -> LanePlan {
        LanePlan {
            lane: LaneNo::of(n),
            sku: Sku::of(&format!("sku{n}")),
            name: format!("Product {n}"),
            unit_grams: Grams::of(unit),
            price: Cents::new(price),
            capacity,
            restock_threshold: 0,
            tolerance: Tolerance::default(),
            price_version: 1,
            calibration_version: 0,
        }
    }

    fn cash(value: i64) -> Coupon {
        Coupon {
            id: "c1".into(),
            kind: CouponKind::Cash {
                value: Cents::new(value),
                min_spend: Cents::ZERO,
            },
            expires_at: None,
        }
    }

    fn receipt(s: Settlement) -> Receipt {
        match s {
            Settlement::Weighed(r) => r,
            other => panic!("not weighed: {other:?}"),
        }
    }

    #[test]
    fn two_colas_are_charged_with_the_coupon_taken_off() {
        let lanes = [plan(1, 330.0, 300, 10), plan(2, 550.0, 200, 8)];
        let r = receipt(settle(
            &lanes,
            Some(&reading(&[3300.0, 2750.0])),
            &reading(&[2640.0, 2751.0]),
            &[],
            &[cash(100)],
            &CouponPolicy::default(),
            0,
        ));
        assert_eq!(r.lines.len(), 1);
        assert_eq!((r.lines[0].lane, r.lines[0].qty), (LaneNo::of(1), 2));
        assert_eq!(r.subtotal, Cents::new(600));
        assert_eq!(r.total, Cents::new(500));
        assert_eq!(r.verdict, Verdict::Charge);
        assert!(r.anomalies.is_empty());
    }

    #[test]
    fn no_baseline_or_a_missing_lane_cannot_be_weighed() {
        let lanes = [plan(1, 330.0, 300, 10), plan(2, 550.0, 200, 8)];
        let s = settle(&lanes, None, &reading(&[1.0, 1.0]), &[], &[], &CouponPolicy::default(), 0);
        assert_eq!(
            s,
            Settlement::Unweighable {
                anomalies: vec![Anomaly::NoWeightBefore]
            }
        );
        let s = settle(
            &lanes,
            Some(&reading(&[330.0])),
            &reading(&[0.0, 0.0]),
            &[Anomaly::UnexpectedClose],
            &[],
            &CouponPolicy::default(),
            0,
        );
        assert_eq!(
            s,
            Settlement::Unweighable {
                anomalies: vec![Anomaly::UnexpectedClose, Anomaly::NoStableWeight]
            }
        );
    }

    #[test]
    fn an_uncertain_count_goes_to_review_without_a_coupon() {
        let lanes = [plan(1, 330.0, 300, 10)];
        // 160 g short: half a cola, within no tolerance.
        let r = receipt(settle(
            &lanes,
            Some(&reading(&[990.0])),
            &reading(&[830.0]),
            &[],
            &[cash(100)],
            &CouponPolicy::default(),
            0,
        ));
        assert_eq!(r.verdict, Verdict::Review);
        assert_eq!(r.coupon, None);
        assert!(matches!(r.anomalies[0], Anomaly::LowConfidence { .. }));
    }

    #[test]
    fn a_put_back_is_an_anomaly_not_a_credit_and_a_full_coupon_is_free() {
        let lanes = [plan(1, 330.0, 300, 10), plan(2, 550.0, 200, 8)];
        // One cola taken, one water put back.
        let r = receipt(settle(
            &lanes,
            Some(&reading(&[990.0, 550.0])),
            &reading(&[660.0, 1100.0]),
            &[],
            &[cash(300)],
            &CouponPolicy::default(),
            0,
        ));
        assert_eq!(r.subtotal, Cents::new(300));
        assert_eq!(
            r.anomalies,
            vec![Anomaly::LaneHeavier {
                lane: LaneNo::of(2),
                items: 1
            }]
        );
        assert_eq!((r.total, r.verdict), (Cents::ZERO, Verdict::Free));
        let none = receipt(settle(
            &lanes,
            Some(&reading(&[990.0, 550.0])),
            &reading(&[990.0, 551.0]),
            &[],
            &[],
            &CouponPolicy::default(),
            0,
        ));
        assert_eq!((none.verdict, none.total), (Verdict::NothingTaken, Cents::ZERO));
    }

    /// One lane of a random door: its plan, its stock, what the shopper did (a negative
    /// take is a put-back) and the noise of each reading (a fraction of the tolerance).
    #[derive(Debug, Clone)]
    struct LaneCase {
        unit: f64,
        price: i64,
        capacity: u32,
        stock: u32,
        take: i64,
        noise_before: f64,
        noise_after: f64,
    }

    /// A door of 1–5 lanes with random stock, takes and put-backs, noise within half the
    /// tolerance per reading, and a cash coupon's value.
    fn door_case() -> impl Strategy<Value = (Vec<LaneCase>, i64)> {
        let lane = (
            20.0f64..800.0,
            0i64..5_000,
            1u32..25,
            0.0f64..=1.0,
            -2i64..=6,
            -0.49f64..0.49,
            -0.49f64..0.49,
        )
            .prop_map(|(unit, price, capacity, stock_frac, take, noise_before, noise_after)| {
                let stock = (stock_frac * f64::from(capacity)).floor() as u32;
                // A take never exceeds the stock; a put-back never the free space.
                let take = take.clamp(-i64::from(capacity - stock), i64::from(stock));
                LaneCase {
                    unit,
                    price,
                    capacity,
                    stock,
                    take,
                    noise_before,
                    noise_after,
                }
            });
        (proptest::collection::vec(lane, 1..6), 0i64..2_000)
    }

    fn plans(cases: &[LaneCase]) -> Vec<LanePlan> {
        cases
            .iter()
            .enumerate()
            .map(|(i, c)| plan(i as u8 + 1, c.unit, c.price, c.capacity))
            .collect()
    }

    proptest! {
        /// Whatever the door: the shopper pays exactly the priced items that left, minus
        /// a discount never above the subtotal; a put-back is never credited; and money is
        /// charged only when no anomaly blocks it.
        #[test]
        fn the_charge_is_exactly_what_was_taken((cases, coupon) in door_case()) {
            let lanes = plans(&cases);
            for l in &lanes {
                prop_assume!(check_lane_resolvable(l.unit_grams, l.capacity, &l.tolerance).is_ok());
            }
            let mut before = Vec::new();
            let mut after = Vec::new();
            for (l, c) in lanes.iter().zip(&cases) {
                let b = c.unit * f64::from(c.stock);
                let a = c.unit * (i64::from(c.stock) - c.take) as f64;
                let t = l.tolerance.allowed(Grams::of(b.min(a))).get();
                before.push(b + c.noise_before * t);
                after.push(a + c.noise_after * t);
            }
            let r = receipt(settle(&lanes, Some(&reading(&before)), &reading(&after), &[], &[cash(coupon)], &CouponPolicy::default(), 0));
            let taken: Cents = lanes.iter().zip(&cases).filter(|(_, c)| c.take > 0).map(|(l, c)| l.price * c.take as u32).sum();
            prop_assert_eq!(r.subtotal, taken);
            prop_assert!(r.total >= Cents::ZERO && r.total <= r.subtotal);
            prop_assert_eq!(r.total, r.subtotal - r.coupon.as_ref().map_or(Cents::ZERO, |c| c.discount));
            for line in &r.lines {
                let (_, c) = lanes.iter().zip(&cases).find(|(l, _)| l.lane == line.lane).expect("a planned lane");
                prop_assert_eq!(i64::from(line.qty), c.take);
            }
            prop_assert_eq!(r.anomalies.len(), cases.iter().filter(|c| c.take < 0).count());
            let expected = if r.lines.is_empty() {
                Verdict::NothingTaken
            } else if r.total == Cents::ZERO {
                Verdict::Free
            } else {
                Verdict::Charge
            };
            prop_assert_eq!(r.verdict, expected);
        }

        /// A prior blocking anomaly (an unexpected close) always sends the receipt to
        /// review, with no coupon spent.
        #[test]
        fn a_blocking_anomaly_never_charges((cases, coupon) in door_case()) {
            let lanes = plans(&cases);
            let before: Vec<f64> = cases.iter().map(|c| c.unit * f64::from(c.stock)).collect();
            let r = receipt(settle(&lanes, Some(&reading(&before)), &reading(&before), &[Anomaly::UnexpectedClose], &[cash(coupon)], &CouponPolicy::default(), 0));
            prop_assert_eq!(r.verdict, Verdict::Review);
            prop_assert!(r.coupon.is_none());
        }
    }
}
