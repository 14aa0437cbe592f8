//! Stock discrepancies [R3 (a), B6]: each lane whose settled closed-door weight
//! disagrees with its ledger, with the class the cabinet gave it, the window in which it
//! happened and the last session on the door. One document per lane, listed by
//! `open/{cabinet}` while the divergence lasts and by `closed/{cabinet}` once the weight
//! agrees again (kept as the lane's last finding). While open, the ledger stock follows
//! the lane's movements and the weighed stock with it (the difference is what the weight
//! says, and the last reading still says it).

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::cabinet::{CabinetEvent, StockClass};
use tare_domain::{AnyEvent, UnixMs};

/// The session that last held the door before a divergence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// `order`, `restock`, `calibration` or `command`.
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// One lane's divergence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockDiscrepancy {
    /// Cabinet.
    pub cabinet: String,
    /// Door.
    pub door: u8,
    /// Lane.
    pub lane: u8,
    /// Product the ledger holds there.
    pub sku: String,
    /// Items by the ledger.
    pub ledger_stock: i64,
    /// Whole items by weight (`None`: no reading).
    pub weighed_stock: Option<i64>,
    /// `weighed_stock − ledger_stock`.
    pub difference: i64,
    /// Why.
    pub class: StockClass,
    /// When the lane first disagreed.
    pub since: UnixMs,
    /// When the door last opened before it.
    pub window_from: UnixMs,
    /// The last session on the door before it.
    pub last_session: Option<SessionRef>,
    /// The reading (grams).
    pub reading_grams: Option<f64>,
    /// What the ledger expected it to read (grams).
    pub expected_grams: f64,
    /// When last recorded.
    pub updated_at: UnixMs,
    /// Still disagreeing.
    pub open: bool,
    /// When the weight agreed again.
    pub closed_at: Option<UnixMs>,
}

/// Stock discrepancies by lane.
pub struct StockDiscrepancies;

impl StockDiscrepancies {
    /// The view's name.
    pub const VIEW: &'static str = "stock_discrepancies";

    /// The owner listing `cabinet`'s open discrepancies.
    pub fn open_owner(cabinet: &str) -> String {
        format!("open/{cabinet}")
    }

    /// The owner prefix listing every open discrepancy of the fleet.
    pub const OPEN_PREFIX: &'static str = "open/";

    fn doc_id(cabinet: &str, door: u8, lane: u8) -> String {
        format!("{cabinet}/{door}/{lane}")
    }
}

