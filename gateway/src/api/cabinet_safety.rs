//! A cabinet's temperature guard [B8]: operators set its limit, and reset a lockout
//! once they checked the goods.

use super::cabinet_view::TemperatureDto;
use super::cabinets::CabinetPath;
use super::error::ErrorBody;
use super::extract::{ApiJson, Operator};
use super::money::not_blank;
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use tare_domain::CabinetId;
use utoipa::ToSchema;

/// A temperature limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TemperatureLimitBody {
    /// Highest temperature the goods may stand, °C (−40 to 80); null (or absent) stops
    /// watching.
    #[schema(minimum = -40.0, maximum = 80.0, example = 8.0)]
    max_c: Option<f64>,
}

/// Why a lockout may be lifted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LockoutResetBody {
    /// What was checked, in the operator's words (kept with who and when): at most 200
    /// characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    reason: String,
}

/// Set a cabinet's temperature limit.
///
/// A heartbeat reporting a temperature above the limit locks shoppers out of the cabinet
/// (a scan is 409 `temperature_lockout`) until an operator resets it — the goods may have
/// spoiled, so cooling down again does not lift it. Operators may still open doors and
/// restock. The limit is an event with who and when.
#[utoipa::path(
    put,
    path = "/api/v1/cabinets/{id}/temperature-limit",
    tag = "cabinets",
    operation_id = "putTemperatureLimit",
    security(("operatorBearer" = [])),
    params(CabinetPath),
    request_body = TemperatureLimitBody,
    responses(
        (status = 200, description = "The cabinet's temperature guard now.", body = TemperatureDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`.", body = ErrorBody),
        (status = 409, description = "`concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `cabinet` (the id is not `pk.dn`), `max_c` (not a number from -40 to 80) or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn put_temperature_limit(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<TemperatureLimitBody>,
) -> Result<Json<TemperatureDto>, ApiError> {
    let id = CabinetId::parse(&id)?;
    let guard = s.platform.set_temperature_limit(&id, b.max_c, op.who()).await?;
    Ok(Json((&guard).into()))
}

/// Reset a temperature lockout.
///
/// Lets shoppers back in after an operator checked the goods of a cabinet locked out by
/// its temperature; the reason is kept with who and when. If the cabinet is still above
/// its limit, its next heartbeat locks it out again.
#[utoipa::path(
    post,
    path = "/api/v1/cabinets/{id}/temperature-lockout/reset",
    tag = "cabinets",
    operation_id = "resetTemperatureLockout",
    security(("operatorBearer" = [])),
    params(CabinetPath),
    request_body = LockoutResetBody,
    responses(
        (status = 200, description = "The cabinet's temperature guard now.", body = TemperatureDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`.", body = ErrorBody),
        (status = 409, description = "`not_locked_out` (nothing to reset) or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `cabinet` (the id is not `pk.dn`), `reason` (blank or too long) or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn reset_temperature_lockout(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<LockoutResetBody>,
) -> Result<Json<TemperatureDto>, ApiError> {
    let id = CabinetId::parse(&id)?;
    let reason = not_blank("reason", &b.reason, 200)?;
    let guard = s.platform.reset_temperature_lockout(&id, reason, op.who()).await?;
    Ok(Json((&guard).into()))
}
