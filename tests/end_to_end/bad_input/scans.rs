//! Bad input: scans the current state refuses.

use super::*;

async fn refused_scans_leave_no_order_and_the_open_order_goes_on(kind: Store) {
    let h = Harness::start(
        kind,
        FleetSpec {
            cabinets: 2,
            doors: 2,
            lanes: 2,
            pk: "bi-scan".into(),
            ..FleetSpec::default()
        },
    )
    .await;
    let (app, fleet) = (&h.app, &h.fleet);
    let c = &fleet.client;
    let alice = fleet.new_shopper("13700000001", "alipay", "each_time").await.unwrap();
    let bob = fleet.new_shopper("13700000002", "wechat", "once").await.unwrap();
    let cab0 = fleet.cabinets[0].id().clone();
    let cab1 = fleet.cabinets[1].id().clone();

    // Alice's order is open at cabinet 0, door 1.
    let first = scan_and_open(fleet, &alice, 0, 1).await;
    let head = settle(app).await;
    let first_before = app.platform.order(&first).await.unwrap();
    let bob_before = app.platform.shopper(&bob.id).await.unwrap();
    assert_eq!(bob_before.open_order, None);
    let holder = |cab: &tare_domain::cabinet::Cabinet, door: u8| {
        cab.door(DoorNo::of(door))
            .unwrap()
            .holder
            .as_ref()
            .map(|h| h.session_id().to_string())
    };
    let cab0_before = app.platform.cabinet(&cab0).await.unwrap();
    assert_eq!(holder(&cab0_before, 1), Some(first.clone()));
    assert_eq!(holder(&cab0_before, 2), None);

    let scan = |who: &ShopperHandle, cabinet: &str, door: u8| {
        let (c, token) = (c.clone(), who.token.clone());
        let body = json!({"cabinet": cabinet, "door": door});
        async move { c.post("/api/v1/orders", &token, &body).await.unwrap() }
    };

    // Unknown cabinet, unknown door: 404, and nothing is written.
    let r = scan(&bob, "bi-scan.SN99999", 1).await;
    assert_error(&r, StatusCode::NOT_FOUND, "cabinet_not_found", None, "unknown cabinet");
    assert_feed_unchanged(app, head, "unknown cabinet").await;
    let r = scan(&bob, &cab0.to_string(), 9).await;
    assert_error(&r, StatusCode::NOT_FOUND, "door_not_found", None, "unknown door");
    assert_feed_unchanged(app, head, "unknown door").await;
    let r = scan(&bob, "not-a-cabinet-id", 1).await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "malformed cabinet id: {}", r.1);
    assert_eq!(r.1["error"]["code"], "invalid_field", "{}", r.1);
    assert_feed_unchanged(app, head, "malformed cabinet id").await;

    // A second shopper on the busy door: 409 cabinet_busy, and nothing written.
    let head = settle(app).await;
    let r = scan(&bob, &cab0.to_string(), 1).await;
    assert_error(&r, StatusCode::CONFLICT, "cabinet_busy", None, "busy door");
    assert_feed_unchanged(app, head, "busy door").await;
    assert_eq!(
        app.platform.shopper(&bob.id).await.unwrap().open_order,
        None,
        "busy door: Bob's slot"
    );
    let cab0_now = app.platform.cabinet(&cab0).await.unwrap();
    assert_eq!(holder(&cab0_now, 1), Some(first.clone()), "busy door: the door is still Alice's");
    assert_eq!(cab0_now.doors, cab0_before.doors, "busy door: cabinet 0 unchanged");

    // Alice again while her order is open, on the other (free) door: 409 unpaid_order.
    let alice_before = app.platform.shopper(&alice.id).await.unwrap();
    assert_eq!(alice_before.open_order, Some(first.clone()));
    let head = settle(app).await;
    let r = scan(&alice, &cab0.to_string(), 2).await;
    assert_error(&r, StatusCode::CONFLICT, "unpaid_order", None, "unpaid order");
    assert_feed_unchanged(app, head, "unpaid order").await;
    let r = scan(&alice, &cab1.to_string(), 1).await;
    assert_error(&r, StatusCode::CONFLICT, "unpaid_order", None, "unpaid order, other cabinet");
    assert_feed_unchanged(app, head, "unpaid order, other cabinet").await;
    assert_eq!(app.platform.shopper(&alice.id).await.unwrap(), alice_before);
    let cab0_now = app.platform.cabinet(&cab0).await.unwrap();
    assert_eq!(holder(&cab0_now, 2), None, "unpaid order: door 2 not taken");

    // An offline cabinet: 409.
    fleet.cabinets[1].disconnect().await.unwrap();
    fleet
        .wait_status(&cab1, "offline", Duration::from_secs(10))
        .await
        .expect("cabinet 1 offline");
    settle(app).await;
    let cab1_before = app.platform.cabinet(&cab1).await.unwrap();
    let head = settle(app).await;
    let r = scan(&bob, &cab1.to_string(), 1).await;
    assert_error(&r, StatusCode::CONFLICT, "cabinet_unavailable", None, "offline cabinet");
    assert_feed_unchanged(app, head, "offline cabinet").await;
    assert_eq!(app.platform.shopper(&bob.id).await.unwrap().open_order, None, "offline: Bob's slot");
    let cab1_now = app.platform.cabinet(&cab1).await.unwrap();
    assert_eq!(cab1_now, cab1_before, "offline: cabinet 1 unchanged");

    // Alice's order is untouched by all of it, and goes on to be paid.
    assert_eq!(app.platform.order(&first).await.unwrap(), first_before);
    let vc = &fleet.cabinets[0];
    let price = fleet.planogram[0][&(DoorNo::of(1), LaneNo::of(1))].1;
    assert_eq!(vc.take(DoorNo::of(1), LaneNo::of(1), 1).await.unwrap(), 1);
    vc.close(DoorNo::of(1)).await.unwrap();
    let done = fleet
        .wait_terminal(&first, &alice.token, Duration::from_secs(30))
        .await
        .expect("alice's order ends");
    assert_eq!(done["state"], "paid", "{done}");
    assert_eq!(done["total_cents"], json!(price), "{done}");
    assert_eq!(done["lines"].as_array().unwrap().len(), 1, "{done}");
    let charges: Vec<_> = app.sandboxes[&ProviderKind::Alipay]
        .charges()
        .into_iter()
        .filter(|ch| ch.order_id == first)
        .collect();
    assert_eq!(charges.len(), 1, "one collection for Alice's order");
    assert_eq!(charges[0].amount.get(), price);

    // No order was ever made for Bob; Alice has exactly her one.
    settle(app).await;
    projections_caught_up(app).await;
    assert!(my_order_ids(c, &bob).await.is_empty(), "refused scans left an order for Bob");
    assert_eq!(my_order_ids(c, &alice).await, vec![first.clone()]);
    assert!(app.sandboxes[&ProviderKind::Wechat].charges().is_empty(), "Bob was never charged");

    h.stop().await;
}

on_both_stores!(refused_scans, refused_scans_leave_no_order_and_the_open_order_goes_on);
