//! Operators as people [issue 14, API.md "Auth"], on both stores: an admin adds an
//! operator, an auditor and a scoped operator; each can do what their role allows and
//! gets 403 beyond it (an auditor writing, an operator managing staff or refunding above
//! the limit, a scoped operator outside its cabinets); what they do is recorded under
//! their id; a revoked token stops working at once; `/metrics` needs a staff token on
//! the API's listener and none on its own.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use tare::app::App;
use tare::fleet::{ApiClient, Fleet, FleetSpec};
use tare_domain::{Cents, DoorNo, LaneNo};

/// Adds an operator as the admin; returns (operator_id, token).
async fn add(client: &ApiClient, body: Value) -> (String, String) {
    let (st, b) = client.post("/api/v1/operators", &client.admin, &body).await.unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let id = b["operator_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("op_"), "{b}");
    (id, b["token"].as_str().unwrap().to_string())
}

fn code(b: &Value) -> &str {
    b["error"]["code"].as_str().unwrap_or("?")
}

async fn roles_scopes_and_revocation(kind: Store) {
    let store = TestStore::new(kind).await;
    let mut cfg = config(&store);
    cfg.refund_limit = Cents::new(50);
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 2,
        pk: "opsa".into(),
        ..FleetSpec::default()
    };
    let fleet = Arc::new(Fleet::provision(&app, &spec).await.unwrap());
    let c = &fleet.client;
    let (cab0, cab1) = (fleet.cabinets[0].id().to_string(), fleet.cabinets[1].id().to_string());
    let (li, li_token) = add(c, json!({"name": "Li Wei", "role": "operator"})).await;
    let (_, auditor) = add(c, json!({"name": "Zhang Min", "role": "auditor"})).await;
    let (_, scoped) = add(c, json!({"name": "Franchise North", "role": "operator", "cabinets": [cab0]})).await;

    // Bad staff requests name their field.
    for (body, field) in [
        (json!({"name": "x", "role": "boss"}), "role"),
        (json!({"name": " ", "role": "auditor"}), "name"),
        (json!({"name": "x", "role": "auditor", "cabinets": []}), "cabinets"),
        (json!({"name": "x", "role": "auditor", "cabinets": ["*"]}), "cabinets"),
        (json!({"name": "x", "role": "auditor", "extra": 1}), "extra"),
    ] {
        let (st, b) = c.post("/api/v1/operators", &c.admin, &body).await.unwrap();
        assert_eq!(
            (st, b["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{body}: {b}"
        );
    }

    // Only an admin manages staff.
    for token in [&li_token, &auditor] {
        let (st, b) = c
            .post("/api/v1/operators", token, &json!({"name": "me", "role": "admin"}))
            .await
            .unwrap();
        assert_eq!((st, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
        let (st, _) = c.get("/api/v1/operators", token).await.unwrap();
        assert_eq!(st, StatusCode::FORBIDDEN);
    }

    // The operator works the fleet, and the log says it was them.
    let product = json!({"sku": "OPS-1", "name": "Tea", "unit_grams": 250.0, "price_cents": 300});
    let (st, b) = c.post("/api/v1/products", &li_token, &product).await.unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let created = eventually(20, "the product's event in the feed", || async {
        let (_, page) = c.get("/api/v1/events?stream=product:OPS-1", &auditor).await.unwrap();
        page["events"].as_array().and_then(|e| e.first().cloned())
    })
    .await;
    assert_eq!(created["metadata"]["actor"], json!(li), "{created}");

    // The auditor reads everything and writes nothing.
    for path in ["/api/v1/events?limit=5", "/api/v1/dead-letters", "/api/v1/anomalies", "/metrics"] {
        let (st, b) = c.get(path, &auditor).await.unwrap();
        assert_eq!(st, StatusCode::OK, "{path}: {b}");
    }
    let (st, b) = c
        .post(
            "/api/v1/products",
            &auditor,
            &json!({"sku": "OPS-2", "name": "x", "unit_grams": 1.0, "price_cents": 1}),
        )
        .await
        .unwrap();
    assert_eq!((st, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("read-only"), "{b}");

    // Refunds: an operator up to the limit, an admin above it.
    let shopper = fleet.new_shopper("13900000051", "alipay", "once").await.unwrap();
    let p = fleet.purchase(&shopper, 0, DoorNo::of(1), &[(LaneNo::of(1), 2)]).await.unwrap();
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    let refunds = format!("/api/v1/orders/{}/refunds", p.order_id);
    let (st, b) = c
        .post(&refunds, &li_token, &json!({"amount_cents": 51, "reason": "dented"}))
        .await
        .unwrap();
    assert_eq!((st, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("above 50 cents"), "{b}");
    let (st, b) = c
        .post(&refunds, &li_token, &json!({"amount_cents": 50, "reason": "dented"}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = c
        .post(&refunds, &c.admin, &json!({"amount_cents": 51, "reason": "dented"}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");

    // The scoped operator reaches its cabinet and that cabinet's orders, nothing else.
    for path in [
        format!("/api/v1/cabinets/{cab0}"),
        format!("/api/v1/orders/{}", p.order_id),
        format!("/api/v1/anomalies?cabinet={cab0}"),
    ] {
        let (st, b) = c.get(&path, &scoped).await.unwrap();
        assert_eq!(st, StatusCode::OK, "{path}: {b}");
    }
    for path in [
        format!("/api/v1/cabinets/{cab1}"),
        format!("/api/v1/anomalies?cabinet={cab1}"),
        "/api/v1/events".into(),
        "/api/v1/anomalies".into(),
    ] {
        let (st, b) = c.get(&path, &scoped).await.unwrap();
        assert_eq!((st, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{path}: {b}");
    }

    // Revoked: the token stops working at once; the list shows who and when.
    let (st, b) = c
        .post(
            &format!("/api/v1/operators/{li}/revoke"),
            &c.admin,
            &json!({"reason": "left the company"}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let (st, b) = c.get("/api/v1/dead-letters", &li_token).await.unwrap();
    assert_eq!(
        (st, b["error"]["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token revoked")),
        "{b}"
    );
    let listed = eventually(20, "the revocation in the staff list", || async {
        let (_, l) = c.get("/api/v1/operators", &c.admin).await.unwrap();
        let me = l["items"].as_array()?.iter().find(|o| o["operator_id"] == json!(li))?.clone();
        me["revoked_at"].is_i64().then_some(l)
    })
    .await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    assert!(!listed.to_string().contains(&li_token[li.len() + 1..]), "no token in the list");
    let me = items.iter().find(|o| o["operator_id"] == json!(li)).unwrap();
    assert_eq!(
        (me["revoked_by"].as_str(), me["added_by"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"), Some("operator"))
    );

    // A forged operator token, a malformed one, and none.
    let forged = format!("{li}.{}", "0".repeat(48));
    for token in [forged.as_str(), "op_x.y", ""] {
        let (st, _) = c.get("/api/v1/dead-letters", token).await.unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{token}");
    }
    let (st, _) = c.get("/metrics", "").await.unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED, "metrics need a staff token on the API's listener");
    let (st, _) = c.get("/metrics", &shopper.token).await.unwrap();
    assert_eq!(st, StatusCode::FORBIDDEN);

    app.stop().await;
    store.cleanup().await;
}

#[tokio::test]
async fn roles_scopes_and_revocation_on_sqlite() {
    roles_scopes_and_revocation(Store::Sqlite).await;
}

#[tokio::test]
async fn roles_scopes_and_revocation_on_postgres() {
    roles_scopes_and_revocation(Store::Postgres).await;
}

#[tokio::test]
async fn a_metrics_listener_of_its_own_serves_without_a_token() {
    let store = TestStore::new(Store::Sqlite).await;
    let mut cfg = config(&store);
    cfg.metrics = Some("127.0.0.1:0".into());
    let app = App::start(cfg).await.expect("app");
    let addr = app.metrics.as_ref().expect("a metrics listener").addr;
    let r = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("tare_feed_head_position"));
    let r = reqwest::get(format!("http://{addr}/api/v1/events")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing but metrics there");
    app.stop().await;
    store.cleanup().await;
}
