//! Bad input: provider callbacks.

use super::*;

async fn forged_and_duplicate_callbacks_change_nothing(kind: Store) {
    let h = Harness::start(
        kind,
        FleetSpec {
            cabinets: 1,
            doors: 2,
            lanes: 2,
            pk: "bi-cb".into(),
            ..FleetSpec::default()
        },
    )
    .await;
    let (app, fleet) = (&h.app, &h.fleet);
    let c = &fleet.client;
    let admin = c.admin.clone();
    let alipay = app.sandboxes[&ProviderKind::Alipay].clone();
    let key = alipay.key().to_vec();
    let http = reqwest::Client::new();

    // Alice has a paid order.
    let alice = fleet.new_shopper("13600000001", "alipay", "once").await.unwrap();
    let paid = fleet
        .purchase(&alice, 0, DoorNo::of(1), &[(LaneNo::of(1), 2)])
        .await
        .expect("alice's purchase");
    assert_eq!(paid.order["state"], "paid", "{}", paid.order);
    let paid_id = paid.order_id.clone();

    // Bob's order waits for his confirmation.
    let bob = fleet.new_shopper("13600000002", "alipay", "each_time").await.unwrap();
    let (st, created) = c
        .post(
            "/api/v1/orders",
            &bob.token,
            &json!({"cabinet": fleet.cabinets[0].id().to_string(), "door": 2}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let waiting_id = created["order_id"].as_str().unwrap().to_string();
    eventually(10, "bob's payment to await confirmation", || async {
        let (_, o) = c.get(&format!("/api/v1/orders/{waiting_id}"), &admin).await.unwrap();
        (o["payment"]["state"] == "awaiting_confirmation").then_some(())
    })
    .await;

    let head = settle(app).await;
    let waiting_order = app.platform.order(&waiting_id).await.unwrap();
    let waiting_payment = app.platform.payment(&waiting_id).await.unwrap();
    let paid_order = app.platform.order(&paid_id).await.unwrap();
    let paid_payment = app.platform.payment(&paid_id).await.unwrap();
    let charges_before = alipay.charges();

    // A notification that would authorize Bob's order if it were believed.
    let authorize = serde_json::to_vec(&SandboxNotification {
        id: format!("n-forged-{waiting_id}"),
        event_type: "AUTHORIZED".into(),
        out_order_no: waiting_id.clone(),
        transaction_id: None,
        amount_cents: None,
        reason: None,
    })
    .unwrap();
    let now = now_ms().to_string();
    let good_sig = sign(&key, &now, &authorize);
    let stale = (now_ms() - 10 * 60 * 1000).to_string();
    let future = (now_ms() + 10 * 60 * 1000).to_string();
    let tampered = {
        let mut v: Value = serde_json::from_slice(&authorize).unwrap();
        v["id"] = json!(format!("n-other-{waiting_id}"));
        serde_json::to_vec(&v).unwrap()
    };
    let wechat_key = app.sandboxes[&ProviderKind::Wechat].key().to_vec();

    type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<String>, Option<String>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no signature headers",
            "alipay",
            authorize.clone(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "timestamp without signature",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "signature without timestamp",
            "alipay",
            authorize.clone(),
            None,
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "signed with the wrong key",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            Some(sign(b"not-the-key", &now, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "signature that is not hex",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            Some("zz-not-hex".into()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "body changed after signing",
            "alipay",
            tampered,
            Some(now.clone()),
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "timestamp changed after signing",
            "alipay",
            authorize.clone(),
            Some((now_ms() - 1000).to_string()),
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "stale timestamp, correctly signed",
            "alipay",
            authorize.clone(),
            Some(stale.clone()),
            Some(sign(&key, &stale, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "future timestamp, correctly signed",
            "alipay",
            authorize.clone(),
            Some(future.clone()),
            Some(sign(&key, &future, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "non-numeric timestamp",
            "alipay",
            authorize.clone(),
            Some("yesterday".into()),
            Some(sign(&key, "yesterday", &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "another provider's key",
            "alipay",
            authorize.clone(),
            Some(now.clone()),
            Some(sign(&wechat_key, &now, &authorize)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "alipay's signature at the wechat path",
            "wechat",
            authorize.clone(),
            Some(now.clone()),
            Some(good_sig.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "unknown provider path",
            "paypal",
            authorize.clone(),
            Some(now.clone()),
            Some(good_sig.clone()),
            StatusCode::NOT_FOUND,
            "provider_not_found",
        ),
    ];
    for (what, provider, body, ts, sig, status, code) in cases {
        let r = post_callback(&http, &c.base, provider, &body, ts.as_deref(), sig.as_deref()).await;
        assert_error(&r, status, code, None, what);
        assert_feed_unchanged(app, head, what).await;
        assert_eq!(
            app.platform.payment(&waiting_id).await.unwrap(),
            waiting_payment,
            "{what}: payment changed"
        );
    }
    assert_eq!(
        app.platform.order(&waiting_id).await.unwrap(),
        waiting_order,
        "forged callbacks changed the order"
    );
    let (_, o) = c.get(&format!("/api/v1/orders/{waiting_id}"), &admin).await.unwrap();
    assert_eq!(o["payment"]["state"], "awaiting_confirmation", "{o}");
    assert!(!fleet.cabinets[0].is_open(DoorNo::of(2)), "a forged callback opened the door");

    // A correctly signed duplicate COLLECTED for Alice's paid order: accepted, no effect.
    let txn = paid.order["payment"]["transaction_id"]
        .as_str()
        .expect("transaction id")
        .to_string();
    let total = paid.order["total_cents"].as_i64().expect("total");
    assert!(total > 0);
    let duplicate = serde_json::to_vec(&SandboxNotification {
        id: format!("n-paid-{paid_id}-again"),
        event_type: "COLLECTED".into(),
        out_order_no: paid_id.clone(),
        transaction_id: Some(txn.clone()),
        amount_cents: Some(total),
        reason: None,
    })
    .unwrap();
    for attempt in 0..2 {
        let ts = now_ms().to_string();
        let sig = sign(&key, &ts, &duplicate);
        let r = post_callback(&http, &c.base, "alipay", &duplicate, Some(&ts), Some(&sig)).await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "duplicate COLLECTED #{attempt}: {}", r.1);
        assert_feed_unchanged(app, head, "duplicate COLLECTED").await;
    }
    assert_eq!(app.platform.order(&paid_id).await.unwrap(), paid_order);
    assert_eq!(app.platform.payment(&paid_id).await.unwrap(), paid_payment);
    assert_eq!(alipay.charges(), charges_before, "the sandbox ledger changed");
    assert_eq!(
        alipay.charges().iter().filter(|ch| ch.order_id == paid_id).count(),
        1,
        "exactly one charge for the paid order"
    );
    let (_, o) = c.get(&format!("/api/v1/orders/{paid_id}"), &alice.token).await.unwrap();
    assert_eq!(o["state"], "paid");
    assert_eq!(o["total_cents"], json!(total));
    assert_eq!(o["payment"]["transaction_id"], json!(txn));

    // The control: Bob's genuine confirmation (a real signed callback) still works, and
    // his order goes on to be paid once.
    let url = created["confirm_url"].as_str().expect("confirm url").to_string();
    let path = url.strip_prefix(&c.base).unwrap_or(&url).to_string();
    let (st, b) = c.post(&path, &bob.token, &json!({})).await.unwrap();
    assert_eq!(st, StatusCode::OK, "confirm: {b}");
    let vc = &fleet.cabinets[0];
    assert!(
        vc.wait_open(DoorNo::of(2), Duration::from_secs(15)).await,
        "bob's door never opened"
    );
    assert_eq!(vc.take(DoorNo::of(2), LaneNo::of(1), 1).await.unwrap(), 1);
    vc.close(DoorNo::of(2)).await.unwrap();
    let done = fleet
        .wait_terminal(&waiting_id, &bob.token, Duration::from_secs(30))
        .await
        .expect("bob's order ends");
    assert_eq!(done["state"], "paid", "{done}");
    assert_eq!(alipay.charges().iter().filter(|ch| ch.order_id == waiting_id).count(), 1);
    assert_eq!(alipay.charges().iter().filter(|ch| ch.order_id == paid_id).count(), 1);

    h.stop().await;
}

on_both_stores!(callbacks, forged_and_duplicate_callbacks_change_nothing);
