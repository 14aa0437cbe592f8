//! Adapter ↔ sandbox over a real loopback HTTP server: the service order's life, its
//! idempotency, and the sandbox's behaviours as the adapter sees them.

use super::sign::authorization;
use super::test_support::{fast, harness, order_id};
use crate::notification::NotificationEvent;
use crate::sandbox::{now_ms, Behaviour, NotificationFaults, Sandbox};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tare_domain::order::OrderLine;
use tare_domain::{Cents, ConfirmMode};
use tare_sagas::ports::{AuthorizationRequest, CollectionOutcome, CollectionRequest, PaymentProvider, ProviderError, ProviderOrderStatus};

pub(super) fn auth(order_id: &str, shopper: &str, mode: ConfirmMode, limit: i64) -> AuthorizationRequest {
    AuthorizationRequest {
        order_id: order_id.into(),
        shopper_id: shopper.into(),
        confirm_mode: mode,
        limit: Cents::new(limit),
    }
}

pub(super) fn collection(order_id: &str, amount: i64) -> CollectionRequest {
    let line: OrderLine = serde_json::from_value(serde_json::json!({
        "lane": 1, "sku": "cola", "name": "Cola", "qty": 2, "unit_price": amount / 2 + 10
    }))
    .expect("an order line");
    CollectionRequest {
        order_id: order_id.into(),
        provider_order_ref: crate::refs::out_order_no(order_id),
        amount: Cents::new(amount),
        lines: vec![line],
        discount: Cents::new(20 + amount % 2),
    }
}

fn authorized(id: &str) -> impl Fn(&[crate::notification::Notification]) -> bool + '_ {
    move |got| got.iter().any(|n| n.event == NotificationEvent::Authorized { order_id: id.into() })
}

fn collected(id: &str) -> impl Fn(&[crate::notification::Notification]) -> bool + '_ {
    move |got| {
        got.iter()
            .any(|n| matches!(&n.event, NotificationEvent::Collected { order_id, .. } if order_id == id))
    }
}

#[tokio::test]
async fn confirm_each_time_from_create_to_paid() {
    let h = harness(fast()).await;
    let id = order_id();
    let created = h
        .adapter
        .create_authorization(auth(&id, "shopper-1", ConfirmMode::EachTime, 1000))
        .await
        .unwrap();
    assert!(!created.authorized);
    assert_eq!(created.provider_order_ref, crate::refs::out_order_no(&id));
    let url = created.confirm_url.expect("a confirm URL");
    assert_eq!(
        url,
        format!("{}/sandbox/wechat/authorizations/{}/confirm", h.base, created.provider_order_ref)
    );
    assert_eq!(h.adapter.query(&id).await.unwrap(), ProviderOrderStatus::AwaitingConfirmation);
    // Completing before the shopper confirmed is refused.
    assert!(matches!(
        h.adapter.collect(collection(&id, 250)).await,
        Ok(CollectionOutcome::Failed { .. })
    ));

    let http = reqwest::Client::new();
    assert_eq!(http.post(&url).send().await.unwrap().status(), 204);
    assert_eq!(http.post(&url).send().await.unwrap().status(), 409);
    let unknown = format!("{}/sandbox/wechat/authorizations/nope/confirm", h.base);
    assert_eq!(http.post(&unknown).send().await.unwrap().status(), 404);
    h.wait_for(authorized(&id)).await;
    assert_eq!(h.adapter.query(&id).await.unwrap(), ProviderOrderStatus::Authorized);

    assert_eq!(h.adapter.collect(collection(&id, 250)).await.unwrap(), CollectionOutcome::Pending);
    let got = h.wait_for(collected(&id)).await;
    let Some(NotificationEvent::Collected {
        transaction_id, amount, ..
    }) = got
        .iter()
        .map(|n| n.event.clone())
        .find(|e| matches!(e, NotificationEvent::Collected { .. }))
    else {
        unreachable!()
    };
    assert_eq!(amount, Cents::new(250));
    let charges = h.sandbox.charges();
    assert_eq!(charges.len(), 1, "exactly one charge");
    assert_eq!((charges[0].order_id.as_str(), charges[0].amount), (id.as_str(), Cents::new(250)));
    assert_eq!(charges[0].transaction_id, transaction_id);
    let paid = ProviderOrderStatus::Collected {
        transaction_id: transaction_id.clone(),
        amount: Cents::new(250),
    };
    assert_eq!(h.adapter.query(&id).await.unwrap(), paid);

    // Complete only once: the same amount answers the paid order, another is refused.
    assert_eq!(
        h.adapter.collect(collection(&id, 250)).await.unwrap(),
        CollectionOutcome::Collected {
            transaction_id,
            amount: Cents::new(250)
        }
    );
    assert!(matches!(
        h.adapter.collect(collection(&id, 251)).await,
        Ok(CollectionOutcome::Failed { .. })
    ));
    assert_eq!(h.sandbox.charges().len(), 1, "never charged twice");
    // A paid order cannot be cancelled.
    assert!(matches!(h.adapter.cancel(&id, "late").await, Err(ProviderError::Refused { code, .. }) if code == "ORDER_DONE"));
}

