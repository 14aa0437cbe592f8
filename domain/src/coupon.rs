//! Coupon choice [O7]: the shopper picks nothing; the platform applies the best coupon
//! the operator's policy allows. Pure arithmetic on integer cents.

use crate::{Cents, Sku, UnixMs};
use serde::{Deserialize, Serialize};

/// What a coupon is worth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CouponKind {
    /// A fixed amount off an order of at least `min_spend`.
    Cash {
        /// Face value.
        value: Cents,
        /// Smallest subtotal it applies to.
        min_spend: Cents,
    },
    /// One unit of `sku` at the group-buy price.
    GroupBuy {
        /// The product it applies to.
        sku: Sku,
        /// The price of that one unit with the coupon.
        price: Cents,
    },
}

/// A coupon in a shopper's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    /// Unique id.
    pub id: String,
    /// Its value.
    pub kind: CouponKind,
    /// Unix ms after which it is void, if any.
    pub expires_at: Option<UnixMs>,
}

/// The operator's rule for automatic coupon use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CouponPolicy {
    /// A cash coupon is used only if its face value is at most the subtotal plus this
    /// percentage (e.g. 30: never spend a 20.00 coupon on a 1.00 order). `None`: any
    /// coupon may be used on any amount.
    pub max_value_over_amount_pct: Option<u32>,
}

/// A priced line the coupon may apply to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    /// The product.
    pub sku: Sku,
    /// Units bought.
    pub qty: u32,
    /// Price of one unit.
    pub unit_price: Cents,
}

/// The coupon chosen and the discount it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponChoice {
    /// The coupon used.
    pub coupon_id: String,
    /// The discount (never more than the subtotal).
    pub discount: Cents,
}

fn discount_of(coupon: &Coupon, lines: &[PricedLine], subtotal: Cents, policy: &CouponPolicy) -> Option<Cents> {
    match &coupon.kind {
        CouponKind::Cash { value, min_spend } => {
            if subtotal.get() == 0 || subtotal < *min_spend {
                return None;
            }
            if let Some(pct) = policy.max_value_over_amount_pct {
                // value ≤ subtotal × (100 + pct) / 100, in integers.
                if value.get() * 100 > subtotal.get() * (100 + i64::from(pct)) {
                    return None;
                }
            }
            Some(Cents::new(value.get().min(subtotal.get())))
        }
        CouponKind::GroupBuy { sku, price } => lines
            .iter()
            .find(|l| &l.sku == sku && l.qty > 0 && l.unit_price > *price)
            .map(|l| Cents::new(l.unit_price.get() - price.get())),
    }
}

/// Picks the coupon that saves the most; on a tie the one that wastes the least face
/// value, then the one expiring first, then the smallest id (so the choice is stable).
pub fn choose_coupon(lines: &[PricedLine], coupons: &[Coupon], policy: &CouponPolicy, now: UnixMs) -> Option<CouponChoice> {
    let subtotal = Cents::new(lines.iter().map(|l| l.unit_price.get() * i64::from(l.qty)).sum());
    coupons
        .iter()
        .filter(|c| c.expires_at.is_none_or(|e| e > now))
        .filter_map(|c| {
            let d = discount_of(c, lines, subtotal, policy)?;
            if d.get() <= 0 {
                return None;
            }
            let face = match &c.kind {
                CouponKind::Cash { value, .. } => value.get(),
                CouponKind::GroupBuy { .. } => d.get(),
            };
            Some((d, face - d.get(), c.expires_at.unwrap_or(i64::MAX), c.id.clone()))
        })
        .min_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)))
        .map(|(d, _, _, id)| CouponChoice {
            coupon_id: id,
            discount: d,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cash(id: &str, value: i64, min: i64) -> Coupon {
        Coupon {
            id: id.into(),
            kind: CouponKind::Cash {
                value: Cents::new(value),
                min_spend: Cents::new(min),
            },
            expires_at: None,
        }
    }

    fn line(sku: &str, qty: u32, price: i64) -> PricedLine {
        PricedLine {
            sku: Sku::of(sku),
            qty,
            unit_price: Cents::new(price),
        }
    }

    #[test]
    fn policy_blocks_big_coupon_on_small_order() {
        let lines = [line("gum", 1, 100)];
        let coupons = [cash("big", 2000, 0)];
        let strict = CouponPolicy {
            max_value_over_amount_pct: Some(30),
        };
        assert_eq!(choose_coupon(&lines, &coupons, &strict, 0), None);
        let lax = CouponPolicy::default();
        assert_eq!(
            choose_coupon(&lines, &coupons, &lax, 0),
            Some(CouponChoice {
                coupon_id: "big".into(),
                discount: Cents::new(100)
            })
        );
    }

    #[test]
    fn best_discount_then_least_waste_then_expiry() {
        let lines = [line("cola", 2, 300)];
        let mut c3 = cash("c", 500, 0);
        c3.expires_at = Some(10);
        let coupons = [cash("a", 200, 0), cash("b", 500, 0), c3, cash("d", 500, 700)];
        let got = choose_coupon(&lines, &coupons, &CouponPolicy::default(), 0).unwrap();
        assert_eq!(got.coupon_id, "c");
        assert_eq!(got.discount, Cents::new(500));
        // expired coupons are ignored
        let got = choose_coupon(&lines, &coupons, &CouponPolicy::default(), 10).unwrap();
        assert_eq!(got.coupon_id, "b");
    }

    #[test]
    fn group_buy_prices_one_unit() {
        let lines = [line("cola", 3, 300), line("gum", 1, 100)];
        let gb = Coupon {
            id: "gb".into(),
            kind: CouponKind::GroupBuy {
                sku: Sku::of("cola"),
                price: Cents::new(99),
            },
            expires_at: None,
        };
        let got = choose_coupon(&lines, &[gb], &CouponPolicy::default(), 0).unwrap();
        assert_eq!(got.discount, Cents::new(201));
    }

    proptest! {
        /// The discount is never negative, never above the subtotal, and respects the policy.
        #[test]
        fn discount_is_bounded(
            prices in proptest::collection::vec((1u32..5, 1i64..5000), 0..5),
            values in proptest::collection::vec((1i64..10000, 0i64..5000), 0..6),
            pct in proptest::option::of(0u32..100),
        ) {
            let lines: Vec<_> = prices.iter().enumerate().map(|(i, (q, p))| line(&format!("s{i}"), *q, *p)).collect();
            let subtotal: i64 = lines.iter().map(|l| l.unit_price.get() * i64::from(l.qty)).sum();
            let coupons: Vec<_> = values.iter().enumerate().map(|(i, (v, m))| cash(&format!("c{i}"), *v, *m)).collect();
            let policy = CouponPolicy { max_value_over_amount_pct: pct };
            if let Some(choice) = choose_coupon(&lines, &coupons, &policy, 0) {
                prop_assert!(choice.discount.get() > 0 && choice.discount.get() <= subtotal);
                let c = coupons.iter().find(|c| c.id == choice.coupon_id).unwrap();
                if let (CouponKind::Cash { value, .. }, Some(p)) = (&c.kind, pct) {
                    prop_assert!(value.get() * 100 <= subtotal * (100 + i64::from(p)));
                }
            }
        }
    }
}
