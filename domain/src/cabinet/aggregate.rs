//! The cabinet's state and its decisions: each command is decided by a small method that
//! returns the events (or a refusal); `apply` folds events into the state.

use super::planogram::{validate_locker, validate_plan};
use super::{
    CabinetCommand, CabinetError, CabinetEvent, CompartmentChange, DeviceStatus, DoorPlan, DoorPosition, Holder, LanePlan, StockReason,
};
use crate::weight::StableReading;
use crate::{CabinetId, CabinetKind, DoorNo, GeoPoint, LaneNo, UnixMs};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

pub(super) type Decision = Result<Vec<CabinetEvent>, CabinetError>;

/// A lane's live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneState {
    /// The plan.
    pub plan: LanePlan,
    /// Items on the lane by the ledger.
    pub stock: i64,
    /// When the label the lane charges by was issued [C2].
    #[serde(default)]
    pub label_issued_at: UnixMs,
    /// A product of another unit weight was swapped in: the door does not sell until the
    /// lane is calibrated [M1].
    #[serde(default)]
    pub needs_calibration: bool,
    /// The lane's calibration version (0: never calibrated here) [M1].
    #[serde(default)]
    pub calibration_version: u32,
    /// The command of the last calibration (a repeat of it records nothing).
    #[serde(default)]
    pub calibration_cmd: Option<String>,
    /// What the lane reads with nothing on it, as drift and creep moved it since its
    /// last tare [B4]: the weight of its stock is `zero_grams + stock × unit`.
    #[serde(default)]
    pub zero_grams: crate::Grams,
    /// Tared while empty, with no stock movement since: ready for its standard weight
    /// [M1].
    #[serde(default)]
    pub tared: bool,
    /// The last calibration's error as a share of what its tolerance allowed (0: exact,
    /// 1: at the limit) [B4].
    #[serde(default)]
    pub calibration_error_ratio: f64,
    /// The weight disagrees with the ledger, and why [R3 (a)].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<super::StockDivergence>,
}

/// A door's live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoorState {
    /// Door number.
    pub door: DoorNo,
    /// Lanes by number.
    pub lanes: BTreeMap<LaneNo, LaneState>,
    /// Who holds it.
    pub holder: Option<Holder>,
    /// Physical position.
    pub position: DoorPosition,
    /// Highest device sequence applied to this door.
    pub last_seq: Option<u64>,
    /// Lockers: whether the compartment holds an item, as last reported (`None` until
    /// the device says).
    #[serde(default)]
    pub occupied: Option<bool>,
    /// When the door was last freed (or the cabinet counted): only closed-door weights
    /// received after it say anything about drift [B4].
    #[serde(default)]
    pub free_since: UnixMs,
    /// When the door last opened: where a stock divergence's window starts [R3 (a)].
    #[serde(default)]
    pub opened_at: UnixMs,
    /// The last session that held the door [R3 (a)].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_session: Option<Holder>,
    /// The device time of the door's last close: no purchase's baseline may be older
    /// [O5], or it would weigh the previous shopper's takes too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_device_ts: Option<UnixMs>,
    /// The session that held the door at its last close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// When its holder took it: a door held long by an order that was never created (a
    /// crash between the scan's two commands) is given back [O2].
    #[serde(default)]
    pub acquired_at: UnixMs,
}

impl DoorState {
    /// Whether the door has opened or closed for `session` (it holds the door, and the
    /// door is open, or its last close was under it): the session's own record of it
    /// may still be on its way (its effect delayed by an outage), and must not be given
    /// up as never opened meanwhile.
    pub fn moved_for(&self, session: &str) -> bool {
        self.holder.as_ref().is_some_and(|h| h.session_id() == session)
            && (self.position == DoorPosition::Open || self.closed_by.as_deref() == Some(session))
    }
}

/// How many recent door-message ids a cabinet remembers to drop duplicates [D8].
const RECENT_MSG_IDS: usize = 64;

