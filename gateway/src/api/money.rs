//! Money an operator acts on: refunds of paid orders [O9] and the dead letters — charges
//! that still failed after the retry schedule and effects given up for good — which an
//! operator sees, retries now, or settles by hand [O8].

use super::error::ErrorBody;
use super::extract::{ApiJson, Operator, TaggedJson};
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::order::HandSettlement;
use tare_domain::payment::RefundState;
use tare_domain::Cents;
use utoipa::ToSchema;

/// A refund to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRefund {
    /// How much to give back, in cents: above 0 and at most what is still refundable.
    #[schema(minimum = 1, maximum = 100_000_000)]
    amount_cents: i64,
    /// Why (kept with the refund; some providers show it to the shopper): at most 80
    /// characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 80,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    reason: String,
}

/// Where a refund stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum RefundStateDto {
    /// Asked of the provider.
    Pending,
    /// The money went back.
    Succeeded,
    /// Refused for good; its amount is refundable again.
    Failed,
}

impl From<RefundState> for RefundStateDto {
    fn from(s: RefundState) -> Self {
        match s {
            RefundState::Pending => Self::Pending,
            RefundState::Succeeded => Self::Succeeded,
            RefundState::Failed => Self::Failed,
        }
    }
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RefundDto {
    /// Amount in cents.
    pub(super) amount_cents: i64,
    /// Our refund id (the provider's `out_refund_no` / `out_request_no`).
    pub(super) refund_id: String,
    /// Where it stands.
    pub(super) state: RefundStateDto,
}

/// Refund an order.
///
/// Gives back part or all of a paid order's charge [O9]. The amount is reserved at once,
/// so concurrent refunds never give back more than was charged; the provider is asked
/// with the refund's id as its idempotency key, and the order becomes
/// `partially_refunded` or `refunded` once the provider confirms.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/refunds",
    tag = "orders",
    operation_id = "refundOrder",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The order's id.")),
    request_body = NewRefund,
    responses(
        (status = 201, description = "Asked of the provider.", body = RefundDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
        (status = 409, description = "`refund_exceeds_charge` (more than is still refundable), `order_not_refundable` (not paid through its provider) or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `amount_cents`, `reason` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn refund_order(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(order_id): Path<String>,
    ApiJson(b): ApiJson<NewRefund>,
) -> Result<(StatusCode, Json<RefundDto>), ApiError> {
    let amount = Cents::parse("amount_cents", b.amount_cents)?;
    if amount == Cents::ZERO {
        return Err(ApiError::invalid("amount_cents", "must be above 0"));
    }
    let reason = not_blank("reason", &b.reason, 80)?;
    op.may_refund(amount, &s)?;
    let view = s.platform.refund_order(&order_id, amount, reason, op.who()).await?;
    Ok((
        StatusCode::CREATED,
        Json(RefundDto {
            amount_cents: view.refund.amount.get(),
            refund_id: view.refund_id,
            state: view.refund.state.into(),
        }),
    ))
}

/// A charge that still failed after the retry schedule.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadChargeDto {
    /// The amount that could not be collected, in cents.
    amount_cents: i64,
    /// Attempts made.
    attempts: u32,
    /// The provider's last reason.
    last_reason: String,
    /// The order.
    order_id: String,
    /// When it was given up (Unix ms).
    since: i64,
}

/// An effect given up for good.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadEffectDto {
    /// Failed attempts before.
    attempts: i64,
    /// When it was given up (Unix ms).
    buried_at: i64,
    /// The effect, as stored.
    #[schema(value_type = Object)]
    effect: serde_json::Value,
    /// Why it was given up.
    error: String,
    /// Its key (retry it by this).
    key: String,
}

/// The dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadLettersDto {
    /// Charges waiting for an operator, oldest first.
    charges: Vec<DeadChargeDto>,
    /// Effects given up, newest first.
    effects: Vec<DeadEffectDto>,
}

