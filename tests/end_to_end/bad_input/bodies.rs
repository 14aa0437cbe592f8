//! Bad input: malformed and invalid bodies.

use super::*;

async fn invalid_bodies_are_refused_and_change_nothing(kind: Store) {
    let h = Harness::start(
        kind,
        FleetSpec {
            cabinets: 1,
            pk: "bi-body".into(),
            ..FleetSpec::default()
        },
    )
    .await;
    let (app, fleet) = (&h.app, &h.fleet);
    let c = &fleet.client;
    let admin = c.admin.clone();
    let head = settle(app).await;

    // --- products ---
    let product_absent = |sku: &'static str| {
        let c = c.clone();
        let admin = admin.clone();
        async move {
            let r = c.get(&format!("/api/v1/products/{sku}"), &admin).await.unwrap();
            assert_error(
                &r,
                StatusCode::NOT_FOUND,
                "product_not_found",
                None,
                &format!("product {sku} after refusal"),
            );
        }
    };

    let cases: Vec<(&str, &str, StatusCode, &str, Option<&str>)> = vec![
        (
            "malformed JSON",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 100"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "not JSON at all",
            "sku=bad-1&name=Bad",
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "price as a string",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": "3"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "fractional price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 1.5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "negative price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "absurd price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 100000001}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "zero unit weight",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 0, "price_cents": 100}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("unit_grams"),
        ),
        (
            "negative unit weight",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": -5.5, "price_cents": 100}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("unit_grams"),
        ),
        (
            "missing price",
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price_cents"),
        ),
        (
            "missing name",
            r#"{"sku": "bad-1", "unit_grams": 10, "price_cents": 100}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("name"),
        ),
    ];
    for (what, body, status, code, field) in cases {
        let r = c.post_raw("/api/v1/products", &admin, body).await.unwrap();
        assert_error(&r, status, code, field, what);
        assert_feed_unchanged(app, head, what).await;
    }
    // An unknown field (see `assert_unknown_field` for the doubled name).
    let r = c
        .post_raw(
            "/api/v1/products",
            &admin,
            r#"{"sku": "bad-1", "name": "Bad", "unit_grams": 10, "price_cents": 100, "colour": "red"}"#,
        )
        .await
        .unwrap();
    assert_unknown_field(&r, "colour", "unknown product field");
    assert_feed_unchanged(app, head, "unknown product field").await;
    product_absent("bad-1").await;

    // Over 64 KiB (valid JSON otherwise: the size alone refuses it).
    let big = json!({"sku": "big-1", "name": "x".repeat(70 * 1024), "unit_grams": 10, "price_cents": 100}).to_string();
    assert!(big.len() > 64 * 1024);
    let r = c.post_raw("/api/v1/products", &admin, &big).await.unwrap();
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large", None, "body over 64 KiB");
    assert_feed_unchanged(app, head, "body over 64 KiB").await;
    product_absent("big-1").await;

    // A product that exists already is not overwritten.
    let cola_before = c.get("/api/v1/products/cola-330", &admin).await.unwrap();
    let r = c
        .post(
            "/api/v1/products",
            &admin,
            &json!({"sku": "cola-330", "name": "Cheap cola", "unit_grams": 348, "price_cents": 1}),
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::CONFLICT, "product_exists", None, "duplicate sku");
    assert_feed_unchanged(app, head, "duplicate sku").await;
    assert_eq!(c.get("/api/v1/products/cola-330", &admin).await.unwrap(), cola_before);

    // --- cabinets ---
    let cabinet = |door: Value, capacity: Value, sku: &str| {
        json!({"pk": "bi-bad", "dn": "SN00001", "kind": "weight", "location": {"lat": 31.23, "lng": 121.47},
               "doors": [{"door": door, "lanes": [{"lane": 1, "sku": sku, "capacity": capacity, "restock_threshold": 2}]}]})
    };
    let mut missing_lanes = cabinet(json!(1), json!(10), "cola-330");
    missing_lanes["doors"][0].as_object_mut().unwrap().remove("lanes");
    let mut unknown_lane_field = cabinet(json!(1), json!(10), "cola-330");
    unknown_lane_field["doors"][0]["lanes"][0]["colour"] = json!("red");
    let mut missing_location = cabinet(json!(1), json!(10), "cola-330");
    missing_location.as_object_mut().unwrap().remove("location");
    let cab_cases: Vec<(&str, Value, &str)> = vec![
        (
            "negative capacity",
            cabinet(json!(1), json!(-1), "cola-330"),
            "doors[0].lanes[0].capacity",
        ),
        (
            "capacity as a string",
            cabinet(json!(1), json!("10"), "cola-330"),
            "doors[0].lanes[0].capacity",
        ),
        ("door 0", cabinet(json!(0), json!(10), "cola-330"), "doors[0].door"),
        ("door 17", cabinet(json!(17), json!(10), "cola-330"), "doors[0].door"),
        (
            "unknown product in a lane",
            cabinet(json!(1), json!(10), "ghost-1"),
            "doors[0].lanes[0].sku",
        ),
        ("missing lanes", missing_lanes, "doors[0].lanes"),
        ("missing location", missing_location, "location"),
    ];
    for (what, body, field) in cab_cases {
        let r = c.post("/api/v1/cabinets", &admin, &body).await.unwrap();
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field), what);
        assert_feed_unchanged(app, head, what).await;
        let r = c.get("/api/v1/cabinets/bi-bad.SN00001", &admin).await.unwrap();
        assert_error(
            &r,
            StatusCode::NOT_FOUND,
            "cabinet_not_found",
            None,
            &format!("{what}: cabinet after refusal"),
        );
    }
    let r = c.post("/api/v1/cabinets", &admin, &unknown_lane_field).await.unwrap();
    assert_unknown_field(&r, "doors[0].lanes[0].colour", "unknown lane field");
    assert_feed_unchanged(app, head, "unknown lane field").await;
    let r = c
        .post_raw(
            "/api/v1/cabinets",
            &admin,
            r#"{"pk": "bi-bad", "dn": "SN00001", "kind": "weight",, }"#,
        )
        .await
        .unwrap();
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None, "malformed cabinet");
    assert_feed_unchanged(app, head, "malformed cabinet").await;

    // A cabinet that exists already is not re-registered.
    let existing = fleet.cabinets[0].id().clone();
    let cab_before = app.platform.cabinet(&existing).await.unwrap();
    let mut dup = cabinet(json!(1), json!(10), "cola-330");
    dup["pk"] = json!("bi-body");
    let r = c.post("/api/v1/cabinets", &admin, &dup).await.unwrap();
    assert_error(&r, StatusCode::CONFLICT, "cabinet_exists", None, "duplicate cabinet");
    assert_feed_unchanged(app, head, "duplicate cabinet").await;
    assert_eq!(app.platform.cabinet(&existing).await.unwrap(), cab_before);

    // --- shoppers and orders ---
    let r = c
        .post(
            "/api/v1/shoppers",
            "",
            &json!({"phone": "13800000001", "provider": "paypal", "confirm_mode": "once"}),
        )
        .await
        .unwrap();
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("provider"),
        "unknown provider",
    );
    assert_feed_unchanged(app, head, "unknown provider").await;

    let shopper = fleet.new_shopper("13800000002", "alipay", "once").await.unwrap();
    let head = settle(app).await;
    let shopper_before = app.platform.shopper(&shopper.id).await.unwrap();
    let cab = existing.to_string();
    let order_cases: Vec<(&str, Value, StatusCode, &str, Option<&str>)> = vec![
        (
            "door 0",
            json!({"cabinet": cab, "door": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("door"),
        ),
        (
            "door as a string",
            json!({"cabinet": cab, "door": "1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("door"),
        ),
        (
            "missing door",
            json!({"cabinet": cab}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("door"),
        ),
    ];
    for (what, body, status, code, field) in order_cases {
        let r = c.post("/api/v1/orders", &shopper.token, &body).await.unwrap();
        assert_error(&r, status, code, field, what);
        assert_feed_unchanged(app, head, what).await;
    }
    let r = c
        .post(
            "/api/v1/orders",
            &shopper.token,
            &json!({"cabinet": cab, "door": 1, "tip_cents": 100}),
        )
        .await
        .unwrap();
    assert_unknown_field(&r, "tip_cents", "unknown order field");
    assert_feed_unchanged(app, head, "unknown order field").await;
    let r = c.post_raw("/api/v1/orders", &shopper.token, "{\"cabinet\": ").await.unwrap();
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None, "truncated order");
    assert_feed_unchanged(app, head, "truncated order").await;
    assert_eq!(app.platform.shopper(&shopper.id).await.unwrap(), shopper_before);
    assert_eq!(app.platform.cabinet(&existing).await.unwrap(), cab_before);

    // The control: a valid product is accepted and does move the feed.
    let r = c
        .post(
            "/api/v1/products",
            &admin,
            &json!({"sku": "good-1", "name": "Good", "unit_grams": 10, "price_cents": 100}),
        )
        .await
        .unwrap();
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let after = settle(app).await;
    assert!(after > head, "a valid request moves the feed");

    h.stop().await;
}

on_both_stores!(invalid_bodies, invalid_bodies_are_refused_and_change_nothing);