/// A cabinet's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cabinet {
    /// Id, once registered.
    pub id: Option<CabinetId>,
    /// Kind.
    pub kind: Option<CabinetKind>,
    /// Location.
    pub location: Option<GeoPoint>,
    /// Doors by number.
    pub doors: BTreeMap<DoorNo, DoorState>,
    /// Device status.
    pub status: DeviceStatus,
    /// Whether opening stock has been counted.
    pub initialized: bool,
    /// Gateway node holding the connection.
    pub node: Option<String>,
    /// Planogram version (1 at registration).
    pub planogram_version: u32,
    /// Recently seen door-message ids.
    pub recent_msg_ids: VecDeque<String>,
    /// An operator shut the device out [D2].
    #[serde(default)]
    pub device_disabled: bool,
    /// The temperature limit and lockout [B8].
    #[serde(default)]
    pub temperature: super::safety::TemperatureGuard,
    /// The firmware version the device reported at its last boot (how an upgrade
    /// campaign sees that it took) [M5].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fw: Option<String>,
}

impl Cabinet {
    /// The planogram at registration: every lane empty, uncalibrated, untared.
    fn apply_registered(&mut self, e: CabinetEvent) {
        let CabinetEvent::CabinetRegistered {
            id, kind, location, doors, ..
        } = e
        else {
            return;
        };
        self.id = Some(id);
        self.kind = Some(kind);
        self.location = Some(location);
        self.planogram_version = 1;
        self.doors = doors
            .into_iter()
            .map(|d| {
                let lanes = d
                    .lanes
                    .into_iter()
                    .map(|l| {
                        let state = LaneState {
                            plan: l,
                            stock: 0,
                            label_issued_at: 0,
                            needs_calibration: false,
                            calibration_version: 0,
                            calibration_cmd: None,
                            zero_grams: crate::Grams::ZERO,
                            tared: false,
                            calibration_error_ratio: 0.0,
                            divergence: None,
                        };
                        (state.plan.lane, state)
                    })
                    .collect();
                (
                    d.door,
                    DoorState {
                        door: d.door,
                        lanes,
                        holder: None,
                        position: DoorPosition::Unknown,
                        last_seq: None,
                        occupied: None,
                        free_since: 0,
                        opened_at: 0,
                        last_session: None,
                        closed_device_ts: None,
                        closed_by: None,
                        acquired_at: 0,
                    },
                )
            })
            .collect();
    }

    /// A door's state, or `UnknownDoor`.
    pub fn door(&self, door: DoorNo) -> Result<&DoorState, CabinetError> {
        self.doors.get(&door).ok_or(CabinetError::UnknownDoor(door))
    }

    /// Whether shoppers may use the cabinet now: only an online device serves a scan.
    pub fn check_available(&self) -> Result<(), CabinetError> {
        match self.status {
            DeviceStatus::Online => Ok(()),
            DeviceStatus::Registered => Err(CabinetError::NotAvailable("not_connected")),
            DeviceStatus::PendingInit => Err(CabinetError::NotAvailable("pending_init")),
            DeviceStatus::Offline => Err(CabinetError::NotAvailable("offline")),
            DeviceStatus::Faulty => Err(CabinetError::NotAvailable("faulty")),
        }
    }

    /// D1: a device's boot must describe the registered planogram — as many doors, each
    /// with as many lanes (a locker's compartments have none); otherwise why not.
    pub fn check_boot(&self, doors: u8, lanes: &[u8]) -> Result<(), String> {
        let expected: Vec<usize> = self.doors.values().map(|d| d.lanes.len()).collect();
        let reported: Vec<usize> = lanes.iter().map(|n| usize::from(*n)).collect();
        if usize::from(doors) == expected.len() && reported == expected {
            return Ok(());
        }
        Err(format!(
            "boot reports {doors} doors with lanes {lanes:?}; the planogram has {} doors with lanes {expected:?}",
            expected.len()
        ))
    }

    /// Whether the device is connected (online or still initializing).
    pub fn is_connected(&self) -> bool {
        matches!(self.status, DeviceStatus::Online | DeviceStatus::PendingInit)
    }

    /// The status a (re)connected or resumed device is in: a weight cabinet is online once
    /// its opening stock was counted [D1]; a locker has none to count.
    fn connected_status(&self) -> DeviceStatus {
        if self.initialized || self.kind == Some(CabinetKind::Locker) {
            DeviceStatus::Online
        } else {
            DeviceStatus::PendingInit
        }
    }

    fn remember(&mut self, msg_id: String) {
        self.recent_msg_ids.push_back(msg_id);
        while self.recent_msg_ids.len() > RECENT_MSG_IDS {
            self.recent_msg_ids.pop_front();
        }
    }

