//! Refunds and the bill, adapter ↔ sandbox over loopback HTTP.

use super::test_support::{fast, harness, order_id, Harness};
use super::tests_flow::{auth, collection};
use crate::notification::NotificationEvent;
use crate::sandbox::{china_date, now_ms, Sandbox};
use tare_domain::{Cents, ConfirmMode};
use tare_sagas::ports::{BillLineKind, PaymentProvider, ProviderOrderStatus, RefundOutcome, RefundRequest};

/// A paid order: (order id, transaction id).
async fn paid(h: &Harness, amount: i64) -> (String, String) {
    let id = order_id();
    h.adapter
        .create_authorization(auth(&id, &order_id(), ConfirmMode::Once, 5000))
        .await
        .unwrap();
    h.adapter.collect(collection(&id, amount)).await.unwrap();
    for _ in 0..250 {
        if let ProviderOrderStatus::Collected { transaction_id, .. } = h.adapter.query(&id).await.unwrap() {
            return (id, transaction_id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("never paid");
}

fn refund(order: &str, tx: &str, refund_id: &str, amount: i64, charged: i64) -> RefundRequest {
    RefundRequest {
        order_id: order.into(),
        refund_id: refund_id.into(),
        transaction_id: tx.into(),
        amount: Cents::new(amount),
        charged: Cents::new(charged),
        reason: "goods returned".into(),
    }
}

#[tokio::test]
async fn partial_full_and_over_refunds() {
    let h = harness(fast()).await;
    let (id, tx) = paid(&h, 1000).await;
    let r1 = order_id();
    assert_eq!(
        h.adapter.refund(refund(&id, &tx, &r1, 300, 1000)).await.unwrap(),
        RefundOutcome::Pending
    );
    let got = h
        .wait_for(|g| g.iter().any(|n| matches!(n.event, NotificationEvent::RefundSucceeded { .. })))
        .await;
    let Some(NotificationEvent::RefundSucceeded {
        order_id: o,
        refund_id,
        provider_refund_id,
        amount,
    }) = got
        .iter()
        .map(|n| n.event.clone())
        .find(|e| matches!(e, NotificationEvent::RefundSucceeded { .. }))
    else {
        unreachable!()
    };
    assert_eq!(
        (o.as_str(), refund_id.as_str(), amount),
        (id.as_str(), r1.as_str(), Cents::new(300))
    );
    let succeeded = RefundOutcome::Succeeded { provider_refund_id };
    assert_eq!(h.adapter.refund_status(&id, &r1).await.unwrap(), succeeded);
    // The same refund id refunds once: a retry answers the same refund.
    assert_eq!(h.adapter.refund(refund(&id, &tx, &r1, 300, 1000)).await.unwrap(), succeeded);
    assert!(matches!(
        h.adapter.refund(refund(&id, &tx, &r1, 301, 1000)).await.unwrap(),
        RefundOutcome::Failed { .. }
    ));
    // The rest, then one fen too many.
    let r2 = order_id();
    assert_eq!(
        h.adapter.refund(refund(&id, &tx, &r2, 700, 1000)).await.unwrap(),
        RefundOutcome::Pending
    );
    let over = h.adapter.refund(refund(&id, &tx, &order_id(), 1, 1000)).await.unwrap();
    assert!(
        matches!(&over, RefundOutcome::Failed { reason } if reason.starts_with("INVALID_REQUEST")),
        "{over:?}"
    );
    assert_eq!(
        h.adapter.refund_status(&id, &order_id()).await.unwrap(),
        RefundOutcome::Failed {
            reason: "not_found".into()
        }
    );
    let ledger = h.sandbox.refunds();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger.iter().map(|r| r.amount.get()).sum::<i64>(), 1000);
    assert!(ledger.iter().all(|r| r.order_id == id));
    assert!(ledger.iter().any(|r| r.refund_id == r1));
    // A refund of a transaction that does not exist.
    let ghost = h.adapter.refund(refund(&id, "4200000000", &order_id(), 1, 1000)).await.unwrap();
    assert!(matches!(ghost, RefundOutcome::Failed { .. }));
}

#[tokio::test]
async fn the_bill_matches_the_ledger() {
    let h = harness(fast()).await;
    let (a, tx_a) = paid(&h, 1234).await;
    let (_b, _) = paid(&h, 1).await;
    let ra = order_id();
    h.adapter.refund(refund(&a, &tx_a, &ra, 234, 1234)).await.unwrap();
    let lines = h.adapter.bill(&china_date(now_ms())).await.unwrap();
    let mut charges: Vec<_> = lines
        .iter()
        .filter(|l| l.kind == BillLineKind::Charge)
        .map(|l| (l.order_id.clone(), l.transaction_id.clone(), l.amount, l.at))
        .collect();
    let mut ledger: Vec<_> = h
        .sandbox
        .charges()
        .into_iter()
        .map(|c| (c.order_id, c.transaction_id, c.amount, c.at / 1000 * 1000))
        .collect();
    charges.sort();
    ledger.sort();
    assert_eq!(charges, ledger);
    let refunds: Vec<_> = lines
        .iter()
        .filter_map(|l| match &l.kind {
            BillLineKind::Refund { refund_id } => Some((l.order_id.clone(), refund_id.clone(), l.amount, l.transaction_id.clone())),
            BillLineKind::Charge => None,
        })
        .collect();
    assert_eq!(refunds, vec![(a.clone(), ra, Cents::new(234), tx_a)]);
    assert_eq!(h.adapter.bill("2001-01-01").await.unwrap(), vec![]);
    assert!(h.adapter.bill("yesterday").await.is_err());
}
