//! What changes a lane besides sales: price labels acknowledged [C2], calibrations
//! [M1], product swaps [C2] and restock counts [O10] — each decided here and folded by
//! the aggregate.

use super::aggregate::{when, Decision, LaneState};
use super::planogram::{check_door_after_swap, validate_lane};
use super::{Cabinet, CabinetError, CabinetEvent, Holder, LanePlan, StockReason};
use crate::{DoorNo, LaneNo, UnixMs};

impl Cabinet {
    /// A label the device acknowledged [C2]: the lane charges it, if it is newer than the
    /// one applied and for the product the lane holds.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_price_label(
        &self,
        door: DoorNo,
        lane: LaneNo,
        sku: crate::Sku,
        price: crate::Cents,
        name: String,
        issued_at: UnixMs,
        at: UnixMs,
    ) -> Decision {
        let l = self.door(door)?.lanes.get(&lane).ok_or(CabinetError::UnknownLane(lane))?;
        let newer = issued_at >= l.label_issued_at && l.plan.sku == sku;
        let changes = l.plan.price != price || l.plan.name != name;
        Ok(when(newer && changes, || CabinetEvent::LanePriceChanged {
            door,
            lane,
            sku,
            from: l.plan.price,
            to: price,
            name,
            price_version: l.plan.price_version + 1,
            issued_at,
            at,
        }))
    }

    /// A calibration came back [M1]: the lane's next version, within its tolerance or
    /// not; the same command again records nothing.
    pub(super) fn record_calibration(
        &self,
        door: DoorNo,
        lane: LaneNo,
        standard: crate::Grams,
        measured: crate::Grams,
        cmd_id: String,
        at: UnixMs,
    ) -> Decision {
        let l = self.door(door)?.lanes.get(&lane).ok_or(CabinetError::UnknownLane(lane))?;
        if l.calibration_cmd.as_deref() == Some(cmd_id.as_str()) {
            return Ok(vec![]);
        }
        let error = (measured - standard).abs();
        Ok(vec![CabinetEvent::LaneCalibrated {
            door,
            lane,
            version: l.calibration_version + 1,
            standard_grams: standard,
            measured_grams: measured,
            within_limit: error <= l.plan.tolerance.allowed(standard),
            cmd_id,
            at,
        }])
    }

    /// Folds a lane's price, calibration or product change.
    pub(super) fn apply_lane_change(&mut self, event: CabinetEvent) {
        match event {
            CabinetEvent::LanePriceChanged {
                door,
                lane,
                to,
                name,
                price_version,
                issued_at,
                ..
            } => {
                if let Some(l) = self.lane_mut(door, lane) {
                    l.plan.price = to;
                    l.plan.name = name;
                    l.plan.price_version = price_version;
                    l.label_issued_at = issued_at;
                }
            }
            CabinetEvent::LaneCalibrated {
                door,
                lane,
                version,
                standard_grams,
                measured_grams,
                within_limit,
                cmd_id,
                ..
            } => {
                if let Some(l) = self.lane_mut(door, lane) {
                    let allowed = l.plan.tolerance.allowed(standard_grams).max(crate::Grams::of(0.001));
                    l.calibration_cmd = Some(cmd_id);
                    l.calibration_version = version;
                    l.needs_calibration = !within_limit;
                    l.calibration_error_ratio = (measured_grams - standard_grams).abs() / allowed;
                    l.tared = false;
                }
            }
            CabinetEvent::LaneProductSwapped {
                door,
                lane,
                plan,
                planogram_version,
                needs_calibration,
                ..
            } => {
                self.planogram_version = planogram_version;
                if let Some(l) = self.lane_mut(door, lane) {
                    l.plan = plan;
                    l.needs_calibration = needs_calibration;
                }
            }
            _ => {}
        }
    }

    pub(super) fn lane_mut(&mut self, door: DoorNo, lane: LaneNo) -> Option<&mut LaneState> {
        self.doors.get_mut(&door).and_then(|d| d.lanes.get_mut(&lane))
    }

    /// Puts another product on a lane [C2]: only an empty lane of a free door (what it
    /// held was sold, or counted out in a restock); a new unit weight means the lane must
    /// be calibrated before the door sells again. The same product again changes
    /// nothing.
    pub(super) fn swap_lane(&self, door: DoorNo, plan: LanePlan, at: UnixMs) -> Decision {
        let d = self.door(door)?;
        let l = d.lanes.get(&plan.lane).ok_or(CabinetError::UnknownLane(plan.lane))?;
        let same = LanePlan {
            price_version: l.plan.price_version,
            calibration_version: l.plan.calibration_version,
            ..plan.clone()
        };
        if l.plan == same {
            return Ok(vec![]);
        }
        validate_lane(&plan)?;
        let others: Vec<LanePlan> = d.lanes.values().map(|l| l.plan.clone()).collect();
        check_door_after_swap(&others, &plan)?;
        if d.holder.is_some() {
            return Err(CabinetError::DoorBusy);
        }
        if l.stock != 0 {
            return Err(CabinetError::LaneNotEmpty {
                lane: plan.lane,
                stock: l.stock,
            });
        }
        Ok(vec![CabinetEvent::LaneProductSwapped {
            door,
            lane: plan.lane,
            from: l.plan.sku.clone(),
            needs_calibration: l.needs_calibration || l.plan.unit_grams != plan.unit_grams,
            plan,
            planogram_version: self.planogram_version + 1,
            at,
        }])
    }

    /// A restock session on `door` ended with its counts: each lane's change is a stock
    /// movement (reason `restock`), never above the capacity nor below zero, and the door
    /// is freed — once: a second finish, or one by a session not holding the door,
    /// decides nothing.
    pub(super) fn finish_restock(&self, door: DoorNo, restock_id: String, added: &[(LaneNo, i64)], at: UnixMs) -> Decision {
        let d = self.door(door)?;
        if d.holder.as_ref().map(Holder::session_id) != Some(restock_id.as_str()) {
            return Ok(vec![]);
        }
        let mut events = Vec::new();
        for (lane_no, change) in added.iter().copied() {
            let Some(lane) = d.lanes.get(&lane_no) else { continue };
            let before = lane.stock;
            let after = (before + change).clamp(0, i64::from(lane.plan.capacity).max(before));
            if after == before {
                continue;
            }
            events.push(CabinetEvent::LaneStockChanged {
                door,
                lane: lane_no,
                sku: lane.plan.sku.clone(),
                before,
                change: after - before,
                after,
                reason: StockReason::Restock {
                    session_id: restock_id.clone(),
                },
                at,
            });
        }
        events.push(CabinetEvent::DoorReleased {
            door,
            session_id: restock_id,
            reason: "restock_finished".into(),
            at,
        });
        Ok(events)
    }
}
