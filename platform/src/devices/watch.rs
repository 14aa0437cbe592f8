//! What the hub watches on a connected cabinet between its sessions, from memory so that
//! a heartbeat or a closed-door weight costs no store read in the common case:
//!
//! - each lane's closed-door weight [B4]: a stable reading of a door that has not moved
//!   for [`SETTLE_MS`] is compared with the lane's last weighed reading; only a change
//!   beyond the lane's re-zero band (or a door weighed for the first time since it moved)
//!   loads the cabinet, which decides whether the zero follows or the lane is blocked;
//! - the temperature limit [B8]: a heartbeat above it locks the cabinet out, once;
//! - a reboot [B7]: a cabinet that booted while one of its doors was open or in a session
//!   is reconciled with its first heartbeat: a door the device reports closed is closed
//!   for the session that held it (the purchase, restock or command then settles from the
//!   weights as after any close);
//! - a lost close [B7]: a door the platform has open that a later heartbeat (by the
//!   device's `seq`) reports closed is closed as of that heartbeat, so a close message
//!   lost on the way (a node killed as it arrived) cannot leave a purchase open for good.
//!
//! A watch is loaded from the cabinet and kept [`WATCH_TTL_MS`]; changes made through
//! this node (a new limit, a reset) forget it at once, changes on other nodes are seen
//! within the TTL.

use super::{lock, DeviceHub, IngestError};
use crate::store::Meta;
use std::collections::BTreeMap;
use tare_domain::cabinet::{Cabinet, CabinetCommand, DoorPosition};
use tare_domain::weight::{StableReading, WeightSample};
use tare_domain::{CabinetId, DoorNo, LaneNo, UnixMs};
use tare_protocol::uplink::Heartbeat;
use tare_protocol::Uplink;

/// A door's readings this soon after it moved belong to its session (the 8 s of
/// after-close samples, the settling shelves, creep under the new load), not to drift.
pub const SETTLE_MS: i64 = 30_000;

/// How long a watch is trusted before it is loaded again from the cabinet.
pub const WATCH_TTL_MS: i64 = 15 * 60_000;

/// One lane's last weighed reading and how far it may move unremarked.
#[derive(Debug, Clone, Copy)]
struct LaneWatch {
    lane: LaneNo,
    grams: f32,
    band: f32,
}

#[derive(Debug, Default)]
struct DoorWatch {
    moved_at: UnixMs,
    /// `None` until weighed after its last movement.
    lanes: Option<Vec<LaneWatch>>,
}

/// A cabinet's watch.
#[derive(Debug, Default)]
pub(super) struct CabinetWatch {
    loaded_at: UnixMs,
    max_c: Option<f64>,
    locked: bool,
    doors: BTreeMap<DoorNo, DoorWatch>,
    /// Booted with a door open or held: the boot's device time, until the first
    /// heartbeat reconciles it.
    rebooted_at: Option<UnixMs>,
    /// The doors open as far as this node knows, with the `seq` of their open: a
    /// heartbeat sent after it that reports one closed tells of a lost close.
    open_doors: BTreeMap<DoorNo, u64>,
}

impl CabinetWatch {
    fn of(c: &Cabinet, at: UnixMs) -> Self {
        Self {
            loaded_at: at,
            max_c: c.temperature.max_c,
            locked: c.temperature.locked.is_some(),
            doors: BTreeMap::new(),
            rebooted_at: None,
            open_doors: c
                .doors
                .values()
                .filter(|d| d.position == DoorPosition::Open)
                .map(|d| (d.door, d.last_seq.unwrap_or(0)))
                .collect(),
        }
    }
}

/// Whether `sample` differs from the door's last weighed reading by more than a band.
fn moved_beyond_band(lanes: &[LaneWatch], sample: &WeightSample) -> bool {
    lanes.iter().any(|w| {
        sample
            .lanes
            .iter()
            .find(|l| l.lane == w.lane)
            .is_none_or(|l| (l.grams.get() as f32 - w.grams).abs() > w.band)
    })
}

impl DeviceHub {
    /// The door moved: its next settled reading is weighed again.
    pub(super) fn watch_door_moved(&self, cabinet: &CabinetId, door: DoorNo, at: UnixMs) {
        if let Some(w) = lock(&self.watches).get_mut(cabinet) {
            let d = w.doors.entry(door).or_default();
            d.moved_at = at;
            d.lanes = None;
        }
    }

