//! Cabinets near a point [M4]: what a shopper's app shows on its map, nearest first.

use super::cabinet_view::StatusDto;
use super::error::ErrorBody;
use super::extract::Caller;
use super::openapi::{Internal, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::GeoPoint;
use tare_platform::service::nearby::MAX_RADIUS_M;
use utoipa::{IntoParams, ToSchema};

/// Where, and how far around.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct NearbyQuery {
    /// Latitude, −90 to 90.
    #[param(minimum = -90.0, maximum = 90.0, example = 31.23)]
    lat: f64,
    /// Longitude, −180 to 180.
    #[param(minimum = -180.0, maximum = 180.0, example = 121.47)]
    lng: f64,
    /// Radius in metres, above 0 and at most 50,000.
    #[param(exclusive_minimum = 0.0, maximum = 50_000.0, example = 1000.0)]
    radius_m: f64,
    /// At most this many (default 20).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A cabinet near the point.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct NearbyDto {
    /// The cabinet id (`pk.dn`).
    id: String,
    /// How far, metres (rounded to 0.1 m).
    distance_m: f64,
    /// Whether it serves shoppers now.
    status: StatusDto,
}

/// Cabinets nearby.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct NearbyPage {
    /// Nearest first; only those within the radius.
    items: Vec<NearbyDto>,
}

/// Cabinets near a point.
///
/// The cabinets within `radius_m` of (`lat`, `lng`), nearest first, with their status,
/// found through a geohash index of their locations (not a scan of the fleet). Shoppers
/// and operators.
#[utoipa::path(
    get,
    path = "/api/v1/cabinets/nearby",
    tag = "cabinets",
    operation_id = "nearbyCabinets",
    security(("operatorBearer" = []), ("shopperBearer" = [])),
    params(NearbyQuery),
    responses(
        (status = 200, description = "The cabinets within the radius.", body = NearbyPage),
        (status = 401, response = Unauthorized),
        (status = 422, description = "`invalid_field`: `lat`, `lng`, `radius_m`, `limit` (missing, not a number, or out of range), or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn nearby(
    _: Caller,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<NearbyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<NearbyPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let at = GeoPoint::parse(q.lat, q.lng).map_err(|e| ApiError::invalid(e.field.trim_start_matches("location."), e.reason))?;
    if !(q.radius_m > 0.0 && q.radius_m <= MAX_RADIUS_M) {
        return Err(ApiError::invalid("radius_m", "must be above 0 and at most 50000"));
    }
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 100"));
    }
    let found = s.platform.nearby_cabinets(at, q.radius_m, limit as usize).await?;
    let items = found
        .into_iter()
        .map(|c| NearbyDto {
            id: c.id.to_string(),
            distance_m: (c.distance_m * 10.0).round() / 10.0,
            status: if c.undecided { StatusDto::Unknown } else { c.status.into() },
        })
        .collect();
    Ok(Json(NearbyPage { items }))
}
