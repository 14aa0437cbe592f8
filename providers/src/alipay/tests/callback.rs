//! `verify_notification` on its own: what it accepts, and every way it refuses.

use super::harness::keys;
use crate::alipay::sign::{notification_content, request_content, sign_notification};
use crate::alipay::verify_notification;
use crate::crypto::rsa_sign;
use crate::notification::{CallbackError, NotificationEvent};
use tare_domain::Cents;

const ORDER: &str = "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b";
const ORDER_ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn trade(total: &str) -> Vec<(String, String)> {
    let k = keys();
    [
        ("notify_id", "ac05099524730693a8b330c5ecf72da9786"),
        ("notify_type", "trade_status_sync"),
        ("notify_time", "2026-12-02 00:30:05"),
        ("app_id", k.app.app_id.as_str()),
        ("seller_id", k.app.seller_id.as_str()),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("out_trade_no", ORDER),
        ("trade_no", "2026120222001000000000000001"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", total),
        ("subject", "可乐 & 薯片=2"),
        ("gmt_payment", "2026-12-02 00:30:04"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// Signed by the sandbox's Alipay key, by the rule.
fn signed(mut params: Vec<(String, String)>) -> Vec<u8> {
    let k = keys();
    sign_notification(k.alipay_private_key.as_ref().unwrap(), &mut params);
    serde_urlencoded::to_string(&params).unwrap().into_bytes()
}

#[test]
fn a_genuine_payment_notification_is_collected() {
    let n = verify_notification(&keys(), &signed(trade("0.10"))).unwrap();
    assert_eq!(n.id, "ac05099524730693a8b330c5ecf72da9786");
    assert_eq!(
        n.event,
        NotificationEvent::Collected {
            order_id: ORDER_ID.into(),
            transaction_id: "2026120222001000000000000001".into(),
            amount: Cents::new(10)
        }
    );
    let k = keys();
    let mut freeze: Vec<(String, String)> = [
        ("notify_id", "n2"),
        ("notify_type", "fund_auth_freeze"),
        ("notify_time", "2026-12-02 00:30:05"),
        ("app_id", k.app.app_id.as_str()),
        ("out_order_no", ORDER),
        ("auth_no", "2026120210000000000000001"),
        ("operation_type", "FREEZE"),
        ("status", "SUCCESS"),
        ("amount", "10.00"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let n = verify_notification(&k, &signed(freeze.clone())).unwrap();
    assert_eq!(n.event, NotificationEvent::Authorized { order_id: ORDER_ID.into() });
    freeze[1].1 = "fund_auth_unfreeze".into();
    let n = verify_notification(&k, &signed(freeze)).unwrap();
    assert_eq!(
        n.event,
        NotificationEvent::Informational {
            what: "fund_auth_unfreeze".into()
        }
    );
}

#[test]
fn forged_or_wrongly_signed_notifications_are_refused() {
    let k = keys();
    // Signed with a key that is not Alipay's.
    let mut forged = trade("0.10");
    sign_notification(&k.app_private_key, &mut forged);
    let body = serde_urlencoded::to_string(&forged).unwrap();
    assert_eq!(verify_notification(&k, body.as_bytes()), Err(CallbackError::BadSignature));
    // Signed by Alipay's key but with the request rule (sign_type inside the string).
    let mut wrong_rule = trade("0.10");
    wrong_rule.push(("sign_type".into(), "RSA2".into()));
    let content = request_content(wrong_rule.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    assert_ne!(
        content,
        notification_content(wrong_rule.iter().map(|(a, b)| (a.as_str(), b.as_str())))
    );
    wrong_rule.push(("sign".into(), rsa_sign(k.alipay_private_key.as_ref().unwrap(), content.as_bytes())));
    let body = serde_urlencoded::to_string(&wrong_rule).unwrap();
    assert_eq!(verify_notification(&k, body.as_bytes()), Err(CallbackError::BadSignature));
    // A tampered amount.
    let good = String::from_utf8(signed(trade("0.10"))).unwrap();
    let tampered = good.replace("total_amount=0.10", "total_amount=9.10");
    assert_eq!(verify_notification(&k, tampered.as_bytes()), Err(CallbackError::BadSignature));
    // Truncated anywhere: refused.
    for cut in [10, good.len() / 2, good.len() - 5] {
        assert!(verify_notification(&k, &good.as_bytes()[..cut]).is_err(), "cut at {cut}");
    }
    assert!(matches!(verify_notification(&k, b""), Err(CallbackError::Malformed(_))));
    // Another sign type.
    let other_type = good.replace("sign_type=RSA2", "sign_type=RSA");
    assert_eq!(verify_notification(&k, other_type.as_bytes()), Err(CallbackError::BadSignature));
}

#[test]
fn foreign_apps_and_bad_amounts_are_refused() {
    let k = keys();
    let mut foreign = trade("0.10");
    foreign[3].1 = "2021999999999999".into();
    assert!(matches!(
        verify_notification(&k, &signed(foreign)),
        Err(CallbackError::ForeignMerchant(_))
    ));
    let mut other_seller = trade("0.10");
    other_seller[4].1 = "2088999999999999".into();
    assert!(matches!(
        verify_notification(&k, &signed(other_seller)),
        Err(CallbackError::ForeignMerchant(_))
    ));
    for bad in ["1.5", "abc", "0.1", "-1.00", "1e2"] {
        assert!(
            matches!(verify_notification(&k, &signed(trade(bad))), Err(CallbackError::Amount(_))),
            "{bad}"
        );
    }
}
