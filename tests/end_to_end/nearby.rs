//! Cabinets near a point [M4], on both stores: nearest first, only within the radius,
//! across geohash cell edges, for shoppers and operators; bad coordinates refused with
//! the field.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tare::app::App;
use tare::fleet::ApiClient;

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

async fn nearby_is_nearest_first_within_the_radius(kind: Store) {
    let store = TestStore::new(kind).await;
    let app = App::start(config(&store)).await.expect("app");
    let api = ApiClient::new(&app.base_url, &app.admin_token);
    let (st, b) = api
        .post(
            "/api/v1/products",
            &app.admin_token,
            &json!({"sku": "cola-330", "name": "Cola", "unit_grams": 348, "price_cents": 300}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    // A point on a geohash cell edge (lat 31.2890625 is one at precisions 4 to 7), and
    // cabinets north and south of it, across the edge.
    let (lat0, lng0) = (31.2890625, 121.47);
    let north = |m: f64| (lat0 + m / M_PER_DEG, lng0);
    let spots = [
        ("n50", north(50.0)),
        ("s400", north(-400.0)),
        ("n2k", north(2_000.0)),
        ("s8k", north(-8_000.0)),
        ("n30k", north(30_000.0)),
    ];
    for (dn, (lat, lng)) in spots {
        let body = json!({"pk": "nb", "dn": dn, "kind": "weight", "location": {"lat": lat, "lng": lng},
            "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola-330", "capacity": 10, "restock_threshold": 2}]}]});
        let (st, b) = api.post("/api/v1/cabinets", &app.admin_token, &body).await.unwrap();
        assert_eq!(st, StatusCode::CREATED, "{b}");
    }
    let (_, shopper) = api
        .post(
            "/api/v1/shoppers",
            "",
            &json!({"phone": "13800000081", "provider": "alipay", "confirm_mode": "once"}),
        )
        .await
        .unwrap();
    let shopper_token = shopper["token"].as_str().unwrap().to_string();
    let near = |radius: f64, token: String| {
        let api = &api;
        async move {
            let (st, page) = api
                .get(&format!("/api/v1/cabinets/nearby?lat={lat0}&lng={lng0}&radius_m={radius}"), &token)
                .await
                .unwrap();
            assert_eq!(st, StatusCode::OK, "{page}");
            page["items"].as_array().unwrap().clone()
        }
    };
    let ids = |items: &[Value]| items.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let items = eventually(20, "the locations projected", || async {
        let items = near(50_000.0, app.admin_token.clone()).await;
        (items.len() == 5).then_some(items)
    })
    .await;
    assert_eq!(ids(&items), ["nb.n50", "nb.s400", "nb.n2k", "nb.s8k", "nb.n30k"]);
    let d: Vec<f64> = items.iter().map(|i| i["distance_m"].as_f64().unwrap()).collect();
    for (got, want) in d.iter().zip([50.0, 400.0, 2_000.0, 8_000.0, 30_000.0]) {
        assert!((got - want).abs() < want * 0.01, "{d:?}");
    }
    assert_eq!(items[0]["status"], "pending_init", "never connected");
    assert_eq!(
        ids(&near(1_000.0, shopper_token.clone()).await),
        ["nb.n50", "nb.s400"],
        "a shopper may ask; the edge is crossed"
    );
    assert_eq!(ids(&near(399.0, app.admin_token.clone()).await), ["nb.n50"]);
    assert_eq!(ids(&near(10_000.0, app.admin_token.clone()).await).len(), 4);
    let (_, far) = api
        .get("/api/v1/cabinets/nearby?lat=39.9&lng=116.4&radius_m=5000", &app.admin_token)
        .await
        .unwrap();
    assert_eq!(far["items"], json!([]), "Beijing has none");
    for (q, field) in [
        ("lat=91&lng=0&radius_m=10", "lat"),
        ("lat=0&lng=-181&radius_m=10", "lng"),
        ("lat=0&lng=0&radius_m=0", "radius_m"),
        ("lat=0&lng=0&radius_m=50001", "radius_m"),
        ("lat=0&lng=0&radius_m=10&limit=0", "limit"),
        ("lat=0&lng=0", "query"),
    ] {
        let (st, e) = api.get(&format!("/api/v1/cabinets/nearby?{q}"), &app.admin_token).await.unwrap();
        assert_eq!(
            (st, &e["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!(field)),
            "{q}: {e}"
        );
    }
    let (st, _) = api.get("/api/v1/cabinets/nearby?lat=0&lng=0&radius_m=10", "nope").await.unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(nearby, nearby_is_nearest_first_within_the_radius);
