//! Stock reconciliation by weight [R3 (a), B6]: what a closed, free door's stable reading
//! says of each lane's stock against the ledger, and — when they part — why.
//!
//! A lane *agrees* while its reading is within [`REZERO_MAX_STEP_UNITS`] of an item of
//! what the ledger expects (`zero + stock × unit`; smaller residuals are noise or drift
//! that the lane's zero follows, see [`super::drift`]). Beyond that the door's lanes are
//! read together and the difference classified:
//!
//! - `wrong_lane`: one lane short by whole items of its product and another over by the
//!   same weight (an item put back in the wrong lane), or a lane over by whole items of
//!   *another* lane's unit weight;
//! - `equal_weight_swap`: as `wrong_lane`, but the two lanes' units weigh the same
//!   within tolerance (look-alikes): the weights cannot tell which product sits where,
//!   so a cheaper item may stand in for a dearer one;
//! - `unpaid_take`: short by whole items with no lane to explain it (goods left without
//!   a sale: an operator's raw open, a door forced open);
//! - `drift`: short or over by no whole number of items (the load cell wandered further
//!   than its zero may follow in one step);
//! - `data_error`: no reading for the lane, a reading below the lane's empty weight, or
//!   whole items more than the ledger knows with no lane to explain them (an unrecorded
//!   restock).
//!
//! The cabinet records a lane's divergence when it starts or changes — its class, its
//! difference, or the ledger's stock it stands against (a sale since moves both counts)
//! — (`LaneStockDiverged`) and when the weight agrees again (`LaneStockAgreed`); the
//! `stock_discrepancies` view serves them, and the nightly reconciliation raises an
//! anomaly for each still open.

use super::aggregate::{Decision, LaneState};
use super::{Cabinet, CabinetEvent, DoorState, REZERO_MAX_STEP_UNITS};
use crate::weight::StableReading;
use crate::{DoorNo, Grams, LaneNo, UnixMs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a lane's weight disagrees with its ledger (API: `class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockClass {
    /// No whole number of items: the cell wandered.
    Drift,
    /// An item of another lane's product is here, or this lane's is elsewhere.
    WrongLane,
    /// As `WrongLane` between look-alike lanes.
    EqualWeightSwap,
    /// Whole items gone without a sale.
    UnpaidTake,
    /// The reading cannot be squared with any stock.
    DataError,
}

impl StockClass {
    /// Every class, in the API's order.
    pub const ALL: [Self; 5] = [
        Self::Drift,
        Self::WrongLane,
        Self::EqualWeightSwap,
        Self::UnpaidTake,
        Self::DataError,
    ];

    /// The class as the API and the anomaly kinds spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drift => "drift",
            Self::WrongLane => "wrong_lane",
            Self::EqualWeightSwap => "equal_weight_swap",
            Self::UnpaidTake => "unpaid_take",
            Self::DataError => "data_error",
        }
    }
}

/// A lane's open divergence, as the cabinet remembers it (to record only changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockDivergence {
    /// Why.
    pub class: StockClass,
    /// Items by weight minus items by the ledger (0 when the reading counts no whole
    /// items).
    pub difference: i64,
    /// When the lane first disagreed.
    pub since: UnixMs,
    /// The ledger's stock when it was last recorded: a sale since moves the ledger and
    /// the weight alike, and the divergence is recorded again with both counts, so that
    /// what an operator sees is the shelf's count now, not before the sale.
    #[serde(default)]
    pub ledger_stock: i64,
}

/// What one reading says of one lane.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneVerdict {
    /// The lane.
    pub lane: LaneNo,
    /// `None`: the weight agrees with the ledger.
    pub class: Option<StockClass>,
    /// Whole items on the lane by weight (`None` without a reading).
    pub weighed_stock: Option<i64>,
    /// The lane's reading.
    pub reading: Option<Grams>,
}

/// Whether `a` is `b` within the lane's tolerance at that load (at least 15 % of `unit`).
fn near(a: Grams, b: Grams, unit: Grams, lane: &LaneState) -> bool {
    (a - b).abs() <= lane.plan.tolerance.allowed(b).max(unit * 0.15)
}

