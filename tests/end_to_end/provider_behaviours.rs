//! The purchase with each provider and each of its sandbox's behaviours on demand
//! [issue 10 §4]: notifications duplicated, reordered, late or never arriving (the saga
//! asks the provider), system errors the adapter must resolve, a deduction that fails then
//! succeeds, and a risk refusal. Every purchase ends where it should, with the charge
//! exact and never doubled (the sandbox's ledger is the provider's truth).

use crate::common::{config, Store, TestStore};
use std::time::Duration;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, ShopperHandle};
use tare_domain::{DoorNo, LaneNo, ProviderKind};
use tare_providers::sandbox::{Behaviour, NotificationFaults};

/// An app whose saga asks the provider soon (a pending deduction after 20 × 100 ms, an
/// unconfirmed authorization every 500 ms), so lost notifications are found out quickly.
async fn rig(kind: Store) -> (TestStore, App, Fleet) {
    let store = TestStore::new(kind).await;
    let mut cfg = config(&store);
    cfg.saga.door_check_ms = 100;
    cfg.saga.auth_check_ms = 500;
    cfg.saga.charge_retry_ms = 300;
    let app = App::start(cfg).await.expect("app starts");
    let spec = FleetSpec {
        cabinets: 2,
        doors: 2,
        lanes: 2,
        pk: "pb".into(),
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    (store, app, fleet)
}

/// A purchase of 2 from lane 1 of door `door` of cabinet `cab`: asserts it is paid, its
/// total is what was taken, and the provider collected it exactly once.
async fn buys_once(app: &App, fleet: &Fleet, provider: ProviderKind, shopper: &ShopperHandle, cab: usize, door: u8, what: &str) {
    let p = fleet
        .purchase(shopper, cab, DoorNo::of(door), &[(LaneNo::of(1), 2)])
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_eq!(p.order["state"], "paid", "{what}: {}", p.order);
    assert_eq!(p.order["total_cents"].as_i64(), Some(p.true_subtotal()), "{what}: {}", p.order);
    let charges: Vec<_> = app.sandboxes[&provider]
        .charges()
        .into_iter()
        .filter(|c| c.order_id == p.order_id)
        .collect();
    assert_eq!(charges.len(), 1, "{what}: collected {charges:?}");
    assert_eq!(charges[0].amount.get(), p.true_subtotal(), "{what}");
}

fn faults(f: NotificationFaults, max_pending: usize) -> Behaviour {
    Behaviour {
        notifications: f,
        max_pending_per_shopper: max_pending,
        ..Behaviour::default()
    }
}

async fn every_behaviour_charges_exactly_once(kind: Store) {
    let (store, app, fleet) = rig(kind).await;
    let cases: Vec<(&str, Behaviour)> = vec![
        (
            "duplicated notifications",
            faults(
                NotificationFaults {
                    duplicate: true,
                    ..Default::default()
                },
                3,
            ),
        ),
        (
            "reordered notifications",
            faults(
                NotificationFaults {
                    reorder: true,
                    ..Default::default()
                },
                3,
            ),
        ),
        (
            "late notifications",
            faults(
                NotificationFaults {
                    delay: Duration::from_millis(1_500),
                    ..Default::default()
                },
                3,
            ),
        ),
        (
            "notifications that never arrive (the saga asks)",
            faults(
                NotificationFaults {
                    drop: true,
                    ..Default::default()
                },
                3,
            ),
        ),
        (
            "system errors the adapter resolves",
            Behaviour {
                system_errors: 2,
                max_pending_per_shopper: 3,
                ..Behaviour::default()
            },
        ),
        (
            "a deduction that fails, then succeeds",
            Behaviour {
                fail_collections: 1,
                max_pending_per_shopper: 3,
                deduction_schedule: vec![Duration::from_millis(200)],
                ..Behaviour::default()
            },
        ),
    ];
    let mut n = 0;
    for provider in [ProviderKind::Wechat, ProviderKind::Alipay] {
        for (what, behaviour) in &cases {
            app.sandboxes[&provider].set_behaviour(behaviour.clone());
            for mode in ["each_time", "once"] {
                n += 1;
                let shopper = fleet
                    .new_shopper(&format!("137{n:08}"), provider.as_str(), mode)
                    .await
                    .expect("shopper");
                let what = format!("{} {mode}: {what}", provider.as_str());
                buys_once(&app, &fleet, provider, &shopper, n % 2, 1 + (n / 2 % 2) as u8, &what).await;
            }
        }
        app.sandboxes[&provider].set_behaviour(Behaviour::default());
    }

    // A risk refusal: the order is cancelled before any door opens, nothing is charged.
    for provider in [ProviderKind::Wechat, ProviderKind::Alipay] {
        app.sandboxes[&provider].set_behaviour(Behaviour {
            reject_risk: true,
            ..Behaviour::default()
        });
        n += 1;
        let shopper = fleet
            .new_shopper(&format!("137{n:08}"), provider.as_str(), "once")
            .await
            .expect("shopper");
        let (st, created) = fleet
            .client
            .post(
                "/api/v1/orders",
                &shopper.token,
                &serde_json::json!({"cabinet": fleet.cabinets[0].id().to_string(), "door": 1}),
            )
            .await
            .unwrap();
        assert_eq!(st, reqwest::StatusCode::CREATED, "{created}");
        let id = created["order_id"].as_str().unwrap().to_string();
        let done = fleet
            .wait_terminal(&id, &shopper.token, Duration::from_secs(20))
            .await
            .expect("refused order ends");
        assert_eq!(done["state"], "cancelled", "{} risk: {done}", provider.as_str());
        assert!(
            done["cancel_reason"].as_str().unwrap_or("").contains("authorization_refused"),
            "{} risk: {done}",
            provider.as_str()
        );
        assert!(!fleet.cabinets[0].is_open(DoorNo::of(1)), "a refused order opened the door");
        assert!(app.sandboxes[&provider].charges().iter().all(|c| c.order_id != id));
        app.sandboxes[&provider].set_behaviour(Behaviour::default());
    }

    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(every_behaviour, every_behaviour_charges_exactly_once);
