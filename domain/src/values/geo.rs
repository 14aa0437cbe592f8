//! Where a cabinet stands.

use super::ValueError;
use serde::{Deserialize, Serialize};

/// A geographic position (WGS-84 degrees), within range by construction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGeoPoint")]
pub struct GeoPoint {
    lat: f64,
    lng: f64,
}

/// The serialized shape, checked on the way in.
#[derive(Deserialize)]
struct RawGeoPoint {
    lat: f64,
    lng: f64,
}

impl TryFrom<RawGeoPoint> for GeoPoint {
    type Error = ValueError;
    fn try_from(r: RawGeoPoint) -> Result<Self, ValueError> {
        Self::parse(r.lat, r.lng)
    }
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

    /// Latitude, −90..=90.
    pub fn lat(&self) -> f64 {
        self.lat
    }

    /// Longitude, −180..=180.
    pub fn lng(&self) -> f64 {
        self.lng
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
    fn distance_is_plausible() {
        let a = GeoPoint::parse(31.2304, 121.4737).unwrap();
        let b = GeoPoint::parse(31.2404, 121.4737).unwrap();
        let d = a.distance_m(&b);
        assert!((1100.0..1125.0).contains(&d), "{d}");
        assert!(serde_json::from_str::<GeoPoint>(r#"{"lat": 91, "lng": 0}"#).is_err());
    }
}
