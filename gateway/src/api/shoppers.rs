//! A shopper's record for staff, and erasing a shopper's personal data [issue 14, item
//! 6]: the phone number is in the log only sealed under the shopper's own key; erasure
//! destroys the key, so the log stays whole and replayable while the number is gone.

use super::auth::{Admin, Operator};
use super::error::ErrorBody;
use super::extract::ApiJson;
use super::money::not_blank;
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use tare_domain::operator::Role;
use tare_platform::personal_data::Opened;
use utoipa::ToSchema;

/// A shopper as staff see it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ShopperDto {
    /// Id.
    shopper_id: String,
    /// The phone number: in clear for admins and operators, masked for auditors
    /// (`138****0000`); `null` once erased.
    phone: Option<String>,
    /// Whether the shopper's personal data was erased.
    erased: bool,
    /// The payment provider.
    #[schema(value_type = String, example = "alipay")]
    provider: Option<String>,
}

/// `138****0000`: enough for an auditor to tell numbers apart, not to call one.
fn masked(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// Get a shopper.
///
/// The shopper's record for staff: the phone number opened from its sealed form (masked
/// for auditors), or `null` and `erased` once their personal data was erased.
#[utoipa::path(
    get,
    path = "/api/v1/shoppers/{id}",
    tag = "shoppers",
    operation_id = "getShopper",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The shopper's id.")),
    responses(
        (status = 200, description = "The shopper.", body = ShopperDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`shopper_not_found`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get(op: Operator, State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<ShopperDto>, ApiError> {
    let shopper = s.platform.shopper(&id).await?;
    let phone = match s.platform.shopper_phone(&id).await? {
        Opened::Erased => None,
        Opened::Clear(p) if op.0.role == Role::Auditor => Some(masked(&p)),
        Opened::Clear(p) => Some(p),
    };
    Ok(Json(ShopperDto {
        shopper_id: id,
        erased: phone.is_none(),
        phone,
        provider: shopper.provider.map(|p| p.as_str().to_string()),
    }))
}

/// Erase a shopper's personal data.
///
/// Admins only. Destroys the key the shopper's phone number is sealed under: from now on
/// it cannot be read, in the log or in any backup taken after, while the log itself stays
/// whole (orders, charges and refunds remain, and replay as before). Recorded as
/// `ShopperErased` with who and why. Again: nothing changes.
#[utoipa::path(
    post,
    path = "/api/v1/shoppers/{id}/erase",
    tag = "shoppers",
    operation_id = "eraseShopper",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The shopper's id.")),
    request_body = super::operators::Reason,
    responses(
        (status = 204, description = "Erased."),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: the caller is not an admin.", body = ErrorBody),
        (status = 404, description = "`shopper_not_found`.", body = ErrorBody),
        (status = 409, description = "`concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `reason` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn erase(
    Admin(by): Admin,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<super::operators::Reason>,
) -> Result<StatusCode, ApiError> {
    let reason = not_blank("reason", &b.reason, 200)?;
    s.platform.erase_shopper(&id, reason, &by.operator_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_masked_number_keeps_its_ends_only() {
        assert_eq!(super::masked("13800001234"), "138****1234");
        assert_eq!(super::masked("+8613800001234"), "+86*******1234");
        assert_eq!(super::masked("12345"), "*****");
    }
}
