//! Drift and creep [B4], and the tare step of a calibration [M1].
//!
//! A load cell's empty reading wanders: temperature, age and creep under a constant
//! load move it by a few grams over hours. A sale is counted from two readings a minute
//! apart, so drift never changes what a shopper pays; but the *absolute* weight of a lane
//! — what restock tasks, reconciliation and an auditor read as "items on the shelf" —
//! would slowly part from the ledger. So each lane keeps its zero: the weight of its
//! stock is `zero + stock × unit`. A closed, free door's stable reading, taken well after
//! its last session, is weighed against that:
//!
//! - within the re-zero band (half the lane's tolerance at that load, at least 1 g):
//!   noise, nothing happens;
//! - beyond it but less than [`REZERO_MAX_STEP_UNITS`] of an item: drift — the zero
//!   follows the reading (`LaneRezeroed`), bounded per step;
//! - a zero that would pass [`DRIFT_LIMIT_UNITS`] of an item: the cell can no longer be
//!   trusted, the lane is blocked from sale until calibrated (`LaneDriftBlocked`);
//! - a step of a third of an item or more is not drift (an item moved, an unpaid take):
//!   nothing is re-zeroed; reconciliation classifies it.
//!
//! Each lane has a calibration-health score (0–100): how much of its drift limit and of
//! its last calibration's tolerance is left.

use super::aggregate::{Decision, LaneState};
use super::{Cabinet, CabinetError, CabinetEvent, DoorPosition};
use crate::command::CommandSpec;
use crate::weight::StableReading;
use crate::{DoorNo, Grams, LaneNo, UnixMs};

/// How far (in items) a lane's zero may wander from its last tare before the lane is
/// blocked from sale until calibrated.
pub const DRIFT_LIMIT_UNITS: f64 = 0.8;

/// The largest step (in items) one reading may move a zero: anything larger is not
/// drift.
pub const REZERO_MAX_STEP_UNITS: f64 = 0.3;

impl LaneState {
    /// What the lane should read now: its zero plus its stock's weight.
    pub fn expected_grams(&self) -> Grams {
        self.zero_grams + self.plan.unit_grams * self.stock as f64
    }

    /// Readings this close to the expected weight are noise, not drift: half the lane's
    /// tolerance at its load, and at least 1 g.
    pub fn rezero_band(&self) -> Grams {
        let load = self.plan.unit_grams * self.stock.max(0) as f64;
        (self.plan.tolerance.allowed(load) * 0.5).max(Grams::of(1.0))
    }

    /// How far the zero may wander before the lane is blocked.
    pub fn drift_limit(&self) -> Grams {
        self.plan.unit_grams * DRIFT_LIMIT_UNITS
    }

    /// Calibration health, 0–100: 0 while the lane must be calibrated; otherwise what is
    /// left of the drift limit and of the last calibration's tolerance, whichever is
    /// less.
    pub fn health(&self) -> u8 {
        if self.needs_calibration {
            return 0;
        }
        let drift = self.zero_grams.abs() / self.drift_limit();
        let used = drift.max(self.calibration_error_ratio).clamp(0.0, 1.0);
        ((1.0 - used) * 100.0).round() as u8
    }

    /// What one stable reading of the closed lane says, if anything.
    fn drift_finding(&self, door: DoorNo, reading: Grams, at: UnixMs) -> Option<CabinetEvent> {
        if self.needs_calibration {
            return None;
        }
        let residual = reading - self.expected_grams();
        if residual.abs() <= self.rezero_band() || residual.abs() >= self.plan.unit_grams * REZERO_MAX_STEP_UNITS {
            return None;
        }
        let zero_after = self.zero_grams + residual;
        if zero_after.abs() > self.drift_limit() {
            return Some(CabinetEvent::LaneDriftBlocked {
                door,
                lane: self.plan.lane,
                zero_grams: zero_after,
                limit_grams: self.drift_limit(),
                reading_grams: reading,
                at,
            });
        }
        let after = LaneState {
            zero_grams: zero_after,
            ..self.clone()
        };
        Some(CabinetEvent::LaneRezeroed {
            door,
            lane: self.plan.lane,
            zero_before: self.zero_grams,
            zero_after,
            reading_grams: reading,
            stock: self.stock,
            health: after.health(),
            at,
        })
    }
}

