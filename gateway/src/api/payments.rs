//! The sandbox confirm endpoint and the providers' notifications [P2, P3]. A notification
//! is verified in the provider's own way (`tare_providers`: WeChat's signed headers and
//! AES-GCM resource, Alipay's RSA2 form) before anything is read from it; a forged,
//! stale, truncated, wrongly encrypted or foreign one gets 401 and changes nothing. A
//! verified one is acted on as the provider documents it, idempotently (the same
//! notification again changes nothing), and acknowledged in the provider's way.

use super::error::ErrorBody;
use super::extract::{ApiJson, Operator, ShopperCaller};
use super::openapi::{Internal, MalformedJson, OperatorOnly, ShopperOnly, TooLarge, Unauthorized};
use super::orders::ProviderDto;
use super::{ApiError, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tare_domain::ProviderKind;
use tare_platform::ServiceError;
use tare_providers::notification::{CallbackError, Notification, NotificationEvent};
use tare_providers::sandbox::{Behaviour, NotificationFaults};
use utoipa::{IntoParams, ToSchema};

pub(crate) fn provider(name: &str) -> Result<ProviderKind, ApiError> {
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
/// authorizes the order and calls the platform back [P2]. As in the provider's app, only
/// the shopper whose order it is may confirm it: their token is required, and another
/// shopper's order is not found.
#[utoipa::path(
    post,
    path = "/sandbox/{provider}/authorizations/{reference}/confirm",
    tag = "payments",
    operation_id = "confirmSandboxAuthorization",
    security(("shopperBearer" = [])),
    params(ConfirmPath),
    responses(
        (status = 200, description = "Confirmed; the provider's callback follows.", body = Confirmed),
        (status = 401, response = Unauthorized),
        (status = 403, response = ShopperOnly),
        (status = 404, description = "`provider_not_found`, `sandbox_not_found` (this node talks to a real provider, or to `tare sandbox`) or `authorization_not_found` (none, or another shopper's).", body = ErrorBody),
        (status = 409, description = "`authorization_state`: the authorization is not waiting for a confirmation.", body = ErrorBody),
    )
)]
pub(super) async fn sandbox_confirm(
    ShopperCaller(shopper): ShopperCaller,
    State(s): State<Arc<ApiState>>,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Json<Confirmed>, ApiError> {
    let kind = provider(&name)?;
    let sandbox = s.sandboxes.get(&kind).ok_or_else(|| ApiError::NotFound {
        code: "sandbox_not_found",
        message: format!("no {name} sandbox"),
    })?;
    let not_theirs = || ApiError::NotFound {
        code: "authorization_not_found",
        message: "authorization not found".into(),
    };
    let order_id = tare_providers::refs::order_id_of(&reference);
    let order = s.platform.order(&order_id).await.map_err(|_| not_theirs())?;
    if order.shopper_id != shopper {
        return Err(not_theirs());
    }
    sandbox.confirm(&reference).map_err(|e| match e {
        tare_providers::sandbox::ConfirmError::NotFound => ApiError::NotFound {
            code: "authorization_not_found",
            message: e.to_string(),
        },
        tare_providers::sandbox::ConfirmError::NotAwaiting => ApiError::Conflict {
            code: "authorization_state",
            message: e.to_string(),
        },
    })?;
    Ok(Json(Confirmed { confirmed: reference }))
}

/// How a sandbox misbehaves, on demand (for tests, `tare sim --provider-faults` and the
/// demo). Every field is optional; an absent one is the provider on a good day.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SandboxBehaviourDto {
    /// Open orders a shopper may have at the provider at once (default 3).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default)]
    max_pending_per_shopper: Option<u32>,
    /// Refuse every new order as a risk failure.
    #[serde(default)]
    reject_risk: bool,
    /// Deductions that fail (insufficient funds) before one succeeds, per order.
    #[schema(maximum = 100)]
    #[serde(default)]
    fail_collections: u32,
    /// Refunds that fail for good before one goes through.
    #[schema(maximum = 100)]
    #[serde(default)]
    fail_refunds: u32,
    /// Calls answered with a system error before the real answer, per order.
    #[schema(maximum = 100)]
    #[serde(default)]
    system_errors: u32,
    /// Every API answer waits this long first (ms).
    #[schema(maximum = 120_000)]
    #[serde(default)]
    slow_answer_ms: u32,
    /// Each notification is sent twice.
    #[serde(default)]
    duplicate_notifications: bool,
    /// A notification is held back until the next one has gone.
    #[serde(default)]
    reorder_notifications: bool,
    /// Each notification waits this long before its first delivery (ms).
    #[schema(maximum = 600_000)]
    #[serde(default)]
    delay_notifications_ms: u32,
    /// No notification arrives at all (the platform must ask).
    #[serde(default)]
    drop_notifications: bool,
}

