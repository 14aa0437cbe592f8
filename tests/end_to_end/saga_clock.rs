//! The purchase saga on a driven clock, on both stores: authorization timeout, a door that
//! never opens, a lost open event, an unexpected close, a lane that got heavier, unstable
//! then stable weights, a duplicate callback, a failed then successful deduction, a lost
//! reply resolved by a query, and a restart in the middle of a purchase. No sleeps: the
//! test clock is advanced and outcomes are polled with a deadline.

use crate::common::{config, eventually, Store, TestStore};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec, FleetTransport, ShopperHandle};
use tare_domain::{DoorNo, LaneNo, ProviderKind};
use tare_platform::clock::{ManualClock, PlatformClock};
use tare_providers::sandbox::{Behaviour as SandboxBehaviour, NotificationFaults, Sandbox};
use tare_sim::cabinet::Faults;

const T0: i64 = 1_800_000_000_000;

struct Rig {
    store: TestStore,
    app: App,
    clock: ManualClock,
    fleet: Arc<Fleet>,
}

async fn rig(kind: Store, stable_wait_ms: i64) -> Rig {
    let store = TestStore::new(kind).await;
    let clock = ManualClock::new(T0);
    let mut cfg = config(&store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    cfg.saga.stable_wait_ms = stable_wait_ms;
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        mqtt_tls: None,
        cabinets: 1,
        doors: 1,
        lanes: 3,
        capacity: 10,
        noise_grams: 1.0,
        seed: 3,
        pk: "clk".into(),
        // Uplinks applied before `send` returns: the test clock decides what happens when.
        transport: FleetTransport::InProcess,
        layout: None,
        more_nodes: Vec::new(),
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.expect("fleet"));
    Rig { store, app, clock, fleet }
}

impl Rig {
    async fn done(self) {
        self.app.stop().await;
        self.store.cleanup().await;
    }

    async fn order(&self, id: &str, token: &str) -> Value {
        self.fleet
            .client
            .get(&format!("/api/v1/orders/{id}"), token)
            .await
            .expect("get order")
            .1
    }

