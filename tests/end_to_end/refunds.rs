//! Refunds and dead letters through the API, on both stores [O8, O9]: a paid order is
//! refunded in part, then in full, and its state follows the provider's confirmations;
//! concurrent refunds never give back more than was charged, neither in our log nor at
//! the provider; an unpaid order is not refundable; a charge that keeps failing becomes a
//! dead letter an operator sees, retries, or settles by hand (who and why recorded), and
//! a settled shopper can buy again.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec};
use tare_domain::{DoorNo, LaneNo, ProviderKind};
use tare_providers::sandbox::Behaviour as SandboxBehaviour;

async fn order(fleet: &Fleet, id: &str) -> Value {
    fleet
        .client
        .get(&format!("/api/v1/orders/{id}"), &fleet.client.admin)
        .await
        .unwrap()
        .1
}

async fn refund(fleet: &Fleet, id: &str, cents: i64) -> (StatusCode, Value) {
    let body = json!({"amount_cents": cents, "reason": "damaged can"});
    fleet
        .client
        .post(&format!("/api/v1/orders/{id}/refunds"), &fleet.client.admin, &body)
        .await
        .unwrap()
}

async fn refunds_follow_the_provider_and_never_exceed_the_charge(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        pk: "rfd".into(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.unwrap());
    // Alipay refunds synchronously; WeChat answers PROCESSING and notifies later.
    refunds_through(&app, &fleet, ProviderKind::Alipay, "13900000011", 1).await;
    refunds_through(&app, &fleet, ProviderKind::Wechat, "13900000021", 2).await;
    // Bad input is refused with the field.
    let (st, e) = refund(&fleet, "no-such-order", 1).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("order_not_found")));
    app.stop().await;
    store.cleanup().await;
}

/// A purchase through `provider`, then refunds: partial, too much, many at once, the rest.
async fn refunds_through(app: &App, fleet: &Fleet, provider: ProviderKind, phone: &str, door: u8) {
    let alice = fleet.new_shopper(phone, provider.as_str(), "once").await.unwrap();
    let p = fleet.purchase(&alice, 0, DoorNo::of(door), &[(LaneNo::of(1), 3)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    let total = p.order["total_cents"].as_i64().unwrap();
    let id = p.order_id.clone();

    // Part of it back: the order is partly refunded once the provider confirms.
    let (st, r1) = refund(fleet, &id, total / 3).await;
    assert_eq!(st, StatusCode::CREATED, "{r1}");
    assert_eq!(
        (r1["state"].as_str(), r1["amount_cents"].as_i64()),
        (Some("pending"), Some(total / 3))
    );
    let o = eventually(20, "the refund confirmed", || async {
        let o = order(fleet, &id).await;
        (o["state"] == "partially_refunded").then_some(o)
    })
    .await;
    assert_eq!(o["refunded_cents"], json!(total / 3));
    assert_eq!(o["refunds"][0]["refund_id"], r1["refund_id"]);
    assert_eq!(o["refunds"][0]["state"], "succeeded");

    // More than is left: refused, nothing changes.
    let left = total - total / 3;
    let (st, e) = refund(fleet, &id, left + 1).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "refund_exceeds_charge");

    // Many at once for the rest: together they never give back more than is left.
    let piece = left / 4 + 1;
    let attempts = futures::future::join_all((0..8).map(|_| refund(fleet, &id, piece))).await;
    let accepted: i64 = attempts.iter().filter(|(st, _)| *st == StatusCode::CREATED).map(|_| piece).sum();
    assert!(attempts
        .iter()
        .all(|(st, _)| *st == StatusCode::CREATED || *st == StatusCode::CONFLICT));
    assert!(accepted <= left, "{accepted} accepted of {left} refundable");
    assert_eq!(accepted, piece * (left / piece), "every refund that fitted was accepted");
    let expect = total / 3 + accepted;
    let o = eventually(20, "every refund confirmed", || async {
        let o = order(fleet, &id).await;
        (o["refunded_cents"] == json!(expect)).then_some(o)
    })
    .await;
    assert_eq!(o["state"], if expect == total { "refunded" } else { "partially_refunded" });
    let at_provider: i64 = app.sandboxes[&provider]
        .refunds()
        .iter()
        .filter(|r| r.order_id == id && r.succeeded)
        .map(|r| r.amount.get())
        .sum();
    assert_eq!(at_provider, expect, "the provider gave back exactly what we recorded");
    assert!(at_provider <= total);

    // The rest, exactly: fully refunded.
    if expect < total {
        let (st, _) = refund(fleet, &id, total - expect).await;
        assert_eq!(st, StatusCode::CREATED);
        eventually(20, "fully refunded", || async {
            (order(fleet, &id).await["state"] == "refunded").then_some(())
        })
        .await;
    }
    // Bad input is refused with the field.
    let (st, e) = refund(fleet, &id, 0).await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("amount_cents"))
    );
}

