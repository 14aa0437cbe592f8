//! Daily settlements per cabinet [R3 (c)]: one local business day's orders, gross,
//! discounts, refunds, the providers' fees and net, per cabinet and for the fleet.

use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{Internal, OperatorOnly, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::reconciliation::daily::{total, CabinetSettlement};
use tare_domain::reconciliation::dates::parse_date;
use tare_domain::CabinetId;
use utoipa::{IntoParams, ToSchema};

/// Which day (query of `GET /api/v1/settlements`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SettlementsQuery {
    /// The local (China) business date, `YYYY-MM-DD`.
    #[param(required = true, format = Date)]
    date: Option<String>,
    /// Only this cabinet (`pk.dn`); every cabinet with money that day when absent.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    cabinet: Option<String>,
}

/// One cabinet's day (all amounts in cents).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CabinetSettlementDto {
    /// The cabinet (`pk.dn`); empty in the fleet's total.
    cabinet: String,
    /// Orders paid that day.
    orders: u64,
    /// Their goods at their prices.
    gross: i64,
    /// Coupons taken off.
    discounts: i64,
    /// Refunds that succeeded that day (of any day's orders).
    refunds: i64,
    /// The providers' fees at the configured rates, on what was collected less what was
    /// refunded (an estimate the provider's bill confirms; none on orders paid outside).
    fees: i64,
    /// `gross − discounts − refunds − fees`.
    net: i64,
}

impl From<CabinetSettlement> for CabinetSettlementDto {
    fn from(c: CabinetSettlement) -> Self {
        Self {
            cabinet: c.cabinet,
            orders: c.orders,
            gross: c.gross,
            discounts: c.discounts,
            refunds: c.refunds,
            fees: c.fees,
            net: c.net,
        }
    }
}

/// One business day's settlement.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SettlementsDto {
    /// The local business date.
    #[schema(example = "2026-12-01")]
    date: String,
    /// The local (China) hour the day closes at (`serve --settlement-close-hour`).
    close_hour: i64,
    /// The day's start (Unix ms, inclusive).
    from: i64,
    /// Its end (Unix ms, exclusive).
    to: i64,
    /// Per cabinet with money that day, by cabinet.
    items: Vec<CabinetSettlementDto>,
    /// The sum of the items.
    total: CabinetSettlementDto,
}

/// Daily settlement per cabinet.
///
/// One local business day — closing at the configured local hour, midnight by default —
/// per cabinet: orders paid, gross, discounts, refunds given that day, the providers'
/// fees and net, in cents [R3].
#[utoipa::path(
    get,
    path = "/api/v1/settlements",
    tag = "reconciliation",
    operation_id = "getSettlements",
    security(("operatorBearer" = [])),
    params(SettlementsQuery),
    responses(
        (status = 200, description = "The day's settlement.", body = SettlementsDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 422, description = "`invalid_field`: `date` (missing or not a date), `cabinet` or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<SettlementsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SettlementsDto>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let date = match q.date.as_deref() {
        None | Some("") => return Err(ApiError::invalid("date", "required: YYYY-MM-DD")),
        Some(d) if parse_date(d).is_none() => return Err(ApiError::invalid("date", "must be a calendar date YYYY-MM-DD")),
        Some(d) => d.to_string(),
    };
    let cabinet = q.cabinet.as_deref().map(CabinetId::parse).transpose()?;
    let day = s.platform.settlements(&date, cabinet.as_ref()).await?;
    let sum = total(&day.cabinets);
    Ok(Json(SettlementsDto {
        date: day.date,
        close_hour: day.close_hour,
        from: day.from,
        to: day.to,
        items: day.cabinets.into_iter().map(Into::into).collect(),
        total: sum.into(),
    }))
}
