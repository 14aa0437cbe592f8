//! The operator's order listing [R4]: by cabinet, shopper and state, paged by order id.

use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{Internal, OperatorOnly, Unauthorized};
use super::receipt::{OrderStateDto, OrderSummaryDto};
use super::{ApiError, ApiState};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_platform::service::OrderFilter;
use utoipa::{IntoParams, ToSchema};

/// The API's order states (what `state` may be).
const STATES: [&str; 11] = [
    "authorizing",
    "authorized",
    "opening",
    "open",
    "settling",
    "charging",
    "paid",
    "cancelled",
    "abnormal",
    "refunded",
    "partially_refunded",
];

/// Which orders.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OrderListQuery {
    /// Only this cabinet's (`pk.dn`).
    #[serde(default)]
    #[param(example = "wc1.SN001")]
    cabinet: Option<String>,
    /// Only this shopper's.
    #[serde(default)]
    shopper: Option<String>,
    /// Only orders in this state.
    #[serde(default)]
    #[param(value_type = Option<OrderStateDto>)]
    state: Option<String>,
    /// Orders after this order id (the previous page's `next_after`).
    #[serde(default)]
    after: Option<String>,
    /// At most this many (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OrderList {
    /// Oldest first (order ids are time-ordered).
    items: Vec<OrderSummaryDto>,
    /// Pass as `after` for the next page; null when there is none.
    next_after: Option<String>,
}

/// List orders.
///
/// Orders by cabinet, shopper and state, oldest first, paged by order id [R4]. A page
/// reads at most 10,000 orders of its index: a page may be short and still have a
/// `next_after`.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    operation_id = "listOrders",
    security(("operatorBearer" = [])),
    params(OrderListQuery),
    responses(
        (status = 200, description = "A page of orders.", body = OrderList),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 422, description = "`invalid_field`: `state` (not an order state), `limit` (out of range), or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn list_orders(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<OrderListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    if q.state.as_deref().is_some_and(|st| !STATES.contains(&st)) {
        return Err(ApiError::invalid("state", format!("must be one of {}", STATES.join(", "))));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    let filter = OrderFilter {
        shopper: q.shopper.as_deref(),
        cabinet: q.cabinet.as_deref(),
        state: q.state.as_deref(),
    };
    let (orders, next_after) = s
        .platform
        .list_orders(filter, q.after.as_deref().unwrap_or(""), limit as usize)
        .await?;
    Ok(Json(OrderList {
        items: orders.into_iter().map(Into::into).collect(),
        next_after,
    }))
}
