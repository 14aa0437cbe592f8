//! The global feed under concurrency, on both stores [E1]: many writers commit at once
//! (on PostgreSQL, with a transaction held open across others' commits, so commits land
//! out of sequence order) while a reader tails the feed; at the end the reader has seen
//! every event of the events table exactly once, at positions 1..N with no gap.

use crate::common::{Store, TestStore};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tare_domain::product::ProductCommand;
use tare_domain::{Cents, Grams, Sku};
use tare_platform::db::Db;
use tare_platform::store::{Aggregates, Meta};
use tare_platform::Platform;
use tare_platform::PlatformConfig;

const WRITERS: usize = 8;
const PER_WRITER: usize = 60;

async fn feed_is_gap_free_under_concurrent_writers(kind: Store) {
    let store = TestStore::new(kind).await;
    let mut cfg = PlatformConfig::sqlite(std::env::temp_dir());
    cfg.store = store.config.clone();
    cfg.pg_max_connections = 12;
    let platform = Platform::start(cfg, vec![]).await.expect("platform");
    // The writers command the aggregates straight over the platform's store.
    let aggregates = Arc::new(Aggregates::new(platform.store(), false));

    // The reader tails from the start while the writers run.
    let reader = {
        let p = platform.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut pos = 0;
            let mut idle_since = tokio::time::Instant::now();
            loop {
                let batch = p.events_after(pos, 97).await.expect("read feed");
                if batch.is_empty() {
                    if seen.len() > WRITERS * PER_WRITER * 2 && idle_since.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    continue;
                }
                idle_since = tokio::time::Instant::now();
                for e in batch {
                    pos = e.position;
                    seen.push((e.position, e.aggregate_type, e.aggregate_id, e.sequence));
                }
            }
            seen
        })
    };

    // On PostgreSQL, one transaction stays open while everyone else commits.
    let slow = if let Db::Postgres(pool) = &platform.store() {
        let pool = pool.clone();
        Some(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('probe', 'slow', 1, 'Probe', '1', '{}', '{}')")
                .execute(&mut *tx)
                .await
                .unwrap();
            // Deliberately hold the transaction open across the writers' commits.
            tokio::time::sleep(Duration::from_millis(400)).await;
            tx.commit().await.unwrap();
        }))
    } else {
        let aggregates = aggregates.clone();
        Some(tokio::spawn(async move {
            let cmd = ProductCommand::Register {
                sku: Sku::of("probe"),
                name: "Probe".into(),
                unit_grams: Grams::of(1.0),
                price: Cents::new(1),
                at: 1,
            };
            aggregates
                .products
                .execute("probe", cmd, Meta::new(1, "probe", "test"))
                .await
                .unwrap();
        }))
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let aggregates = aggregates.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let sku = format!("w{w}-{i}");
                let reg = ProductCommand::Register {
                    sku: Sku::of(&sku),
                    name: sku.clone(),
                    unit_grams: Grams::of(10.0),
                    price: Cents::new(100),
                    at: 1,
                };
                aggregates.products.execute(&sku, reg, Meta::new(1, &sku, "test")).await.unwrap();
                let change = ProductCommand::ChangePrice {
                    price: Cents::new(101 + i as i64),
                    at: 2,
                };
                aggregates.products.execute(&sku, change, Meta::new(2, &sku, "test")).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    if let Some(s) = slow {
        s.await.unwrap();
    }
    let seen = reader.await.unwrap();

    // Positions are 1..N, in order, with no gap and no repeat.
    let positions: Vec<i64> = seen.iter().map(|s| s.0).collect();
    let expected: Vec<i64> = (1..=seen.len() as i64).collect();
    assert_eq!(positions, expected, "feed positions are contiguous from 1");
    // Every event of the table was seen exactly once.
    let seen_keys: BTreeSet<(String, String, i64)> = seen.iter().map(|s| (s.1.clone(), s.2.clone(), s.3)).collect();
    assert_eq!(seen_keys.len(), seen.len(), "no event read twice");
    let table: Vec<(String, String, i64)> = tare_platform::on_db!(&platform.store(), pool => {
        sqlx::query_as("SELECT aggregate_type, aggregate_id, sequence FROM events").fetch_all(pool).await.unwrap()
    });
    let table: BTreeSet<_> = table.into_iter().collect();
    assert_eq!(seen_keys, table, "the reader saw exactly the committed events");
    assert_eq!(table.len(), WRITERS * PER_WRITER * 2 + 1);
    // Each aggregate's events appear in sequence order.
    for w in 0..WRITERS {
        for i in 0..PER_WRITER {
            let id = format!("w{w}-{i}");
            let seqs: Vec<i64> = seen.iter().filter(|s| s.2 == id).map(|s| s.3).collect();
            assert_eq!(seqs, vec![1, 2], "{id}");
        }
    }
    platform.stop().await;
    store.cleanup().await;
}

on_both_stores!(gap_free_feed, feed_is_gap_free_under_concurrent_writers);
