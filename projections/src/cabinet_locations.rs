//! Where cabinets stand [M4]: one document per cabinet, listed by the geohash of its
//! location (9 characters, about 5 m), so the cabinets near a point are found by range
//! scans of the owner index over a few cells — never a scan of the fleet.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::cabinet::CabinetEvent;
use tare_domain::{AnyEvent, UnixMs};

/// The geohash length documents are listed by.
pub const LOCATION_HASH_LEN: usize = 9;

/// One cabinet's location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CabinetLocationDoc {
    /// The cabinet.
    pub cabinet: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Its geohash ([`LOCATION_HASH_LEN`] characters).
    pub geohash: String,
}

/// Cabinets by location.
pub struct CabinetLocations;

impl CabinetLocations {
    /// The view's name.
    pub const VIEW: &'static str = "cabinet_locations";
}

impl Projection for CabinetLocations {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Cabinet(CabinetEvent::CabinetRegistered { .. }) => vec![aggregate_id.to_string()],
            _ => vec![],
        }
    }

    fn apply(
        &self,
        _docs: &[(String, Option<Value>)],
        aggregate_id: &str,
        event: &AnyEvent,
        _position: i64,
        _time: UnixMs,
    ) -> Vec<DocWrite> {
        let AnyEvent::Cabinet(CabinetEvent::CabinetRegistered { location, .. }) = event else {
            return vec![];
        };
        let coord = geohash::Coord {
            x: location.lng(),
            y: location.lat(),
        };
        // A parsed location is always within range, so it always encodes.
        let Ok(hash) = geohash::encode(coord, LOCATION_HASH_LEN) else {
            return vec![];
        };
        let d = CabinetLocationDoc {
            cabinet: aggregate_id.to_string(),
            lat: location.lat(),
            lng: location.lng(),
            geohash: hash.clone(),
        };
        vec![DocWrite {
            id: aggregate_id.to_string(),
            owner: Some(hash),
            doc: serde_json::to_value(&d).unwrap_or(Value::Null),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::{CabinetId, CabinetKind, GeoPoint};

    #[test]
    fn a_registered_cabinet_is_listed_by_its_geohash() {
        let registered = AnyEvent::Cabinet(CabinetEvent::CabinetRegistered {
            id: CabinetId::parse("wc.c1").unwrap(),
            kind: CabinetKind::Weight,
            location: GeoPoint::parse(31.2304, 121.4737).unwrap(),
            doors: vec![],
            at: 1,
        });
        let p = CabinetLocations;
        assert_eq!(p.touches("wc.c1", &registered), vec!["wc.c1".to_string()]);
        let w = p.apply(&[("wc.c1".into(), None)], "wc.c1", &registered, 1, 1);
        // Shanghai's People's Square is in cell `wtw3s`.
        assert_eq!(w[0].owner.as_deref().map(|h| &h[..5]), Some("wtw3s"));
        assert_eq!(w[0].owner.as_deref().map(str::len), Some(LOCATION_HASH_LEN));
        assert_eq!(w[0].doc["cabinet"], "wc.c1");
    }
}