    /// Decides `command` against the current state: the events it causes, or why it is
    /// refused. A report seen before, or a release of a door one does not hold, decides
    /// nothing.
    pub fn decide(&self, command: CabinetCommand) -> Decision {
        use CabinetCommand as C;
        if self.id.is_none() && !matches!(command, C::Register { .. }) {
            return Err(CabinetError::NotFound);
        }
        match command {
            C::Register {
                id,
                kind,
                location,
                doors,
                at,
            } => self.register(id, kind, location, doors, at),
            C::ConnectDevice { node, fw, at } => {
                if self.status == DeviceStatus::Faulty {
                    return Err(CabinetError::NotAvailable("faulty"));
                }
                let status = self.connected_status();
                Ok(vec![CabinetEvent::DeviceConnected { node, fw, status, at }])
            }
            // Also after a silence: the connection it still held is gone now.
            C::DisconnectDevice { at } => Ok(when(self.is_connected() || self.node.is_some(), || {
                CabinetEvent::DeviceDisconnected { at }
            })),
            C::MarkSilent { last_seen, held_by, at } => {
                let same_connection = held_by.is_none() || held_by == self.node;
                Ok(when(same_connection && self.is_connected(), || CabinetEvent::DeviceWentSilent {
                    last_seen,
                    at,
                }))
            }
            C::MarkAlive { at } => Ok(when(self.status == DeviceStatus::Offline && self.node.is_some(), || {
                CabinetEvent::DeviceResumed {
                    status: self.connected_status(),
                    at,
                }
            })),
            C::SetDeviceAccess { enabled, by, at } => Ok(when(self.device_disabled == enabled, || CabinetEvent::DeviceAccessChanged {
                enabled,
                by,
                at,
            })),
            C::RecordCompartment {
                compartment,
                change,
                msg_id,
                at,
            } => self.record_compartment(compartment, change, msg_id, at),
            C::RecordAdPlay {
                ad_id,
                duration_ms,
                msg_id,
                at,
            } => self.record_ad_play(ad_id, duration_ms, msg_id, at),
            C::Initialize { readings, at } => self.initialize(&readings, at),
            C::AcquireDoor { door, holder, at } => self.acquire_door(door, holder, at),
            C::ReleaseDoor {
                door,
                session_id,
                reason,
                at,
            } => self.release_door(door, session_id, reason, at),
            C::RecordDoorEvent {
                door,
                position,
                msg_id,
                seq,
                device_ts,
                cmd_id,
                stable_before,
                at,
            } => self.record_door_event(door, position, msg_id, seq, device_ts, cmd_id, stable_before, at),
            C::FinishSale {
                door,
                order_id,
                sold,
                charged,
                at,
            } => self.finish_sale(door, order_id, &sold, charged, at),
            C::FinishRestock {
                door,
                restock_id,
                added,
                at,
            } => self.finish_restock(door, restock_id, &added, at),
            C::ApplyPriceLabel {
                door,
                lane,
                sku,
                price,
                name,
                issued_at,
                at,
            } => self.apply_price_label(door, lane, sku, price, name, issued_at, at),
            C::SwapLane { door, plan, at } => self.swap_lane(door, plan, at),
            C::RecordCalibration {
                door,
                lane,
                standard_grams,
                measured_grams,
                cmd_id,
                at,
            } => self.record_calibration(door, lane, standard_grams, measured_grams, cmd_id, at),
            C::ObserveClosedWeight { door, reading, at } => self.observe_closed_weight(door, &reading, at),
            C::RecordTare { door, lane, cmd_id, at } => self.record_tare(door, lane, cmd_id, at),
            C::WriteOffDivergence {
                door,
                lane,
                since,
                anomaly_id,
                at,
            } => self.write_off_divergence(door, lane, since, anomaly_id, at),
            C::SetTemperatureLimit { max_c, by, at } => self.temperature.set_limit(max_c, by, at),
            C::ObserveTemperature { temp_c, at } => Ok(self.temperature.observe(temp_c, at)),
            C::ResetTemperatureLockout { by, reason, at } => self.temperature.reset(by, reason, at),
        }
    }

