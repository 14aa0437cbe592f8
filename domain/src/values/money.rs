//! Money in integer minor units. Never a float inside the platform: provider units
//! (yuan strings, fen) exist only in the adapters.

use super::ValueError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Mul, Sub};

/// Money in integer minor units (cents / fen).
///
/// Built from outside input with [`Cents::parse`] (non-negative, bounded); amounts the
/// platform computes (sums, discounts, limits) come from arithmetic on `Cents` or from
/// [`Cents::new`] on a value read back from the log or a verified provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Cents(i64);

impl Cents {
    /// Nothing.
    pub const ZERO: Self = Self(0);

    /// The most a single price or charge may be (1,000,000.00): anything above is a typo.
    pub const MAX: i64 = 100_000_000;

    /// Parses a non-negative amount no larger than [`Cents::MAX`] (outside input).
    pub fn parse(field: &'static str, v: i64) -> Result<Self, ValueError> {
        if v < 0 {
            return Err(ValueError::new(field, "must not be negative"));
        }
        if v > Self::MAX {
            return Err(ValueError::new(field, format!("must be at most {}", Self::MAX)));
        }
        Ok(Self(v))
    }

    /// An amount the platform already trusts (computed, or read from the log).
    pub const fn new(minor_units: i64) -> Self {
        Self(minor_units)
    }

    /// The amount in minor units.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Self) -> Self {
        Self(self.0.min(other.0))
    }
}

impl Add for Cents {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}

impl Sub for Cents {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}

/// A unit price times a quantity.
impl Mul<u32> for Cents {
    type Output = Self;
    fn mul(self, qty: u32) -> Self {
        Self(self.0 * i64::from(qty))
    }
}

impl Sum for Cents {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|c| c.0).sum())
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:02}", self.0.abs() / 100, self.0.abs() % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn outside_amounts_are_bounded() {
        assert!(Cents::parse("price_cents", -1).is_err());
        assert!(Cents::parse("price_cents", Cents::MAX + 1).is_err());
        assert_eq!(Cents::parse("price_cents", 250).unwrap(), Cents::new(250));
        assert_eq!(Cents::new(1205).to_string(), "12.05");
        assert_eq!(Cents::new(-5).to_string(), "-0.05");
    }

    proptest! {
        /// Sums and products are exact integer arithmetic.
        #[test]
        fn arithmetic_is_integer_exact(prices in proptest::collection::vec((0i64..1_000_000, 0u32..100), 0..20)) {
            let total: Cents = prices.iter().map(|(p, q)| Cents::new(*p) * *q).sum();
            prop_assert_eq!(total.get(), prices.iter().map(|(p, q)| p * i64::from(*q)).sum::<i64>());
            prop_assert_eq!((total + Cents::new(7)) - Cents::new(7), total);
        }
    }
}
