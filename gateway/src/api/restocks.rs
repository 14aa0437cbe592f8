//! Restocking [O10, M2]: the restock tasks (one per cabinet, with what to bring) and the
//! sessions an operator starts at a door, whose counts come from the weights.

use super::cabinets::CabinetPath;
use super::error::ErrorBody;
use super::extract::{ApiJson, Operator};
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::restock::Restock;
use tare_domain::{CabinetId, DoorNo, LaneNo, Sku};
use tare_platform::service::{LaneProduct, TASK_PAGE_MAX};
use tare_projections::RestockTaskDoc;
use utoipa::{IntoParams, ToSchema};

/// Which door to restock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRestock {
    /// The door (1–16) to open for the operator.
    #[schema(minimum = 1, maximum = 16)]
    door: i64,
}

/// What a session did to one lane.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RestockLineDto {
    /// The lane.
    lane: u8,
    /// Its product.
    sku: String,
    /// Items booked on the ledger (negative: taken out).
    added: i64,
    /// Items the weights show (`added` plus `excess`).
    counted: i64,
    /// Items beyond the lane's capacity, not booked (an anomaly says so).
    excess: i64,
    /// How sure the count is: 1.0 exact, 0.0 half a unit off.
    confidence: f64,
}

/// A restock session.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RestockDto {
    /// Its id.
    restock_id: String,
    /// The cabinet (`pk.dn`).
    cabinet: String,
    /// The door.
    door: u8,
    /// `opening` (door command sent), `open`, `counting` (closed, waiting for a stable
    /// weight), `done` or `failed`.
    #[schema(pattern = "^(opening|open|counting|done|failed)$")]
    state: String,
    /// Per lane, once counted.
    lines: Vec<RestockLineDto>,
    /// Who started it.
    by: String,
    /// Why it failed (`door_busy`, `door_never_opened`, `no_stable_weight`,
    /// `no_weight_before`, `cabinet is offline`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    /// When it began, Unix ms.
    started_at: i64,
}

impl RestockDto {
    fn new(restock_id: String, r: &Restock) -> Self {
        Self {
            restock_id,
            cabinet: r.cabinet.as_ref().map(ToString::to_string).unwrap_or_default(),
            door: r.door.map_or(0, |d| d.get()),
            state: r.state.as_str().to_string(),
            lines: r
                .lines
                .iter()
                .map(|l| RestockLineDto {
                    lane: l.lane.get(),
                    sku: l.sku.to_string(),
                    added: l.added,
                    counted: l.counted,
                    excess: l.excess,
                    confidence: l.confidence,
                })
                .collect(),
            by: r.by.clone(),
            failure: r.failure.clone(),
            started_at: r.started_at,
        }
    }
}

