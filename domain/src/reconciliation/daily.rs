//! The daily settlement per cabinet [R3 (c)]: what one local business day brought in at
//! each cabinet — orders paid, their gross (the goods at their prices), discounts,
//! refunds given that day, the providers' fees and what is left (net).
//!
//! The day closes at a configurable local (China) hour, midnight by default, so a fleet
//! whose night restock ends at 04:00 can close its day there. Money moves into a day by
//! when it moved: a sale by when it was paid, a refund by when it succeeded (a refund of
//! yesterday's order is today's). Fees are the providers' rates (parts per million of
//! what was collected less what was refunded, per provider, rounded to the cent) as this
//! node is configured with: an estimate the provider's bill confirms; an order paid
//! outside the providers (settled by hand) carries none.

use crate::{Cents, ProviderKind, UnixMs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One movement of money at a cabinet, as the settlement reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettlementLine {
    /// An order paid.
    Sale {
        /// The order.
        order_id: String,
        /// The cabinet.
        cabinet: String,
        /// Through which provider (`None`: paid outside, settled by hand).
        provider: Option<ProviderKind>,
        /// The goods at their prices.
        gross: Cents,
        /// What was collected (gross less the coupon).
        collected: Cents,
        /// When it was paid.
        at: UnixMs,
    },
    /// A refund that succeeded.
    Refund {
        /// The order.
        order_id: String,
        /// The cabinet.
        cabinet: String,
        /// Through which provider.
        provider: Option<ProviderKind>,
        /// How much.
        amount: Cents,
        /// When it succeeded.
        at: UnixMs,
    },
}

/// The providers' fees, in parts per million of the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRates {
    /// WeChat Pay's rate (6000 = 0.6 %).
    pub wechat_ppm: i64,
    /// Alipay's rate.
    pub alipay_ppm: i64,
}

impl Default for FeeRates {
    /// 0.6 %: both providers' standard rate for retail merchants.
    fn default() -> Self {
        Self {
            wechat_ppm: 6_000,
            alipay_ppm: 6_000,
        }
    }
}

impl FeeRates {
    fn of(&self, p: ProviderKind) -> i64 {
        match p {
            ProviderKind::Wechat => self.wechat_ppm,
            ProviderKind::Alipay => self.alipay_ppm,
        }
    }
}

/// One cabinet's day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CabinetSettlement {
    /// The cabinet.
    pub cabinet: String,
    /// Orders paid that day.
    pub orders: u64,
    /// Their goods at their prices (cents).
    pub gross: i64,
    /// Coupons taken off (cents).
    pub discounts: i64,
    /// Refunds given that day (cents).
    pub refunds: i64,
    /// The providers' fees (cents).
    pub fees: i64,
    /// `gross − discounts − refunds − fees` (cents).
    pub net: i64,
}

/// Rounds `amount × ppm / 1e6` to the nearest cent (halves away from zero).
fn fee(amount: i64, ppm: i64) -> i64 {
    let x = i128::from(amount) * i128::from(ppm);
    let q = (x.abs() + 500_000) / 1_000_000;
    (if x < 0 { -q } else { q }) as i64
}

/// Each cabinet's settlement of the lines of one day, by cabinet.
pub fn settle(lines: &[SettlementLine], rates: &FeeRates) -> Vec<CabinetSettlement> {
    let mut by_cabinet: BTreeMap<&str, CabinetSettlement> = BTreeMap::new();
    // Per cabinet and provider: collected less refunded, the base of the fee.
    let mut fee_base: BTreeMap<(&str, ProviderKind), i64> = BTreeMap::new();
    for l in lines {
        match l {
            SettlementLine::Sale {
                cabinet,
                provider,
                gross,
                collected,
                ..
            } => {
                let s = by_cabinet.entry(cabinet).or_default();
                s.orders += 1;
                s.gross += gross.get();
                s.discounts += gross.get() - collected.get();
                if let Some(p) = provider {
                    *fee_base.entry((cabinet, *p)).or_default() += collected.get();
                }
            }
            SettlementLine::Refund {
                cabinet, provider, amount, ..
            } => {
                by_cabinet.entry(cabinet).or_default().refunds += amount.get();
                if let Some(p) = provider {
                    *fee_base.entry((cabinet, *p)).or_default() -= amount.get();
                }
            }
        }
    }
    for ((cabinet, p), base) in fee_base {
        if let Some(s) = by_cabinet.get_mut(cabinet) {
            s.fees += fee(base, rates.of(p));
        }
    }
    by_cabinet
        .into_iter()
        .map(|(cabinet, s)| CabinetSettlement {
            cabinet: cabinet.to_string(),
            net: s.gross - s.discounts - s.refunds - s.fees,
            ..s
        })
        .collect()
}