/// Whether two lanes' products weigh the same within either's tolerance.
fn look_alike(a: &LaneState, b: &LaneState) -> bool {
    let allowed = a
        .plan
        .tolerance
        .allowed(a.plan.unit_grams)
        .max(b.plan.tolerance.allowed(b.plan.unit_grams));
    (a.plan.unit_grams - b.plan.unit_grams).abs() <= allowed
}

/// One lane's reading and residual (reading − expected).
struct Weighed<'a> {
    state: &'a LaneState,
    reading: Option<Grams>,
    residual: Grams,
}

impl Weighed<'_> {
    fn unit(&self) -> Grams {
        self.state.plan.unit_grams
    }
    fn agrees(&self) -> bool {
        self.residual.abs() < self.unit() * REZERO_MAX_STEP_UNITS
    }
    /// The residual as whole items of this lane's unit, when it is one.
    fn whole(&self) -> Option<i64> {
        let k = (self.residual / self.unit()).round();
        (k != 0.0 && near(self.residual, self.unit() * k, self.unit(), self.state)).then_some(k as i64)
    }
}

/// Classifies one lane that disagrees, reading the door's other lanes for a partner.
fn classify(me: &Weighed<'_>, others: &[&Weighed<'_>]) -> StockClass {
    let Some(reading) = me.reading else { return StockClass::DataError };
    if reading - me.state.zero_grams < -(me.unit() * REZERO_MAX_STEP_UNITS) {
        return StockClass::DataError;
    }
    let swap_or_wrong = |other: &Weighed<'_>| {
        if look_alike(me.state, other.state) {
            StockClass::EqualWeightSwap
        } else {
            StockClass::WrongLane
        }
    };
    // A partner on the other side of the same weight: the item moved between them.
    let partner = others.iter().find(|o| {
        !o.agrees() && o.reading.is_some() && o.residual.get().signum() != me.residual.get().signum() && {
            let (short, over) = if me.residual.get() < 0.0 { (me, **o) } else { (**o, me) };
            short.whole().is_some() && near(over.residual, -short.residual, short.unit(), short.state)
        }
    });
    if let Some(o) = partner {
        return swap_or_wrong(o);
    }
    if me.residual.get() < 0.0 {
        return if me.whole().is_some() {
            StockClass::UnpaidTake
        } else {
            StockClass::Drift
        };
    }
    // Over, alone: whole items of another product's weight, or of its own.
    let foreign = others.iter().find(|o| {
        let k = (me.residual / o.unit()).round();
        k >= 1.0 && !look_alike(me.state, o.state) && near(me.residual, o.unit() * k, o.unit(), o.state)
    });
    match (foreign, me.whole()) {
        (Some(_), None) => StockClass::WrongLane,
        (_, Some(_)) if others.iter().any(|o| look_alike(me.state, o.state)) => StockClass::EqualWeightSwap,
        (_, Some(_)) => StockClass::DataError,
        (None, None) => StockClass::Drift,
    }
}

/// What `reading` says of each lane of `door` that can be weighed (a lane waiting for
/// a calibration has no trustworthy unit weight and is left out).
pub fn check_door(door: &DoorState, reading: &StableReading) -> Vec<LaneVerdict> {
    let weighed: Vec<Weighed<'_>> = door
        .lanes
        .values()
        .filter(|l| !l.needs_calibration)
        .map(|l| {
            let reading = reading.grams(l.plan.lane);
            Weighed {
                state: l,
                reading,
                residual: reading.map_or(Grams::ZERO, |g| g - l.expected_grams()),
            }
        })
        .collect();
    weighed
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let others: Vec<&Weighed<'_>> = weighed.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, w)| w).collect();
            let weighed_stock = me.reading.map(|g| ((g - me.state.zero_grams) / me.unit()).round() as i64);
            let class = (me.reading.is_none() || !me.agrees()).then(|| classify(me, &others));
            LaneVerdict {
                lane: me.state.plan.lane,
                class,
                weighed_stock: if class.is_none() { Some(me.state.stock) } else { weighed_stock },
                reading: me.reading,
            }
        })
        .collect()
}

