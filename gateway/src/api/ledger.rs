//! A cabinet's lane ledger [R2]: every stock movement of its lanes in feed order — sale,
//! restock, uncharged take, opening count, write-off — with before, change and after and
//! the order, restock or anomaly behind it; paged by feed position.

use super::cabinets::CabinetPath;
use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{Internal, OperatorOnly, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::cabinet::StockReason;
use tare_domain::{CabinetId, DoorNo, LaneNo};
use tare_platform::service::LedgerFilter;
use tare_projections::LedgerEntry;
use utoipa::{IntoParams, ToSchema};

/// Which movements (query of `GET /api/v1/cabinets/{id}/ledger`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LedgerQuery {
    /// Only this door's (1-16).
    #[param(minimum = 1, maximum = 16)]
    door: Option<i64>,
    /// Only this lane's (1-64, with `door`).
    #[param(minimum = 1, maximum = 64)]
    lane: Option<i64>,
    /// After this feed position (the previous page's `next_after`; default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    after: Option<i64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One stock movement.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LedgerItemDto {
    /// Feed position of the event (orders the movements).
    position: i64,
    /// When (Unix ms).
    at: i64,
    /// Door.
    door: u8,
    /// Lane.
    lane: u8,
    /// Product.
    sku: String,
    /// Why: `opening` (counted at initialization), `sale`, `uncharged_take` (taken in an
    /// order sent to review), `restock` (also how a lane is emptied for a swap or a
    /// calibration) or `write_off` (a stock divergence an operator wrote off).
    #[schema(pattern = "^(opening|sale|restock|swap|calibration|write_off|uncharged_take|adjustment)$")]
    reason: String,
    /// Stock before.
    before: i64,
    /// `after − before`.
    change: i64,
    /// Stock after.
    after: i64,
    /// The order (sales, uncharged takes).
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    /// The restock session (restocks).
    #[serde(skip_serializing_if = "Option::is_none")]
    restock_id: Option<String>,
    /// The anomaly written off (write-offs).
    #[serde(skip_serializing_if = "Option::is_none")]
    anomaly_id: Option<String>,
}

impl From<LedgerEntry> for LedgerItemDto {
    fn from(e: LedgerEntry) -> Self {
        let (reason, order_id, restock_id, anomaly_id) = match e.reason {
            StockReason::Opening => ("opening", None, None, None),
            StockReason::Sale { order_id } => ("sale", Some(order_id), None, None),
            StockReason::UnchargedTake { order_id } => ("uncharged_take", Some(order_id), None, None),
            StockReason::Restock { session_id } => ("restock", None, Some(session_id), None),
            StockReason::WriteOff { anomaly_id } => ("write_off", None, None, Some(anomaly_id)),
        };
        Self {
            position: e.position,
            at: e.at,
            door: e.door,
            lane: e.lane,
            sku: e.sku,
            reason: reason.into(),
            before: e.before,
            change: e.change,
            after: e.after,
            order_id,
            restock_id,
            anomaly_id,
        }
    }
}

/// A page of movements.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LedgerPage {
    /// In feed order.
    items: Vec<LedgerItemDto>,
    /// Pass as `after` for the next page; null at the end.
    next_after: Option<i64>,
}

/// A cabinet's lane ledger.
///
/// Every stock movement of the cabinet's lanes in feed order, with stock before, change
/// and after and what caused it [R2]; of one door or one lane on request.
#[utoipa::path(
    get,
    path = "/api/v1/cabinets/{id}/ledger",
    tag = "cabinets",
    operation_id = "getCabinetLedger",
    security(("operatorBearer" = [])),
    params(CabinetPath, LedgerQuery),
    responses(
        (status = 200, description = "A page of the ledger.", body = LedgerPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `cabinet` (not `pk.dn`), `door`, `lane` (without `door`, or out of range), `after`, `limit` or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_ledger(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    q: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LedgerPage>, ApiError> {
    let id = CabinetId::parse(&id)?;
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let door = q
        .door
        .map(|d| DoorNo::parse("door", d))
        .transpose()
        .map_err(|e| ApiError::invalid("door", e.reason))?;
    let lane = q
        .lane
        .map(|l| LaneNo::parse("lane", l))
        .transpose()
        .map_err(|e| ApiError::invalid("lane", e.reason))?;
    let filter = match (door, lane) {
        (None, Some(_)) => return Err(ApiError::invalid("lane", "needs `door`")),
        (Some(d), Some(l)) => LedgerFilter {
            door: Some(d),
            lane: Some((d, l)),
        },
        (d, None) => LedgerFilter { door: d, lane: None },
    };
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after", "must be 0 or more"));
    }
    let limit = match q.limit {
        None => 100,
        Some(l) if (1..=1000).contains(&l) => l as usize,
        Some(_) => return Err(ApiError::invalid("limit", "must be between 1 and 1000")),
    };
    s.platform.cabinet(&id).await?;
    let (items, next_after) = s.platform.ledger_page(&id, filter, after, limit).await?;
    Ok(Json(LedgerPage {
        items: items.into_iter().map(Into::into).collect(),
        next_after,
    }))
}
