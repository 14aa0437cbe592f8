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
use tare_domain::{CabinetId, DoorNo};
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
    let (restock_id, r) = s.platform.start_restock(&cabinet, door, op.name()).await?;
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

/// Which tasks (query of `GET /api/v1/restock-tasks`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TasksQuery {
    /// Only this cabinet (`pk.dn`), listed even when it needs nothing.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    cabinet: Option<String>,
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

/// Restock tasks.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RestockTasksDto {
    /// Oldest first (at most 1,000).
    items: Vec<RestockTaskDto>,
}

/// List restock tasks.
///
/// One task per cabinet with a lane at or below its restock threshold, saying what to
/// bring to fill each [O10]; a restock that fills the lanes closes it.
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
        (status = 422, description = "`invalid_field`: `cabinet` or `query` (an unknown parameter).", body = ErrorBody),
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
    let items = s.platform.restock_tasks(cabinet.as_ref()).await?;
    Ok(Json(RestockTasksDto {
        items: items.into_iter().map(RestockTaskDto::from).collect(),
    }))
}
