//! Coupons through the API, on both stores [O7]: the operator's policy decides which
//! coupon is used automatically; a used coupon is spent once; the charge is the
//! subtotal minus the discount, and the provider collects exactly that.

use crate::common::{start, Store, TestStore};
use serde_json::json;
use std::sync::Arc;
use tare::fleet::{Fleet, FleetSpec};
use tare_domain::{DoorNo, LaneNo};

async fn coupons_are_applied_by_policy(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = start(&store).await;
    let spec = FleetSpec {
        cabinets: 1,
        doors: 1,
        lanes: 3,
        capacity: 10,
        noise_grams: 1.0,
        seed: 9,
        pk: "cpn".into(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.unwrap());
    let c = &fleet.client;
    let (st, _) = c.post_raw("/api/v1/coupon-policy", &c.admin, "{}").await.unwrap();
    assert_eq!(st, 405, "the policy is set with PUT");
    let http = reqwest::Client::new();
    let put = |pct: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/api/v1/coupon-policy", c.base);
        let admin = c.admin.clone();
        async move {
            http.put(url)
                .bearer_auth(admin)
                .json(&json!({"max_value_over_amount_pct": pct}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(put(json!(30)).await, 200);

    let shopper = fleet.new_shopper("13900000001", "alipay", "once").await.unwrap();
    let price = fleet.planogram[0][&(DoorNo::of(1), LaneNo::of(1))].1;
    // A coupon worth far more than one item, and one worth a little.
    for (id, value) in [("big", price * 10), ("small", 50)] {
        let (st, b) = c
            .post(
                &format!("/api/v1/shoppers/{}/coupons", shopper.id),
                &c.admin,
                &json!({"id": id, "type": "cash", "value_cents": value}),
            )
            .await
            .unwrap();
        assert_eq!(st, 201, "{b}");
    }
    let p = fleet.purchase(&shopper, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    assert_eq!(p.order["coupon"]["coupon_id"], "small", "the big coupon breaks the 30 % rule");
    assert_eq!(p.order["discount_cents"], 50);
    assert_eq!(p.order["total_cents"], price - 50);

    // The spent coupon is not used again; with no limit, the big one now covers it all.
    assert_eq!(put(serde_json::Value::Null).await, 200);
    let p2 = fleet.purchase(&shopper, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)]).await.unwrap();
    assert_eq!(p2.order["coupon"]["coupon_id"], "big");
    assert_eq!(p2.order["total_cents"], 0);
    assert_eq!(p2.order["state"], "paid");
    let collected: Vec<_> = app.sandboxes.values().flat_map(|s| s.charges()).collect();
    assert_eq!(collected.len(), 1, "a fully discounted order collects nothing");
    assert_eq!(collected[0].amount.get(), price - 50);
    // Both coupons are spent now.
    crate::common::eventually(10, "coupons redeemed", || async {
        let s = app.platform.shopper(&shopper.id).await.unwrap();
        s.available_coupons().is_empty().then_some(())
    })
    .await;
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(coupon_policy, coupons_are_applied_by_policy);
