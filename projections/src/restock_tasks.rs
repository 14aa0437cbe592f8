//! Restock tasks [O10]: one per cabinet — never one per lane or per sale — listing every
//! lane at or below its restock threshold with what to bring to fill it. Folded from the
//! planogram at registration and every stock movement, so a lane enters the task when a
//! sale (or the opening count) takes it to its threshold and leaves it when a restock
//! fills it above. Listed by owner `needed` while any lane needs stock, `ok` after.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tare_domain::cabinet::CabinetEvent;
use tare_domain::{AnyEvent, UnixMs};

/// One lane's planned and current stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLane {
    /// Door.
    pub door: u8,
    /// Lane.
    pub lane: u8,
    /// Product.
    pub sku: String,
    /// Stock by the ledger.
    pub stock: i64,
    /// Most items it holds.
    pub capacity: u32,
    /// At or below this it needs stock.
    pub threshold: u32,
    /// Whether its stock was counted yet (the opening count or a movement since).
    #[serde(default)]
    pub counted: bool,
}

impl TaskLane {
    /// Whether it needs stock.
    pub fn needed(&self) -> bool {
        self.counted && self.stock <= i64::from(self.threshold)
    }

    /// Items to bring to fill it.
    pub fn bring(&self) -> i64 {
        (i64::from(self.capacity) - self.stock).max(0)
    }
}

/// One cabinet's restock picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RestockTaskDoc {
    /// The cabinet.
    pub cabinet: String,
    /// Its lanes by `door.lane` key.
    pub lanes: BTreeMap<String, TaskLane>,
    /// Since when the task has been open (Unix ms), while it is.
    pub since: Option<UnixMs>,
}

impl RestockTaskDoc {
    /// The lanes that need stock, door then lane.
    pub fn needed(&self) -> Vec<&TaskLane> {
        let mut v: Vec<&TaskLane> = self.lanes.values().filter(|l| l.needed()).collect();
        v.sort_by_key(|l| (l.door, l.lane));
        v
    }
}

/// Restock tasks by cabinet.
pub struct RestockTasks;

impl RestockTasks {
    /// The view's name.
    pub const VIEW: &'static str = "restock_tasks";
}

fn key(door: u8, lane: u8) -> String {
    format!("{door:02}.{lane:02}")
}

impl Projection for RestockTasks {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Cabinet(CabinetEvent::CabinetRegistered { .. } | CabinetEvent::LaneStockChanged { .. }) => {
                vec![aggregate_id.to_string()]
            }
            _ => vec![],
        }
    }

    fn apply(&self, docs: &[(String, Option<Value>)], aggregate_id: &str, event: &AnyEvent, _position: i64, time: UnixMs) -> Vec<DocWrite> {
        let AnyEvent::Cabinet(e) = event else { return vec![] };
        let mut d: RestockTaskDoc = docs
            .first()
            .and_then(|(_, d)| d.clone())
            .and_then(|d| serde_json::from_value(d).ok())
            .unwrap_or_default();
        d.cabinet = aggregate_id.to_string();
        match e {
            CabinetEvent::CabinetRegistered { doors, .. } => {
                for door in doors {
                    for l in &door.lanes {
                        d.lanes.insert(
                            key(door.door.get(), l.lane.get()),
                            TaskLane {
                                door: door.door.get(),
                                lane: l.lane.get(),
                                sku: l.sku.to_string(),
                                stock: 0,
                                capacity: l.capacity,
                                threshold: l.restock_threshold,
                                counted: false,
                            },
                        );
                    }
                }
                if d.lanes.is_empty() {
                    return vec![]; // a locker: nothing to restock
                }
                // Not counted yet: no task until the opening stock is known.
                return vec![write(&d, "ok")];
            }
            CabinetEvent::LaneStockChanged { door, lane, after, at, .. } => {
                let Some(l) = d.lanes.get_mut(&key(door.get(), lane.get())) else {
                    return vec![];
                };
                l.stock = *after;
                l.counted = true;
                let needed = !d.needed().is_empty();
                d.since = match (needed, d.since) {
                    (true, Some(since)) => Some(since),
                    (true, None) => Some(if *at > 0 { *at } else { time }),
                    (false, _) => None,
                };
            }
            _ => return vec![],
        }
        let owner = if d.since.is_some() { "needed" } else { "ok" };
        vec![write(&d, owner)]
    }
}

