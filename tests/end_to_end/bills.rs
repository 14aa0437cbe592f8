//! Bill reconciliation through the API, on both stores [R3 (b), B6]: paid orders
//! reconcile against the provider's bill of today with nothing to report and no
//! anomaly; a provider that lost our charges (a fresh provider after a restart) shows
//! them missing at the provider, each raised once as an anomaly however often the day
//! is run again, and queued once for an operator at its order's cabinet; bad input is
//! refused with the field. Only the provider's bill port and the platform's API are
//! relied on.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec};
use tare_domain::reconciliation::dates::{add_days, china_date};
use tare_domain::{DoorNo, LaneNo, ProviderKind};

/// Every event of the reconciliation aggregate so far (type, payload).
async fn reconciliation_events(client: &ApiClient) -> Vec<(String, Value)> {
    let mut after = 0;
    let mut out = Vec::new();
    loop {
        let (st, page) = client
            .get(&format!("/api/v1/events?after={after}&limit=1000"), &client.admin)
            .await
            .unwrap();
        assert_eq!(st, StatusCode::OK, "{page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return out;
        }
        for e in &events {
            if e["aggregate_type"] == "reconciliation" {
                out.push((e["event_type"].as_str().unwrap_or("").to_string(), e["payload"].clone()));
            }
        }
        after = page["next"].as_i64().unwrap();
    }
}