    /// The holder is done with the door (a session not holding it releases nothing).
    fn release_door(&self, door: DoorNo, session_id: String, reason: String, at: UnixMs) -> Decision {
        let d = self.door(door)?;
        Ok(when(d.holder.as_ref().map(Holder::session_id) == Some(session_id.as_str()), || {
            CabinetEvent::DoorReleased {
                door,
                session_id,
                reason,
                at,
            }
        }))
    }

    fn register(&self, id: CabinetId, kind: CabinetKind, location: GeoPoint, doors: Vec<DoorPlan>, at: UnixMs) -> Decision {
        if self.id.is_some() {
            return Err(CabinetError::AlreadyExists);
        }
        match kind {
            CabinetKind::Weight => validate_plan(&doors)?,
            CabinetKind::Locker => validate_locker(&doors)?,
        }
        Ok(vec![CabinetEvent::CabinetRegistered {
            id,
            kind,
            location,
            doors,
            at,
        }])
    }

    fn record_compartment(&self, compartment: DoorNo, change: CompartmentChange, msg_id: String, at: UnixMs) -> Decision {
        if self.kind != Some(CabinetKind::Locker) {
            return Err(CabinetError::Invalid {
                field: "compartment".into(),
                reason: "this cabinet has no compartments".into(),
            });
        }
        self.door(compartment)?;
        Ok(when(!self.recent_msg_ids.contains(&msg_id), || CabinetEvent::CompartmentChanged {
            compartment,
            change,
            msg_id,
            at,
        }))
    }

    fn record_ad_play(&self, ad_id: String, duration_ms: u64, msg_id: String, at: UnixMs) -> Decision {
        if ad_id.is_empty() || ad_id.len() > 64 {
            return Err(CabinetError::Invalid {
                field: "ad_id".into(),
                reason: "must be 1-64 characters".into(),
            });
        }
        if duration_ms > 3_600_000 {
            return Err(CabinetError::Invalid {
                field: "duration_ms".into(),
                reason: "must be at most one hour".into(),
            });
        }
        Ok(when(!self.recent_msg_ids.contains(&msg_id), || CabinetEvent::AdPlayed {
            ad_id,
            duration_ms,
            msg_id,
            at,
        }))
    }

    /// A pending cabinet counts its opening stock, every door from one stable reading
    /// [D1]; then it is online. A repeat, or a cabinet not pending, decides nothing.
    fn initialize(&self, readings: &[(DoorNo, StableReading)], at: UnixMs) -> Decision {
        if self.status != DeviceStatus::PendingInit {
            return Ok(vec![]);
        }
        let mut events = Vec::new();
        for (door_no, door) in &self.doors {
            let Some((_, reading)) = readings.iter().find(|(d, _)| d == door_no) else {
                return Err(CabinetError::Invalid {
                    field: "readings".into(),
                    reason: format!("no stable reading for door {door_no}"),
                });
            };
            for (lane_no, lane) in &door.lanes {
                let grams = reading.grams(*lane_no).ok_or_else(|| CabinetError::Invalid {
                    field: "readings".into(),
                    reason: format!("door {door_no} lane {lane_no} missing"),
                })?;
                let count = (grams / lane.plan.unit_grams).round().max(0.0) as i64;
                events.push(CabinetEvent::LaneStockChanged {
                    door: *door_no,
                    lane: *lane_no,
                    sku: lane.plan.sku.clone(),
                    before: lane.stock,
                    change: count - lane.stock,
                    after: count,
                    reason: StockReason::Opening,
                    at,
                });
            }
        }
        events.push(CabinetEvent::CabinetInitialized { at });
        Ok(events)
    }

    /// One holder per door [O2]: the same session asking again is welcome; anyone else
    /// waits until the door is released, and only an online cabinet hands doors out.
    fn acquire_door(&self, door: DoorNo, holder: Holder, at: UnixMs) -> Decision {
        let d = self.door(door)?;
        if d.holder.as_ref() == Some(&holder) {
            return Ok(vec![]);
        }
        // An operator may address an absent device's door (the command expires unheard
        // [B7]); shoppers and sessions need it online.
        if !matches!(holder, Holder::Command { .. }) {
            self.check_available()?;
        }
        if d.holder.is_some() {
            return Err(CabinetError::DoorBusy);
        }
        Ok(vec![CabinetEvent::DoorAcquired { door, holder, at }])
    }

