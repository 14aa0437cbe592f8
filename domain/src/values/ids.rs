//! The names of things in a fleet: cabinets (`pk.dn`), their doors and lanes, products.
//! Each is parsed once at the edge; deserializing one (from the log or a request) checks
//! it again, so an invalid value never exists.

use super::ValueError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A cabinet's id, `{pk}.{dn}`: product key (model) and device name (serial).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CabinetId {
    pk: String,
    dn: String,
}

fn valid_name_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl CabinetId {
    /// Builds an id from its two parts; each is 1–64 of `[A-Za-z0-9_-]` (no dots or
    /// slashes, since both appear in MQTT topics and in the `pk.dn` form).
    pub fn new(pk: &str, dn: &str) -> Result<Self, ValueError> {
        if !valid_name_part(pk) {
            return Err(ValueError::new("pk", "must be 1-64 characters of [A-Za-z0-9_-]"));
        }
        if !valid_name_part(dn) {
            return Err(ValueError::new("dn", "must be 1-64 characters of [A-Za-z0-9_-]"));
        }
        Ok(Self {
            pk: pk.to_string(),
            dn: dn.to_string(),
        })
    }

    /// Parses the `pk.dn` form.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let (pk, dn) = s.split_once('.').ok_or_else(|| ValueError::new("cabinet", "must be `pk.dn`"))?;
        Self::new(pk, dn).map_err(|e| ValueError::new("cabinet", e.reason))
    }

    /// The product key (cabinet model).
    pub fn pk(&self) -> &str {
        &self.pk
    }

    /// The device name (serial).
    pub fn dn(&self) -> &str {
        &self.dn
    }
}

impl fmt::Display for CabinetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pk, self.dn)
    }
}

impl TryFrom<String> for CabinetId {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CabinetId> for String {
    fn from(c: CabinetId) -> Self {
        c.to_string()
    }
}

/// Defines a small positive number type (`DoorNo`, `LaneNo`) with its range.
macro_rules! bounded_number {
    ($(#[$doc:meta])* $name:ident, $max:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "u8", into = "u8")]
        pub struct $name(u8);

        impl $name {
            /// The highest number there is.
            pub const MAX: u8 = $max;

            #[doc = concat!("Parses a ", $what, " number (1..=", stringify!($max), ").")]
            pub fn parse(field: &'static str, v: i64) -> Result<Self, ValueError> {
                if !(1..=i64::from(Self::MAX)).contains(&v) {
                    return Err(ValueError::new(field, concat!("must be between 1 and ", stringify!($max))));
                }
                Ok(Self(v as u8))
            }

            #[doc = concat!("A ", $what, " number written in the code or a test; panics outside 1..=", stringify!($max), ".")]
            pub const fn of(v: u8) -> Self {
                assert!(v >= 1 && v <= Self::MAX, concat!($what, " number out of range"));
                Self(v)
            }

            /// The number.
            pub const fn get(self) -> u8 {
                self.0
            }
        }

        impl TryFrom<u8> for $name {
            type Error = ValueError;
            fn try_from(v: u8) -> Result<Self, ValueError> {
                Self::parse($what, i64::from(v))
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

bounded_number!(
    /// A door number on a cabinet (a locker's compartments are its doors), 1..=16.
    DoorNo,
    16,
    "door"
);

bounded_number!(
    /// A lane number within a door, 1..=64.
    LaneNo,
    64,
    "lane"
);

/// A stock-keeping unit code: 1–64 of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// Parses a SKU code.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValueError> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Err(ValueError::new(field, "must be 1-64 characters of [A-Za-z0-9_.-]"));
        }
        Ok(Self(s.to_string()))
    }

    /// A SKU written in the code or a test; panics if it is not a valid code.
    pub fn of(s: &str) -> Self {
        match Self::parse("sku", s) {
            Ok(sku) => sku,
            Err(e) => panic!("{e}"),
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse("sku", &s)
    }
}

impl From<Sku> for String {
    fn from(s: Sku) -> Self {
        s.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cabinet_id_round_trips_and_rejects_bad_parts() {
        let id = CabinetId::parse("wc1.SN-001").unwrap();
        assert_eq!(id.pk(), "wc1");
        assert_eq!(id.dn(), "SN-001");
        assert_eq!(id.to_string(), "wc1.SN-001");
        assert!(CabinetId::parse("nodot").is_err());
        assert!(CabinetId::parse("a/b.c").is_err());
        assert!(CabinetId::parse(".x").is_err());
        assert!(CabinetId::parse("a.b.c").is_err());
    }

    #[test]
    fn doors_and_lanes_have_bounds_even_when_deserialized() {
        assert!(DoorNo::parse("door", 0).is_err());
        assert!(DoorNo::parse("door", 17).is_err());
        assert!(LaneNo::parse("lane", 65).is_err());
        assert_eq!(LaneNo::parse("lane", 3).unwrap(), LaneNo::of(3));
        assert!(serde_json::from_str::<DoorNo>("0").is_err());
        assert_eq!(serde_json::from_str::<DoorNo>("16").unwrap().get(), 16);
        assert!(serde_json::from_str::<Sku>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&Sku::of("cola-330")).unwrap(), "\"cola-330\"");
    }
}