async fn bills_reconcile_with_the_providers_bill(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 2,
        pk: "bil".into(),
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.unwrap();
    let alice = fleet.new_shopper("13900000021", "alipay", "once").await.unwrap();
    let bob = fleet.new_shopper("13900000022", "alipay", "once").await.unwrap();
    let mut orders = Vec::new();
    for (shopper, door) in [(&alice, 1), (&bob, 2)] {
        let p = fleet.purchase(shopper, 0, DoorNo::of(door), &[(LaneNo::of(1), 1)]).await.unwrap();
        assert_eq!(p.order["state"], "paid", "{}", p.order);
        orders.push((p.order_id.clone(), p.order["total_cents"].as_i64().unwrap()));
    }
    let today = china_date(app.platform.now_ms());
    let path = format!("/api/v1/reconciliation/bills?provider=alipay&date={today}");

    // Computed on demand the first time, recorded, and served as recorded after.
    let (st, r) = fleet.client.get(&path, &fleet.client.admin).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        r,
        json!({"provider": "alipay", "date": today, "matched": 2,
            "missing_at_provider": [], "missing_here": [], "mismatched": []})
    );
    let (_, again) = fleet.client.get(&path, &fleet.client.admin).await.unwrap();
    assert_eq!(again, r);
    // The global feed numbers events after they commit (on PostgreSQL, a moment later).
    let events = eventually(10, "the run in the feed", || async {
        let ev = reconciliation_events(&fleet.client).await;
        (!ev.is_empty()).then_some(ev)
    })
    .await;
    let kinds: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["BillsReconciled"], "one run, no anomaly");
    // The other provider had nothing today, on either side.
    let (st, w) = fleet
        .client
        .get(
            &format!("/api/v1/reconciliation/bills?provider=wechat&date={today}"),
            &fleet.client.admin,
        )
        .await
        .unwrap();
    assert_eq!((st, w["matched"].as_i64()), (StatusCode::OK, Some(0)), "{w}");

    // Bad input names the field.
    let tomorrow = add_days(&today, 1).unwrap();
    for (query, field) in [
        (format!("provider=paypal&date={today}"), "provider"),
        (format!("date={today}"), "provider"),
        ("provider=alipay&date=2026-02-30".to_string(), "date"),
        ("provider=alipay".to_string(), "date"),
        (format!("provider=alipay&date={tomorrow}"), "date"),
        (format!("provider=alipay&date={today}&x=1"), "query"),
    ] {
        let (st, e) = fleet
            .client
            .get(&format!("/api/v1/reconciliation/bills?{query}"), &fleet.client.admin)
            .await
            .unwrap();
        assert_eq!(
            (st, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"), Some(field)),
            "{query}: {e}"
        );
    }
    let (st, _) = fleet.client.get(&path, "not-a-token").await.unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    app.stop().await;

    // The same store with a provider that never saw our charges: ours are missing there.
    let app = App::start(config(&store)).await.expect("app again");
    assert!(app.platform.bill_providers().contains(&ProviderKind::Alipay));
    let r = eventually(20, "the run after the restart", || async {
        app.platform.reconcile_bills(ProviderKind::Alipay, &today).await.ok()
    })
    .await;
    assert_eq!(r.matched, 0);
    let mut missing: Vec<(String, i64)> = r
        .missing_at_provider
        .iter()
        .map(|i| (i.order_id.clone(), i.amount_cents.get()))
        .collect();
    missing.sort();
    let mut want = orders.clone();
    want.sort();
    assert_eq!(missing, want);
    assert!(r.missing_here.is_empty() && r.mismatched.is_empty());
    // Run again: recorded again, and no anomaly is raised twice.
    let again = app.platform.reconcile_bills(ProviderKind::Alipay, &today).await.unwrap();
    assert_eq!(again, r);
    let recorded = app.platform.bill_reconciliation(ProviderKind::Alipay, &today).await.unwrap();
    assert_eq!(recorded, r);
    let client = ApiClient::new(&app.base_url, &app.admin_token);
    let events = eventually(10, "the anomalies in the feed", || async {
        let ev = reconciliation_events(&client).await;
        (ev.len() == 6).then_some(ev)
    })
    .await;
    let kinds: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "BillsReconciled",
            "BillsReconciled",
            "BillsReconciled",
            "AnomalyRaised",
            "AnomalyRaised",
            "BillsReconciled"
        ]
    );
    let mut raised: Vec<String> = events
        .iter()
        .filter(|(t, _)| t == "AnomalyRaised")
        .map(|(_, p)| {
            let a = &p["AnomalyRaised"];
            assert_eq!(a["kind"], "bill_missing_at_provider", "{a}");
            assert_eq!((a["provider"].as_str(), a["date"].as_str()), (Some("alipay"), Some(today.as_str())));
            a["order_id"].as_str().unwrap().to_string()
        })
        .collect();
    raised.sort();
    assert_eq!(raised, want.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>());
    // Each is in the operators' queue once, at the cabinet of its order.
    let queue = eventually(20, "the anomalies in the queue", || async {
        let (_, b) = client.get("/api/v1/anomalies?state=open", &client.admin).await.unwrap();
        let items = b["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 2).then_some(items)
    })
    .await;
    let cab = fleet.cabinets[0].id().to_string();
    let mut queued: Vec<String> = queue
        .iter()
        .map(|a| {
            assert_eq!(
                (&a["kind"], &a["cabinet"]),
                (&json!("bill_missing_at_provider"), &json!(cab)),
                "{a}"
            );
            a["order_id"].as_str().unwrap().to_string()
        })
        .collect();
    queued.sort();
    assert_eq!(queued, raised);
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(bills, bills_reconcile_with_the_providers_bill);

/// The nightly run: a durable timer on the platform clock, at 10:00 China time for the
/// day before, re-armed each night, and still there after a restart.
async fn the_nightly_run_reconciles_the_day_before(kind: Store) {
    use tare_domain::reconciliation::dates::day_start;
    use tare_platform::clock::{ManualClock, PlatformClock};
    let store = TestStore::new(kind).await;
    // 09:00 on 2026-12-01 in China.
    let clock = ManualClock::new(day_start("2026-12-01").unwrap() + 9 * 3_600_000);
    let mut cfg = config(&store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    let app = App::start(cfg.clone()).await.expect("app");
    let recorded = |app: &App, date: &'static str| {
        let p = app.platform.clone();
        async move {
            let mut all = Vec::new();
            for provider in p.bill_providers() {
                all.push(p.recorded_bill_reconciliation(provider, date).await.unwrap()?);
            }
            Some(all)
        }
    };
    assert!(recorded(&app, "2026-11-30").await.is_none(), "not before 10:00");
    // A restart before the run loses nothing.
    app.stop().await;
    let app = App::start(cfg.clone()).await.expect("app again");
    clock.advance(3_600_000 + 1_000);
    let runs = eventually(20, "the run for the 30th", || recorded(&app, "2026-11-30")).await;
    assert_eq!(runs.len(), app.platform.bill_providers().len());
    assert!(runs.iter().all(|r| r.date == "2026-11-30" && r.is_clean()), "{runs:?}");
    assert!(recorded(&app, "2026-12-01").await.is_none());
    // The next night's was armed.
    clock.advance(86_400_000);
    eventually(20, "the run for the 1st", || recorded(&app, "2026-12-01")).await;
    app.stop().await;
    store.cleanup().await;
}

on_both_stores!(nightly, the_nightly_run_reconciles_the_day_before);
