use super::*;
use crate::Cents;

fn charge(order: &str, txn: &str, cents: i64) -> BillItem {
    BillItem {
        order_id: order.into(),
        transaction_id: txn.into(),
        kind: MoneyKind::Charge,
        refund_id: None,
        amount_cents: Cents::new(cents),
        state: MovementState::Succeeded,
        at: 1_000,
    }
}

fn refund(order: &str, txn: &str, id: &str, cents: i64, state: MovementState) -> BillItem {
    BillItem {
        kind: MoneyKind::Refund,
        refund_id: Some(id.into()),
        state,
        ..charge(order, txn, cents)
    }
}

fn run(ours: &[BillItem], theirs: &[BillItem]) -> BillReconciliation {
    compare(ProviderKind::Wechat, "2026-12-01", ours, theirs)
}

#[test]
fn an_empty_day_is_clean() {
    let r = run(&[], &[]);
    assert_eq!(r.matched, 0);
    assert!(r.is_clean());
    assert!(r.findings().is_empty());
}

#[test]
fn agreeing_sides_match_whatever_the_times() {
    let ours = [
        charge("o1", "t1", 500),
        charge("o2", "t2", 300),
        refund("o1", "t1", "r1", 100, MovementState::Succeeded),
    ];
    let mut theirs = ours.to_vec();
    theirs.reverse();
    theirs[0].at = 99; // the provider's own clock
    let r = run(&ours, &theirs);
    assert_eq!(r.matched, 3);
    assert!(r.is_clean(), "{r:?}");
}

#[test]
fn ours_alone_is_missing_at_provider() {
    let r = run(&[charge("o1", "t1", 500), charge("o2", "t2", 300)], &[charge("o2", "t2", 300)]);
    assert_eq!(r.matched, 1);
    assert_eq!(r.missing_at_provider, vec![charge("o1", "t1", 500)]);
    assert!(r.missing_here.is_empty() && r.mismatched.is_empty());
    let f = r.findings();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, AnomalyKind::BillMissingAtProvider);
    assert_eq!(f[0].anomaly_id, "bills:wechat:2026-12-01:missing_at_provider:charge:o1:t1");
    assert_eq!(f[0].order_id, "o1");
}

#[test]
fn theirs_alone_is_missing_here() {
    let r = run(&[], &[refund("o1", "t1", "r9", 50, MovementState::Succeeded)]);
    assert_eq!(r.missing_here.len(), 1);
    assert_eq!(r.findings()[0].kind, AnomalyKind::BillMissingHere);
    assert_eq!(r.findings()[0].theirs.as_ref().unwrap().refund_id.as_deref(), Some("r9"));
}

#[test]
fn another_transaction_is_missing_on_both_sides() {
    let r = run(&[charge("o1", "t1", 500)], &[charge("o1", "tX", 500)]);
    assert_eq!((r.matched, r.missing_at_provider.len(), r.missing_here.len()), (0, 1, 1));
}

#[test]
fn different_amounts_are_an_amount_mismatch() {
    let r = run(&[charge("o1", "t1", 500)], &[charge("o1", "t1", 450)]);
    assert_eq!(r.matched, 0);
    assert_eq!(r.mismatched.len(), 1);
    assert_eq!(r.mismatched[0].why, MismatchWhy::Amount);
    assert_eq!(r.mismatched[0].theirs.amount_cents, Cents::new(450));
    assert_eq!(r.findings()[0].kind, AnomalyKind::BillAmountMismatch);
}

#[test]
fn a_refund_pending_or_failed_here_but_on_the_bill_is_a_status_mismatch() {
    for state in [MovementState::Pending, MovementState::Failed] {
        let ours = [refund("o1", "t1", "r1", 100, state)];
        let theirs = [refund("o1", "t1", "r1", 100, MovementState::Succeeded)];
        let r = run(&ours, &theirs);
        assert_eq!(r.mismatched.len(), 1, "{state:?}");
        assert_eq!(r.mismatched[0].why, MismatchWhy::Status);
        assert_eq!(r.findings()[0].kind, AnomalyKind::BillStatusMismatch);
    }
    // Amount and state both differ: the amount is what is reported.
    let r = run(
        &[refund("o1", "t1", "r1", 100, MovementState::Pending)],
        &[refund("o1", "t1", "r1", 90, MovementState::Succeeded)],
    );
    assert_eq!(r.mismatched[0].why, MismatchWhy::Amount);
}

#[test]
fn a_failed_refund_absent_from_the_bill_agrees_and_a_pending_one_is_missing() {
    let r = run(&[refund("o1", "t1", "r1", 100, MovementState::Failed)], &[]);
    assert!(r.is_clean());
    assert_eq!(r.matched, 0);
    let r = run(&[refund("o1", "t1", "r1", 100, MovementState::Pending)], &[]);
    assert_eq!(r.missing_at_provider.len(), 1);
}

#[test]
fn refunds_match_by_refund_id_not_by_order() {
    let ours = [
        refund("o1", "t1", "r1", 100, MovementState::Succeeded),
        refund("o1", "t1", "r2", 100, MovementState::Succeeded),
    ];
    let theirs = [refund("o1", "t1", "r2", 100, MovementState::Succeeded)];
    let r = run(&ours, &theirs);
    assert_eq!(r.matched, 1);
    assert_eq!(r.missing_at_provider[0].refund_id.as_deref(), Some("r1"));
}