/// List the dead letters.
///
/// Charges that still failed after the retry schedule, and effects given up for good
/// [O8]. Nothing is ever dropped: each stays here until an operator retries it or, for a
/// charge, settles it by hand.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    tag = "orders",
    operation_id = "listDeadLetters",
    security(("operatorBearer" = [])),
    responses(
        (status = 200, description = "The dead letters.", body = DeadLettersDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn dead_letters(_: Operator, State(s): State<Arc<ApiState>>) -> Result<Json<DeadLettersDto>, ApiError> {
    let list = s.platform.dead_letters().await?;
    Ok(Json(DeadLettersDto {
        charges: list
            .charges
            .into_iter()
            .map(|c| DeadChargeDto {
                amount_cents: c.amount_cents,
                attempts: c.attempts,
                last_reason: c.last_reason,
                order_id: c.order_id,
                since: c.since,
            })
            .collect(),
        effects: list
            .effects
            .into_iter()
            .map(|e| DeadEffectDto {
                attempts: e.attempts,
                buried_at: e.buried_at,
                effect: e.effect,
                error: e.error,
                key: e.key,
            })
            .collect(),
    }))
}

/// Retry a dead charge now.
///
/// Tries the deduction of a dead-lettered charge again at once [O8].
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/charges/{order_id}/retry",
    tag = "orders",
    operation_id = "retryDeadCharge",
    security(("operatorBearer" = [])),
    params(("order_id" = String, Path, description = "The order whose charge is dead.")),
    responses(
        (status = 202, description = "The deduction is being tried again."),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
        (status = 409, description = "`charge_not_dead` or `concurrent_update`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn retry_dead_charge(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(order_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.platform.retry_dead_charge(&order_id, op.who()).await?;
    Ok(StatusCode::ACCEPTED)
}

/// A dead charge's settlement: how, and why in the operator's words (kept with who
/// settled it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "resolution", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Settlement {
    /// The shopper paid another way: the order is paid.
    PaidOutside {
        /// The outside payment's reference (a receipt number): at most 64 characters, not
        /// blank.
        #[schema(
            min_length = 1,
            max_length = 64,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        reference: String,
        /// Why: at most 200 characters, not blank.
        #[schema(
            min_length = 1,
            max_length = 200,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        note: String,
    },
    /// The money is given up: the order ends with nothing charged.
    WrittenOff {
        /// Why: at most 200 characters, not blank.
        #[schema(
            min_length = 1,
            max_length = 200,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        note: String,
    },
}

impl super::extract::Tagged for Settlement {
    const TAG: &'static str = "/resolution";
}

/// `value` trimmed, if it is not blank and at most `max` characters (as sent).
pub(super) fn not_blank(field: &'static str, value: &str, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || value.chars().count() > max {
        return Err(ApiError::invalid(field, format!("must be at most {max} characters and not blank")));
    }
    Ok(trimmed.to_string())
}

/// Settle a dead charge by hand.
///
/// Ends a charge that kept failing: paid another way, or written off; recorded with who
/// and why. The provider order is closed so nothing more is deducted through it [O8].
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/charges/{order_id}/settle",
    tag = "orders",
    operation_id = "settleDeadCharge",
    security(("operatorBearer" = [])),
    params(("order_id" = String, Path, description = "The order whose charge is dead.")),
    request_body = Settlement,
    responses(
        (status = 200, description = "Settled."),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
        (status = 409, description = "`charge_not_dead` or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `resolution`, `reference`, `note` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn settle_dead_charge(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(order_id): Path<String>,
    TaggedJson(b): TaggedJson<Settlement>,
) -> Result<StatusCode, ApiError> {
    let (resolution, note) = match b {
        Settlement::WrittenOff { note } => (HandSettlement::WrittenOff, note),
        Settlement::PaidOutside { reference, note } => (
            HandSettlement::PaidOutside {
                reference: not_blank("reference", &reference, 64)?,
            },
            note,
        ),
    };
    let note = not_blank("note", &note, 200)?;
    s.platform.settle_dead_charge(&order_id, resolution, note, op.who()).await?;
    Ok(StatusCode::OK)
}

/// Retry a buried effect now.
///
/// Runs an effect that was given up for good again at once (after its cause was fixed).
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/effects/{key}/retry",
    tag = "orders",
    operation_id = "retryDeadEffect",
    security(("operatorBearer" = [])),
    params(("key" = String, Path, description = "The buried effect's key.")),
    responses(
        (status = 202, description = "It runs again."),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`dead_letter_not_found`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn retry_dead_effect(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.platform.retry_dead_effect(&key).await?;
    Ok(StatusCode::ACCEPTED)
}
