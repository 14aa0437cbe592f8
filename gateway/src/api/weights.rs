//! A cabinet's weight history [D6]: the samples its doors reported (stable closed-door
//! readings, every sample of a door session), kept 30 days — the evidence behind a
//! charge or a discrepancy.

use super::cabinets::CabinetPath;
use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{Internal, OperatorOnly, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::{CabinetId, DoorNo};
use tare_platform::weight_history::MAX_QUERY;
use utoipa::{IntoParams, ToSchema};

/// Which samples.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct WeightsQuery {
    /// Only this door (1-16).
    #[serde(default)]
    #[param(minimum = 1, maximum = 16)]
    door: Option<i64>,
    /// From this device time (Unix ms, inclusive; default: an hour before `to`).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    from: Option<i64>,
    /// Up to this device time (Unix ms, exclusive; default: a minute from now).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    to: Option<i64>,
    /// At most this many (default 1000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// One lane's reading.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LaneGramsDto {
    /// The lane.
    lane: u8,
    /// Grams, net of the tray.
    grams: f64,
}

/// One sample as the device sent it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WeightSampleDto {
    /// The door.
    door: u8,
    /// Device time (Unix ms).
    device_ts: i64,
    /// When the platform received it (Unix ms).
    received_at: i64,
    /// The device's stability flag.
    stable: bool,
    /// The device message id.
    msg_id: String,
    /// Per lane.
    lanes: Vec<LaneGramsDto>,
}

/// A page of samples.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WeightsPage {
    /// Oldest first.
    items: Vec<WeightSampleDto>,
    /// Pass as `from` for the next page; null when the window is exhausted.
    next_from: Option<i64>,
}

/// A cabinet's weight history.
///
/// The samples its doors reported — stable closed-door readings every 90 s and every
/// sample of a door session — kept 30 days, by device time [D6].
#[utoipa::path(
    get,
    path = "/api/v1/cabinets/{id}/weights",
    tag = "cabinets",
    operation_id = "getWeights",
    security(("operatorBearer" = [])),
    params(CabinetPath, WeightsQuery),
    responses(
        (status = 200, description = "A page of samples.", body = WeightsPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `cabinet` (not `pk.dn`), `door`, `from`, `to`, `limit` (out of range), or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_weights(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    q: Result<Query<WeightsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<WeightsPage>, ApiError> {
    let id = CabinetId::parse(&id)?;
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let door = q.door.map(|d| DoorNo::parse("door", d)).transpose()?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=MAX_QUERY).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 5000"));
    }
    for (field, v) in [("from", q.from), ("to", q.to)] {
        if v.is_some_and(|v| v < 0) {
            return Err(ApiError::invalid(field, "must not be negative"));
        }
    }
    let to = q.to.unwrap_or_else(|| s.platform.now_ms().saturating_add(60_000));
    let from = q.from.unwrap_or(to.saturating_sub(3_600_000));
    // An empty window holds nothing (and is no error).
    if to <= from {
        return Ok(Json(WeightsPage {
            items: vec![],
            next_from: None,
        }));
    }
    let samples = s.platform.weight_samples(&id, door, (from, to), limit).await?;
    let next_from = (samples.len() as i64 == limit)
        .then(|| samples.last().map(|x| x.sample.device_ts + 1))
        .flatten();
    let items = samples
        .into_iter()
        .map(|x| WeightSampleDto {
            door: x.door.get(),
            device_ts: x.sample.device_ts,
            received_at: x.sample.received_at,
            stable: x.sample.stable,
            msg_id: x.sample.msg_id,
            lanes: x
                .sample
                .lanes
                .iter()
                .map(|l| LaneGramsDto {
                    lane: l.lane.get(),
                    grams: l.grams.get(),
                })
                .collect(),
        })
        .collect();
    Ok(Json(WeightsPage { items, next_from }))
}
