//! Weight in grams, as load cells report it and planograms state it.

use super::ValueError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A finite number of grams (negative only as a difference or a reading just below
/// zero). The constructors refuse NaN and infinities, so nothing that reaches the weight
/// inference can poison it.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize, Default)]
#[serde(try_from = "f64", into = "f64")]
pub struct Grams(f64);

impl Grams {
    /// Zero.
    pub const ZERO: Self = Self(0.0);

    /// Parses a finite number of grams.
    pub fn new(field: &'static str, v: f64) -> Result<Self, ValueError> {
        if v.is_finite() {
            Ok(Self(v))
        } else {
            Err(ValueError::new(field, "must be a finite number"))
        }
    }

    /// Grams for a literal or a planogram constant; panics on NaN or infinity.
    pub fn of(v: f64) -> Self {
        assert!(v.is_finite(), "grams must be finite, got {v}");
        Self(v)
    }

    /// The number of grams.
    pub const fn get(self) -> f64 {
        self.0
    }

    /// The magnitude.
    pub fn abs(self) -> Self {
        Self(self.0.abs())
    }

    /// The larger of two weights.
    pub fn max(self, other: Self) -> Self {
        Self(self.0.max(other.0))
    }
}

impl TryFrom<f64> for Grams {
    type Error = ValueError;
    fn try_from(v: f64) -> Result<Self, ValueError> {
        Self::new("grams", v)
    }
}

impl From<Grams> for f64 {
    fn from(g: Grams) -> Self {
        g.0
    }
}

impl Add for Grams {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}

impl Sub for Grams {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}

impl Neg for Grams {
    type Output = Self;
    fn neg(self) -> Self {
        Self(-self.0)
    }
}

/// Scaling a weight (a unit weight times a count, a tolerance's proportional part).
impl Mul<f64> for Grams {
    type Output = Self;
    fn mul(self, k: f64) -> Self {
        Self(self.0 * k)
    }
}

/// How many times one weight goes into another (a count of items, unrounded).
impl Div for Grams {
    type Output = f64;
    fn div(self, rhs: Self) -> f64 {
        self.0 / rhs.0
    }
}

impl fmt::Display for Grams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} g", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finite_weights_exist() {
        assert!(Grams::new("grams", f64::NAN).is_err());
        assert!(Grams::new("grams", f64::INFINITY).is_err());
        assert!(serde_json::from_str::<Grams>("1e999").is_err());
        assert_eq!(serde_json::from_str::<Grams>("12.5").unwrap(), Grams::of(12.5));
        assert_eq!(Grams::of(990.0) / Grams::of(330.0), 3.0);
        assert_eq!((Grams::of(1.0) - Grams::of(3.0)).abs(), Grams::of(2.0));
    }
}
