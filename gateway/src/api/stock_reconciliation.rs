//! Stock reconciliation [R3 (a), B6]: the lanes whose settled closed-door weight
//! disagrees with their ledger now, each with its class, since when, the window it
//! happened in and the last session on the door.

use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{Internal, OperatorOnly, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::CabinetId;
use tare_projections::StockDiscrepancy;
use utoipa::{IntoParams, ToSchema};

/// Which cabinet (query of `GET /api/v1/reconciliation/stock`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StockQuery {
    /// Only this cabinet's (`pk.dn`); the whole fleet when absent.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    cabinet: Option<String>,
}

/// Why a lane's weight disagrees with its ledger.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum StockClassDto {
    /// No whole number of items: the load cell wandered further than its zero follows.
    Drift,
    /// An item of another lane's product is here, or this lane's is on another lane.
    WrongLane,
    /// As `wrong_lane` between lanes whose products weigh the same.
    EqualWeightSwap,
    /// Whole items gone without a sale.
    UnpaidTake,
    /// No reading, a reading below the empty lane, or items the ledger never received.
    DataError,
}

impl From<tare_domain::cabinet::StockClass> for StockClassDto {
    fn from(c: tare_domain::cabinet::StockClass) -> Self {
        use tare_domain::cabinet::StockClass as C;
        match c {
            C::Drift => Self::Drift,
            C::WrongLane => Self::WrongLane,
            C::EqualWeightSwap => Self::EqualWeightSwap,
            C::UnpaidTake => Self::UnpaidTake,
            C::DataError => Self::DataError,
        }
    }
}

/// The session that last held the door before the divergence.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionDto {
    /// `order`, `restock`, `calibration` or `command`.
    #[schema(example = "order")]
    kind: String,
    /// Its id.
    id: String,
}

/// One lane whose weight disagrees with its ledger.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StockItemDto {
    /// The cabinet (`pk.dn`).
    cabinet: String,
    /// The door.
    door: u8,
    /// The lane.
    lane: u8,
    /// The product the ledger holds there.
    sku: String,
    /// Items by the ledger.
    ledger_stock: i64,
    /// Whole items by weight (null without a reading).
    weighed_stock: Option<i64>,
    /// `weighed_stock − ledger_stock` (0 when the weight counts no whole items).
    difference: i64,
    /// Why.
    class: StockClassDto,
    /// When the lane first disagreed (Unix ms).
    since: i64,
    /// When the door last opened before that (Unix ms): the window is `[window_from, since]`.
    window_from: i64,
    /// The last session on the door before the divergence (the order to look at).
    last_session: Option<SessionDto>,
    /// The lane's reading (grams).
    reading_grams: Option<f64>,
    /// What the ledger says it should read (grams).
    expected_grams: f64,
}

impl From<StockDiscrepancy> for StockItemDto {
    fn from(d: StockDiscrepancy) -> Self {
        Self {
            cabinet: d.cabinet,
            door: d.door,
            lane: d.lane,
            sku: d.sku,
            ledger_stock: d.ledger_stock,
            weighed_stock: d.weighed_stock,
            difference: d.difference,
            class: d.class.into(),
            since: d.since,
            window_from: d.window_from,
            last_session: d.last_session.map(|s| SessionDto { kind: s.kind, id: s.id }),
            reading_grams: d.reading_grams,
            expected_grams: d.expected_grams,
        }
    }
}

/// The lanes that disagree.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StockReconciliationDto {
    /// By cabinet, door and lane.
    items: Vec<StockItemDto>,
}

/// Stock by weight against the ledger.
///
/// Only the lanes whose latest settled closed-door reading disagrees with the ledger,
/// each classified (`drift`, `wrong_lane`, `equal_weight_swap`, `unpaid_take`,
/// `data_error`) [R3]. The nightly run raises an anomaly for each.
#[utoipa::path(
    get,
    path = "/api/v1/reconciliation/stock",
    tag = "reconciliation",
    operation_id = "getStockReconciliation",
    security(("operatorBearer" = [])),
    params(StockQuery),
    responses(
        (status = 200, description = "The lanes that disagree.", body = StockReconciliationDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 422, description = "`invalid_field`: `cabinet` or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_stock(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<StockQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StockReconciliationDto>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let cabinet = q.cabinet.as_deref().map(CabinetId::parse).transpose()?;
    let items = s.platform.stock_discrepancies(cabinet.as_ref()).await?;
    Ok(Json(StockReconciliationDto {
        items: items.into_iter().map(Into::into).collect(),
    }))
}
