//! `verify_notification` refuses everything that is not a genuine notification for us.

use super::sign::sign_response;
use super::test_support::wechat_keys;
use super::verify_notification;
use super::wire::{encrypt_resource, Envelope};
use crate::keys::WechatKeys;
use crate::notification::{CallbackError, NotificationEvent};
use crate::sandbox::now_ms;
use axum::http::{HeaderMap, HeaderValue};
use tare_domain::Cents;

const OUT: &str = "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b";
const ORDER: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn order(keys: &WechatKeys, paid: i64) -> serde_json::Value {
    serde_json::json!({
        "appid": keys.merchant.appid, "mchid": keys.merchant.mchid, "service_id": keys.merchant.service_id,
        "out_order_no": OUT, "state": "DONE", "order_id": "1000",
        "collection": {"state": "USER_PAID", "total_amount": paid, "paying_amount": 0, "paid_amount": paid,
            "details": [{"seq": 1, "amount": paid, "paid_type": "NEWTON", "paid_time": "20261202003000", "transaction_id": "4200X"}]}
    })
}

/// A notification as WeChat sends it: (headers, body).
fn notification(keys: &WechatKeys, event_type: &str, resource: &serde_json::Value, ts: i64) -> (HeaderMap, Vec<u8>) {
    let plain = serde_json::to_vec(resource).unwrap();
    let envelope = Envelope {
        id: "EV-1".into(),
        create_time: "2026-12-02T00:30:00+08:00".into(),
        event_type: event_type.into(),
        resource_type: "encrypt-resource".into(),
        summary: "s".into(),
        resource: encrypt_resource(&keys.apiv3_key, "payscore", &plain),
    };
    let body = serde_json::to_vec(&envelope).unwrap();
    let mut headers = HeaderMap::new();
    sign_response(
        keys.platform_private_key.as_ref().unwrap(),
        &keys.platform.serial_no,
        &body,
        ts,
        &mut headers,
    );
    (headers, body)
}

#[test]
fn genuine_notifications_say_what_happened() {
    let keys = wechat_keys();
    let now = now_ms();
    let (h, b) = notification(&keys, "PAYSCORE.USER_PAID", &order(&keys, 250), now / 1000);
    let n = verify_notification(&keys, &h, &b, now).unwrap();
    assert_eq!(n.id, "EV-1");
    assert_eq!(
        n.event,
        NotificationEvent::Collected {
            order_id: ORDER.into(),
            transaction_id: "4200X".into(),
            amount: Cents::new(250)
        }
    );
    let (h, b) = notification(&keys, "PAYSCORE.USER_CONFIRM", &order(&keys, 0), now / 1000);
    assert_eq!(
        verify_notification(&keys, &h, &b, now).unwrap().event,
        NotificationEvent::Authorized { order_id: ORDER.into() }
    );
    let refund = serde_json::json!({"mchid": keys.merchant.mchid, "out_trade_no": OUT, "transaction_id": "4200X",
        "out_refund_no": super::refund_no(ORDER, "r-1"), "refund_id": "5030", "refund_status": "CLOSED",
        "amount": {"total": 250, "refund": 100, "payer_total": 250, "payer_refund": 100}});
    let (h, b) = notification(&keys, "REFUND.CLOSED", &refund, now / 1000);
    assert_eq!(
        verify_notification(&keys, &h, &b, now).unwrap().event,
        NotificationEvent::RefundFailed {
            order_id: ORDER.into(),
            refund_id: "r-1".into(),
            reason: "CLOSED".into()
        }
    );
    let (h, b) = notification(&keys, "REFUND.ABNORMAL", &refund, now / 1000);
    assert!(matches!(
        verify_notification(&keys, &h, &b, now).unwrap().event,
        NotificationEvent::Informational { .. }
    ));
}

#[test]
fn forgeries_replays_and_foreign_notifications_are_refused() {
    let keys = wechat_keys();
    let now = now_ms();
    let paid = order(&keys, 250);
    let check = |h: &HeaderMap, b: &[u8]| verify_notification(&keys, h, b, now);

    // Signed by someone else (the merchant's own key).
    let mut forger = keys.clone();
    forger.platform_private_key = Some(keys.merchant_private_key.clone());
    let (h, b) = notification(&forger, "PAYSCORE.USER_PAID", &paid, now / 1000);
    assert_eq!(check(&h, &b), Err(CallbackError::BadSignature));
    // Tampered body.
    let (h, mut b) = notification(&keys, "PAYSCORE.USER_PAID", &paid, now / 1000);
    b[2] ^= 1;
    assert!(check(&h, &b).is_err());
    // Another serial.
    let (mut h, b) = notification(&keys, "PAYSCORE.USER_PAID", &paid, now / 1000);
    h.insert("Wechatpay-Serial", HeaderValue::from_static("PUB_KEY_ID_OTHER"));
    assert_eq!(check(&h, &b), Err(CallbackError::BadSignature));
    // Stale, future and absurd timestamps.
    for ts in [now / 1000 - 301, now / 1000 + 301, i64::MIN, i64::MAX] {
        let (h, b) = notification(&keys, "PAYSCORE.USER_PAID", &paid, ts);
        assert_eq!(check(&h, &b), Err(CallbackError::Stale), "{ts}");
    }
    // Missing headers.
    let (mut h, b) = notification(&keys, "PAYSCORE.USER_PAID", &paid, now / 1000);
    h.remove("Wechatpay-Nonce");
    assert!(matches!(check(&h, &b), Err(CallbackError::Malformed(_))));
}