    /// A door report from the device [D8]: duplicates are dropped, a report older than
    /// the last applied (by `seq`) is kept as late but not applied, and a close the
    /// platform did not see opening is unexpected.
    #[allow(clippy::too_many_arguments)]
    fn record_door_event(
        &self,
        door: DoorNo,
        position: DoorPosition,
        msg_id: String,
        seq: u64,
        device_ts: UnixMs,
        cmd_id: Option<String>,
        stable_before: Option<StableReading>,
        at: UnixMs,
    ) -> Decision {
        let d = self.door(door)?;
        if self.recent_msg_ids.contains(&msg_id) {
            return Ok(vec![]);
        }
        let holder = d.holder.clone();
        // A device clock that stepped back behind the last close says nothing of staleness.
        let not_before = d.closed_device_ts.filter(|closed| *closed <= device_ts);
        let stable_before = StableReading::fresh(stable_before, not_before);
        if let Some(applied_seq) = d.last_seq.filter(|applied| seq <= *applied) {
            return Ok(vec![CabinetEvent::LateDoorEventRecorded {
                door,
                position,
                msg_id,
                seq,
                applied_seq,
                holder,
                at,
            }]);
        }
        let event = match position {
            DoorPosition::Open => CabinetEvent::DoorOpened {
                door,
                holder,
                msg_id,
                seq,
                device_ts,
                cmd_id,
                stable_before,
                not_before,
                at,
            },
            DoorPosition::Closed => {
                let closed = CabinetEvent::DoorClosed {
                    door,
                    holder: holder.clone(),
                    unexpected: d.position != DoorPosition::Open,
                    msg_id,
                    seq,
                    device_ts,
                    stable_before,
                    not_before,
                    at,
                };
                // An operator's open door is theirs until it closes [O2].
                if let Some(Holder::Command { cmd_id }) = holder {
                    return Ok(vec![
                        closed,
                        CabinetEvent::DoorReleased {
                            door,
                            session_id: cmd_id,
                            reason: "operator_door_closed".into(),
                            at,
                        },
                    ]);
                }
                closed
            }
            DoorPosition::Unknown => {
                return Err(CabinetError::Invalid {
                    field: "state".into(),
                    reason: "must be open or closed".into(),
                })
            }
        };
        Ok(vec![event])
    }

    /// A purchase on `door` ended: each lane's sold count is a stock movement (a sale if
    /// charged, otherwise an uncharged take), a lane that falls to its threshold raises a
    /// restock need, and the door is freed — once: a second finish decides nothing.
    fn finish_sale(&self, door: DoorNo, order_id: String, sold: &[(LaneNo, u32)], charged: bool, at: UnixMs) -> Decision {
        let d = self.door(door)?;
        if d.holder.as_ref().map(Holder::session_id) != Some(order_id.as_str()) {
            return Ok(vec![]);
        }
        let mut events = Vec::new();
        // The live stock per lane as the movements are decided (a lane may appear twice).
        let mut stock: BTreeMap<LaneNo, i64> = d.lanes.iter().map(|(n, l)| (*n, l.stock)).collect();
        for (lane_no, qty) in sold.iter().copied().filter(|(_, qty)| *qty > 0) {
            let (Some(lane), Some(before)) = (d.lanes.get(&lane_no), stock.get(&lane_no).copied()) else {
                continue;
            };
            let after = before - i64::from(qty);
            stock.insert(lane_no, after);
            let order_id = order_id.clone();
            events.push(CabinetEvent::LaneStockChanged {
                door,
                lane: lane_no,
                sku: lane.plan.sku.clone(),
                before,
                change: -i64::from(qty),
                after,
                reason: if charged {
                    StockReason::Sale { order_id }
                } else {
                    StockReason::UnchargedTake { order_id }
                },
                at,
            });
            let threshold = lane.plan.restock_threshold;
            if after <= i64::from(threshold) && before > i64::from(threshold) {
                events.push(CabinetEvent::RestockNeeded {
                    door,
                    lane: lane_no,
                    sku: lane.plan.sku.clone(),
                    stock: after,
                    threshold,
                    at,
                });
            }
        }
        events.push(CabinetEvent::DoorReleased {
            door,
            session_id: order_id,
            reason: "sale_finished".into(),
            at,
        });
        Ok(events)
    }
}

