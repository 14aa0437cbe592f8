//! The sandbox confirm endpoint and provider callbacks [P2, P3]. A callback is verified
//! (timestamp window, HMAC signature) before anything is read from it; an unsigned or
//! forged one gets 401 and changes nothing. Applying a callback is idempotent.

use super::error::ErrorBody;
use super::extract::parse_json;
use super::openapi::{Internal, MalformedJson, TooLarge};
use super::orders::ProviderDto;
use super::{ApiError, ApiState};
use crate::sandbox::{verify, SandboxNotification, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tare_domain::{Cents, ProviderKind};
use utoipa::{IntoParams, ToSchema};

fn provider(name: &str) -> Result<ProviderKind, ApiError> {
    ProviderKind::parse("provider", name).map_err(|_| ApiError::NotFound {
        code: "provider_not_found",
        message: format!("no provider `{name}`"),
    })
}

/// The `{provider}` and `{reference}` of the sandbox confirm page.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Parameter docs only: the handler reads them as strings.
struct ConfirmPath {
    /// The provider (any other name is not found).
    #[param(inline)]
    provider: ProviderDto,
    /// The provider order reference (`payment.provider_order_ref` of the order).
    reference: String,
}

/// A confirmed authorization.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Confirmed {
    /// The provider order reference confirmed.
    confirmed: String,
}

/// Confirm in the provider's app.
///
/// What the shopper's tap on "confirm" does in the provider's app: the sandbox
/// authorizes the order and calls the platform back [P2].
#[utoipa::path(
    post,
    path = "/sandbox/{provider}/authorizations/{reference}/confirm",
    tag = "payments",
    operation_id = "confirmSandboxAuthorization",
    params(ConfirmPath),
    responses(
        (status = 200, description = "Confirmed; the provider's callback follows.", body = Confirmed),
        (status = 404, description = "`provider_not_found`, `sandbox_not_found` (this node talks to a remote provider) or `authorization_not_found`.", body = ErrorBody),
        (status = 409, description = "`authorization_state`: the authorization is not waiting for a confirmation.", body = ErrorBody),
    )
)]
pub(super) async fn sandbox_confirm(
    State(s): State<Arc<ApiState>>,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Json<Confirmed>, ApiError> {
    let kind = provider(&name)?;
    let sandbox = s.sandboxes.get(&kind).ok_or_else(|| ApiError::NotFound {
        code: "sandbox_not_found",
        message: format!("no {name} sandbox"),
    })?;
    sandbox.confirm(&reference).map_err(|e| match e {
        crate::sandbox::ConfirmError::NotFound => ApiError::NotFound {
            code: "authorization_not_found",
            message: e.to_string(),
        },
        crate::sandbox::ConfirmError::NotAwaiting => ApiError::Conflict {
            code: "authorization_state",
            message: e.to_string(),
        },
    })?;
    Ok(Json(Confirmed { confirmed: reference }))
}

/// Callbacks older or newer than this are refused (replays).
const CALLBACK_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A notification's type.
#[derive(ToSchema)]
#[allow(dead_code, clippy::enum_variant_names)] // Schema only.
enum NotificationType {
    /// The shopper confirmed; the order is pre-authorized.
    #[schema(rename = "AUTHORIZED")]
    Authorized,
    /// The charge was collected (`transaction_id`, `amount_cents`).
    #[schema(rename = "COLLECTED")]
    Collected,
    /// The charge could not be collected (`reason`).
    #[schema(rename = "COLLECTION_FAILED")]
    CollectionFailed,
}

/// A provider's notification, as the sandbox signs and posts it (`SandboxNotification`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only: `SandboxNotification` parses it.
struct Notification {
    /// Notification id (the same on redelivery).
    id: String,
    /// What happened.
    event_type: NotificationType,
    /// Tare's order id.
    out_order_no: String,
    /// Required for `COLLECTED`.
    transaction_id: Option<String>,
    /// Required for `COLLECTED`: the amount collected, in cents.
    amount_cents: Option<i64>,
    /// `COLLECTION_FAILED`: why.
    reason: Option<String>,
}

/// The `{provider}` of a callback.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Parameter docs only.
struct ProviderPath {
    /// The provider (any other name is not found).
    #[param(inline)]
    provider: ProviderDto,
}

/// A provider's signed notification.
///
/// The provider calls the platform back, signed [P3]: a notification with a missing,
/// stale or wrong signature gets 401 and changes nothing; a good one is applied once
/// (redeliveries change nothing) and acknowledged with 204.
#[utoipa::path(
    post,
    path = "/callbacks/{provider}",
    tag = "payments",
    operation_id = "providerCallback",
    security(("providerTimestamp" = [], "providerSignature" = [])),
    params(ProviderPath),
    request_body = Notification,
    responses(
        (status = 204, description = "Applied (or already applied)."),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`unauthorized`: unsigned, stale (over 5 minutes off) or wrongly signed.", body = ErrorBody),
        (status = 404, description = "`provider_not_found`, or `order_not_found`.", body = ErrorBody),
        (status = 409, description = "Conflicts with the order's state, or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `event_type`, `transaction_id` or `amount_cents` (COLLECTED needs both), or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn callback(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let refused = |e: ApiError| {
        s.counters.callbacks_refused.fetch_add(1, Ordering::Relaxed);
        e
    };
    let kind = provider(&name).map_err(refused)?;
    let key = s.callback_keys.get(&kind).ok_or_else(|| {
        refused(ApiError::NotFound {
            code: "provider_not_found",
            message: format!("no {name} callbacks"),
        })
    })?;
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(ts), Some(sig)) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER)) else {
        return Err(refused(ApiError::Unauthorized("unsigned notification".into())));
    };
    let ts_ms: i64 = ts.parse().map_err(|_| refused(ApiError::Unauthorized("bad timestamp".into())))?;
    // Real time, not the platform's (possibly driven) clock: the provider signs with its
    // wall clock.
    let now = tare_sagas::ports::Clock::now_ms(&tare_platform::clock::SystemClock);
    if (now - ts_ms).abs() > CALLBACK_WINDOW_MS {
        return Err(refused(ApiError::Unauthorized("stale timestamp".into())));
    }
    if !verify(key, &ts, &body, &sig) {
        tracing::warn!(provider = %name, "callback with a bad signature refused");
        return Err(refused(ApiError::Unauthorized("bad signature".into())));
    }
    let n: SandboxNotification = parse_json(&body).map_err(refused)?;
    let order_id = n.out_order_no.clone();
    let r = match n.event_type.as_str() {
        "AUTHORIZED" => s.platform.provider_authorized(&order_id, &n.id).await,
        "COLLECTED" => {
            let (Some(txn), Some(amount)) = (n.transaction_id.clone(), n.amount_cents) else {
                return Err(refused(ApiError::invalid(
                    "transaction_id",
                    "COLLECTED needs transaction_id and amount_cents",
                )));
            };
            let amount = Cents::parse("amount_cents", amount).map_err(|e| refused(e.into()))?;
            s.platform.provider_collected(&order_id, &n.id, txn, amount).await
        }
        "COLLECTION_FAILED" => {
            s.platform
                .provider_collection_failed(&order_id, &n.id, n.reason.clone().unwrap_or_default())
                .await
        }
        other => return Err(refused(ApiError::invalid("event_type", format!("unknown event type `{other}`")))),
    };
    r.map_err(|e| refused(e.into()))?;
    s.counters.callbacks_applied.fetch_add(1, Ordering::Relaxed);
    Ok(StatusCode::NO_CONTENT)
}
