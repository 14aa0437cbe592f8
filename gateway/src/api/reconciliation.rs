//! Reconciliation [R3 (b), B6]: one provider day's bill against our charges and refunds.
//! `GET` serves the recorded result (computing and recording it when the day was never
//! reconciled); `POST` runs it again now (the nightly job does the same each morning).

use super::error::ErrorBody;
use super::extract::{ApiJson, Operator};
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::reconciliation::dates::{china_date, parse_date};
use tare_domain::reconciliation::{BillItem, BillReconciliation, MoneyKind, MovementState};
use tare_domain::ProviderKind;
use utoipa::{IntoParams, ToSchema};

/// Which provider day (query of `GET /api/v1/reconciliation/bills`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct BillsQuery {
    /// `wechat` or `alipay`.
    #[param(required = true, pattern = "^(wechat|alipay)$")]
    provider: Option<String>,
    /// The provider's local (China) date, `YYYY-MM-DD`, not in the future.
    #[param(required = true, format = Date)]
    date: Option<String>,
}

/// Which provider day to reconcile again now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BillsRun {
    /// `wechat` or `alipay`.
    #[schema(pattern = "^(wechat|alipay)$")]
    provider: String,
    /// The provider's local (China) date, `YYYY-MM-DD`, not in the future.
    #[schema(format = Date)]
    date: String,
}

/// Charge or refund.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum MoneyKindDto {
    /// Collected from the shopper.
    Charge,
    /// Given back.
    Refund,
}

/// Where a movement stands (bill lines are always `succeeded`).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum MovementStateDto {
    /// Asked of the provider, outcome not known yet.
    Pending,
    /// Done.
    Succeeded,
    /// Refused for good.
    Failed,
}

/// One movement of money: ours, or a line of the provider's bill.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BillItemDto {
    /// Our order id.
    order_id: String,
    /// The provider's transaction.
    transaction_id: String,
    /// Charge or refund.
    kind: MoneyKindDto,
    /// Our refund id (refunds only).
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_id: Option<String>,
    /// Amount in cents (positive for both kinds).
    amount_cents: i64,
    /// Where it stands.
    state: MovementStateDto,
    /// When, Unix ms (by the side that lists it).
    at: i64,
}

impl From<BillItem> for BillItemDto {
    fn from(i: BillItem) -> Self {
        Self {
            order_id: i.order_id,
            transaction_id: i.transaction_id,
            kind: match i.kind {
                MoneyKind::Charge => MoneyKindDto::Charge,
                MoneyKind::Refund => MoneyKindDto::Refund,
            },
            refund_id: i.refund_id,
            amount_cents: i.amount_cents.get(),
            state: match i.state {
                MovementState::Pending => MovementStateDto::Pending,
                MovementState::Succeeded => MovementStateDto::Succeeded,
                MovementState::Failed => MovementStateDto::Failed,
            },
            at: i.at,
        }
    }
}

/// A movement both sides know, recorded differently.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MismatchDto {
    /// Ours.
    ours: BillItemDto,
    /// The provider's.
    theirs: BillItemDto,
    /// `amount` (amounts differ; reported first when both do) or `status` (ours is
    /// pending or failed, the bill lists it).
    #[schema(example = "amount")]
    why: String,
}

/// One provider day, reconciled.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BillReconciliationDto {
    /// `wechat` or `alipay`.
    provider: String,
    /// The provider's local date.
    #[schema(example = "2026-12-01")]
    date: String,
    /// Movements both sides agree on.
    matched: u32,
    /// Ours, not on the provider's bill.
    missing_at_provider: Vec<BillItemDto>,
    /// On the provider's bill, not ours (or listed there twice).
    missing_here: Vec<BillItemDto>,
    /// Both know them, differently.
    mismatched: Vec<MismatchDto>,
}

impl From<BillReconciliation> for BillReconciliationDto {
    fn from(r: BillReconciliation) -> Self {
        Self {
            provider: r.provider.as_str().into(),
            date: r.date,
            matched: r.matched,
            missing_at_provider: r.missing_at_provider.into_iter().map(Into::into).collect(),
            missing_here: r.missing_here.into_iter().map(Into::into).collect(),
            mismatched: r
                .mismatched
                .into_iter()
                .map(|m| MismatchDto {
                    ours: m.ours.into(),
                    theirs: m.theirs.into(),
                    why: m.why.as_str().into(),
                })
                .collect(),
        }
    }
}

/// Checks the provider day an operator asked for.
fn provider_day(s: &ApiState, provider: Option<&str>, date: Option<&str>) -> Result<(ProviderKind, String), ApiError> {
    let provider = match provider {
        None | Some("") => return Err(ApiError::invalid("provider", "required: wechat or alipay")),
        Some(p) => ProviderKind::parse("provider", p).map_err(|_| ApiError::invalid("provider", "must be wechat or alipay"))?,
    };
    let date = match date {
        None | Some("") => return Err(ApiError::invalid("date", "required: YYYY-MM-DD")),
        Some(d) if parse_date(d).is_none() => return Err(ApiError::invalid("date", "must be a calendar date YYYY-MM-DD")),
        Some(d) => d.to_string(),
    };
    let today = china_date(s.platform.now_ms());
    if date > today {
        return Err(ApiError::invalid(
            "date",
            format!("must not be in the future (it is {today} in China, the providers' time)"),
        ));
    }
    Ok((provider, date))
}

/// A provider day's bill reconciliation.
///
/// The provider's bill of one day (its local date, China time) against our charges and
/// refunds of that day [R3]: how many agree, ours missing from the bill, the bill's
/// missing here, and amount or status mismatches. Served as last recorded; a day never
/// reconciled is reconciled (and recorded, raising its anomalies) on the spot.
#[utoipa::path(
    get,
    path = "/api/v1/reconciliation/bills",
    tag = "reconciliation",
    operation_id = "getBillReconciliation",
    security(("operatorBearer" = [])),
    params(BillsQuery),
    responses(
        (status = 200, description = "The day's reconciliation.", body = BillReconciliationDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 409, description = "`provider_unavailable`: the provider's bill cannot be read now.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `provider` (not wechat or alipay, or not configured), `date` (not a date, or in the future) or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_bills(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<BillsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<BillReconciliationDto>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let (provider, date) = provider_day(&s, q.provider.as_deref(), q.date.as_deref())?;
    Ok(Json(s.platform.bill_reconciliation(provider, &date).await?.into()))
}

/// Reconcile a provider day now.
///
/// Downloads the provider's bill of the day again and compares it with our movements,
/// recording the run; only discrepancies not raised before raise anomalies.
#[utoipa::path(
    post,
    path = "/api/v1/reconciliation/bills",
    tag = "reconciliation",
    operation_id = "runBillReconciliation",
    security(("operatorBearer" = [])),
    request_body = BillsRun,
    responses(
        (status = 200, description = "The day's reconciliation, as just recorded.", body = BillReconciliationDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 409, description = "`provider_unavailable`: the provider's bill cannot be read now.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `provider`, `date` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn run_bills(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<BillsRun>,
) -> Result<Json<BillReconciliationDto>, ApiError> {
    let (provider, date) = provider_day(&s, Some(&b.provider), Some(&b.date))?;
    Ok(Json(s.platform.reconcile_bills(provider, &date).await?.into()))
}