    /// A door event from the device: the door moved, and is open (as of `seq`) or not.
    pub(super) fn watch_door_event(&self, cabinet: &CabinetId, door: DoorNo, position: DoorPosition, seq: u64, at: UnixMs) {
        self.watch_door_moved(cabinet, door, at);
        if let Some(w) = lock(&self.watches).get_mut(cabinet) {
            match position {
                DoorPosition::Open => {
                    let known = w.open_doors.entry(door).or_insert(seq);
                    *known = (*known).max(seq);
                }
                _ => {
                    w.open_doors.remove(&door);
                }
            }
        }
    }

    /// Forgets a cabinet's watch (its limit or lockout changed through this node).
    pub fn forget_watch(&self, cabinet: &CabinetId) {
        lock(&self.watches).remove(cabinet);
    }

    /// A stable weight sample [B4]: a settled, closed door's reading that moved beyond
    /// its band since it was last weighed is weighed against the ledger.
    pub(super) async fn watch_weight(
        &self,
        cabinet: &CabinetId,
        door: DoorNo,
        sample: &WeightSample,
        up: &Uplink,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        if !sample.stable {
            return Ok(());
        }
        let weigh = match lock(&self.watches).get(cabinet) {
            None => true,
            Some(w) if at - w.loaded_at > WATCH_TTL_MS => true,
            Some(w) => match w.doors.get(&door) {
                Some(d) if at - d.moved_at < SETTLE_MS => false,
                Some(DoorWatch { lanes: Some(lanes), .. }) => moved_beyond_band(lanes, sample),
                _ => true,
            },
        };
        if !weigh {
            return Ok(());
        }
        let c = self.load_cabinet(cabinet).await?;
        let Some(reading) = StableReading::from_sample(sample.clone()) else {
            return Ok(());
        };
        // A reading the cabinet does not weigh (the door is held, or not yet freed after
        // its session) is not remembered as weighed: the same weight must be weighed once
        // the door is free, or a lane's divergence would go unseen until the watch expires.
        if !c.weighs_closed(door, &reading) {
            return Ok(());
        }
        let observe = CabinetCommand::ObserveClosedWeight { door, reading, at };
        let decided = c.decide(observe.clone()).map(|events| !events.is_empty()).unwrap_or(false);
        if decided {
            self.cabinet_cmd(cabinet, observe, up, at).await?;
        }
        let lanes = c.door(door).ok().map(|d| {
            d.lanes
                .values()
                .filter_map(|l| {
                    let grams = sample.lanes.iter().find(|s| s.lane == l.plan.lane)?.grams;
                    Some(LaneWatch {
                        lane: l.plan.lane,
                        grams: grams.get() as f32,
                        band: l.rezero_band().get() as f32,
                    })
                })
                .collect()
        });
        let mut watches = lock(&self.watches);
        let w = watches.entry(cabinet.clone()).or_insert_with(|| CabinetWatch::of(&c, at));
        if at - w.loaded_at > WATCH_TTL_MS {
            *w = CabinetWatch {
                doors: std::mem::take(&mut w.doors),
                rebooted_at: w.rebooted_at,
                ..CabinetWatch::of(&c, at)
            };
        }
        let d = w.doors.entry(door).or_default();
        if at - d.moved_at >= SETTLE_MS {
            d.lanes = lanes;
        }
        Ok(())
    }

    /// The cabinet booted [B7]: remember it if a door was open or in a session then.
    pub(super) fn watch_boot(&self, cabinet: &CabinetId, c: &Cabinet, device_ts: UnixMs, at: UnixMs) {
        let in_session = c.doors.values().any(|d| d.holder.is_some() || d.position == DoorPosition::Open);
        let mut watches = lock(&self.watches);
        let w = watches.entry(cabinet.clone()).or_insert_with(|| CabinetWatch::of(c, at));
        *w = CabinetWatch {
            rebooted_at: in_session.then_some(device_ts),
            ..CabinetWatch::of(c, at)
        };
    }