#[tokio::test]
async fn confirm_once_is_authorized_at_create() {
    let h = harness(fast()).await;
    let id = order_id();
    let created = h
        .adapter
        .create_authorization(auth(&id, "shopper-2", ConfirmMode::Once, 1000))
        .await
        .unwrap();
    assert!(created.authorized);
    assert_eq!(created.confirm_url, None);
    assert_eq!(h.adapter.query(&id).await.unwrap(), ProviderOrderStatus::Authorized);
    assert_eq!(
        h.sandbox.confirm(&created.provider_order_ref),
        Err(crate::sandbox::ConfirmError::NotAwaiting)
    );
    assert_eq!(h.adapter.collect(collection(&id, 999)).await.unwrap(), CollectionOutcome::Pending);
    h.wait_for(collected(&id)).await;
    assert_eq!(h.sandbox.charges()[0].amount, Cents::new(999));
    // Over the limit is refused (a new order).
    let over = order_id();
    h.adapter
        .create_authorization(auth(&over, "shopper-2b", ConfirmMode::Once, 100))
        .await
        .unwrap();
    assert!(matches!(
        h.adapter.collect(collection(&over, 101)).await,
        Ok(CollectionOutcome::Failed { .. })
    ));
}

#[tokio::test]
async fn create_is_idempotent_and_different_parameters_are_refused() {
    let h = harness(fast()).await;
    let id = order_id();
    let first = h
        .adapter
        .create_authorization(auth(&id, "s", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    let again = h
        .adapter
        .create_authorization(auth(&id, "s", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    assert_eq!(first, again);
    let other = h.adapter.create_authorization(auth(&id, "s", ConfirmMode::EachTime, 501)).await;
    assert!(
        matches!(other, Err(ProviderError::Refused { ref code, .. }) if code == "INVALID_REQUEST"),
        "{other:?}"
    );
}

#[tokio::test]
async fn cancel_revokes_and_is_idempotent() {
    let h = harness(fast()).await;
    let id = order_id();
    let created = h
        .adapter
        .create_authorization(auth(&id, "s", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    h.adapter.cancel(&id, "door never opened").await.unwrap();
    assert_eq!(h.adapter.query(&id).await.unwrap(), ProviderOrderStatus::Cancelled);
    h.adapter.cancel(&id, "door never opened").await.unwrap();
    assert_eq!(
        h.sandbox.confirm(&created.provider_order_ref),
        Err(crate::sandbox::ConfirmError::NotAwaiting)
    );
    h.adapter.cancel(&order_id(), "never created").await.unwrap();
    assert_eq!(h.adapter.query(&order_id()).await.unwrap(), ProviderOrderStatus::NotFound);
}

#[tokio::test]
async fn requests_with_a_bad_signature_are_refused() {
    let h = harness(fast()).await;
    let url = format!("{}/sandbox/wechat/v3/payscore/serviceorder", h.base);
    let body = br#"{"out_order_no":"x"}"#;
    let http = reqwest::Client::new();
    let signed_other = authorization(&h.keys, "POST", "/sandbox/wechat/v3/payscore/serviceorder", b"{}", now_ms() / 1000);
    let unmounted = authorization(&h.keys, "POST", "/v3/payscore/serviceorder", body, now_ms() / 1000);
    let stale = authorization(
        &h.keys,
        "POST",
        "/sandbox/wechat/v3/payscore/serviceorder",
        body,
        now_ms() / 1000 - 301,
    );
    for header in [Some(signed_other), Some(unmounted), Some(stale), None] {
        let mut req = http.post(&url).body(body.to_vec());
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("Wechatpay-Signature"), "error answers are signed too");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], "SIGN_ERROR");
    }
    let mut foreign = h.keys.clone();
    foreign.merchant.mchid = "1900000000".into();
    let r = http
        .post(&url)
        .header(
            "Authorization",
            authorization(&foreign, "POST", "/sandbox/wechat/v3/payscore/serviceorder", body, now_ms() / 1000),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A correctly signed garbage body gets past the signature check.
    let good = authorization(&h.keys, "POST", "/sandbox/wechat/v3/payscore/serviceorder", body, now_ms() / 1000);
    let r = http
        .post(&url)
        .header("Authorization", good)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn answers_that_do_not_verify_or_come_too_late_are_unavailable() {
    let h = harness(fast()).await;
    let mut wrong = h.keys.clone();
    wrong.platform_public_key = wrong.merchant_public_key.clone();
    let adapter = super::WechatAdapter::new(&format!("{}/sandbox/wechat", h.base), wrong, "http://x/cb", Duration::from_secs(2));
    let r = adapter.query(&order_id()).await;
    assert!(matches!(r, Err(ProviderError::Unavailable(_))), "{r:?}");
    h.sandbox.set_behaviour(Behaviour {
        slow_answers: Duration::from_millis(400),
        ..fast()
    });
    let impatient = super::WechatAdapter::new(
        &format!("{}/sandbox/wechat", h.base),
        h.keys.clone(),
        "http://x/cb",
        Duration::from_millis(100),
    );
    let r = impatient.query(&order_id()).await;
    assert!(matches!(r, Err(ProviderError::Unavailable(_))), "{r:?}");
}

#[tokio::test]
async fn system_errors_are_unavailable_and_apply_nothing() {
    let h = harness(Behaviour {
        system_errors: 1,
        ..fast()
    })
    .await;
    let id = order_id();
    let r = h.adapter.create_authorization(auth(&id, "s", ConfirmMode::Once, 500)).await;
    assert!(matches!(r, Err(ProviderError::Unavailable(_))), "{r:?}");
    assert_eq!(
        h.adapter.query(&id).await.unwrap(),
        ProviderOrderStatus::NotFound,
        "the failed create did nothing"
    );
    assert!(
        h.adapter
            .create_authorization(auth(&id, "s", ConfirmMode::Once, 500))
            .await
            .unwrap()
            .authorized
    );
}

#[tokio::test]
async fn risk_rules_refuse_creates() {
    let h = harness(Behaviour {
        max_pending_per_shopper: 1,
        ..fast()
    })
    .await;
    h.adapter
        .create_authorization(auth(&order_id(), "busy", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    let r = h
        .adapter
        .create_authorization(auth(&order_id(), "busy", ConfirmMode::EachTime, 500))
        .await;
    assert!(
        matches!(r, Err(ProviderError::Refused { ref code, .. }) if code == "INVALID_REQUEST"),
        "{r:?}"
    );
    h.adapter
        .create_authorization(auth(&order_id(), "other", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    h.sandbox.set_behaviour(Behaviour {
        reject_risk: true,
        ..fast()
    });
    let r = h
        .adapter
        .create_authorization(auth(&order_id(), "fresh", ConfirmMode::Once, 500))
        .await;
    assert!(matches!(r, Err(ProviderError::Refused { .. })), "{r:?}");
}

#[tokio::test]
async fn failed_deductions_are_retried_until_paid() {
    let h = harness(Behaviour {
        fail_collections: 3,
        deduction_schedule: vec![Duration::from_millis(150)],
        ..fast()
    })
    .await;
    let id = order_id();
    h.adapter
        .create_authorization(auth(&id, "poor", ConfirmMode::Once, 500))
        .await
        .unwrap();
    assert_eq!(h.adapter.collect(collection(&id, 300)).await.unwrap(), CollectionOutcome::Pending);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.adapter.query(&id).await.unwrap(), ProviderOrderStatus::Collecting);
    assert!(h.sandbox.charges().is_empty());
    h.wait_for(collected(&id)).await;
    assert_eq!(h.sandbox.charges().len(), 1);
}

#[tokio::test]
async fn notifications_are_resent_until_acknowledged() {
    let h = harness(fast()).await;
    h.recorder.fail_next.store(1, Ordering::SeqCst);
    let id = order_id();
    let created = h
        .adapter
        .create_authorization(auth(&id, "s", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    h.sandbox.confirm(&created.provider_order_ref).unwrap();
    let got = h.wait_for(authorized(&id)).await;
    let deliveries = h.recorder.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2, "refused once, then accepted");
    assert_eq!(deliveries[0], deliveries[1], "the same id on every resend");
    assert_eq!(got[0].id, deliveries[0]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.recorder.deliveries.lock().unwrap().len(), 2, "nothing after the acknowledgement");
}

#[tokio::test]
async fn duplicated_reordered_and_dropped_notifications() {
    let faults = |f: NotificationFaults| Behaviour {
        notifications: f,
        ..fast()
    };
    let h = harness(faults(NotificationFaults {
        duplicate: true,
        ..Default::default()
    }))
    .await;
    let id = order_id();
    let created = h
        .adapter
        .create_authorization(auth(&id, "s", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    h.sandbox.confirm(&created.provider_order_ref).unwrap();
    let got = h.wait_for(|g| g.len() == 2).await;
    assert_eq!(got[0], got[1], "the same notification twice");

    // Reorder: the first is held back until the second has gone.
    h.sandbox.set_behaviour(faults(NotificationFaults {
        reorder: true,
        ..Default::default()
    }));
    let id = order_id();
    h.adapter
        .create_authorization(auth(&id, "r", ConfirmMode::Once, 500))
        .await
        .unwrap();
    let created = h
        .adapter
        .create_authorization(auth(&order_id(), "r2", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    h.sandbox.confirm(&created.provider_order_ref).unwrap();
    h.adapter.collect(collection(&id, 100)).await.unwrap();
    let got = h.wait_for(|g| g.len() == 4).await;
    assert!(matches!(got[2].event, NotificationEvent::Collected { .. }), "{got:?}");
    assert!(matches!(got[3].event, NotificationEvent::Authorized { .. }), "{got:?}");

    h.sandbox.set_behaviour(faults(NotificationFaults {
        drop: true,
        ..Default::default()
    }));
    let created = h
        .adapter
        .create_authorization(auth(&order_id(), "d", ConfirmMode::EachTime, 500))
        .await
        .unwrap();
    h.sandbox.confirm(&created.provider_order_ref).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.recorder.got.lock().unwrap().len(), 4, "dropped");
}

/// A signed raw call to the sandbox: (status, JSON answer).
async fn raw(h: &super::test_support::Harness, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let full = format!("/sandbox/wechat{path}");
    let body = body.to_string();
    let r = reqwest::Client::new()
        .post(format!("{}{full}", h.base))
        .header(
            "Authorization",
            authorization(&h.keys, "POST", &full, body.as_bytes(), now_ms() / 1000),
        )
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn modify_goes_down_once_and_pay_deducts_now() {
    let h = harness(Behaviour {
        fail_collections: 1,
        deduction_schedule: vec![Duration::from_secs(60)],
        ..fast()
    })
    .await;
    let id = order_id();
    let no = crate::refs::out_order_no(&id);
    h.adapter
        .create_authorization(auth(&id, "m", ConfirmMode::Once, 500))
        .await
        .unwrap();
    h.adapter.collect(collection(&id, 300)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (appid, service_id) = (h.keys.merchant.appid.clone(), h.keys.merchant.service_id.clone());
    let modify = |total: i64| {
        serde_json::json!({"appid": appid, "service_id": service_id, "reason": "weighed again",
            "post_payments": [{"name": "Cola", "amount": total, "count": 1}], "total_amount": total})
    };
    let (status, _) = raw(&h, &format!("/v3/payscore/serviceorder/{no}/modify"), modify(400)).await;
    assert_eq!(status, 400, "never upward");
    let (status, v) = raw(&h, &format!("/v3/payscore/serviceorder/{no}/modify"), modify(200)).await;
    assert_eq!((status, v["total_amount"].as_i64()), (200, Some(200)));
    let (status, v) = raw(&h, &format!("/v3/payscore/serviceorder/{no}/modify"), modify(100)).await;
    assert_eq!((status, v["code"].as_str()), (400, Some("INVALID_REQUEST")), "only once");
    assert!(h.sandbox.charges().is_empty(), "the first deduction failed");
    let pay = serde_json::json!({"appid": h.keys.merchant.appid, "service_id": h.keys.merchant.service_id});
    let (status, v) = raw(&h, &format!("/v3/payscore/serviceorder/{no}/pay"), pay.clone()).await;
    assert_eq!((status, v["state"].as_str()), (200, Some("DONE")));
    assert_eq!(h.sandbox.charges()[0].amount, Cents::new(200));
    let (status, v) = raw(&h, &format!("/v3/payscore/serviceorder/{no}/pay"), pay).await;
    assert_eq!((status, v["code"].as_str()), (400, Some("ORDER_DONE")));
    h.wait_for(collected(&id)).await;
}
