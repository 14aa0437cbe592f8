//! The platform's side of WeChat's notifications [PAYMENTS.md §1.6, §1.7, §1.8]:
//! [`verify_notification`] checks the platform key's signature over the exact body, the
//! timestamp, decrypts the resource with the APIv3 key, checks it is ours and says what
//! it means. The answer to WeChat is [`callback_ack_ok`] (204) or [`callback_ack_fail`]
//! (401 `{"code":"FAIL"}`); anything but 200/204 makes WeChat send it again.
//!
//! Refund notifications name only the deduction and `out_refund_no`, so our order id
//! travels inside `out_refund_no` ([`refund_no`]): a verified notification maps back to
//! the order without any lookup.

use super::sign::{verify_response, SignError};
use super::wire::{Envelope, RefundResource, ServiceOrder};
use crate::crypto::aes_gcm_decrypt;
use crate::keys::WechatKeys;
use crate::money::from_fen;
use crate::notification::{CallbackError, Notification, NotificationEvent};
use crate::refs::{order_id_of, out_order_no};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tare_domain::UnixMs;

/// The `out_refund_no` of refund `refund_id` of order `order_id`: both UUIDs' 32 hex
/// digits back to back (64, WeChat's limit), otherwise `{order}*{refund}`; a refund id
/// too long or outside `[0-9A-Za-z_-|*@]` is sent alone (the order is then mapped from the
/// deduction's trade number).
pub fn refund_no(order_id: &str, refund_id: &str) -> String {
    let (o, r) = (out_order_no(order_id), out_order_no(refund_id));
    let hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex32(&o) && hex32(&r) {
        return format!("{o}{r}");
    }
    let allowed = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|@".contains(&b));
    if allowed(&o) && allowed(&r) && o.len() + 1 + r.len() <= 64 {
        return format!("{o}*{r}");
    }
    r
}

/// The inverse of [`refund_no`]: (our order id if it is in there, our refund id).
pub fn split_refund_no(no: &str) -> (Option<String>, String) {
    if let Some((o, r)) = no.split_once('*') {
        return (Some(order_id_of(o)), order_id_of(r));
    }
    if no.len() == 64 && no.bytes().all(|b| b.is_ascii_hexdigit()) {
        let (o, r) = no.split_at(32);
        return (Some(order_id_of(o)), order_id_of(r));
    }
    (None, order_id_of(no))
}

/// The answer to a notification the platform accepted (WeChat counts 200 and 204).
pub fn callback_ack_ok() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The answer to a notification the platform refused (WeChat sends it again).
pub fn callback_ack_fail(message: &str) -> Response {
    let body = serde_json::json!({"code": "FAIL", "message": message});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// Verifies a WeChat notification and says what it means (see the module doc). `now_ms`
/// is the platform's clock.
pub fn verify_notification(keys: &WechatKeys, headers: &HeaderMap, body: &[u8], now_ms: UnixMs) -> Result<Notification, CallbackError> {
    verify_response(&keys.platform_public_key, &keys.platform.serial_no, headers, body, now_ms).map_err(|e| match e {
        SignError::Malformed(h) => CallbackError::Malformed(h),
        SignError::Stale => CallbackError::Stale,
        SignError::Signer(_) | SignError::BadSignature => CallbackError::BadSignature,
    })?;
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
    let r = &envelope.resource;
    if r.algorithm != "AEAD_AES_256_GCM" {
        return Err(CallbackError::Malformed(format!("algorithm {}", r.algorithm)));
    }
    let plain = aes_gcm_decrypt(
        keys.apiv3_key.bytes(),
        r.nonce.as_bytes(),
        r.associated_data.as_bytes(),
        &r.ciphertext,
    )
    .map_err(|_| CallbackError::Decrypt)?;
    let event = match envelope.event_type.as_str() {
        "PAYSCORE.USER_CONFIRM" | "PAYSCORE.USER_PAID" => order_event(keys, &envelope.event_type, &plain)?,
        t if t.starts_with("REFUND.") => refund_event(keys, t, &plain)?,
        other => NotificationEvent::Informational { what: other.to_string() },
    };
    Ok(Notification { id: envelope.id, event })
}

fn order_event(keys: &WechatKeys, event_type: &str, plain: &[u8]) -> Result<NotificationEvent, CallbackError> {
    let order: ServiceOrder = serde_json::from_slice(plain).map_err(|e| CallbackError::Malformed(e.to_string()))?;
    let m = &keys.merchant;
    if order.mchid != m.mchid || order.appid != m.appid || order.service_id != m.service_id {
        return Err(CallbackError::ForeignMerchant(format!(
            "{}/{}/{}",
            order.mchid, order.appid, order.service_id
        )));
    }
    let order_id = order_id_of(&order.out_order_no);
    if event_type == "PAYSCORE.USER_CONFIRM" {
        return Ok(NotificationEvent::Authorized { order_id });
    }
    let collection = order
        .collection
        .ok_or_else(|| CallbackError::Malformed("USER_PAID without collection".into()))?;
    let transaction_id = collection
        .details
        .iter()
        .rev()
        .find_map(|d| d.transaction_id.clone())
        .ok_or_else(|| CallbackError::Malformed("USER_PAID without transaction_id".into()))?;
    let amount = from_fen(collection.paid_amount).map_err(|e| CallbackError::Amount(e.to_string()))?;
    if collection.paid_amount != collection.total_amount {
        return Err(CallbackError::Amount(format!(
            "paid {} of {}",
            collection.paid_amount, collection.total_amount
        )));
    }
    Ok(NotificationEvent::Collected {
        order_id,
        transaction_id,
        amount,
    })
}

fn refund_event(keys: &WechatKeys, event_type: &str, plain: &[u8]) -> Result<NotificationEvent, CallbackError> {
    let refund: RefundResource = serde_json::from_slice(plain).map_err(|e| CallbackError::Malformed(e.to_string()))?;
    if refund.mchid != keys.merchant.mchid {
        return Err(CallbackError::ForeignMerchant(refund.mchid));
    }
    let (order, refund_id) = split_refund_no(&refund.out_refund_no);
    let order_id = order.unwrap_or_else(|| order_id_of(&refund.out_trade_no));
    let amount = from_fen(refund.amount.refund).map_err(|e| CallbackError::Amount(e.to_string()))?;
    if refund.amount.refund == 0 || refund.amount.refund > refund.amount.total {
        return Err(CallbackError::Amount(format!(
            "refund {} of {}",
            refund.amount.refund, refund.amount.total
        )));
    }
    Ok(match event_type {
        "REFUND.SUCCESS" => NotificationEvent::RefundSucceeded {
            order_id,
            refund_id,
            provider_refund_id: refund.refund_id,
            amount,
        },
        "REFUND.CLOSED" => NotificationEvent::RefundFailed {
            order_id,
            refund_id,
            reason: "CLOSED".into(),
        },
        other => NotificationEvent::Informational { what: other.to_string() },
    })
}