impl Cabinet {
    /// What a settled closed-door reading says of the ledger: a divergence that starts
    /// or changes, or one that ends. The same reading again records nothing.
    pub(super) fn reconcile_stock(&self, door: DoorNo, reading: &StableReading, at: UnixMs) -> Decision {
        let d = self.door(door)?;
        let mut events = Vec::new();
        for v in check_door(d, reading) {
            let Some(l) = d.lanes.get(&v.lane) else { continue };
            match (v.class, &l.divergence) {
                (None, None) => {}
                (None, Some(_)) => events.push(CabinetEvent::LaneStockAgreed {
                    door,
                    lane: v.lane,
                    stock: l.stock,
                    reading_grams: v.reading,
                    at,
                }),
                (Some(class), open) => {
                    let difference = v.weighed_stock.map_or(0, |w| w - l.stock);
                    if open
                        .as_ref()
                        .is_some_and(|o| o.class == class && o.difference == difference && o.ledger_stock == l.stock)
                    {
                        continue;
                    }
                    events.push(CabinetEvent::LaneStockDiverged {
                        door,
                        lane: v.lane,
                        sku: l.plan.sku.clone(),
                        class,
                        ledger_stock: l.stock,
                        weighed_stock: v.weighed_stock,
                        difference,
                        reading_grams: v.reading,
                        expected_grams: l.expected_grams(),
                        since: open.as_ref().map_or(at, |o| o.since),
                        window_from: d.opened_at,
                        last_session: d.last_session.clone(),
                        at,
                    });
                }
            }
        }
        Ok(events)
    }

    /// An operator wrote off the divergence of `lane` that began at `since`: the ledger
    /// moves by its difference (reason `write_off`) and the lane agrees again. Nothing
    /// when that divergence is over, or counts no whole items (drift: a calibration's
    /// business, not the ledger's).
    pub(super) fn write_off_divergence(&self, door: DoorNo, lane: LaneNo, since: UnixMs, anomaly_id: String, at: UnixMs) -> Decision {
        let d = self.door(door)?;
        let l = d.lanes.get(&lane).ok_or(super::CabinetError::UnknownLane(lane))?;
        let Some(div) = l.divergence.as_ref().filter(|v| v.since == since && v.difference != 0) else {
            return Ok(vec![]);
        };
        if d.holder.is_some() {
            return Err(super::CabinetError::DoorBusy);
        }
        let after = (l.stock + div.difference).max(0);
        Ok(vec![
            CabinetEvent::LaneStockChanged {
                door,
                lane,
                sku: l.plan.sku.clone(),
                before: l.stock,
                change: after - l.stock,
                after,
                reason: super::StockReason::WriteOff { anomaly_id },
                at,
            },
            CabinetEvent::LaneStockAgreed {
                door,
                lane,
                stock: after,
                reading_grams: None,
                at,
            },
        ])
    }

    /// Folds a divergence's start, change or end.
    pub(super) fn apply_stock_check(&mut self, event: CabinetEvent) {
        match event {
            CabinetEvent::LaneStockDiverged {
                door,
                lane,
                class,
                difference,
                since,
                ledger_stock,
                ..
            } => {
                if let Some(l) = self.lane_mut(door, lane) {
                    l.divergence = Some(StockDivergence {
                        class,
                        difference,
                        since,
                        ledger_stock,
                    });
                }
            }
            CabinetEvent::LaneStockAgreed { door, lane, .. } => {
                if let Some(l) = self.lane_mut(door, lane) {
                    l.divergence = None;
                }
            }
            _ => {}
        }
    }
}

/// The open divergences of a cabinet, by door and lane.
pub fn open_divergences(c: &Cabinet) -> BTreeMap<(DoorNo, LaneNo), StockDivergence> {
    c.doors
        .values()
        .flat_map(|d| {
            d.lanes
                .values()
                .filter_map(move |l| Some(((d.door, l.plan.lane), l.divergence.clone()?)))
        })
        .collect()
}
