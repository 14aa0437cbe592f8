//! The planogram [C1, B3]: which product each lane of each door holds, at what price and
//! capacity, and how its scale is judged; and the checks a planogram must pass before a
//! cabinet is registered with it (every lane's items must be tellable apart at capacity).

use super::CabinetError;
use crate::weight::{check_lane_resolvable, LaneScale, Tolerance};
use crate::{Cents, DoorNo, Grams, LaneNo, Sku};
use serde::{Deserialize, Serialize};

/// One lane as planned: what it holds and how its scale is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanePlan {
    /// Lane number.
    pub lane: LaneNo,
    /// Product on the lane.
    pub sku: Sku,
    /// Product name (for receipts and price labels).
    pub name: String,
    /// Unit weight.
    pub unit_grams: Grams,
    /// Unit price.
    pub price: Cents,
    /// Most items the lane holds.
    pub capacity: u32,
    /// At or below this stock a restock task is raised [O10].
    pub restock_threshold: u32,
    /// The scale tolerance.
    pub tolerance: Tolerance,
    /// The version of the price and name its label shows: 1 as registered, one up each
    /// time an acknowledged label changes them [C2]. An order records the versions it
    /// was charged with (its frozen lanes).
    #[serde(default = "first_version")]
    pub price_version: u32,
    /// The lane's calibration version when frozen into an order (0: never calibrated
    /// here) [M1]; the cabinet keeps the live one.
    #[serde(default)]
    pub calibration_version: u32,
}

fn first_version() -> u32 {
    1
}

impl LanePlan {
    /// The facts the weight inference needs.
    pub fn scale(&self) -> LaneScale {
        LaneScale {
            lane: self.lane,
            sku: self.sku.clone(),
            unit_grams: self.unit_grams,
            tolerance: self.tolerance,
        }
    }
}

/// One door as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoorPlan {
    /// Door number.
    pub door: DoorNo,
    /// Its lanes.
    pub lanes: Vec<LanePlan>,
}