/// The sum of cabinets' settlements (the fleet's day).
pub fn total(cabinets: &[CabinetSettlement]) -> CabinetSettlement {
    cabinets.iter().fold(CabinetSettlement::default(), |t, c| CabinetSettlement {
        cabinet: String::new(),
        orders: t.orders + c.orders,
        gross: t.gross + c.gross,
        discounts: t.discounts + c.discounts,
        refunds: t.refunds + c.refunds,
        fees: t.fees + c.fees,
        net: t.net + c.net,
    })
}

/// The `[from, to)` window (Unix ms) of local (China) business day `date` closing at
/// local hour `close_hour` (0: midnight; 4: the day runs 04:00 to 04:00).
pub fn day_window(date: &str, close_hour: i64) -> Option<(UnixMs, UnixMs)> {
    let start = super::dates::day_start(date)? + close_hour * 3_600_000;
    Some((start, start + 86_400_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(order: &str, cabinet: &str, provider: Option<ProviderKind>, gross: i64, collected: i64) -> SettlementLine {
        SettlementLine::Sale {
            order_id: order.into(),
            cabinet: cabinet.into(),
            provider,
            gross: Cents::new(gross),
            collected: Cents::new(collected),
            at: 0,
        }
    }

    fn refund(order: &str, cabinet: &str, amount: i64) -> SettlementLine {
        SettlementLine::Refund {
            order_id: order.into(),
            cabinet: cabinet.into(),
            provider: Some(ProviderKind::Wechat),
            amount: Cents::new(amount),
            at: 0,
        }
    }

    #[test]
    fn a_day_sums_per_cabinet_with_fees_on_what_stayed_collected() {
        let lines = [
            sale("o1", "c1", Some(ProviderKind::Wechat), 1000, 900),
            sale("o2", "c1", Some(ProviderKind::Alipay), 500, 500),
            sale("o3", "c1", None, 300, 300),
            refund("o0", "c1", 200),
            sale("o4", "c2", Some(ProviderKind::Wechat), 250, 250),
        ];
        let rates = FeeRates {
            wechat_ppm: 6_000,
            alipay_ppm: 10_000,
        };
        let days = settle(&lines, &rates);
        // c1: wechat base 900 − 200 = 700 → 4.2 → 4; alipay 500 × 1 % = 5; outside none.
        assert_eq!(
            days[0],
            CabinetSettlement {
                cabinet: "c1".into(),
                orders: 3,
                gross: 1800,
                discounts: 100,
                refunds: 200,
                fees: 9,
                net: 1491,
            }
        );
        // c2: 250 × 0.6 % = 1.5 → 2 (halves up).
        assert_eq!((days[1].fees, days[1].net), (2, 248));
        let t = total(&days);
        assert_eq!((t.orders, t.gross, t.net), (4, 2050, 1739));
    }

    #[test]
    fn a_day_of_refunds_only_returns_fees() {
        let days = settle(&[refund("o9", "c1", 1000)], &FeeRates::default());
        assert_eq!((days[0].refunds, days[0].fees, days[0].net), (1000, -6, -994));
    }

    #[test]
    fn the_day_closes_at_the_configured_local_hour() {
        // 2026-12-01 00:00 in China is 2026-11-30 16:00 UTC.
        let (from, to) = day_window("2026-12-01", 0).unwrap();
        assert_eq!(from, 1_796_054_400_000);
        assert_eq!(to - from, 86_400_000);
        assert_eq!(day_window("2026-12-01", 4).unwrap().0, from + 4 * 3_600_000);
        assert_eq!(day_window("2026-13-01", 0), None);
    }
}
