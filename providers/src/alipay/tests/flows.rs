//! The adapter against the sandbox over loopback HTTP: authorization, collection,
//! cancellation, idempotency and the sandbox's misbehaviours.

use super::harness::{order_id, Env};
use crate::alipay::wire;
use crate::notification::NotificationEvent;
use crate::refs::out_order_no;
use crate::sandbox::{Behaviour, Sandbox};
use std::time::Duration;
use tare_domain::{Cents, ConfirmMode};
use tare_sagas::ports::{AuthorizationRequest, CollectionOutcome, CollectionRequest, PaymentProvider, ProviderError, ProviderOrderStatus};

pub fn auth(order: &str, mode: ConfirmMode, limit: i64) -> AuthorizationRequest {
    AuthorizationRequest {
        order_id: order.into(),
        shopper_id: format!("shopper-{order}"),
        confirm_mode: mode,
        limit: Cents::new(limit),
    }
}

pub fn collection(order: &str, amount: i64) -> CollectionRequest {
    CollectionRequest {
        order_id: order.into(),
        provider_order_ref: out_order_no(order),
        amount: Cents::new(amount),
        lines: Vec::new(),
        discount: Cents::ZERO,
    }
}

/// The `biz_content` of the calls of `method` the sandbox received.
fn sent(env: &Env, method: &str) -> Vec<serde_json::Value> {
    env.sandbox
        .calls()
        .into_iter()
        .filter(|(m, _)| m == method)
        .map(|(_, b)| b)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_time_freeze_waits_for_the_tap_then_collects_once_and_unfreezes_the_rest() {
    let env = Env::start(Env::quick()).await;
    let order = order_id();
    let created = env
        .adapter
        .create_authorization(auth(&order, ConfirmMode::EachTime, 1000))
        .await
        .unwrap();
    assert!(!created.authorized);
    assert_eq!(created.provider_order_ref, out_order_no(&order));
    let confirm_url = created.confirm_url.clone().expect("confirm url");
    assert_eq!(env.adapter.query(&order).await.unwrap(), ProviderOrderStatus::AwaitingConfirmation);
    // Collecting before the tap is a business failure, and charges nothing.
    assert!(matches!(
        env.adapter.collect(collection(&order, 10)).await.unwrap(),
        CollectionOutcome::Failed { .. }
    ));

    let http = reqwest::Client::new();
    assert_eq!(http.post(&confirm_url).send().await.unwrap().status(), 204);
    assert_eq!(http.post(&confirm_url).send().await.unwrap().status(), 409);
    let unknown = format!("{}/sandbox/alipay/authorizations/nope/confirm", env.base);
    assert_eq!(http.post(&unknown).send().await.unwrap().status(), 404);
    env.wait_for("fund_auth_freeze", |all| {
        all.iter()
            .any(|n| n.event == NotificationEvent::Authorized { order_id: order.clone() })
    })
    .await;
    assert_eq!(env.adapter.query(&order).await.unwrap(), ProviderOrderStatus::Authorized);

    let outcome = env.adapter.collect(collection(&order, 10)).await.unwrap();
    let CollectionOutcome::Collected { transaction_id, amount } = outcome.clone() else {
        panic!("{outcome:?}");
    };
    assert_eq!(amount, Cents::new(10));
    // Amounts are yuan strings with two decimals on the wire.
    assert_eq!(sent(&env, wire::APP_FREEZE)[0]["amount"], "10.00");
    let pays = sent(&env, wire::TRADE_PAY);
    assert_eq!(pays.last().unwrap()["total_amount"], "0.10");
    assert_eq!(pays.last().unwrap()["auth_confirm_mode"], "COMPLETE");
    // Idempotent: the same collection again is the same payment.
    assert_eq!(env.adapter.collect(collection(&order, 10)).await.unwrap(), outcome);
    let charges = env.sandbox.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!((charges[0].order_id.as_str(), charges[0].amount), (order.as_str(), Cents::new(10)));
    assert_eq!(charges[0].transaction_id, transaction_id);
    {
        let st = env.sandbox.lock();
        let f = &st.freezes[&out_order_no(&order)];
        assert_eq!((f.paid, f.unfrozen, f.rest()), (Cents::new(10), Cents::new(990), Cents::ZERO));
    }
    assert_eq!(
        env.adapter.query(&order).await.unwrap(),
        ProviderOrderStatus::Collected {
            transaction_id: transaction_id.clone(),
            amount
        }
    );
    env.wait_for("trade_status_sync and the unfreeze", |all| {
        all.iter().any(|n| {
            n.event
                == NotificationEvent::Collected {
                    order_id: order.clone(),
                    transaction_id: transaction_id.clone(),
                    amount,
                }
        }) && all.iter().any(|n| {
            n.event
                == NotificationEvent::Informational {
                    what: "fund_auth_unfreeze".into(),
                }
        })
    })
    .await;
    assert_eq!(env.callbacks.refused.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_mode_is_authorized_at_create_and_creates_are_idempotent() {
    let env = Env::start(Env::quick()).await;
    let order = order_id();
    let req = auth(&order, ConfirmMode::Once, 500);
    let created = env.adapter.create_authorization(req.clone()).await.unwrap();
    assert!(created.authorized);
    assert_eq!(created.confirm_url, None);
    assert_eq!(env.adapter.create_authorization(req.clone()).await.unwrap(), created);
    assert_eq!(env.sandbox.lock().freezes.len(), 1);
    let conflict = env
        .adapter
        .create_authorization(AuthorizationRequest {
            limit: Cents::new(600),
            ..req
        })
        .await;
    assert!(
        matches!(conflict, Err(ProviderError::Refused { ref code, .. }) if code == "OUT_ORDER_NO_CONFLICT"),
        "{conflict:?}"
    );
    env.wait_for("fund_auth_freeze", |all| {
        all.iter()
            .any(|n| n.event == NotificationEvent::Authorized { order_id: order.clone() })
    })
    .await;
    let outcome = env.adapter.collect(collection(&order, 499)).await.unwrap();
    assert!(matches!(outcome, CollectionOutcome::Collected { amount, .. } if amount == Cents::new(499)));
    assert_eq!(env.sandbox.charges().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_closes_or_unfreezes_and_an_unknown_order_stays_closed() {
    let env = Env::start(Env::quick()).await;
    let waiting = order_id();
    env.adapter
        .create_authorization(auth(&waiting, ConfirmMode::EachTime, 300))
        .await
        .unwrap();
    env.adapter.cancel(&waiting, "door never opened").await.unwrap();
    assert_eq!(env.adapter.query(&waiting).await.unwrap(), ProviderOrderStatus::Cancelled);
    assert!(env.sandbox.confirm(&out_order_no(&waiting)).is_err());

    let frozen = order_id();
    env.adapter
        .create_authorization(auth(&frozen, ConfirmMode::Once, 300))
        .await
        .unwrap();
    env.adapter.cancel(&frozen, "nothing taken").await.unwrap();
    env.adapter.cancel(&frozen, "nothing taken").await.unwrap();
    assert_eq!(env.adapter.query(&frozen).await.unwrap(), ProviderOrderStatus::Cancelled);
    assert_eq!(sent(&env, wire::UNFREEZE)[0]["amount"], "3.00");

    let never = order_id();
    assert_eq!(env.adapter.query(&never).await.unwrap(), ProviderOrderStatus::NotFound);
    env.adapter.cancel(&never, "create timed out").await.unwrap();
    let late = env.adapter.create_authorization(auth(&never, ConfirmMode::Once, 300)).await;
    assert!(
        matches!(late, Err(ProviderError::Refused { ref code, .. }) if code == "ORDER_ALREADY_CLOSED"),
        "{late:?}"
    );
    assert!(env.sandbox.charges().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rules_refuse_creates() {
    let env = Env::start(Behaviour {
        reject_risk: true,
        ..Env::quick()
    })
    .await;
    let refused = env.adapter.create_authorization(auth(&order_id(), ConfirmMode::Once, 100)).await;
    assert!(
        matches!(refused, Err(ProviderError::Refused { ref code, .. }) if code == "RISK_CONTROL_REJECT"),
        "{refused:?}"
    );
    env.sandbox.set_behaviour(Behaviour {
        max_pending_per_shopper: 1,
        ..Env::quick()
    });
    let mut first = auth(&order_id(), ConfirmMode::EachTime, 100);
    first.shopper_id = "s1".into();
    env.adapter.create_authorization(first.clone()).await.unwrap();
    let second = env
        .adapter
        .create_authorization(AuthorizationRequest {
            order_id: order_id(),
            ..first
        })
        .await;
    assert!(
        matches!(second, Err(ProviderError::Refused { ref code, .. }) if code == "RISK_CONTROL_REJECT"),
        "{second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_errors_are_resolved_by_query_whether_or_not_they_applied() {
    let env = Env::start(Behaviour {
        system_errors: 2,
        ..Env::quick()
    })
    .await;
    let order = order_id();
    // 1st freeze: 20000, not applied → not found → again: 20000, applied → found.
    let created = env
        .adapter
        .create_authorization(auth(&order, ConfirmMode::Once, 800))
        .await
        .unwrap();
    assert!(created.authorized);
    assert_eq!(sent(&env, wire::FREEZE).len(), 2);
    env.sandbox.set_behaviour(Behaviour {
        system_errors: 4,
        ..Env::quick()
    });
    // 3rd call of the order (trade.pay): not applied; 4th: applied, still 20000.
    let outcome = env.adapter.collect(collection(&order, 250)).await.unwrap();
    assert!(
        matches!(outcome, CollectionOutcome::Collected { amount, .. } if amount == Cents::new(250)),
        "{outcome:?}"
    );
    assert_eq!(sent(&env, wire::TRADE_PAY).len(), 2);
    assert!(!sent(&env, wire::TRADE_QUERY).is_empty());
    assert_eq!(env.sandbox.charges().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_collections_fail_then_succeed_and_slow_answers_are_unavailable() {
    let env = Env::start(Behaviour {
        fail_collections: 1,
        ..Env::quick()
    })
    .await;
    let order = order_id();
    env.adapter
        .create_authorization(auth(&order, ConfirmMode::Once, 800))
        .await
        .unwrap();
    let first = env.adapter.collect(collection(&order, 300)).await.unwrap();
    assert_eq!(
        first,
        CollectionOutcome::Failed {
            reason: "ACQ.BUYER_BALANCE_NOT_ENOUGH".into()
        }
    );
    assert!(env.sandbox.charges().is_empty());
    assert!(matches!(
        env.adapter.collect(collection(&order, 300)).await.unwrap(),
        CollectionOutcome::Collected { .. }
    ));
    assert_eq!(env.sandbox.charges().len(), 1);

    env.sandbox.set_behaviour(Behaviour {
        slow_answers: Duration::from_millis(800),
        ..Env::quick()
    });
    let impatient = Env::adapter_with(&env.base, env.keys.clone(), Duration::from_millis(200));
    let slow = impatient.query(&order).await;
    assert!(matches!(slow, Err(ProviderError::Unavailable(_))), "{slow:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_resent_until_the_body_is_success_and_duplicates_keep_their_id() {
    let env = Env::start(Env::quick()).await;
    env.callbacks.fail_next.store(1, std::sync::atomic::Ordering::SeqCst);
    let order = order_id();
    env.adapter
        .create_authorization(auth(&order, ConfirmMode::Once, 100))
        .await
        .unwrap();
    let authorized = NotificationEvent::Authorized { order_id: order.clone() };
    let all = env
        .wait_for("the resend", |all| all.iter().filter(|n| n.event == authorized).count() == 2)
        .await;
    let ids: Vec<_> = all.iter().filter(|n| n.event == authorized).map(|n| n.id.clone()).collect();
    assert_eq!(ids[0], ids[1], "a resend keeps its notify_id");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.callbacks.all().iter().filter(|n| n.event == authorized).count(),
        2,
        "acknowledged: no more resends"
    );

    env.sandbox.set_behaviour(Behaviour {
        notifications: crate::sandbox::NotificationFaults {
            duplicate: true,
            ..Default::default()
        },
        ..Env::quick()
    });
    let twice = order_id();
    env.adapter
        .create_authorization(auth(&twice, ConfirmMode::Once, 100))
        .await
        .unwrap();
    let authorized = NotificationEvent::Authorized { order_id: twice.clone() };
    let all = env
        .wait_for("the duplicate", |all| all.iter().filter(|n| n.event == authorized).count() == 2)
        .await;
    let ids: Vec<_> = all.iter().filter(|n| n.event == authorized).map(|n| n.id.clone()).collect();
    assert_eq!(ids[0], ids[1]);

    env.sandbox.set_behaviour(Behaviour {
        notifications: crate::sandbox::NotificationFaults {
            drop: true,
            ..Default::default()
        },
        ..Env::quick()
    });
    let dropped = order_id();
    env.adapter
        .create_authorization(auth(&dropped, ConfirmMode::Once, 100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!env
        .callbacks
        .all()
        .iter()
        .any(|n| n.event == NotificationEvent::Authorized { order_id: dropped.clone() }));
    assert_eq!(env.adapter.query(&dropped).await.unwrap(), ProviderOrderStatus::Authorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_notifications_arrive_out_of_order() {
    let reorder = crate::sandbox::NotificationFaults {
        reorder: true,
        ..Default::default()
    };
    let env = Env::start(Behaviour {
        notifications: reorder,
        ..Env::quick()
    })
    .await;
    let (first, second) = (order_id(), order_id());
    env.adapter
        .create_authorization(auth(&first, ConfirmMode::Once, 100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(env.callbacks.all().is_empty(), "the first is held back");
    env.adapter
        .create_authorization(auth(&second, ConfirmMode::Once, 100))
        .await
        .unwrap();
    let all = env.wait_for("both", |all| all.len() == 2).await;
    assert_eq!(all[0].event, NotificationEvent::Authorized { order_id: second });
    assert_eq!(all[1].event, NotificationEvent::Authorized { order_id: first });
}