/// One event when `condition` holds, none otherwise.
pub(super) fn when(condition: bool, event: impl FnOnce() -> CabinetEvent) -> Vec<CabinetEvent> {
    if condition {
        vec![event()]
    } else {
        vec![]
    }
}

impl Aggregate for Cabinet {
    const TYPE: &'static str = "cabinet";
    type Command = CabinetCommand;
    type Event = CabinetEvent;
    type Error = CabinetError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            e @ CabinetEvent::CabinetRegistered { .. } => self.apply_registered(e),
            CabinetEvent::DeviceConnected { node, status, fw, .. } => {
                self.node = Some(node);
                self.fw = Some(fw);
                self.status = status;
                // A (re)boot restarts the device's sequence numbers [PROTOCOL: seq].
                for d in self.doors.values_mut() {
                    d.last_seq = None;
                }
            }
            CabinetEvent::DeviceDisconnected { .. } => {
                self.status = DeviceStatus::Offline;
                self.node = None;
            }
            // Silent, but the connection (and its node) may still be there.
            CabinetEvent::DeviceWentSilent { .. } => self.status = DeviceStatus::Offline,
            CabinetEvent::DeviceResumed { status, .. } => self.status = status,
            CabinetEvent::CompartmentChanged {
                compartment,
                change,
                msg_id,
                ..
            } => {
                if let Some(d) = self.doors.get_mut(&compartment) {
                    match change {
                        CompartmentChange::Popped => d.position = DoorPosition::Open,
                        CompartmentChange::Taken => d.occupied = Some(false),
                        CompartmentChange::Returned => d.occupied = Some(true),
                    }
                }
                self.remember(msg_id);
            }
            CabinetEvent::AdPlayed { msg_id, .. } => self.remember(msg_id),
            CabinetEvent::DeviceAccessChanged { enabled, .. } => self.device_disabled = !enabled,
            CabinetEvent::CabinetInitialized { at, .. } => {
                for d in self.doors.values_mut() {
                    d.free_since = at;
                }
                self.initialized = true;
                self.status = DeviceStatus::Online;
            }
            CabinetEvent::LaneStockChanged { door, lane, after, .. } => {
                if let Some(l) = self.doors.get_mut(&door).and_then(|d| d.lanes.get_mut(&lane)) {
                    l.stock = after;
                    l.tared = false;
                }
            }
            CabinetEvent::RestockNeeded { .. } => {}
            e @ (CabinetEvent::LanePriceChanged { .. } | CabinetEvent::LaneCalibrated { .. } | CabinetEvent::LaneProductSwapped { .. }) => {
                self.apply_lane_change(e)
            }
            e @ (CabinetEvent::LaneRezeroed { .. } | CabinetEvent::LaneDriftBlocked { .. } | CabinetEvent::LaneTared { .. }) => {
                self.apply_drift(e)
            }
            e @ (CabinetEvent::LaneStockDiverged { .. } | CabinetEvent::LaneStockAgreed { .. }) => self.apply_stock_check(e),
            e @ (CabinetEvent::TemperatureLimitSet { .. }
            | CabinetEvent::TemperatureLockedOut { .. }
            | CabinetEvent::TemperatureLockoutReset { .. }) => self.temperature.apply(e),
            CabinetEvent::DoorAcquired { door, holder, at } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.last_session = Some(holder.clone());
                    d.holder = Some(holder);
                    d.acquired_at = at;
                }
            }
            CabinetEvent::DoorReleased { door, at, .. } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.holder = None;
                    d.free_since = at;
                }
            }
            CabinetEvent::DoorOpened { door, seq, msg_id, at, .. } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.opened_at = at;
                    d.position = DoorPosition::Open;
                    d.last_seq = Some(seq);
                }
                self.remember(msg_id);
            }
            CabinetEvent::DoorClosed {
                door,
                seq,
                msg_id,
                device_ts,
                holder,
                ..
            } => {
                if let Some(d) = self.doors.get_mut(&door) {
                    d.position = DoorPosition::Closed;
                    d.last_seq = Some(seq);
                    d.closed_device_ts = Some(device_ts);
                    d.closed_by = holder.as_ref().map(|h| h.session_id().to_string());
                }
                self.remember(msg_id);
            }
            CabinetEvent::LateDoorEventRecorded { msg_id, .. } => self.remember(msg_id),
        }
    }
}
