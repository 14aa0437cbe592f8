//! The emergency switch [B8]: stop new credit-pay orders for every provider or for some,
//! while open orders settle.

use super::error::ErrorBody;
use super::extract::{ApiJson, Operator};
use super::money::not_blank;
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use tare_domain::emergency::EmergencyStop;
use tare_domain::ProviderKind;
use utoipa::ToSchema;

/// What to stop.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EmergencyStopBody {
    /// Stop new orders through every provider.
    all: bool,
    /// Stop new orders through these providers.
    #[schema(value_type = Vec<ProviderName>, example = json!(["alipay"]))]
    providers: Vec<String>,
    /// Why, in the operator's words (kept with who and when): at most 200 characters, not
    /// blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    reason: String,
}

/// A payment provider's name (the document's shape of `providers[i]`; read as text and
/// checked, so a wrong one names its index).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only
pub(super) enum ProviderName {
    /// WeChat Pay Score.
    Wechat,
    /// Alipay.
    Alipay,
}

/// The switch's position.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EmergencyStopDto {
    /// Every provider stopped.
    all: bool,
    /// These providers stopped.
    #[schema(value_type = Vec<ProviderName>)]
    providers: Vec<String>,
    /// Who set it last.
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Since when, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<i64>,
}

impl From<EmergencyStop> for EmergencyStopDto {
    fn from(s: EmergencyStop) -> Self {
        Self {
            all: s.all,
            providers: s.providers.iter().map(|p| p.as_str().to_string()).collect(),
            by: s.by,
            reason: s.reason,
            since: s.since,
        }
    }
}

/// Get the emergency switch.
///
/// What new orders are stopped now, by whom and why [B8].
#[utoipa::path(
    get,
    path = "/api/v1/emergency-stop",
    tag = "orders",
    operation_id = "getEmergencyStop",
    security(("operatorBearer" = [])),
    responses(
        (status = 200, description = "The switch.", body = EmergencyStopDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get(_: Operator, State(s): State<Arc<ApiState>>) -> Result<Json<EmergencyStopDto>, ApiError> {
    Ok(Json(s.platform.emergency_stop().await?.into()))
}

/// Set the emergency switch.
///
/// Stops new credit-pay orders — through every provider (`all`) or the ones named — at
/// once: a scan is refused with 409 `payments_stopped`. Orders already open settle as
/// usual (their charges, retries and refunds go on). `{"all": false, "providers": []}`
/// lets orders through again. Each change is an event with who and why.
#[utoipa::path(
    put,
    path = "/api/v1/emergency-stop",
    tag = "orders",
    operation_id = "setEmergencyStop",
    security(("operatorBearer" = [])),
    request_body = EmergencyStopBody,
    responses(
        (status = 200, description = "The switch as set.", body = EmergencyStopDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 409, description = "`concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `all`, `providers[i]` (not wechat or alipay), `reason` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn set(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<EmergencyStopBody>,
) -> Result<Json<EmergencyStopDto>, ApiError> {
    let mut providers = BTreeSet::new();
    for (i, p) in b.providers.iter().enumerate() {
        let kind = match p.as_str() {
            "wechat" => ProviderKind::Wechat,
            "alipay" => ProviderKind::Alipay,
            _ => return Err(ApiError::invalid(format!("providers[{i}]"), "must be wechat or alipay")),
        };
        providers.insert(kind);
    }
    let reason = not_blank("reason", &b.reason, 200)?;
    Ok(Json(
        s.platform.set_emergency_stop(b.all, providers, reason, op.who()).await?.into(),
    ))
}
