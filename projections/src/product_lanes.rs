//! Which lanes hold each product [C2]: one document per SKU listing every
//! `cabinet/door/lane` whose planogram puts it there, so a price change reaches every
//! label that shows it without scanning the fleet. Folded from registrations and lane
//! swaps.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use tare_domain::cabinet::CabinetEvent;
use tare_domain::{AnyEvent, UnixMs};

/// The lanes of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProductLanesDoc {
    /// The SKU.
    pub sku: String,
    /// Its lanes as `(cabinet, door, lane)`.
    pub lanes: BTreeSet<(String, u8, u8)>,
}

/// Lanes by product.
pub struct ProductLanes;

impl ProductLanes {
    /// The view's name.
    pub const VIEW: &'static str = "product_lanes";
}

impl Projection for ProductLanes {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, _aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Cabinet(CabinetEvent::CabinetRegistered { doors, .. }) => {
                let skus: BTreeSet<String> = doors.iter().flat_map(|d| d.lanes.iter().map(|l| l.sku.to_string())).collect();
                skus.into_iter().collect()
            }
            AnyEvent::Cabinet(CabinetEvent::LaneProductSwapped { from, plan, .. }) => {
                let mut skus = vec![from.to_string(), plan.sku.to_string()];
                skus.dedup();
                skus
            }
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
        let mut out = Vec::new();
        for (sku, doc) in docs {
            let mut d: ProductLanesDoc = doc.clone().and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default();
            d.sku = sku.clone();
            match e {
                CabinetEvent::CabinetRegistered { doors, .. } => {
                    for door in doors {
                        for l in door.lanes.iter().filter(|l| l.sku.as_str() == sku) {
                            d.lanes.insert((aggregate_id.to_string(), door.door.get(), l.lane.get()));
                        }
                    }
                }
                CabinetEvent::LaneProductSwapped {
                    door, lane, from, plan, ..
                } => {
                    let key = (aggregate_id.to_string(), door.get(), lane.get());
                    if from.as_str() == sku {
                        d.lanes.remove(&key);
                    }
                    if plan.sku.as_str() == sku {
                        d.lanes.insert(key);
                    }
                }
                _ => continue,
            }
            out.push(DocWrite {
                id: sku.clone(),
                owner: None,
                doc: serde_json::to_value(&d).unwrap_or(Value::Null),
            });
        }
        out
    }
}