impl Cabinet {
    /// Whether `reading` of `door` is one a closed-door check weighs: of a counted
    /// cabinet, a door nobody holds and that is not open, received after the door was
    /// last freed. A watcher that skips readings it has seen must not count one this
    /// refuses as seen: the same weight after the door is freed still has to be weighed.
    pub fn weighs_closed(&self, door: DoorNo, reading: &StableReading) -> bool {
        self.doors.get(&door).is_some_and(|d| {
            self.initialized && d.holder.is_none() && d.position != DoorPosition::Open && reading.sample().received_at > d.free_since
        })
    }

    /// A closed-door stable reading [B4]: only of a counted cabinet, a door nobody holds
    /// and that is not open, and only a reading received after the door was last freed
    /// (the ledger already holds that session's stock movement).
    pub(super) fn observe_closed_weight(&self, door: DoorNo, reading: &StableReading, at: UnixMs) -> Decision {
        let d = self.door(door)?;
        if !self.weighs_closed(door, reading) {
            return Ok(vec![]);
        }
        let mut events: Vec<CabinetEvent> = d
            .lanes
            .values()
            .filter_map(|l| reading.grams(l.plan.lane).and_then(|g| l.drift_finding(door, g, at)))
            .collect();
        events.extend(self.reconcile_stock(door, reading, at)?);
        Ok(events)
    }

    /// A `tare` came back [M1]: the lane reads zero again (a repeat records nothing).
    pub(super) fn record_tare(&self, door: DoorNo, lane: LaneNo, cmd_id: String, at: UnixMs) -> Decision {
        let l = self.door(door)?.lanes.get(&lane).ok_or(CabinetError::UnknownLane(lane))?;
        Ok(super::aggregate::when(!l.tared || l.zero_grams != Grams::ZERO, || {
            CabinetEvent::LaneTared {
                door,
                lane,
                zero_before: l.zero_grams,
                cmd_id,
                at,
            }
        }))
    }

    /// Whether a scale command may be issued [M1]: `tare` only of an empty lane (the
    /// device zeroes whatever is on it), `calibrate` only of a lane tared since its
    /// last stock movement.
    pub fn check_scale_command(&self, spec: &CommandSpec) -> Result<(), CabinetError> {
        let (door, lane, calibrate) = match spec {
            CommandSpec::Tare { door, lane } => (*door, *lane, false),
            CommandSpec::Calibrate { door, lane, .. } => (*door, *lane, true),
            _ => return Ok(()),
        };
        let (Ok(door), Ok(lane)) = (DoorNo::try_from(door), LaneNo::try_from(lane)) else {
            return Ok(()); // the device answers an unknown lane itself
        };
        let Some(l) = self.doors.get(&door).and_then(|d| d.lanes.get(&lane)) else {
            return Ok(());
        };
        if l.stock != 0 {
            return Err(CabinetError::LaneNotEmpty { lane, stock: l.stock });
        }
        if calibrate && !l.tared {
            return Err(CabinetError::TareFirst(lane));
        }
        Ok(())
    }

    /// Whether shoppers may buy from `door` now: the cabinet online, not locked out by
    /// temperature [B8], and no lane of the door waiting for a calibration [M1, B4].
    pub fn check_door_sellable(&self, door: DoorNo) -> Result<(), CabinetError> {
        self.check_available()?;
        self.temperature.check()?;
        let d = self.door(door)?;
        match d.lanes.values().find(|l| l.needs_calibration) {
            Some(l) => Err(CabinetError::LaneNeedsCalibration(l.plan.lane)),
            None => Ok(()),
        }
    }

    /// Folds a re-zero, a drift block or a tare.
    pub(super) fn apply_drift(&mut self, event: CabinetEvent) {
        match event {
            CabinetEvent::LaneRezeroed {
                door, lane, zero_after, ..
            } => {
                if let Some(l) = self.lane_mut(door, lane) {
                    l.zero_grams = zero_after;
                }
            }
            CabinetEvent::LaneDriftBlocked {
                door, lane, zero_grams, ..
            } => {
                if let Some(l) = self.lane_mut(door, lane) {
                    l.zero_grams = zero_grams;
                    l.needs_calibration = true;
                }
            }
            CabinetEvent::LaneTared { door, lane, .. } => {
                if let Some(l) = self.lane_mut(door, lane) {
                    l.zero_grams = Grams::ZERO;
                    l.tared = true;
                }
            }
            _ => {}
        }
    }
}
