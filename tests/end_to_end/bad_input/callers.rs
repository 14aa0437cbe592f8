//! Bad input: authentication and authorization.

use super::*;

async fn wrong_callers_are_refused_and_change_nothing(kind: Store) {
    let h = Harness::start(
        kind,
        FleetSpec {
            cabinets: 1,
            pk: "bi-auth".into(),
            ..FleetSpec::default()
        },
    )
    .await;
    let (app, fleet) = (&h.app, &h.fleet);
    let c = &fleet.client;
    let admin = c.admin.clone();
    let alice = fleet.new_shopper("13900000001", "alipay", "once").await.unwrap();
    let bob = fleet.new_shopper("13900000002", "wechat", "once").await.unwrap();
    let bought = fleet
        .purchase(&alice, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)])
        .await
        .expect("alice's purchase");
    assert_eq!(bought.order["state"], "paid", "{}", bought.order);
    let order_id = bought.order_id.clone();
    let head = settle(app).await;
    let order_before = app.platform.order(&order_id).await.unwrap();
    let cab_id = fleet.cabinets[0].id().clone();
    let cab_before = app.platform.cabinet(&cab_id).await.unwrap();
    let alice_before = app.platform.shopper(&alice.id).await.unwrap();
    let bob_before = app.platform.shopper(&bob.id).await.unwrap();

    let http = reqwest::Client::new();
    let product = json!({"sku": "auth-1", "name": "Auth", "unit_grams": 10, "price_cents": 100});
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let st = resp.status();
        let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
        (st, body)
    };

    // No token at all.
    let r = send(http.post(format!("{}/api/v1/products", c.base)).json(&product)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "no token");
    assert_feed_unchanged(app, head, "no token").await;
    // Not a bearer token.
    let r = send(
        http.post(format!("{}/api/v1/products", c.base))
            .header("authorization", format!("Basic {admin}"))
            .json(&product),
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "basic auth");
    // An empty bearer token.
    let r = c.post("/api/v1/products", "", &product).await.unwrap();
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "empty token");
    // Garbage, a token shaped like a shopper's for nobody, and a real shopper id with the
    // wrong secret.
    for (what, token) in [
        ("garbage token", "garbage".to_string()),
        ("token of nobody", "0190aaaabbbbccccddddeeeeffff0000.deadbeef".to_string()),
        ("wrong secret", format!("{}.{}", alice.id, "00".repeat(24))),
        ("admin token with a suffix", format!("{admin}x")),
    ] {
        let r = c.post("/api/v1/products", &token, &product).await.unwrap();
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, what);
        let r = c.get(&format!("/api/v1/orders/{order_id}"), &token).await.unwrap();
        assert_error(
            &r,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
            &format!("{what} reading an order"),
        );
        let r = c
            .post("/api/v1/orders", &token, &json!({"cabinet": cab_id.to_string(), "door": 2}))
            .await
            .unwrap();
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, &format!("{what} scanning"));
        assert_feed_unchanged(app, head, what).await;
    }
    // No token reading an order.
    let r = send(http.get(format!("{}/api/v1/orders/{order_id}", c.base))).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "no token reading an order");

    // A shopper on operator endpoints.
    let r = c.post("/api/v1/products", &alice.token, &product).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper creating a product");
    assert_feed_unchanged(app, head, "shopper creating a product").await;
    let r = c
        .post(
            "/api/v1/cabinets",
            &alice.token,
            &json!({"pk": "bi-auth", "dn": "SN00099", "kind": "weight", "location": {"lat": 31.0, "lng": 121.0},
                    "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola-330", "capacity": 10, "restock_threshold": 2}]}]}),
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper creating a cabinet");
    let r = c
        .post(
            &format!("/api/v1/shoppers/{}/coupons", alice.id),
            &alice.token,
            &json!({"type": "cash", "value_cents": 10000, "min_spend_cents": 0}),
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper granting herself a coupon");
    let r = c.get(&format!("/api/v1/cabinets/{cab_id}"), &alice.token).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "shopper reading a cabinet");
    assert_feed_unchanged(app, head, "shopper on operator endpoints").await;
    let r = c.get("/api/v1/products/auth-1", &admin).await.unwrap();
    assert_error(&r, StatusCode::NOT_FOUND, "product_not_found", None, "product after refusals");
    let r = c.get("/api/v1/cabinets/bi-auth.SN00099", &admin).await.unwrap();
    assert_error(&r, StatusCode::NOT_FOUND, "cabinet_not_found", None, "cabinet after refusal");

    // The operator scanning a cabinet.
    let r = c
        .post("/api/v1/orders", &admin, &json!({"cabinet": cab_id.to_string(), "door": 2}))
        .await
        .unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "operator scanning");
    let r = c.get("/api/v1/shoppers/me/orders", &admin).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "operator listing 'my' orders");
    assert_feed_unchanged(app, head, "operator on shopper endpoints").await;

    // Bob reading Alice's order.
    let r = c.get(&format!("/api/v1/orders/{order_id}"), &bob.token).await.unwrap();
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, "another shopper's order");
    assert!(
        r.1.get("order_id").is_none() && r.1.get("lines").is_none(),
        "nothing of the order leaks: {}",
        r.1
    );
    assert_feed_unchanged(app, head, "another shopper's order").await;
    // …while Alice and the operator can.
    let (st, o) = c.get(&format!("/api/v1/orders/{order_id}"), &alice.token).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{o}");
    let (st, _) = c.get(&format!("/api/v1/orders/{order_id}"), &admin).await.unwrap();
    assert_eq!(st, StatusCode::OK);
    // Bob's list does not show it; Alice's does.
    projections_caught_up(app).await;
    assert!(my_order_ids(c, &bob).await.is_empty());
    assert_eq!(my_order_ids(c, &alice).await, vec![order_id.clone()]);

    // Nothing changed anywhere.
    assert_feed_unchanged(app, head, "auth refusals").await;
    assert_eq!(app.platform.order(&order_id).await.unwrap(), order_before);
    assert_eq!(app.platform.cabinet(&cab_id).await.unwrap(), cab_before);
    assert_eq!(app.platform.shopper(&alice.id).await.unwrap(), alice_before);
    assert_eq!(app.platform.shopper(&bob.id).await.unwrap(), bob_before);

    h.stop().await;
}

on_both_stores!(wrong_callers, wrong_callers_are_refused_and_change_nothing);
