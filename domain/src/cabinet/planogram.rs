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
    }
    Ok(())
}