#[test]
fn a_line_billed_twice_matches_once_and_the_repeat_is_missing_here() {
    let r = run(&[charge("o1", "t1", 500)], &[charge("o1", "t1", 500), charge("o1", "t1", 500)]);
    assert_eq!((r.matched, r.missing_here.len()), (1, 1));
    let r = run(&[], &[charge("o1", "t1", 500), charge("o1", "t1", 500)]);
    let ids: Vec<_> = r.findings().into_iter().map(|f| f.anomaly_id).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "each repeat is its own finding");
}

#[test]
fn results_are_in_key_order_whatever_the_input_order() {
    let ours = [charge("o3", "t3", 1), charge("o1", "t1", 1), charge("o2", "t2", 1)];
    let r = run(&ours, &[]);
    let order: Vec<_> = r.missing_at_provider.iter().map(|i| i.order_id.as_str()).collect();
    assert_eq!(order, ["o1", "o2", "o3"]);
}

#[test]
fn a_run_raises_each_new_finding_once() {
    let mut agg = Reconciliation::default();
    let first = run(&[charge("o1", "t1", 500)], &[charge("o2", "t2", 300)]);
    let events = agg
        .decide(ReconciliationCommand::RecordBillRun {
            result: first.clone(),
            at: 10,
        })
        .unwrap();
    assert!(matches!(
        &events[0],
        ReconciliationEvent::BillsReconciled { run: 1, matched: 0, .. }
    ));
    let kinds: Vec<_> = events[1..]
        .iter()
        .map(|e| match e {
            ReconciliationEvent::AnomalyRaised { kind, provider, date, .. } => {
                assert_eq!((*provider, date.as_str()), (ProviderKind::Wechat, "2026-12-01"));
                *kind
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, [AnomalyKind::BillMissingAtProvider, AnomalyKind::BillMissingHere]);
    for e in events {
        cqrs_es::Aggregate::apply(&mut agg, e);
    }
    // The same day again, plus one new discrepancy: only the new one is raised.
    let second = run(&[charge("o1", "t1", 500), charge("o3", "t3", 9)], &[charge("o2", "t2", 300)]);
    let events = agg
        .decide(ReconciliationCommand::RecordBillRun {
            result: second.clone(),
            at: 20,
        })
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[0], ReconciliationEvent::BillsReconciled { run: 2, .. }));
    assert!(matches!(&events[1], ReconciliationEvent::AnomalyRaised { order_id, .. } if order_id == "o3"));
    for e in events {
        cqrs_es::Aggregate::apply(&mut agg, e);
    }
    assert_eq!(agg.last.as_ref(), Some(&second));
    assert_eq!((agg.runs, agg.last_at), (2, Some(20)));
    // Another day cannot be recorded here.
    let other = compare(ProviderKind::Alipay, "2026-12-01", &[], &[]);
    assert!(agg.decide(ReconciliationCommand::RecordBillRun { result: other, at: 30 }).is_err());
}

#[test]
fn items_serialize_in_the_api_shape() {
    let v = serde_json::to_value(refund("o1", "t1", "r1", 100, MovementState::Pending)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"order_id": "o1", "transaction_id": "t1", "kind": "refund", "refund_id": "r1",
            "amount_cents": 100, "state": "pending", "at": 1000})
    );
    let v = serde_json::to_value(charge("o1", "t1", 100)).unwrap();
    assert!(v.get("refund_id").is_none());
}

fn stock_finding(lane: u8, since: UnixMs) -> StockFinding {
    StockFinding {
        cabinet: crate::CabinetId::new("c1", "SN-1").unwrap(),
        door: crate::DoorNo::of(1),
        lane: crate::LaneNo::of(lane),
        sku: "cola".into(),
        class: crate::cabinet::StockClass::WrongLane,
        ledger_stock: 6,
        weighed_stock: Some(5),
        difference: -1,
        since,
        window_from: since - 10,
        last_session: None,
    }
}

#[test]
fn a_stock_run_raises_each_divergence_once_and_a_clean_night_nothing() {
    let mut r = Reconciliation::default();
    let run = |r: &Reconciliation, findings: Vec<StockFinding>| {
        r.decide(ReconciliationCommand::RecordStockRun {
            date: "2026-12-01".into(),
            findings,
            at: 9,
        })
        .unwrap()
    };
    let raised = |events: &[ReconciliationEvent]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                ReconciliationEvent::StockAnomalyRaised { anomaly_id, .. } => Some(anomaly_id.clone()),
                _ => None,
            })
            .collect()
    };
    let clean = run(&r, vec![]);
    assert_eq!((clean.len(), raised(&clean).len()), (1, 0));
    let first = run(&r, vec![stock_finding(1, 100)]);
    assert_eq!(raised(&first), ["stock:c1.SN-1:1:1:100"]);
    for e in first {
        r.apply(e);
    }
    // The same divergence the next night: recorded, not raised again; a new one is.
    let second = run(&r, vec![stock_finding(1, 100), stock_finding(2, 200)]);
    assert_eq!(raised(&second), ["stock:c1.SN-1:1:2:200"]);
    assert!(matches!(second[0], ReconciliationEvent::StockReconciled { run: 2, .. }));
}