impl SandboxBehaviourDto {
    pub(crate) fn behaviour(&self) -> Result<Behaviour, ApiError> {
        let d = Behaviour::default();
        let pending = self.max_pending_per_shopper.unwrap_or(d.max_pending_per_shopper as u32);
        if !(1..=1000).contains(&pending) {
            return Err(ApiError::invalid("max_pending_per_shopper", "must be 1 to 1000"));
        }
        for (field, v, max) in [
            ("fail_collections", self.fail_collections, 100),
            ("fail_refunds", self.fail_refunds, 100),
            ("system_errors", self.system_errors, 100),
            ("slow_answer_ms", self.slow_answer_ms, 120_000),
            ("delay_notifications_ms", self.delay_notifications_ms, 600_000),
        ] {
            if v > max {
                return Err(ApiError::invalid(field, format!("must be at most {max}")));
            }
        }
        Ok(Behaviour {
            max_pending_per_shopper: pending as usize,
            reject_risk: self.reject_risk,
            fail_collections: self.fail_collections,
            fail_refunds: self.fail_refunds,
            system_errors: self.system_errors,
            slow_answers: Duration::from_millis(self.slow_answer_ms.into()),
            notifications: NotificationFaults {
                duplicate: self.duplicate_notifications,
                reorder: self.reorder_notifications,
                delay: Duration::from_millis(self.delay_notifications_ms.into()),
                drop: self.drop_notifications,
            },
            ..d
        })
    }
}

/// An alert as sent.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SentAlertDto {
    /// Its id (the receiver's idempotency key).
    alert_id: String,
    /// `device_offline`, `restock_needed`, `anomaly`, `charge_dead_lettered`.
    kind: String,
    /// The cabinet, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    cabinet: Option<String>,
    /// What it is about.
    subject: String,
    /// The sentence sent.
    text: String,
    /// When it happened, Unix ms.
    at: i64,
}

/// Alerts sent.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SentAlertsDto {
    /// Oldest first.
    items: Vec<SentAlertDto>,
}