impl Projection for StockDiscrepancies {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Cabinet(
                CabinetEvent::LaneStockDiverged { door, lane, .. }
                | CabinetEvent::LaneStockAgreed { door, lane, .. }
                | CabinetEvent::LaneStockChanged { door, lane, .. },
            ) => vec![Self::doc_id(aggregate_id, door.get(), lane.get())],
            _ => vec![],
        }
    }

    fn apply(
        &self,
        docs: &[(String, Option<Value>)],
        aggregate_id: &str,
        event: &AnyEvent,
        _position: i64,
        _time: UnixMs,
    ) -> Vec<DocWrite> {
        let AnyEvent::Cabinet(e) = event else { return vec![] };
        let Some((id, current)) = docs.first() else { return vec![] };
        let current: Option<StockDiscrepancy> = current.clone().and_then(|d| serde_json::from_value(d).ok());
        let next = match (e, current) {
            (
                CabinetEvent::LaneStockDiverged {
                    door,
                    lane,
                    sku,
                    class,
                    ledger_stock,
                    weighed_stock,
                    difference,
                    reading_grams,
                    expected_grams,
                    since,
                    window_from,
                    last_session,
                    at,
                },
                _,
            ) => StockDiscrepancy {
                cabinet: aggregate_id.to_string(),
                door: door.get(),
                lane: lane.get(),
                sku: sku.to_string(),
                ledger_stock: *ledger_stock,
                weighed_stock: *weighed_stock,
                difference: *difference,
                class: *class,
                since: *since,
                window_from: *window_from,
                last_session: last_session.as_ref().map(|h| SessionRef {
                    kind: h.kind().into(),
                    id: h.session_id().into(),
                }),
                reading_grams: reading_grams.map(|g| g.get()),
                expected_grams: expected_grams.get(),
                updated_at: *at,
                open: true,
                closed_at: None,
            },
            (CabinetEvent::LaneStockChanged { sku, after, at, .. }, Some(d)) if d.open => StockDiscrepancy {
                sku: sku.to_string(),
                ledger_stock: *after,
                weighed_stock: d.weighed_stock.map(|_| after + d.difference),
                updated_at: *at,
                ..d
            },
            (CabinetEvent::LaneStockAgreed { stock, at, .. }, Some(d)) => StockDiscrepancy {
                ledger_stock: *stock,
                weighed_stock: Some(*stock),
                difference: 0,
                updated_at: *at,
                open: false,
                closed_at: Some(*at),
                ..d
            },
            _ => return vec![],
        };
        let owner = if next.open {
            Self::open_owner(aggregate_id)
        } else {
            format!("closed/{aggregate_id}")
        };
        vec![DocWrite {
            id: id.clone(),
            owner: Some(owner),
            doc: serde_json::to_value(&next).unwrap_or(Value::Null),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::cabinet::{Holder, StockReason};
    use tare_domain::{DoorNo, Grams, LaneNo, Sku};

    fn run(events: &[CabinetEvent]) -> Option<(Option<String>, StockDiscrepancy)> {
        let p = StockDiscrepancies;
        let mut doc: Option<Value> = None;
        let mut owner = None;
        for (i, e) in events.iter().enumerate() {
            let e = AnyEvent::Cabinet(e.clone());
            let ids = p.touches("c1", &e);
            assert_eq!(ids, vec!["c1/1/2".to_string()]);
            for w in p.apply(&[(ids[0].clone(), doc.clone())], "c1", &e, i as i64 + 1, 0) {
                doc = Some(w.doc);
                owner = w.owner;
            }
        }
        doc.map(|d| (owner, serde_json::from_value(d).unwrap()))
    }

    fn diverged() -> CabinetEvent {
        CabinetEvent::LaneStockDiverged {
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            sku: Sku::of("gum"),
            class: StockClass::UnpaidTake,
            ledger_stock: 10,
            weighed_stock: Some(8),
            difference: -2,
            reading_grams: Some(Grams::of(400.0)),
            expected_grams: Grams::of(500.0),
            since: 100,
            window_from: 50,
            last_session: Some(Holder::Command { cmd_id: "c9".into() }),
            at: 100,
        }
    }

    fn sold(before: i64, after: i64) -> CabinetEvent {
        CabinetEvent::LaneStockChanged {
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            sku: Sku::of("gum"),
            before,
            change: after - before,
            after,
            reason: StockReason::Sale { order_id: "o1".into() },
            at: 200,
        }
    }

    #[test]
    fn a_divergence_is_listed_open_follows_the_ledger_and_closes() {
        // A sale before any divergence writes nothing.
        assert_eq!(run(&[sold(11, 10)]), None);
        let (owner, d) = run(&[diverged()]).unwrap();
        assert_eq!(owner.as_deref(), Some("open/c1"));
        assert_eq!(
            (d.class, d.ledger_stock, d.weighed_stock, d.difference),
            (StockClass::UnpaidTake, 10, Some(8), -2)
        );
        assert_eq!(
            d.last_session,
            Some(SessionRef {
                kind: "command".into(),
                id: "c9".into()
            })
        );
        let (_, d) = run(&[diverged(), sold(10, 9)]).unwrap();
        assert_eq!((d.ledger_stock, d.weighed_stock, d.difference, d.open), (9, Some(7), -2, true));
        let agreed = CabinetEvent::LaneStockAgreed {
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            stock: 9,
            reading_grams: Some(Grams::of(450.0)),
            at: 300,
        };
        let (owner, d) = run(&[diverged(), sold(10, 9), agreed]).unwrap();
        assert_eq!(owner.as_deref(), Some("closed/c1"));
        assert_eq!((d.open, d.closed_at, d.difference, d.since), (false, Some(300), 0, 100));
    }
}