/// Restock a door.
///
/// Takes the door for an operator (no charge; a shopper cannot scan it meanwhile) and
/// opens it [O10]. When it closes, what was added to each lane is counted from the stable
/// weights before the open and after the close and booked on the lane ledger (reason
/// `restock`), never beyond a lane's capacity (the excess is raised as an anomaly).
#[utoipa::path(
    post,
    path = "/api/v1/cabinets/{id}/restocks",
    tag = "cabinets",
    operation_id = "startRestock",
    security(("operatorBearer" = [])),
    params(CabinetPath),
    request_body = NewRestock,
    responses(
        (status = 201, description = "Started: the door is being opened.", body = RestockDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found` or `door_not_found`.", body = ErrorBody),
        (status = 409, description = "`cabinet_busy` (someone holds the door: a shopper's purchase, another session) or `cabinet_unavailable` (not online).", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `cabinet` (not `pk.dn`), `door` (out of range, or a door without lanes) or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn start(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<NewRestock>,
) -> Result<(StatusCode, Json<RestockDto>), ApiError> {
    let cabinet = CabinetId::parse(&id)?;
    let door = DoorNo::parse("door", b.door)?;
    let (restock_id, r) = s.platform.start_restock(&cabinet, door, op.who()).await?;
    Ok((StatusCode::CREATED, Json(RestockDto::new(restock_id, &r))))
}

/// Get a restock session.
///
/// Where a restock stands, and once counted what it did to each lane.
#[utoipa::path(
    get,
    path = "/api/v1/restocks/{id}",
    tag = "cabinets",
    operation_id = "getRestock",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The restock's id.")),
    responses(
        (status = 200, description = "The session.", body = RestockDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`restock_not_found`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get(_: Operator, State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<RestockDto>, ApiError> {
    let r = s.platform.restock(&id).await?;
    Ok(Json(RestockDto::new(id, &r)))
}

/// A lane's new product.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LaneSwapBody {
    /// The product to put on the lane (a registered SKU).
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$", example = "water-550")]
    sku: String,
    /// Most items the lane holds (1–1000).
    #[schema(minimum = 1, maximum = 1000)]
    capacity: i64,
    /// At or below this stock a restock task is raised; at most `capacity`.
    #[schema(minimum = 0, maximum = 1000)]
    restock_threshold: i64,
}

/// A swap as done.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LaneSwapDto {
    /// The cabinet's planogram version now.
    planogram_version: u32,
    /// Whether the door is blocked from sale until the lane is calibrated (the unit
    /// weight changed): send a `calibrate` command for the lane.
    needs_calibration: bool,
}

/// The `{id}`, `{door}` and `{lane}` of a lane's path.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Parameter docs only: the handler parses each part itself.
pub(super) struct LanePath {
    /// The cabinet id `pk.dn`.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    id: String,
    /// The door (1–16).
    #[param(minimum = 1, maximum = 16)]
    door: i64,
    /// The lane (1–32).
    #[param(minimum = 1, maximum = 32)]
    lane: i64,
}

/// Swap a lane's product.
///
/// Puts another product on a lane: a planogram version change [C2]. The lane must be
/// empty (sold out, or counted out in a restock) and its door free. The lane's label is
/// sent the new product; if its unit weight differs, the door does not sell (409
/// `lane_needs_calibration` on a scan) until a `calibrate` command for the lane comes
/// back within tolerance [M1].
#[utoipa::path(
    put,
    path = "/api/v1/cabinets/{id}/doors/{door}/lanes/{lane}",
    tag = "cabinets",
    operation_id = "swapLane",
    security(("operatorBearer" = [])),
    params(LanePath),
    request_body = LaneSwapBody,
    responses(
        (status = 202, description = "Swapped; the label is on its way.", body = LaneSwapDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`, `door_not_found`, `lane_not_found` or `product_not_found` (the `sku`).", body = ErrorBody),
        (status = 409, description = "`lane_not_empty`, `cabinet_busy` or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `cabinet`, `door`, `lane`, `sku` (not a SKU, or a product that weighs like another one on the door, one for one), `capacity`, `restock_threshold` (above capacity) or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn swap_lane(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path((id, door, lane)): Path<(String, String, String)>,
    ApiJson(b): ApiJson<LaneSwapBody>,
) -> Result<(StatusCode, Json<LaneSwapDto>), ApiError> {
    let cabinet = CabinetId::parse(&id)?;
    let number = |field: &'static str, v: &str| v.parse::<i64>().map_err(|_| ApiError::invalid(field, "must be a number"));
    let door = DoorNo::parse("door", number("door", &door)?)?;
    let lane = LaneNo::parse("lane", number("lane", &lane)?)?;
    let sku = Sku::parse("sku", &b.sku)?;
    let capacity = u32::try_from(b.capacity).map_err(|_| ApiError::invalid("capacity", "must be between 1 and 1000"))?;
    let threshold = u32::try_from(b.restock_threshold).map_err(|_| ApiError::invalid("restock_threshold", "must not be negative"))?;
    let new = LaneProduct {
        sku,
        capacity,
        restock_threshold: threshold,
    };
    let swap = s.platform.swap_lane(&cabinet, door, lane, &new, op.who()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(LaneSwapDto {
            planogram_version: swap.planogram_version,
            needs_calibration: swap.needs_calibration,
        }),
    ))
}

/// Which tasks (query of `GET /api/v1/restock-tasks`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TasksQuery {
    /// Only this cabinet (`pk.dn`), listed even when it needs nothing.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    cabinet: Option<String>,
    /// Tasks of the cabinets after this one (the previous page's `next_after`).
    #[param(max_length = 200)]
    after: Option<String>,
    /// At most this many (default and most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A lane to restock.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TaskLaneDto {
    /// Door.
    door: u8,
    /// Lane.
    lane: u8,
    /// Product.
    sku: String,
    /// Items on it by the ledger.
    stock: i64,
    /// Most it holds.
    capacity: u32,
    /// Its restock threshold.
    threshold: u32,
    /// Items to bring to fill it.
    bring: i64,
}

/// One cabinet's restock task.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RestockTaskDto {
    /// The cabinet.
    cabinet: String,
    /// Since when it has needed stock (Unix ms); absent when it needs nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<i64>,
    /// Its lanes at or below their threshold, door then lane.
    lanes: Vec<TaskLaneDto>,
}

impl From<RestockTaskDoc> for RestockTaskDto {
    fn from(d: RestockTaskDoc) -> Self {
        let lanes = d
            .needed()
            .into_iter()
            .map(|l| TaskLaneDto {
                door: l.door,
                lane: l.lane,
                sku: l.sku.clone(),
                stock: l.stock,
                capacity: l.capacity,
                threshold: l.threshold,
                bring: l.bring(),
            })
            .collect();
        Self {
            cabinet: d.cabinet,
            since: d.since,
            lanes,
        }
    }
}

/// A page of restock tasks.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RestockTasksDto {
    /// By cabinet id.
    items: Vec<RestockTaskDto>,
    /// Pass as `after` for the next page; null when there is none.
    next_after: Option<String>,
}

/// List restock tasks.
///
/// One task per cabinet with a lane at or below its restock threshold, saying what to
/// bring to fill each [O10]; a restock that fills the lanes closes it. Paged by
/// cabinet id: a full page has a `next_after`, to pass as `after` for the next.
#[utoipa::path(
    get,
    path = "/api/v1/restock-tasks",
    tag = "cabinets",
    operation_id = "listRestockTasks",
    security(("operatorBearer" = [])),
    params(TasksQuery),
    responses(
        (status = 200, description = "The tasks.", body = RestockTasksDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 422, description = "`invalid_field`: `cabinet`, `after` (over 200 characters), `limit` (out of range) or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn tasks(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<TasksQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RestockTasksDto>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let cabinet = q.cabinet.as_deref().map(CabinetId::parse).transpose()?;
    let (after, limit) = super::extract::page_params(q.after, q.limit, TASK_PAGE_MAX)?;
    let (items, next_after) = s.platform.restock_tasks(cabinet.as_ref(), &after, limit).await?;
    Ok(Json(RestockTasksDto {
        items: items.into_iter().map(RestockTaskDto::from).collect(),
        next_after,
    }))
}
