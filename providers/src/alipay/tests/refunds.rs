//! Refunds, the bill, and the gateway's signatures, over loopback HTTP.

use super::flows::{auth, collection};
use super::harness::{order_id, Env};
use crate::alipay::client::Client;
use crate::alipay::wire;
use crate::keys::AlipayKeys;
use crate::refs::out_order_no;
use crate::sandbox::{china_date, now_ms, Sandbox};
use serde_json::json;
use std::time::Duration;
use tare_domain::{Cents, ConfirmMode};
use tare_sagas::ports::{BillLineKind, CollectionOutcome, PaymentProvider, ProviderError, RefundOutcome, RefundRequest};

fn refund(order: &str, refund_id: &str, transaction_id: &str, amount: i64) -> RefundRequest {
    RefundRequest {
        order_id: order.into(),
        refund_id: refund_id.into(),
        transaction_id: transaction_id.into(),
        amount: Cents::new(amount),
        charged: Cents::new(500),
        reason: "一瓶没拿".into(),
    }
}

async fn collected(env: &Env, amount: i64) -> (String, String) {
    let order = order_id();
    env.adapter
        .create_authorization(auth(&order, ConfirmMode::Once, 1000))
        .await
        .unwrap();
    let CollectionOutcome::Collected { transaction_id, .. } = env.adapter.collect(collection(&order, amount)).await.unwrap() else {
        panic!("not collected");
    };
    (order, transaction_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_synchronous_once_per_request_no_and_never_exceed_the_payment() {
    let env = Env::start(Env::quick()).await;
    let (order, trade_no) = collected(&env, 500).await;
    let r1 = order_id();
    let first = env.adapter.refund(refund(&order, &r1, &trade_no, 200)).await.unwrap();
    assert!(matches!(first, RefundOutcome::Succeeded { .. }), "{first:?}");
    assert_eq!(env.adapter.refund(refund(&order, &r1, &trade_no, 200)).await.unwrap(), first);
    // The repeat is answered fund_change N, straight from the gateway.
    let client = Client::new(&env.gateway(), env.keys.clone(), "", Duration::from_secs(5));
    let biz = json!({"out_trade_no": out_order_no(&order), "refund_amount": "2.00", "out_request_no": out_order_no(&r1)});
    let again = client.call(wire::TRADE_REFUND, biz, false).await.unwrap();
    assert_eq!(
        (again.code.as_str(), again.str("fund_change"), again.str("refund_fee")),
        ("10000", Some("N"), Some("2.00"))
    );
    assert_eq!(
        env.sandbox.calls().iter().rfind(|(m, _)| m == wire::TRADE_REFUND).unwrap().1["refund_amount"],
        "2.00"
    );

    let over = env.adapter.refund(refund(&order, &order_id(), &trade_no, 301)).await.unwrap();
    assert_eq!(
        over,
        RefundOutcome::Failed {
            reason: "ACQ.REASON_TRADE_REFUND_FEE_ERR".into()
        }
    );
    let refunds = env.sandbox.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (refunds[0].order_id.as_str(), refunds[0].refund_id.as_str(), refunds[0].amount),
        (order.as_str(), r1.as_str(), Cents::new(200))
    );
    // A refund without out_request_no must be the whole amount.
    let partial = client
        .call(
            wire::TRADE_REFUND,
            json!({"out_trade_no": out_order_no(&order), "refund_amount": "1.00"}),
            false,
        )
        .await
        .unwrap();
    assert_eq!(partial.sub_code.as_deref(), Some("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"));

    assert_eq!(env.adapter.refund_status(&order, &r1).await.unwrap(), first);
    assert_eq!(
        env.adapter.refund_status(&order, "never").await.unwrap(),
        RefundOutcome::Failed {
            reason: "not_found".into()
        }
    );
    assert_eq!(
        env.adapter.refund_status(&order_id(), "never").await.unwrap(),
        RefundOutcome::Failed {
            reason: "not_found".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_with_system_errors_are_resolved_by_the_refund_query() {
    let env = Env::start(Env::quick()).await;
    let (order, trade_no) = collected(&env, 500).await;
    env.sandbox.set_behaviour(crate::sandbox::Behaviour {
        system_errors: 2,
        ..Env::quick()
    });
    let r = order_id();
    let outcome = env.adapter.refund(refund(&order, &r, &trade_no, 500)).await.unwrap();
    assert!(matches!(outcome, RefundOutcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(env.sandbox.refunds().len(), 1);
    assert!(env.sandbox.calls().iter().any(|(m, _)| m == wire::REFUND_QUERY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_days_bill_equals_the_ledger() {
    let env = Env::start(Env::quick()).await;
    let (a, ta) = collected(&env, 350).await;
    let (_b, _) = collected(&env, 10).await;
    let ra = order_id();
    env.adapter.refund(refund(&a, &ra, &ta, 50)).await.unwrap();
    let today = china_date(now_ms());
    let mut lines = env.adapter.bill(&today).await.unwrap();
    let mut expected: Vec<(String, String, BillLineKind, Cents)> = env
        .sandbox
        .charges()
        .into_iter()
        .map(|c| (c.order_id, c.transaction_id, BillLineKind::Charge, c.amount))
        .chain(
            env.sandbox
                .refunds()
                .into_iter()
                .map(|r| (r.order_id, ta.clone(), BillLineKind::Refund { refund_id: r.refund_id }, r.amount)),
        )
        .collect();
    let mut got: Vec<_> = lines.drain(..).map(|l| (l.order_id, l.transaction_id, l.kind, l.amount)).collect();
    expected.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    got.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    assert_eq!(got, expected);
    assert_eq!(got.len(), 3);
    assert!(env.adapter.bill("2000-01-01").await.unwrap().is_empty());
    let bad = env.adapter.bill("yesterday").await;
    assert!(matches!(bad, Err(ProviderError::Refused { .. })), "{bad:?}");
}

/// The test keys with another app private key (requests no longer verify) or another
/// Alipay public key (answers no longer verify).
fn tampered(swap_app_key: bool) -> AlipayKeys {
    let mut keys = super::harness::keys();
    let alipay_private = keys.alipay_private_key.clone().unwrap();
    if swap_app_key {
        keys.app_private_key = alipay_private;
    } else {
        keys.alipay_public_key = keys.app_public_key.clone();
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_answers_must_be_signed_right() {
    let env = Env::start(Env::quick()).await;
    let forger = Client::new(&env.gateway(), tampered(true), "", Duration::from_secs(5));
    let reply = forger.call(wire::TRADE_QUERY, json!({"out_trade_no": "x"}), false).await.unwrap();
    assert_eq!(
        (reply.code.as_str(), reply.sub_code.as_deref()),
        ("40002", Some("isv.invalid-signature"))
    );
    let adapter = Env::adapter_with(&env.base, tampered(true), Duration::from_secs(5));
    let refused = adapter.create_authorization(auth(&order_id(), ConfirmMode::Once, 100)).await;
    assert!(
        matches!(refused, Err(ProviderError::Refused { ref code, .. }) if code == "isv.invalid-signature"),
        "{refused:?}"
    );
    assert!(env.sandbox.lock().freezes.is_empty());

    let mut foreign = super::harness::keys();
    foreign.app.app_id = "2021000000000000".into();
    let reply = Client::new(&env.gateway(), foreign, "", Duration::from_secs(5))
        .call(wire::TRADE_QUERY, json!({"out_trade_no": "x"}), false)
        .await
        .unwrap();
    assert_eq!(reply.sub_code.as_deref(), Some("isv.invalid-app-id"));

    // The gateway takes yuan with exactly two decimals only.
    let honest = Client::new(&env.gateway(), super::harness::keys(), "", Duration::from_secs(5));
    for bad in ["0.1", "1", "1.005", "-1.00", "abc"] {
        let biz = json!({"out_order_no": "o1", "out_request_no": "o1", "order_title": "t", "amount": bad});
        let reply = honest.call(wire::FREEZE, biz, false).await.unwrap();
        assert_eq!(reply.sub_code.as_deref(), Some("isv.invalid-parameter"), "{bad}");
    }
    assert!(env.sandbox.lock().freezes.is_empty());

    let distrustful = Env::adapter_with(&env.base, tampered(false), Duration::from_secs(5));
    let unverifiable = distrustful.query(&order_id()).await;
    assert!(matches!(unverifiable, Err(ProviderError::Unavailable(_))), "{unverifiable:?}");
}