    async fn wait_state(&self, id: &str, token: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let o = self.order(id, token).await;
            if o["state"] == want {
                return o;
            }
            assert!(tokio::time::Instant::now() < deadline, "order {id} never became {want}: {o}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Scans door 1 and returns the order id (confirming in each-time mode).
    async fn scan(&self, shopper: &ShopperHandle) -> String {
        let cab = self.fleet.cabinets[0].id().to_string();
        let (st, b) = self
            .fleet
            .client
            .post("/api/v1/orders", &shopper.token, &json!({"cabinet": cab, "door": 1}))
            .await
            .unwrap();
        assert_eq!(st, 201, "{b}");
        b["order_id"].as_str().unwrap().to_string()
    }

    async fn confirm(&self, order_id: &str, shopper: &ShopperHandle) {
        let url = eventually(10, "confirm url", || async {
            self.order(order_id, &shopper.token).await["payment"]["confirm_url"]
                .as_str()
                .map(str::to_string)
        })
        .await;
        let path = url.strip_prefix(&self.fleet.client.base).unwrap().to_string();
        let (st, b) = self.fleet.client.post(&path, &shopper.token, &json!({})).await.unwrap();
        assert_eq!(st, 200, "{b}");
    }

    fn sandbox(&self, p: ProviderKind) -> &Arc<dyn Sandbox> {
        &self.app.sandboxes[&p]
    }

    fn charges_for(&self, order_id: &str) -> usize {
        self.app
            .sandboxes
            .values()
            .flat_map(|s| s.charges())
            .filter(|c| c.order_id == order_id)
            .count()
    }

    /// Advances the clock in steps of `step_ms` until `f` holds.
    async fn advance_until<F, Fut>(&self, step_ms: i64, what: &str, f: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            self.clock.advance(step_ms);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

async fn authorization_timeout_cancels(kind: Store) {
    let r = rig(kind, 0).await;
    let s = r.fleet.new_shopper("13800000001", "alipay", "each_time").await.unwrap();
    let id = r.scan(&s).await;
    eventually(10, "payment opened", || async {
        (r.order(&id, &s.token).await["payment"]["state"] == "awaiting_confirmation").then_some(())
    })
    .await;
    r.clock.advance(59_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.order(&id, &s.token).await["state"], "authorizing", "not before the deadline");
    r.clock.advance(1_000);
    let o = r.wait_state(&id, &s.token, "cancelled").await;
    assert_eq!(o["cancel_reason"], "authorization_timeout");
    assert_eq!(o["total_cents"], 0);
    eventually(10, "provider order cancelled", || async {
        (r.order(&id, &s.token).await["payment"]["state"] == "cancelled").then_some(())
    })
    .await;
    // A confirmation arriving now is late: nothing opens, nothing is charged.
    let _ = r.sandbox(ProviderKind::Alipay).confirm(&tare_providers::refs::out_order_no(&id));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!r.fleet.cabinets[0].is_open(DoorNo::of(1)));
    // The door and the shopper are free again.
    let s2 = r.fleet.new_shopper("13800000002", "wechat", "once").await.unwrap();
    let p = r.fleet.purchase(&s2, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    assert_eq!(r.charges_for(&id), 0);
    r.done().await;
}
on_both_stores!(authorization_timeout, authorization_timeout_cancels);

async fn door_that_never_opens_goes_abnormal(kind: Store) {
    let r = rig(kind, 0).await;
    r.fleet.cabinets[0].set_faults(Faults {
        jammed: true,
        ..Faults::default()
    });
    let s = r.fleet.new_shopper("13800000003", "wechat", "once").await.unwrap();
    let id = r.scan(&s).await;
    r.wait_state(&id, &s.token, "opening").await;
    r.advance_until(1_000, "abnormal", || async { r.order(&id, &s.token).await["state"] == "abnormal" })
        .await;
    let o = r.order(&id, &s.token).await;
    assert_eq!(o["anomalies"], json!([{"code": "door_never_opened"}]));
    // It was queried exactly five times before giving up.
    let feed = r.app.platform.events_after(0, 10_000).await.unwrap();
    let queries = feed
        .iter()
        .filter(|e| e.aggregate_id == id && e.event_type == "DoorQueryRequested")
        .count();
    assert_eq!(queries, 5);
    assert_eq!(r.charges_for(&id), 0);
    eventually(10, "payment cancelled", || async {
        (r.order(&id, &s.token).await["payment"]["state"] == "cancelled").then_some(())
    })
    .await;
    r.done().await;
}
on_both_stores!(door_never_opens, door_that_never_opens_goes_abnormal);

async fn lost_open_event_is_recovered_by_query(kind: Store) {
    let r = rig(kind, 0).await;
    r.fleet.cabinets[0].set_faults(Faults {
        lose_open_events: true,
        ..Faults::default()
    });
    let s = r.fleet.new_shopper("13800000004", "wechat", "once").await.unwrap();
    let id = r.scan(&s).await;
    assert!(r.fleet.cabinets[0].wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    r.wait_state(&id, &s.token, "opening").await;
    // The first door check queries; the ack says open.
    r.advance_until(500, "open via query", || async { r.order(&id, &s.token).await["state"] == "open" })
        .await;
    let vc = &r.fleet.cabinets[0];
    vc.take(DoorNo::of(1), LaneNo::of(2), 2).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let o = r.wait_state(&id, &s.token, "paid").await;
    assert_eq!(o["lines"][0]["qty"], 2);
    assert_eq!(o["anomalies"], json!([]));
    assert_eq!(r.charges_for(&id), 1);
    r.done().await;
}
on_both_stores!(lost_open_event, lost_open_event_is_recovered_by_query);

async fn unexpected_close_lands_on_the_order(kind: Store) {
    let r = rig(kind, 0).await;
    // The open event is lost and the shopper closes before any door check: the cabinet
    // sees a close it did not expect.
    r.fleet.cabinets[0].set_faults(Faults {
        lose_open_events: true,
        ..Faults::default()
    });
    let s = r.fleet.new_shopper("13800000005", "wechat", "once").await.unwrap();
    let id = r.scan(&s).await;
    let vc = &r.fleet.cabinets[0];
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let o = r.wait_state(&id, &s.token, "abnormal").await;
    assert!(
        o["anomalies"].as_array().unwrap().contains(&json!({"code": "unexpected_close"})),
        "{o}"
    );
    assert_eq!(r.charges_for(&id), 0, "an abnormal order is not charged");
    // The evidence still shows what was taken, and the ledger records it as uncharged.
    assert_eq!(o["evidence"]["inference"][0]["count"], 1);
    let cab = r.fleet.cabinets[0].id().to_string();
    let ledger = eventually(10, "ledger entry", || async {
        let (_, l) = r
            .fleet
            .client
            .get(&format!("/api/v1/cabinets/{cab}/ledger"), &r.fleet.client.admin)
            .await
            .unwrap();
        let entries = l["items"].as_array().cloned().unwrap_or_default();
        entries.iter().find(|e| e["reason"] == "uncharged_take").cloned()
    })
    .await;
    assert_eq!(ledger["change"], -1);
    r.done().await;
}
on_both_stores!(unexpected_close, unexpected_close_lands_on_the_order);

async fn heavier_lane_is_flagged_and_the_rest_charged(kind: Store) {
    let r = rig(kind, 0).await;
    let s = r.fleet.new_shopper("13800000006", "alipay", "once").await.unwrap();
    let id = r.scan(&s).await;
    let vc = &r.fleet.cabinets[0];
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(1), 2).await.unwrap();
    vc.put(DoorNo::of(1), LaneNo::of(3), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    let o = r.wait_state(&id, &s.token, "paid").await;
    assert_eq!(o["lines"].as_array().unwrap().len(), 1);
    assert_eq!(o["lines"][0]["lane"], 1);
    assert_eq!(o["lines"][0]["qty"], 2);
    let price = r.fleet.planogram[0][&(DoorNo::of(1), LaneNo::of(1))].1;
    assert_eq!(o["total_cents"], 2 * price);
    assert_eq!(o["anomalies"], json!([{"code": "lane_heavier", "lane": 3, "items": 1}]));
    assert_eq!(r.charges_for(&id), 1);
    r.done().await;
}
on_both_stores!(heavier_lane, heavier_lane_is_flagged_and_the_rest_charged);

async fn unstable_then_stable_weights(kind: Store) {
    let r = rig(kind, 500).await;
    let vc = r.fleet.cabinets[0].clone();
    vc.set_faults(Faults {
        never_stable: true,
        unstable_after_close: 3,
        ..Faults::default()
    });
    let s = r.fleet.new_shopper("13800000007", "wechat", "once").await.unwrap();
    let id = r.scan(&s).await;
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    r.wait_state(&id, &s.token, "open").await;
    vc.take(DoorNo::of(1), LaneNo::of(2), 3).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    r.wait_state(&id, &s.token, "settling").await;
    r.clock.advance(500);
    r.clock.advance(250);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(r.order(&id, &s.token).await["state"], "settling", "unstable samples never count");
    vc.report_weight(DoorNo::of(1)).await.unwrap();
    r.advance_until(250, "settled", || async { r.order(&id, &s.token).await["state"] == "paid" })
        .await;
    let o = r.order(&id, &s.token).await;
    assert_eq!(o["lines"][0]["qty"], 3);
    assert_eq!(o["evidence"]["weight_after"]["stable"], true);
    assert!(o["evidence"]["weight_after"]["device_ts"].as_i64() > o["evidence"]["weight_before"]["device_ts"].as_i64());

    // Never stable: after 0.5 s + 2 s the order goes to an operator, uncharged.
    let id2 = r.scan(&s).await;
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    r.wait_state(&id2, &s.token, "open").await;
    vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    r.wait_state(&id2, &s.token, "settling").await;
    r.advance_until(250, "abnormal", || async { r.order(&id2, &s.token).await["state"] == "abnormal" })
        .await;
    assert_eq!(r.order(&id2, &s.token).await["anomalies"], json!([{"code": "no_stable_weight"}]));
    assert_eq!(r.charges_for(&id2), 0);
    r.done().await;
}
on_both_stores!(unstable_weights, unstable_then_stable_weights);

async fn duplicate_callbacks_charge_once(kind: Store) {
    let r = rig(kind, 0).await;
    r.sandbox(ProviderKind::Wechat).set_behaviour(SandboxBehaviour {
        notifications: NotificationFaults {
            duplicate: true,
            ..Default::default()
        },
        ..Default::default()
    });
    let s = r.fleet.new_shopper("13800000008", "wechat", "each_time").await.unwrap();
    let id = r.scan(&s).await;
    r.confirm(&id, &s).await;
    let vc = &r.fleet.cabinets[0];
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    r.wait_state(&id, &s.token, "paid").await;
    // Both copies of both callbacks arrived; each changed state once.
    let feed_events = || async {
        let feed = r.app.platform.events_after(0, 100_000).await.unwrap();
        let n = |t: &str| feed.iter().filter(|e| e.aggregate_id == id && e.event_type == t).count();
        (n("PaymentAuthorized"), n("PaymentCollected"), n("OrderPaid"))
    };
    eventually(10, "duplicates delivered", || async {
        let (_, m) = r.fleet.client.get("/metrics", &r.fleet.client.admin).await.unwrap();
        let text = m.as_str().map(str::to_string).unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("tare_callbacks_applied_total") && l.ends_with(" 4"))
            .then_some(())
    })
    .await;
    // The feed may trail the aggregates by a moment (PostgreSQL's sequencer).
    eventually(10, "the feed to show one of each", || async {
        (feed_events().await == (1, 1, 1)).then_some(())
    })
    .await;
    assert_eq!(r.charges_for(&id), 1);
    r.done().await;
}
on_both_stores!(duplicate_callbacks, duplicate_callbacks_charge_once);

async fn failed_then_successful_deduction(kind: Store) {
    let r = rig(kind, 0).await;
    r.sandbox(ProviderKind::Alipay).set_behaviour(SandboxBehaviour {
        fail_collections: 1,
        max_pending_per_shopper: 1,
        ..Default::default()
    });
    let s = r.fleet.new_shopper("13800000009", "alipay", "once").await.unwrap();
    let id = r.scan(&s).await;
    let vc = &r.fleet.cabinets[0];
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(1), 2).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    eventually(10, "charge failure recorded", || async {
        (r.order(&id, &s.token).await["charge_attempts"] == 1 && r.app.platform.order(&id).await.unwrap().retry_pending).then_some(())
    })
    .await;
    assert_eq!(r.order(&id, &s.token).await["state"], "charging");
    // The shopper cannot buy again while the order is unpaid.
    let cab = vc.id().to_string();
    let (st, _) = r
        .fleet
        .client
        .post("/api/v1/orders", &s.token, &json!({"cabinet": cab, "door": 1}))
        .await
        .unwrap();
    assert_eq!(st, 409);
    r.clock.advance(3_599_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.order(&id, &s.token).await["state"], "charging", "no retry before the hour");
    r.clock.advance(1_000);
    let o = r.wait_state(&id, &s.token, "paid").await;
    assert_eq!(o["charge_attempts"], 2);
    assert_eq!(r.charges_for(&id), 1);
    r.done().await;
}
on_both_stores!(failed_then_successful, failed_then_successful_deduction);

async fn lost_reply_is_resolved_by_query(kind: Store) {
    let r = rig(kind, 0).await;
    r.sandbox(ProviderKind::Alipay).set_behaviour(SandboxBehaviour {
        // The first call fails unapplied, the second is applied but answered with a
        // system error (a lost reply): the adapter resolves it by query.
        system_errors: 2,
        max_pending_per_shopper: 1,
        ..Default::default()
    });
    let s = r.fleet.new_shopper("13800000010", "alipay", "once").await.unwrap();
    let id = r.scan(&s).await;
    let vc = &r.fleet.cabinets[0];
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    // The collection happened but its reply was lost; the retry asks instead of paying again.
    r.advance_until(250, "paid after query", || async {
        let o = r.order(&id, &s.token).await;
        if o["state"] != "paid" {
            eprintln!(
                "lost_reply: {} payment {} attempts {}",
                o["state"], o["payment"]["state"], o["charge_attempts"]
            );
        }
        o["state"] == "paid"
    })
    .await;
    assert_eq!(r.charges_for(&id), 1);
    assert_eq!(r.order(&id, &s.token).await["charge_attempts"], 1);
    r.done().await;
}
on_both_stores!(lost_reply, lost_reply_is_resolved_by_query);

async fn restart_in_the_middle_completes_once(kind: Store) {
    let r = rig(kind, 500).await;
    let s = r.fleet.new_shopper("13800000011", "alipay", "each_time").await.unwrap();
    let id = r.scan(&s).await;
    r.confirm(&id, &s).await;
    let vc = r.fleet.cabinets[0].clone();
    assert!(vc.wait_open(DoorNo::of(1), Duration::from_secs(10)).await);
    r.wait_state(&id, &s.token, "open").await;
    vc.take(DoorNo::of(1), LaneNo::of(3), 2).await.unwrap();
    vc.close(DoorNo::of(1)).await.unwrap();
    r.wait_state(&id, &s.token, "settling").await;
    // Stop the process mid-purchase (the stable-weight timer is pending), keep the store,
    // the provider and the clock.
    let sandboxes = r.app.sandboxes.clone();
    let admin = r.app.admin_token.clone();
    let planogram = r.fleet.planogram.clone();
    r.app.stop().await;
    let mut cfg = config(&r.store);
    cfg.clock = PlatformClock::Manual(r.clock.clone());
    cfg.saga.stable_wait_ms = 500;
    cfg.sandboxes = Some(sandboxes);
    cfg.admin_token = admin.clone();
    let app = App::start(cfg).await.expect("restart");
    let vc2 = vc.with_transport(tare::in_process::InProcessTransport::new(
        app.platform.devices().clone(),
        vc.id().clone(),
    ));
    vc2.connect().await.unwrap();
    let fleet = Fleet {
        client: ApiClient::new(&app.base_url, &admin),
        cabinets: vec![vc2],
        planogram,
        more_clients: Vec::new(),
        sandbox_secret: None,
    };
    let get = |id: String| {
        let fleet = &fleet;
        let token = s.token.clone();
        async move { fleet.client.get(&format!("/api/v1/orders/{id}"), &token).await.unwrap().1 }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while get(id.clone()).await["state"] != "paid" {
        assert!(tokio::time::Instant::now() < deadline, "order did not complete after restart");
        r.clock.advance(250);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let o = get(id.clone()).await;
    assert_eq!(o["lines"][0]["qty"], 2);
    let charges: usize = app
        .sandboxes
        .values()
        .flat_map(|s| s.charges())
        .filter(|c| c.order_id == id)
        .count();
    assert_eq!(charges, 1, "charged exactly once across the restart");
    eventually(10, "one payment and one stock movement in the feed", || async {
        let feed = app.platform.events_after(0, 100_000).await.unwrap();
        let paid = feed.iter().filter(|e| e.aggregate_id == id && e.event_type == "OrderPaid").count();
        let moved = feed
            .iter()
            .filter(|e| e.event_type == "LaneStockChanged" && e.payload.to_string().contains(&id))
            .count();
        (paid == 1 && moved == 1).then_some(())
    })
    .await;
    app.stop().await;
    r.store.cleanup().await;
}
on_both_stores!(restart_mid_purchase, restart_in_the_middle_completes_once);