/// A locker's doors are its compartments: numbered, distinct, with no lanes.
pub(super) fn validate_locker(doors: &[DoorPlan]) -> Result<(), CabinetError> {
    if doors.is_empty() {
        return Err(CabinetError::Invalid {
            field: "doors".into(),
            reason: "a locker needs at least one compartment".into(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in doors.iter().enumerate() {
        if !seen.insert(d.door) {
            return Err(CabinetError::Invalid {
                field: format!("doors[{i}].door"),
                reason: "duplicate compartment".into(),
            });
        }
        if !d.lanes.is_empty() {
            return Err(CabinetError::Invalid {
                field: format!("doors[{i}].lanes"),
                reason: "a locker compartment has no lanes".into(),
            });
        }
    }
    Ok(())
}

/// Items of a lane counted when looking for look-alike combinations [B3]: a shopper
/// moves a few items, not a shelf.
pub const AMBIGUITY_MAX_ITEMS: u32 = 3;

/// Two things on one door whose weights the scales cannot tell apart [B3]: `a_items` of
/// lane `a` against `b_items` of lane `b` (another product).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ambiguity {
    /// One lane.
    pub a: crate::LaneNo,
    /// How many of its items.
    pub a_items: u32,
    /// The other lane.
    pub b: crate::LaneNo,
    /// How many of its items.
    pub b_items: u32,
    /// How far apart the two weigh.
    pub diff_grams: Grams,
    /// The tolerance they fall within.
    pub tolerance_grams: Grams,
}

impl Ambiguity {
    /// One item for one item: a swap of the two products would go unseen, so such a
    /// planogram is refused; larger combinations are warned about.
    pub fn refuses(&self) -> bool {
        self.a_items == 1 && self.b_items == 1
    }

    /// A sentence for the operator.
    pub fn describe(&self, lanes: &[LanePlan]) -> String {
        let sku = |n: crate::LaneNo| lanes.iter().find(|l| l.lane == n).map(|l| l.sku.to_string()).unwrap_or_default();
        format!(
            "{} x {} (lane {}) and {} x {} (lane {}) weigh {:.1} g apart, within the {:.1} g tolerance",
            self.a_items,
            sku(self.a),
            self.a,
            self.b_items,
            sku(self.b),
            self.b,
            self.diff_grams.get(),
            self.tolerance_grams.get()
        )
    }
}

/// The look-alikes of one door's lanes [B3]: for each two lanes of different products,
/// every count of up to [`AMBIGUITY_MAX_ITEMS`] items of one against up to as many of the
/// other whose weights differ by no more than the larger lane's tolerance at that load.
pub fn door_ambiguities(lanes: &[LanePlan]) -> Vec<Ambiguity> {
    let mut out = Vec::new();
    for (i, a) in lanes.iter().enumerate() {
        for b in lanes.iter().skip(i + 1).filter(|b| b.sku != a.sku) {
            for a_items in 1..=AMBIGUITY_MAX_ITEMS {
                for b_items in 1..=AMBIGUITY_MAX_ITEMS {
                    let wa = a.unit_grams * f64::from(a_items);
                    let wb = b.unit_grams * f64::from(b_items);
                    let load = wa.max(wb);
                    let tolerance = a.tolerance.allowed(load).max(b.tolerance.allowed(load));
                    let diff = (wa - wb).abs();
                    if diff <= tolerance {
                        out.push(Ambiguity {
                            a: a.lane,
                            a_items,
                            b: b.lane,
                            b_items,
                            diff_grams: diff,
                            tolerance_grams: tolerance,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The first one-for-one look-alike of a door, as a refusal naming the later lane's
/// product (`sku` at `field_of(lane index)`).
fn refuse_look_alikes(lanes: &[LanePlan], field_of: impl Fn(usize) -> String) -> Result<(), CabinetError> {
    if let Some(a) = door_ambiguities(lanes).into_iter().find(Ambiguity::refuses) {
        let index = lanes.iter().position(|l| l.lane == a.b).unwrap_or(0);
        return Err(CabinetError::Invalid {
            field: field_of(index),
            reason: format!("cannot be told apart on the same door: {}", a.describe(lanes)),
        });
    }
    Ok(())
}

/// A door's plan after a swap puts `plan` on its lane: refused if the new product cannot
/// be told apart from another one on the door, one for one [B3].
pub(super) fn check_door_after_swap(others: &[LanePlan], plan: &LanePlan) -> Result<(), CabinetError> {
    let mut lanes: Vec<LanePlan> = others.iter().filter(|l| l.lane != plan.lane).cloned().collect();
    lanes.push(plan.clone());
    refuse_look_alikes(&lanes, |_| "sku".into())
}

/// A single lane's plan on its own, as a swap brings it: fields named as the swap's body
/// names them (`capacity`, `restock_threshold`, `sku`, `tolerance`).
pub(super) fn validate_lane(l: &LanePlan) -> Result<(), CabinetError> {
    let invalid = |field: &str, reason: &str| CabinetError::Invalid {
        field: field.into(),
        reason: reason.into(),
    };
    if l.unit_grams <= Grams::ZERO {
        return Err(invalid("sku", "the product's unit weight must be positive"));
    }
    if l.capacity == 0 || l.capacity > 1000 {
        return Err(invalid("capacity", "must be between 1 and 1000"));
    }
    if l.restock_threshold > l.capacity {
        return Err(invalid("restock_threshold", "must not exceed capacity"));
    }
    check_lane_resolvable(l.unit_grams, l.capacity, &l.tolerance).map_err(|e| CabinetError::Invalid {
        field: if e.field == "tolerance" {
            "capacity".into()
        } else {
            e.field.to_string()
        },
        reason: e.reason,
    })
}

pub(super) fn validate_plan(doors: &[DoorPlan]) -> Result<(), CabinetError> {
    let invalid = |field: String, reason: &str| CabinetError::Invalid {
        field,
        reason: reason.into(),
    };
    if doors.is_empty() {
        return Err(invalid("doors".into(), "at least one door is required"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in doors.iter().enumerate() {
        if !seen.insert(d.door) {
            return Err(invalid(format!("doors[{i}].door"), "duplicate door"));
        }
        let mut lanes = std::collections::BTreeSet::new();
        for (j, l) in d.lanes.iter().enumerate() {
            if !lanes.insert(l.lane) {
                return Err(invalid(format!("doors[{i}].lanes[{j}].lane"), "duplicate lane"));
            }
            if l.unit_grams <= Grams::ZERO {
                return Err(invalid(format!("doors[{i}].lanes[{j}].unit_grams"), "must be a positive number"));
            }
            if l.capacity == 0 || l.capacity > 1000 {
                return Err(invalid(format!("doors[{i}].lanes[{j}].capacity"), "must be between 1 and 1000"));
            }
            if l.restock_threshold > l.capacity {
                return Err(invalid(
                    format!("doors[{i}].lanes[{j}].restock_threshold"),
                    "must not exceed capacity",
                ));
            }
            if let Err(e) = check_lane_resolvable(l.unit_grams, l.capacity, &l.tolerance) {
                return Err(CabinetError::Invalid {
                    field: format!("doors[{i}].lanes[{j}].{}", e.field),
                    reason: e.reason,
                });
            }
        }
        refuse_look_alikes(&d.lanes, |j| format!("doors[{i}].lanes[{j}].sku"))?;
    }
    Ok(())
}