on_both_stores!(refunds, refunds_follow_the_provider_and_never_exceed_the_charge);

async fn a_dead_charge_is_listed_retried_and_settled_by_hand(kind: Store) {
    let store = TestStore::new(kind).await;
    let mut cfg = config(&store);
    // Give up after the first failed deduction: straight to the dead letters.
    cfg.saga.max_charge_attempts = 1;
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 2,
        pk: "dlq".into(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.unwrap());
    let alipay = app.sandboxes[&ProviderKind::Alipay].clone();
    alipay.set_behaviour(SandboxBehaviour {
        // Each order's first deduction fails; with one attempt allowed, it is dead.
        fail_collections: 1,
        max_pending_per_shopper: 10,
        ..SandboxBehaviour::default()
    });
    let bob = fleet.new_shopper("13900000012", "alipay", "once").await.unwrap();
    let carol = fleet.new_shopper("13900000013", "alipay", "once").await.unwrap();
    let dead = |who: &'static str| {
        let fleet = fleet.clone();
        async move {
            let (_, list) = fleet.client.get("/api/v1/dead-letters", &fleet.client.admin).await.unwrap();
            list["charges"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["order_id"] == who)
                .then_some(list)
        }
    };
    let mut ids = Vec::new();
    for (shopper, door) in [(&bob, 1), (&carol, 2)] {
        let (id, _) = fleet.shop(shopper, 0, DoorNo::of(door), &[(LaneNo::of(1), 1)]).await.unwrap();
        ids.push(id);
    }
    let (bob_order, carol_order) = (ids[0].clone(), ids[1].clone());
    let b: &'static str = Box::leak(bob_order.clone().into_boxed_str());
    let c: &'static str = Box::leak(carol_order.clone().into_boxed_str());
    let list = eventually(20, "both charges dead-lettered", || async {
        let l = dead(b).await?;
        l["charges"].as_array().unwrap().iter().any(|x| x["order_id"] == c).then_some(l)
    })
    .await;
    for id in [&bob_order, &carol_order] {
        assert_eq!(order(&fleet, id).await["state"], "charging", "a dead charge keeps its order open");
    }
    let entry = list["charges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["order_id"] == b)
        .unwrap()
        .clone();
    assert_eq!(entry["attempts"], 1);
    // Alipay's own reason: the buyer's balance is not enough.
    assert!(entry["last_reason"].as_str().unwrap().contains("BALANCE_NOT_ENOUGH"), "{entry}");

    // Bob: the shopper tops up; the operator retries and the order is paid.
    let url = format!("/api/v1/dead-letters/charges/{bob_order}/retry");
    let (st, _) = fleet.client.post(&url, &fleet.client.admin, &json!({})).await.unwrap();
    assert_eq!(st, StatusCode::ACCEPTED);
    eventually(20, "bob paid", || async {
        (order(&fleet, &bob_order).await["state"] == "paid").then_some(())
    })
    .await;
    eventually(20, "bob off the list", || async { dead(b).await.is_none().then_some(()) }).await;
    let (st, e) = fleet.client.post(&url, &fleet.client.admin, &json!({})).await.unwrap();
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("charge_not_dead")));

    // Carol: written off by hand, with who and why; she can buy again.
    let settle = format!("/api/v1/dead-letters/charges/{carol_order}/settle");
    let (st, e) = fleet
        .client
        .post(&settle, &fleet.client.admin, &json!({"resolution": "paid_outside", "note": "cash"}))
        .await
        .unwrap();
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reference"))
    );
    let (st, _) = fleet
        .client
        .post(
            &settle,
            &fleet.client.admin,
            &json!({"resolution": "written_off", "note": "card expired, customer gone"}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK);
    let o = order(&fleet, &carol_order).await;
    assert_eq!(
        (o["state"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("written_off"))
    );
    // The global feed is relayed asynchronously on PostgreSQL: poll it.
    let settled = eventually(20, "the settlement is in the log", || async {
        let events = app.platform.events_after(0, 10_000).await.ok()?;
        events.into_iter().find(|e| e.event_type == "ChargeSettledByHand")
    })
    .await;
    assert_eq!(settled.payload["ChargeSettledByHand"]["by"], "admin");
    assert_eq!(settled.payload["ChargeSettledByHand"]["note"], "card expired, customer gone");
    eventually(20, "carol off the list", || async { dead(c).await.is_none().then_some(()) }).await;
    alipay.set_behaviour(SandboxBehaviour {
        max_pending_per_shopper: 10,
        ..SandboxBehaviour::default()
    });
    let again = fleet.purchase(&carol, 0, DoorNo::of(2), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(again.order["state"], "paid", "carol buys again: {}", again.order);
    // Neither charge was ever collected twice.
    let charges = alipay.charges();
    for id in [&bob_order, &carol_order] {
        assert!(charges.iter().filter(|ch| &ch.order_id == id).count() <= 1);
    }
    assert_eq!(
        charges.iter().filter(|ch| ch.order_id == carol_order).count(),
        0,
        "a written-off charge collected nothing"
    );
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(dead_letters, a_dead_charge_is_listed_retried_and_settled_by_hand);

async fn a_refused_refund_gives_its_amount_back_to_refund(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        pk: "rff".into(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.unwrap());
    for (provider, phone, door) in [(ProviderKind::Wechat, "13900000031", 1), (ProviderKind::Alipay, "13900000032", 2)] {
        let what = provider.as_str();
        let shopper = fleet.new_shopper(phone, what, "once").await.unwrap();
        let p = fleet.purchase(&shopper, 0, DoorNo::of(door), &[(LaneNo::of(1), 2)]).await.unwrap();
        assert_eq!(p.order["state"], "paid", "{what}: {}", p.order);
        let total = p.order["total_cents"].as_i64().unwrap();
        let id = p.order_id.clone();
        // The provider refuses the first refund for good (WeChat closes it after
        // PROCESSING; Alipay refuses it at once).
        app.sandboxes[&provider].set_behaviour(SandboxBehaviour {
            fail_refunds: 1,
            ..SandboxBehaviour::default()
        });
        let (st, r1) = refund(&fleet, &id, total).await;
        assert_eq!(st, StatusCode::CREATED, "{what}: {r1}");
        let o = eventually(20, "the refund refused", || async {
            let o = order(&fleet, &id).await;
            (o["refunds"][0]["state"] == "failed").then_some(o)
        })
        .await;
        assert_eq!(o["state"], "paid", "{what}: a refused refund leaves the order paid: {o}");
        assert_eq!(o["refunded_cents"], json!(0), "{what}: {o}");
        // Its amount is refundable again; this time the money goes back.
        let (st, r2) = refund(&fleet, &id, total).await;
        assert_eq!(st, StatusCode::CREATED, "{what}: {r2}");
        assert_ne!(r2["refund_id"], r1["refund_id"]);
        let o = eventually(20, "the second refund through", || async {
            let o = order(&fleet, &id).await;
            (o["state"] == "refunded").then_some(o)
        })
        .await;
        assert_eq!(o["refunded_cents"], json!(total), "{what}: {o}");
        let back: Vec<_> = app.sandboxes[&provider]
            .refunds()
            .into_iter()
            .filter(|r| r.order_id == id && r.succeeded)
            .collect();
        assert_eq!(back.len(), 1, "{what}: {back:?}");
        assert_eq!(back[0].amount.get(), total, "{what}");
        // Nothing more to give back.
        let (st, e) = refund(&fleet, &id, 1).await;
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("refund_exceeds_charge")),
            "{what}"
        );
    }
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(refused_refund, a_refused_refund_gives_its_amount_back_to_refund);
