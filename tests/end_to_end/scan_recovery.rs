//! A scan cut off between its commands [O1, O2]: it took the shopper's order slot and the
//! door, then creating the order failed (the soak's PostgreSQL crash, here a trigger that
//! refuses the store's writes of those events) and so did giving them back. Within
//! [`ORDER_CREATION_GRACE_MS`] the door stays busy and the shopper's slot taken (a scan
//! still in flight may yet create the order); after it, the next scan of that door, and
//! the shopper's next scan, give them back and go ahead, on both stores.

use crate::common::{config, Store, TestStore};
use reqwest::StatusCode;
use serde_json::json;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTransport};
use tare_platform::clock::{ManualClock, PlatformClock};
use tare_platform::db::Db;
use tare_platform::service::orders::ORDER_CREATION_GRACE_MS;

/// The events a crash between the scan's commands never lets the store write.
const REFUSED: &str = "'OrderCreated', 'DoorReleased', 'OrderEnded'";

async fn refuse_writes(db: &Db, on: bool) {
    match (db, on) {
        (Db::Sqlite { write, .. }, true) => {
            let sql = format!(
                "CREATE TRIGGER crash_mid_scan BEFORE INSERT ON events WHEN NEW.event_type IN ({REFUSED}) \
                 BEGIN SELECT RAISE(ABORT, 'crashed mid-scan'); END"
            );
            sqlx::query(&sql).execute(write).await.unwrap();
        }
        (Db::Sqlite { write, .. }, false) => {
            sqlx::query("DROP TRIGGER crash_mid_scan").execute(write).await.unwrap();
        }
        (Db::Postgres(pool), true) => {
            sqlx::query(
                "CREATE FUNCTION crash_mid_scan() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'crashed mid-scan'; END $$ LANGUAGE plpgsql",
            )
            .execute(pool)
            .await
            .unwrap();
            let sql = format!(
                "CREATE TRIGGER crash_mid_scan BEFORE INSERT ON events FOR EACH ROW \
                 WHEN (NEW.event_type IN ({REFUSED})) EXECUTE FUNCTION crash_mid_scan()"
            );
            sqlx::query(&sql).execute(pool).await.unwrap();
        }
        (Db::Postgres(pool), false) => {
            sqlx::query("DROP TRIGGER crash_mid_scan ON events").execute(pool).await.unwrap();
        }
    }
}

async fn a_door_and_slot_held_by_an_order_never_created_are_given_back(kind: Store) {
    let store = TestStore::new(kind).await;
    let clock = ManualClock::new(1_800_000_000_000);
    let mut cfg = config(&store);
    cfg.clock = PlatformClock::Manual(clock.clone());
    let app = App::start(cfg).await.expect("app");
    let spec = FleetSpec {
        cabinets: 1,
        doors: 2,
        lanes: 1,
        capacity: 10,
        pk: "scr".into(),
        transport: FleetTransport::InProcess,
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision(&app, &spec).await.expect("fleet");
    let client = &fleet.client;
    let cab = fleet.cabinets[0].id().to_string();
    let first = fleet.new_shopper("13800000094", "wechat", "once").await.unwrap();
    let second = fleet.new_shopper("13800000095", "wechat", "once").await.unwrap();
    let scan = |token: String, door: u8| {
        let cab = cab.clone();
        async move {
            let (st, body) = client
                .post("/api/v1/orders", &token, &json!({"cabinet": cab, "door": door}))
                .await
                .unwrap();
            (st, body)
        }
    };

    refuse_writes(app.platform.store(), true).await;
    let (st, body) = scan(first.token.clone(), 1).await;
    assert!(st.is_server_error(), "the scan fails with the store: {st} {body}");
    refuse_writes(app.platform.store(), false).await;

    // Within the grace a scan still in flight could create the order: nothing is freed.
    let (st, body) = scan(second.token.clone(), 1).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("cabinet_busy")),
        "{body}"
    );
    let (st, body) = scan(first.token.clone(), 2).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("unpaid_order")),
        "{body}"
    );

    clock.advance(ORDER_CREATION_GRACE_MS + 1_000);
    let (st, body) = scan(first.token.clone(), 2).await;
    assert_eq!(st, StatusCode::CREATED, "the shopper's slot is given back: {body}");
    let (st, body) = scan(second.token.clone(), 1).await;
    assert_eq!(st, StatusCode::CREATED, "the door is given back: {body}");
    let (_, c) = client.get(&format!("/api/v1/cabinets/{cab}"), &client.admin).await.unwrap();
    assert_eq!(c["doors"][0]["held_by"], body["order_id"], "{c}");

    let feed = app.platform.events_after(0, 100_000).await.unwrap();
    let released = feed
        .iter()
        .filter(|e| e.event_type == "DoorReleased" && e.payload["DoorReleased"]["reason"] == "order_never_created")
        .count();
    assert_eq!(released, 1, "the give-back is on the record");
    app.stop().await;
    store.cleanup().await;
}
on_both_stores!(half_scan, a_door_and_slot_held_by_an_order_never_created_are_given_back);