fn write(d: &RestockTaskDoc, owner: &str) -> DocWrite {
    DocWrite {
        id: d.cabinet.clone(),
        owner: Some(owner.to_string()),
        doc: serde_json::to_value(d).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::cabinet::{DoorPlan, LanePlan, StockReason};
    use tare_domain::weight::Tolerance;
    use tare_domain::{CabinetId, CabinetKind, Cents, DoorNo, GeoPoint, Grams, LaneNo, Sku};

    fn fold(events: &[CabinetEvent]) -> (Option<String>, RestockTaskDoc) {
        let mut doc: Option<(Option<String>, Value)> = None;
        for e in events {
            let docs = vec![("pk.c1".to_string(), doc.as_ref().map(|(_, d)| d.clone()))];
            for w in RestockTasks.apply(&docs, "pk.c1", &AnyEvent::Cabinet(e.clone()), 1, 1) {
                doc = Some((w.owner, w.doc));
            }
        }
        let (owner, d) = doc.unwrap();
        (owner, serde_json::from_value(d).unwrap())
    }

    fn registered() -> CabinetEvent {
        let lane = |n: u8, capacity, threshold| LanePlan {
            lane: LaneNo::of(n),
            sku: Sku::of(&format!("s{n}")),
            name: "n".into(),
            unit_grams: Grams::of(100.0),
            price: Cents::new(100),
            capacity,
            restock_threshold: threshold,
            tolerance: Tolerance::default(),
            price_version: 1,
            calibration_version: 0,
        };
        CabinetEvent::CabinetRegistered {
            id: CabinetId::parse("pk.c1").unwrap(),
            kind: CabinetKind::Weight,
            location: GeoPoint::parse(31.0, 121.0).unwrap(),
            doors: vec![DoorPlan {
                door: DoorNo::of(1),
                lanes: vec![lane(1, 10, 3), lane(2, 20, 5)],
            }],
            at: 1,
        }
    }

    fn moved(lane: u8, before: i64, after: i64, at: UnixMs) -> CabinetEvent {
        CabinetEvent::LaneStockChanged {
            door: DoorNo::of(1),
            lane: LaneNo::of(lane),
            sku: Sku::of(&format!("s{lane}")),
            before,
            change: after - before,
            after,
            reason: StockReason::Opening,
            at,
        }
    }

    #[test]
    fn one_task_per_cabinet_lists_what_to_bring_until_a_restock_fills_it() {
        let (owner, d) = fold(&[registered()]);
        assert_eq!(
            (owner.as_deref(), d.needed().len()),
            (Some("ok"), 0),
            "no task before the opening count"
        );
        let opening = [registered(), moved(1, 0, 8, 10), moved(2, 0, 4, 10)];
        let (owner, d) = fold(&opening);
        assert_eq!(owner.as_deref(), Some("needed"), "lane 2 opened at 4, below its 5");
        let needed: Vec<(u8, i64, i64)> = d.needed().iter().map(|l| (l.lane, l.stock, l.bring())).collect();
        assert_eq!(needed, [(2, 4, 16)]);
        assert_eq!(d.since, Some(10));
        let mut sold = opening.to_vec();
        sold.push(moved(1, 8, 3, 20));
        let (_, d) = fold(&sold);
        let needed: Vec<(u8, i64)> = d.needed().iter().map(|l| (l.lane, l.bring())).collect();
        assert_eq!(needed, [(1, 7), (2, 16)], "one task, two lanes");
        assert_eq!(d.since, Some(10), "the task is as old as its first lane");
        sold.push(moved(1, 3, 10, 30));
        sold.push(moved(2, 4, 20, 30));
        let (owner, d) = fold(&sold);
        assert_eq!((owner.as_deref(), d.needed().len(), d.since), (Some("ok"), 0, None));
    }
}