/// Alerts the sandbox received.
///
/// The recording alert sandbox (an SMS-style outbox used when no `--alert-webhook` is
/// set): every alert this node sent, once each — devices offline, restock needs, new
/// anomalies, charges given up.
#[utoipa::path(
    get,
    path = "/sandbox/alerts",
    tag = "payments",
    operation_id = "getSandboxAlerts",
    security(("operatorBearer" = [])),
    responses(
        (status = 200, description = "What was sent.", body = SentAlertsDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`sandbox_not_found`: alerts go to a webhook.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn sandbox_alerts(_: Operator, State(s): State<Arc<ApiState>>) -> Result<Json<SentAlertsDto>, ApiError> {
    let sent = s.platform.sent_alerts().ok_or_else(|| ApiError::NotFound {
        code: "sandbox_not_found",
        message: "alerts go to a webhook on this node".into(),
    })?;
    Ok(Json(SentAlertsDto {
        items: sent
            .into_iter()
            .map(|a| SentAlertDto {
                alert_id: a.alert_id,
                kind: a.kind,
                cabinet: a.cabinet,
                subject: a.subject,
                text: a.text,
                at: a.at,
            })
            .collect(),
    }))
}

/// Set a sandbox's behaviour.
///
/// Makes the provider sandbox on this node misbehave on demand: risk refusals, failing
/// deductions, system errors, slow answers, duplicated, reordered, late or lost
/// notifications. The body replaces the whole behaviour (`{}` is a good day).
#[utoipa::path(
    put,
    path = "/sandbox/{provider}/behaviour",
    tag = "payments",
    operation_id = "setSandboxBehaviour",
    security(("operatorBearer" = [])),
    params(ProviderPath),
    request_body = SandboxBehaviourDto,
    responses(
        (status = 204, description = "In effect for the next call."),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`provider_not_found`, or `sandbox_not_found` (this node talks to providers elsewhere).", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: a field out of range, or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn set_sandbox_behaviour(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<SandboxBehaviourDto>,
) -> Result<StatusCode, ApiError> {
    let kind = provider(&name)?;
    let sandbox = s.sandboxes.get(&kind).ok_or_else(|| ApiError::NotFound {
        code: "sandbox_not_found",
        message: format!("no {name} sandbox on this node"),
    })?;
    sandbox.set_behaviour(b.behaviour()?);
    Ok(StatusCode::NO_CONTENT)
}

/// The `{provider}` of a sandbox endpoint.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Parameter docs only.
struct ProviderPath {
    /// The provider (any other name is not found).
    #[param(inline)]
    provider: ProviderDto,
}

/// A WeChat notification as it arrives (PAYMENTS.md §1.6): the envelope, its resource
/// encrypted under the APIv3 key.
#[derive(ToSchema)]
#[allow(dead_code)] // Schema only: `tare_providers::wechat` parses it.
struct WechatNotification {
    /// Notification id (the same on every resend).
    id: String,
    /// When WeChat made it (RFC 3339).
    create_time: String,
    /// `PAYSCORE.USER_CONFIRM`, `PAYSCORE.USER_PAID`, `REFUND.SUCCESS`, `REFUND.CLOSED`, …
    event_type: String,
    /// `encrypt-resource`.
    resource_type: String,
    /// A human summary.
    summary: Option<String>,
    /// The encrypted resource.
    resource: WechatResource,
}

/// The encrypted resource of a WeChat notification.
#[derive(ToSchema)]
#[allow(dead_code)] // Schema only.
struct WechatResource {
    /// `AEAD_AES_256_GCM`.
    algorithm: String,
    /// Base64 of ciphertext and tag.
    ciphertext: String,
    /// The additional authenticated data.
    associated_data: Option<String>,
    /// What the plaintext is (`payscore`, `refund`).
    original_type: String,
    /// The 12-character nonce.
    nonce: String,
}

/// WeChat's answer when a notification is refused (WeChat sends it again).
#[derive(Serialize, ToSchema)]
struct WechatFail {
    /// `FAIL`.
    code: &'static str,
    /// Why.
    message: String,
}

/// WeChat Pay Score notification.
///
/// WeChat calls the platform back (PAYMENTS.md §1.6, §1.7): the `Wechatpay-*` headers sign
/// the exact body with the platform key, the resource is AES-256-GCM under the APIv3 key.
/// A verified notification for this merchant is acted on once (a resend changes nothing)
/// and answered 204; anything that does not verify is 401 `{"code":"FAIL"}` and changes
/// nothing; 500 asks WeChat to send it again later (the store is failing).
#[utoipa::path(
    post,
    path = "/callbacks/wechat",
    tag = "payments",
    operation_id = "wechatCallback",
    security(("wechatpaySignature" = [], "wechatpayTimestamp" = [], "wechatpayNonce" = [], "wechatpaySerial" = [])),
    request_body = WechatNotification,
    responses(
        (status = 204, description = "Verified and acted on (or already acted on, or nothing to do)."),
        (status = 401, description = "Refused: unsigned, wrongly signed, stale, not decryptable, malformed or for another merchant. Nothing changed.", body = WechatFail),
        (status = 500, description = "Verified, but could not be recorded now: WeChat sends it again.", body = WechatFail),
    )
)]
pub(super) async fn wechat_callback(State(s): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    // Real time, not the platform's (possibly driven) clock: WeChat signs with its wall
    // clock.
    let now = tare_sagas::ports::Clock::now_ms(&tare_platform::clock::SystemClock);
    let verified = tare_providers::wechat::verify_notification(&s.provider_keys.wechat, &headers, &body, now);
    let fail = |status: StatusCode, message: String| (status, Json(WechatFail { code: "FAIL", message })).into_response();
    match verified {
        Err(e) => {
            refuse(&s, ProviderKind::Wechat, &e);
            fail(StatusCode::UNAUTHORIZED, e.to_string())
        }
        Ok(n) => match act_on(&s, ProviderKind::Wechat, n).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(()) => fail(StatusCode::INTERNAL_SERVER_ERROR, "try again later".into()),
        },
    }
}

/// Alipay notification.
///
/// Alipay calls the platform back with a signed form (PAYMENTS.md §2.5): RSA2 over the
/// sorted parameters without `sign` and `sign_type`, verified with Alipay's public key.
/// A verified notification for this app is acted on once and answered with the body
/// `success` (anything else makes Alipay send it again with the same `notify_id`); one
/// that does not verify is 401 `fail` and changes nothing.
#[utoipa::path(
    post,
    path = "/callbacks/alipay",
    tag = "payments",
    operation_id = "alipayCallback",
    request_body(content = std::collections::HashMap<String, String>, content_type = "application/x-www-form-urlencoded", description = "`notify_id`, `notify_type` (`fund_auth_freeze`, `trade_status_sync`, …), `app_id`, `sign_type` `RSA2`, `sign` and the fields of the notification type."),
    responses(
        (status = 200, description = "`success`: verified and acted on (or already acted on, or nothing to do).", body = String, content_type = "text/plain"),
        (status = 401, description = "`fail`: unsigned, wrongly signed, malformed, a bad amount or for another app. Nothing changed.", body = String, content_type = "text/plain"),
        (status = 500, description = "`fail`: verified, but could not be recorded now; Alipay sends it again.", body = String, content_type = "text/plain"),
    )
)]
pub(super) async fn alipay_callback(State(s): State<Arc<ApiState>>, body: Bytes) -> Response {
    let text = |status: StatusCode, body: &'static str| (status, [(axum::http::header::CONTENT_TYPE, "text/plain")], body).into_response();
    match tare_providers::alipay::verify_notification(&s.provider_keys.alipay, &body) {
        Err(e) => {
            refuse(&s, ProviderKind::Alipay, &e);
            text(StatusCode::UNAUTHORIZED, tare_providers::alipay::NACK)
        }
        Ok(n) => match act_on(&s, ProviderKind::Alipay, n).await {
            Ok(()) => text(StatusCode::OK, tare_providers::alipay::ACK),
            Err(()) => text(StatusCode::INTERNAL_SERVER_ERROR, tare_providers::alipay::NACK),
        },
    }
}

