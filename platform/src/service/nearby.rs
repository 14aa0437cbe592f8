//! Cabinets near a point [M4], through the geohash index of the `cabinet_locations`
//! view: the cells of one precision that cover the circle (the point's cell and its eight
//! neighbours, at the finest precision whose cells are at least as large as the radius)
//! are read as owner-prefix ranges, then each cabinet's exact distance decides.

use super::ServiceError;
use crate::Platform;
use tare_domain::cabinet::DeviceStatus;
use tare_domain::{CabinetId, GeoPoint};
use tare_projections::{CabinetLocationDoc, CabinetLocations, LOCATION_HASH_LEN};

/// The largest radius asked about, m.
pub const MAX_RADIUS_M: f64 = 50_000.0;

/// Most cabinets one cell range yields (a denser city is answered from its nearest).
const PER_CELL: i64 = 5_000;

/// A cabinet near the point.
#[derive(Debug, Clone, PartialEq)]
pub struct NearbyCabinet {
    /// Its id.
    pub id: CabinetId,
    /// How far, m.
    pub distance_m: f64,
    /// Its recorded status.
    pub status: DeviceStatus,
    /// Silent while the platform cannot tell whether the fault is its own [B1].
    pub undecided: bool,
}

/// Metres per degree of latitude (and of longitude at the equator).
const M_PER_DEG: f64 = 111_320.0;

/// The cells to read for a circle of `radius_m` around `at`: geohash prefixes.
pub fn covering_cells(at: &GeoPoint, radius_m: f64) -> Vec<String> {
    let coord = geohash::Coord { x: at.lng(), y: at.lat() };
    let cos = at.lat().to_radians().cos().max(0.01);
    // From fine to coarse: the first precision whose cell is at least the radius on both
    // sides, so the 3×3 block around the point's cell holds the whole circle.
    let precision = (1..=LOCATION_HASH_LEN)
        .rev()
        .find(|&len| {
            geohash::encode(coord, len)
                .ok()
                .and_then(|h| geohash::decode_bbox(&h).ok())
                .is_some_and(|b| (b.max().y - b.min().y) * M_PER_DEG >= radius_m && (b.max().x - b.min().x) * M_PER_DEG * cos >= radius_m)
        })
        .unwrap_or(1);
    let Ok(center) = geohash::encode(coord, precision) else {
        return vec![];
    };
    let mut cells = vec![center.clone()];
    if let Ok(n) = geohash::neighbors(&center) {
        cells.extend([n.n, n.ne, n.e, n.se, n.s, n.sw, n.w, n.nw]);
    }
    cells.sort();
    cells.dedup();
    cells
}

impl Platform {
    /// The cabinets within `radius_m` of `at`, nearest first (ties by id), at most
    /// `limit`.
    pub async fn nearby_cabinets(&self, at: GeoPoint, radius_m: f64, limit: usize) -> Result<Vec<NearbyCabinet>, ServiceError> {
        let mut found = Vec::new();
        for cell in covering_cells(&at, radius_m) {
            for doc in self.views.by_owner_prefix(CabinetLocations::VIEW, &cell, PER_CELL).await? {
                let Ok(d) = serde_json::from_value::<CabinetLocationDoc>(doc) else {
                    continue;
                };
                let (Ok(id), Ok(point)) = (CabinetId::parse(&d.cabinet), GeoPoint::parse(d.lat, d.lng)) else {
                    continue;
                };
                let distance_m = at.distance_m(&point);
                if distance_m <= radius_m {
                    found.push((distance_m, id));
                }
            }
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.to_string().cmp(&b.1.to_string())));
        found.dedup_by(|a, b| a.1 == b.1);
        let mut out = Vec::new();
        for (distance_m, id) in found.into_iter().take(limit) {
            let c = self.cabinet(&id).await?;
            let undecided = self.device_presence(&id).undecided;
            out.push(NearbyCabinet {
                id,
                distance_m,
                status: c.status,
                undecided,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cells_cover_the_circle_at_a_precision_as_large_as_the_radius() {
        let at = GeoPoint::parse(31.2304, 121.4737).unwrap();
        let small = covering_cells(&at, 100.0);
        assert_eq!(small.len(), 9);
        assert_eq!(
            small[0].len(),
            7,
            "a 100 m circle reads 9 cells of about 150 x 130 m here: {small:?}"
        );
        let city = covering_cells(&at, 5_000.0);
        assert_eq!(city[0].len(), 4, "{city:?}");
        // Every point of the circle is in one of the cells.
        for bearing in 0..36 {
            let angle = f64::from(bearing * 10).to_radians();
            let (dlat, dlng) = (
                4_900.0 * angle.cos() / M_PER_DEG,
                4_900.0 * angle.sin() / (M_PER_DEG * at.lat().to_radians().cos()),
            );
            let p = geohash::encode(
                geohash::Coord {
                    x: at.lng() + dlng,
                    y: at.lat() + dlat,
                },
                4,
            )
            .unwrap();
            assert!(city.contains(&p), "bearing {bearing}0°: {p} not in {city:?}");
        }
    }
}