/// Re-signs a modified envelope properly, so only the resource is wrong.
fn resigned(keys: &WechatKeys, envelope: &Envelope) -> (HeaderMap, Vec<u8>) {
    let body = serde_json::to_vec(envelope).unwrap();
    let mut h = HeaderMap::new();
    sign_response(
        keys.platform_private_key.as_ref().unwrap(),
        &keys.platform.serial_no,
        &body,
        now_ms() / 1000,
        &mut h,
    );
    (h, body)
}

#[test]
fn resources_that_do_not_decrypt_or_are_not_ours_are_refused() {
    let keys = wechat_keys();
    let now = now_ms();
    let (_, b) = notification(&keys, "PAYSCORE.USER_PAID", &order(&keys, 250), now / 1000);
    let envelope: Envelope = serde_json::from_slice(&b).unwrap();

    let mut truncated = envelope.clone();
    truncated.resource.ciphertext.truncate(40);
    let (h, b) = resigned(&keys, &truncated);
    assert_eq!(verify_notification(&keys, &h, &b, now), Err(CallbackError::Decrypt));

    let mut other_key = keys.clone();
    let mut wrong = serde_json::to_value(&envelope).unwrap();
    let plain = serde_json::to_vec(&order(&keys, 250)).unwrap();
    let alien: crate::keys::ProviderKeys = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wechat")).unwrap();
        std::fs::write(dir.path().join("wechat/apiv3_key"), "0123456789abcdef0123456789abcdef").unwrap();
        // Only the APIv3 key matters here: reuse the run's keys around it.
        let (src, _) = super::test_support::keys();
        for f in [
            "merchant_private_key.pem",
            "merchant_public_key.pem",
            "merchant.json",
            "platform_public_key.pem",
            "platform.json",
        ] {
            std::fs::copy(src.join("wechat").join(f), dir.path().join("wechat").join(f)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("alipay")).unwrap();
        for f in ["app_private_key.pem", "app_public_key.pem", "app.json", "alipay_public_key.pem"] {
            std::fs::copy(src.join("alipay").join(f), dir.path().join("alipay").join(f)).unwrap();
        }
        crate::keys::ProviderKeys::load(dir.path()).unwrap()
    };
    other_key.apiv3_key = alien.wechat.apiv3_key;
    wrong["resource"] = serde_json::to_value(encrypt_resource(&other_key.apiv3_key, "payscore", &plain)).unwrap();
    let (h, b) = resigned(&keys, &serde_json::from_value(wrong).unwrap());
    assert_eq!(verify_notification(&keys, &h, &b, now), Err(CallbackError::Decrypt));

    let mut foreign = order(&keys, 250);
    foreign["mchid"] = "1900000000".into();
    let (h, b) = notification(&keys, "PAYSCORE.USER_PAID", &foreign, now / 1000);
    assert!(matches!(
        verify_notification(&keys, &h, &b, now),
        Err(CallbackError::ForeignMerchant(_))
    ));
    let mut foreign = order(&keys, 250);
    foreign["appid"] = "wx0000".into();
    let (h, b) = notification(&keys, "PAYSCORE.USER_CONFIRM", &foreign, now / 1000);
    assert!(matches!(
        verify_notification(&keys, &h, &b, now),
        Err(CallbackError::ForeignMerchant(_))
    ));

    let (h, b) = notification(&keys, "PAYSCORE.USER_PAID", &order(&keys, -5), now / 1000);
    assert!(matches!(verify_notification(&keys, &h, &b, now), Err(CallbackError::Amount(_))));
}

#[test]
fn refund_numbers_carry_the_order_and_fit_wechat() {
    let (o, r) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let no = super::refund_no(&o, &r);
    assert_eq!(no.len(), 64);
    assert_eq!(super::callback::split_refund_no(&no), (Some(o.clone()), r.clone()));
    let no = super::refund_no(&o, "r-2");
    assert!(no.len() <= 64);
    assert_eq!(super::callback::split_refund_no(&no), (Some(o), "r-2".into()));
}