/// How long a notification for a payment not opened here yet waits for it to open.
const NOT_OPENED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Counts and logs a refused notification (never its body: it may carry a forged
/// signature made to probe the logs).
fn refuse(s: &ApiState, provider: ProviderKind, e: &CallbackError) {
    s.counters.callbacks_refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(provider = provider.as_str(), reason = e.reason(), "provider notification refused");
}

/// Acts on a verified notification as its provider documents it. One that the order's
/// state makes moot, or that names another provider's payment, is genuine all the same:
/// it is acknowledged and counted. `Err` (the provider sends it again) when the store
/// failed, or when the payment it names is not opened here yet (the provider notified
/// before we recorded its answer to our create).
async fn act_on(s: &ApiState, provider: ProviderKind, n: Notification) -> Result<(), ()> {
    let p = &s.platform;
    let id = n.id.as_str();
    if let Some(order_id) = n.event.order_id() {
        // A provider speaks only for its own payments: a genuine notification naming an
        // order paid through the other provider changes nothing.
        // A provider that authorizes at once notifies as it answers our create, often
        // before the saga has recorded that answer: for an order that exists, wait a
        // moment for it rather than make the provider resend (its next try is many
        // seconds away).
        let payment = match p.payment(order_id).await {
            Ok(pay) if pay.state == tare_domain::payment::PaymentState::New && p.order(order_id).await.is_ok() => {
                p.payment_opened(order_id, NOT_OPENED_WAIT).await
            }
            other => other,
        };
        match payment {
            Ok(payment) if payment.state == tare_domain::payment::PaymentState::New => {
                // Not opened here yet: the provider answered our create and notified
                // before we recorded its answer. Not acknowledged, so the provider sends
                // it again once we know the payment.
                tracing::info!(
                    provider = provider.as_str(),
                    "notification for a payment not opened yet; the provider will resend"
                );
                return Err(());
            }
            Ok(payment) if payment.provider.is_some_and(|k| k != provider) => {
                s.counters.callbacks_moot.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    provider = provider.as_str(),
                    "notification names another provider's payment; ignored"
                );
                return Ok(());
            }
            Err(ServiceError::Internal(e) | ServiceError::Unavailable(e)) => {
                tracing::error!(provider = provider.as_str(), error = %e, "payment not readable; the provider will resend");
                return Err(());
            }
            _ => {}
        }
    }
    let r = match n.event {
        NotificationEvent::Authorized { order_id } => p.provider_authorized(&order_id, id).await,
        NotificationEvent::Collected {
            order_id,
            transaction_id,
            amount,
        } => p.provider_collected(&order_id, id, transaction_id, amount).await,
        NotificationEvent::CollectionFailed { order_id, reason } => p.provider_collection_failed(&order_id, id, reason).await,
        NotificationEvent::RefundSucceeded {
            order_id,
            refund_id,
            provider_refund_id,
            ..
        } => p.provider_refunded(&order_id, &refund_id, provider_refund_id, id).await,
        NotificationEvent::RefundFailed {
            order_id,
            refund_id,
            reason,
        } => p.provider_refund_failed(&order_id, &refund_id, reason, id).await,
        NotificationEvent::Informational { what } => {
            tracing::debug!(provider = provider.as_str(), %what, "provider notification needs nothing");
            Ok(())
        }
    };
    match r {
        Ok(()) => {
            s.counters.callbacks_applied.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(ServiceError::Internal(e) | ServiceError::Unavailable(e)) => {
            tracing::error!(provider = provider.as_str(), error = %e, "provider notification not recorded; the provider will resend");
            Err(())
        }
        Err(ServiceError::Conflict {
            code: "concurrent_update", ..
        }) => Err(()),
        Err(e) => {
            s.counters.callbacks_moot.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(provider = provider.as_str(), error = %e, "verified provider notification changes nothing");
            Ok(())
        }
    }
}