    /// A heartbeat: the temperature limit [B8], and a reboot's reconciliation [B7].
    pub(super) async fn watch_heartbeat(&self, cabinet: &CabinetId, up: &Uplink, hb: &Heartbeat, at: UnixMs) -> Result<(), IngestError> {
        let known = lock(&self.watches)
            .get(cabinet)
            .map(|w| (at - w.loaded_at > WATCH_TTL_MS, w.rebooted_at));
        if known.is_none_or(|(stale, _)| stale) {
            let c = self.load_cabinet(cabinet).await?;
            let mut watches = lock(&self.watches);
            let w = watches.entry(cabinet.clone()).or_default();
            let (doors, rebooted_at) = (std::mem::take(&mut w.doors), w.rebooted_at);
            *w = CabinetWatch {
                doors,
                rebooted_at,
                ..CabinetWatch::of(&c, at)
            };
        }
        let (lock_out, rebooted_at, lost) = {
            let mut watches = lock(&self.watches);
            let Some(w) = watches.get_mut(cabinet) else {
                return Ok(());
            };
            let over = !w.locked && hb.temp_c.is_finite() && w.max_c.is_some_and(|m| hb.temp_c > m);
            if over {
                w.locked = true;
            }
            let lost: Vec<DoorNo> = hb
                .doors
                .iter()
                .filter(|(door, state)| {
                    state.as_str() == "closed" && w.open_doors.get(door).is_some_and(|open_seq| *open_seq < up.envelope.seq)
                })
                .map(|(door, _)| *door)
                .collect();
            (over, w.rebooted_at.take(), lost)
        };
        if lock_out {
            let cmd = CabinetCommand::ObserveTemperature { temp_c: hb.temp_c, at };
            self.cabinet_cmd(cabinet, cmd, up, at).await?;
        }
        if let Some(boot_ts) = rebooted_at {
            self.reconcile_reboot(cabinet, up, hb, boot_ts, at).await?;
        } else if !lost.is_empty() {
            self.reconcile_lost_close(cabinet, up, &lost, at).await?;
        }
        Ok(())
    }

    /// Doors this node has open that a heartbeat sent after their open reports closed:
    /// their close was lost, and is recorded now as of the heartbeat's device time (the
    /// door was closed by then, so the readings after it weigh the session) [B7]. The
    /// cabinet decides, by its own door state and `seq`; the watch only says when to ask.
    async fn reconcile_lost_close(&self, cabinet: &CabinetId, up: &Uplink, doors: &[DoorNo], at: UnixMs) -> Result<(), IngestError> {
        let c = self.load_cabinet(cabinet).await?;
        for door in doors {
            let lost = c
                .door(*door)
                .is_ok_and(|d| d.position == DoorPosition::Open && d.last_seq.is_none_or(|s| s < up.envelope.seq));
            if lost {
                // The open carried the session's baseline; a reading from before this
                // heartbeat may already be after the takes.
                self.record_unsent_close(cabinet, up, *door, "heartbeat", up.envelope.ts, None, at)
                    .await?;
                self.counters.lost_close_heard();
                tracing::warn!(cabinet = %cabinet, door = door.get(), "a door close was lost; heard from the heartbeat");
            }
            // The watch follows the cabinet: still open (opened after this heartbeat) or not.
            let open_seq = c
                .door(*door)
                .ok()
                .filter(|d| !lost && d.position == DoorPosition::Open)
                .map(|d| d.last_seq.unwrap_or(0));
            if let Some(w) = lock(&self.watches).get_mut(cabinet) {
                match open_seq {
                    Some(seq) => w.open_doors.insert(*door, seq),
                    None => w.open_doors.remove(door),
                };
            }
        }
        Ok(())
    }

    /// A door the cabinet thinks open (or in a session) that the rebooted device reports
    /// closed is closed now, as of the boot: the session that held it settles from the
    /// weights reported since [B7].
    async fn reconcile_reboot(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        hb: &Heartbeat,
        boot_ts: UnixMs,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let c = self.load_cabinet(cabinet).await?;
        for (door, state) in &hb.doors {
            let Ok(d) = c.door(*door) else { continue };
            if state.as_str() != "closed" || d.position != DoorPosition::Open {
                continue;
            }
            let stable_before =
                tare_sagas::ports::TelemetryView::stable_at_or_before(&*self.telemetry, cabinet, *door, boot_ts.saturating_sub(1));
            self.record_unsent_close(cabinet, up, *door, "reboot", boot_ts, stable_before, at)
                .await?;
            self.counters.reboot_reconciled();
        }
        Ok(())
    }

    /// Records the close of `door` that the device never sent, as the platform learned
    /// it from uplink `up` (`why`: `reboot` or `heartbeat`, in the message and cause
    /// ids), dated `device_ts` on the device's clock; the door's next reading is weighed.
    #[allow(clippy::too_many_arguments)]
    async fn record_unsent_close(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        door: DoorNo,
        why: &str,
        device_ts: UnixMs,
        stable_before: Option<StableReading>,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let cmd = CabinetCommand::RecordDoorEvent {
            door,
            position: DoorPosition::Closed,
            msg_id: format!("{}:{why}:{}", up.envelope.id, door.get()),
            seq: up.envelope.seq,
            device_ts,
            cmd_id: None,
            stable_before,
            at,
        };
        let meta = Meta::new(at, cabinet.to_string(), format!("device:{}:{why}", up.envelope.id));
        self.aggregates
            .cabinets
            .execute(&cabinet.to_string(), cmd, meta)
            .await
            .map_err(|e| IngestError::Store(e.to_string()))?;
        self.watch_door_moved(cabinet, door, at);
        Ok(())
    }
}
