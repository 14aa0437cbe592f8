//! Value types that are parsed, not validated: once built they are known to be valid.
//! The edges (HTTP, device protocol) construct them with the fallible `parse`/`new`
//! functions and report the returned [`ValueError`] with the offending field.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a raw value could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValueError {
    /// The field (or value kind) that was rejected.
    pub field: &'static str,
    /// A human-readable reason.
    pub reason: String,
}

impl ValueError {
    /// Builds an error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Money in integer minor units (cents / fen). Never a float inside the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Cents(pub i64);

impl Cents {
    /// The most a single price or charge may be (1,000,000.00): anything above is a typo.
    pub const MAX: i64 = 100_000_000;

    /// Parses a non-negative amount no larger than [`Cents::MAX`].
    pub fn parse(field: &'static str, v: i64) -> Result<Self, ValueError> {
        if v < 0 {
            return Err(ValueError::new(field, "must not be negative"));
        }
        if v > Self::MAX {
            return Err(ValueError::new(field, format!("must be at most {}", Self::MAX)));
        }
        Ok(Self(v))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

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

/// A door number on a cabinet, 1..=16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DoorNo(pub u8);

impl DoorNo {
    /// Parses a door number (1..=16).
    pub fn parse(field: &'static str, v: i64) -> Result<Self, ValueError> {
        if !(1..=16).contains(&v) {
            return Err(ValueError::new(field, "must be between 1 and 16"));
        }
        Ok(Self(v as u8))
    }
}

/// A lane number within a door, 1..=64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LaneNo(pub u8);

impl LaneNo {
    /// Parses a lane number (1..=64).
    pub fn parse(field: &'static str, v: i64) -> Result<Self, ValueError> {
        if !(1..=64).contains(&v) {
            return Err(ValueError::new(field, "must be between 1 and 64"));
        }
        Ok(Self(v as u8))
    }
}

/// A stock-keeping unit code: 1–64 of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(pub String);

impl Sku {
    /// Parses a SKU code.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValueError> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Err(ValueError::new(field, "must be 1-64 characters of [A-Za-z0-9_.-]"));
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which payment provider a shopper pays with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// WeChat Pay Score (integer fen; deducts asynchronously and retries by itself).
    Wechat,
    /// Alipay pre-authorisation (yuan strings; the merchant owns retries).
    Alipay,
}

impl ProviderKind {
    /// The provider's name on the wire (`wechat`, `alipay`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wechat => "wechat",
            Self::Alipay => "alipay",
        }
    }

    /// Parses `wechat` / `alipay`.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValueError> {
        match s {
            "wechat" => Ok(Self::Wechat),
            "alipay" => Ok(Self::Alipay),
            _ => Err(ValueError::new(field, "must be `wechat` or `alipay`")),
        }
    }
}

/// How the shopper authorizes a purchase with the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmMode {
    /// The shopper confirms every purchase in the provider's app.
    EachTime,
    /// The shopper authorized once; each purchase is pre-authorized at once.
    Once,
}

/// The kind of cabinet hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CabinetKind {
    /// Weight-sensing smart cabinet: lanes on load cells behind doors.
    Weight,
    /// Shared locker: compartments that pop on command.
    Locker,
}

/// A geographic position (WGS-84 degrees).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, −90..=90.
    pub lat: f64,
    /// Longitude, −180..=180.
    pub lng: f64,
}

impl GeoPoint {
    /// Parses a finite latitude/longitude pair within range.
    pub fn parse(lat: f64, lng: f64) -> Result<Self, ValueError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(ValueError::new("location.lat", "must be between -90 and 90"));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(ValueError::new("location.lng", "must be between -180 and 180"));
        }
        Ok(Self { lat, lng })
    }

    /// Great-circle distance in metres (haversine).
    pub fn distance_m(&self, other: &GeoPoint) -> f64 {
        let r = 6_371_000.0_f64;
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dla = la2 - la1;
        let dlo = (other.lng - self.lng).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * r * a.sqrt().asin()
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
    fn cents_reject_negative_and_absurd() {
        assert!(Cents::parse("price_cents", -1).is_err());
        assert!(Cents::parse("price_cents", Cents::MAX + 1).is_err());
        assert_eq!(Cents::parse("price_cents", 250).unwrap(), Cents(250));
        assert_eq!(Cents(1205).to_string(), "12.05");
    }

    #[test]
    fn doors_and_lanes_have_bounds() {
        assert!(DoorNo::parse("door", 0).is_err());
        assert!(DoorNo::parse("door", 17).is_err());
        assert!(LaneNo::parse("lane", 65).is_err());
        assert_eq!(LaneNo::parse("lane", 3).unwrap(), LaneNo(3));
    }

    #[test]
    fn distance_is_plausible() {
        let a = GeoPoint::parse(31.2304, 121.4737).unwrap();
        let b = GeoPoint::parse(31.2404, 121.4737).unwrap();
        let d = a.distance_m(&b);
        assert!((1100.0..1125.0).contains(&d), "{d}");
    }
}

/// How a rejected command maps onto the outside world (the HTTP layer turns it into a
/// status code; the sagas into "retry" or "give up").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The aggregate does not exist.
    NotFound,
    /// The command conflicts with the current state (busy, already done, wrong state).
    Conflict,
    /// The command carried an invalid value.
    Invalid,
}

/// Implemented by every aggregate's error so the edges can classify it without
/// matching on each variant.
pub trait DomainError: std::error::Error {
    /// Which class of rejection this is.
    fn kind(&self) -> RejectionKind;
    /// A stable machine-readable code (`cabinet_busy`, `unpaid_order`, …).
    fn code(&self) -> &'static str;
}
