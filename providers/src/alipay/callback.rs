//! The platform's `/callbacks/alipay`: what an Alipay notification means, once it is
//! proven to come from Alipay [PAYMENTS.md §2.1, §2.5].
//!
//! The handler passes the raw form body to [`verify_notification`] and answers Alipay:
//! **200 with the body `success`** when it returns `Ok` (Alipay then stops resending);
//! anything else otherwise — the gateway uses **401 with the body `fail`** — so that a
//! genuine notification the platform could not take is sent again (same `notify_id`,
//! which is [`Notification::id`], so handling it twice must be harmless).

use super::sign::{notification_content, SIGN_TYPE};
use crate::crypto::rsa_verify;
use crate::keys::AlipayKeys;
use crate::money::parse_yuan;
use crate::notification::{CallbackError, Notification, NotificationEvent};
use crate::refs::order_id_of;

/// The body that acknowledges a notification (exactly these 7 bytes).
pub const ACK: &str = "success";
/// The body the gateway answers a refused notification with.
pub const NACK: &str = "fail";

/// Verifies an Alipay notification (the raw `application/x-www-form-urlencoded` body)
/// and says what it means:
///
/// - the form must parse and carry `sign`, `notify_id`, `notify_type`, `app_id`
///   ([`CallbackError::Malformed`]);
/// - `sign` must verify with Alipay's public key over the sorted `k=v&…` of every other
///   parameter **except `sign_type`** (empty ones included) ([`CallbackError::BadSignature`]);
/// - `app_id` (and `seller_id` when present) must be ours ([`CallbackError::ForeignMerchant`]);
/// - amounts must be yuan with exactly two decimals ([`CallbackError::Amount`]).
///
/// `fund_auth_freeze` with `status=SUCCESS` → `Authorized`; `trade_status_sync` with
/// `TRADE_SUCCESS`/`TRADE_FINISHED` (and no refund fields) → `Collected`; anything else
/// (unfreezes, refunds, closed trades) → `Informational`.
pub fn verify_notification(keys: &AlipayKeys, body: &[u8]) -> Result<Notification, CallbackError> {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| CallbackError::Malformed(format!("not a form: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    if let Some((k, _)) = params.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(CallbackError::Malformed(format!("parameter {k} repeated")));
    }
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let need = |k: &str| get(k).ok_or_else(|| CallbackError::Malformed(format!("missing {k}")));
    let sign = need("sign")?;
    if get("sign_type").is_some_and(|t| t != SIGN_TYPE) {
        return Err(CallbackError::BadSignature);
    }
    let content = notification_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if !rsa_verify(&keys.alipay_public_key, content.as_bytes(), sign) {
        return Err(CallbackError::BadSignature);
    }
    let id = need("notify_id")?.to_string();
    let notify_type = need("notify_type")?;
    let app_id = need("app_id")?;
    if app_id != keys.app.app_id {
        return Err(CallbackError::ForeignMerchant(format!("app_id {app_id}")));
    }
    if let Some(seller) = get("seller_id").filter(|s| *s != keys.app.seller_id) {
        return Err(CallbackError::ForeignMerchant(format!("seller_id {seller}")));
    }
    let amount = |k: &str| parse_yuan(need(k)?).map_err(|e| CallbackError::Amount(e.to_string()));
    let event = match notify_type {
        "fund_auth_freeze" => {
            amount("amount")?;
            match need("status")? {
                "SUCCESS" => NotificationEvent::Authorized {
                    order_id: order_id_of(need("out_order_no")?),
                },
                other => NotificationEvent::Informational {
                    what: format!("fund_auth_freeze {other}"),
                },
            }
        }
        "trade_status_sync" => {
            let total = amount("total_amount")?;
            if get("refund_fee").is_some() {
                amount("refund_fee")?;
            }
            let status = need("trade_status")?;
            let refund = get("refund_fee").is_some() || get("gmt_refund").is_some();
            match status {
                "TRADE_SUCCESS" | "TRADE_FINISHED" if !refund => NotificationEvent::Collected {
                    order_id: order_id_of(need("out_trade_no")?),
                    transaction_id: need("trade_no")?.to_string(),
                    amount: total,
                },
                _ if refund => NotificationEvent::Informational {
                    what: format!("refund ({status})"),
                },
                other => NotificationEvent::Informational {
                    what: format!("trade {other}"),
                },
            }
        }
        other => {
            if get("amount").is_some() {
                amount("amount")?;
            }
            NotificationEvent::Informational { what: other.to_string() }
        }
    };
    Ok(Notification { id, event })
}
