//! A virtual weight cabinet: doors, load cells with noise and settling, and a controller
//! that speaks the device contract (PROTOCOL.md) over a [`DeviceTransport`] — real MQTT
//! for `tare sim` and the demo, or straight into the hub for saga tests on a test clock.
//! It stands in for hardware in the demo, the tests and the benchmarks.
//!
//! Faults on demand: lost open events, missing acks, a jammed door, unstable readings
//! after the door moves.

use crate::clock::DeviceClock;
use crate::transport::{DeviceTransport, TransportError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tare_domain::command::CommandSpec;
use tare_domain::{CabinetId, DoorNo, LaneNo, UnixMs};
use tare_protocol::{CommandMsg, UplinkKind};
use tokio::sync::Notify;

/// One lane of a virtual cabinet.
#[derive(Debug, Clone)]
pub struct VirtualLane {
    /// Lane number.
    pub lane: LaneNo,
    /// Weight of one item.
    pub unit_grams: f64,
    /// Items on the lane.
    pub count: u32,
}

/// Faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The door's own `open` uplink is lost (the platform must query the door).
    pub lose_open_events: bool,
    /// Acks are not sent.
    pub drop_acks: bool,
    /// The door does not open on command.
    pub jammed: bool,
    /// Unstable readings sent after a close before the stable one.
    pub unstable_after_close: u32,
    /// Send no stable reading at all after a close.
    pub never_stable: bool,
    /// Percent of messages sent twice (same id: the platform must apply them once).
    pub duplicate_pct: u8,
    /// Percent of messages held back and sent after the next one (late, out of order).
    pub reorder_pct: u8,
}

/// How a virtual cabinet is built.
#[derive(Debug, Clone)]
pub struct VirtualCabinetSpec {
    /// Its id.
    pub id: CabinetId,
    /// Doors and lanes.
    pub doors: Vec<(DoorNo, Vec<VirtualLane>)>,
    /// Load-cell noise, ± grams per reading (keep it under half the lane tolerance).
    pub noise_grams: f64,
    /// Random seed (noise is reproducible).
    pub seed: u64,
    /// Faults.
    pub faults: Faults,
    /// A locker's compartments (empty for a weight cabinet), each with whether it holds
    /// an item.
    pub compartments: Vec<(DoorNo, bool)>,
}

struct State {
    seq: u64,
    last_ts: UnixMs,
    lanes: BTreeMap<(DoorNo, LaneNo), (f64, u32)>,
    open: HashSet<DoorNo>,
    executed: HashSet<String>,
    rng: StdRng,
    faults: Faults,
    /// A message held back by the reorder fault.
    held: Option<(UplinkKind, Vec<u8>)>,
    /// Locker compartments: occupied?
    compartments: BTreeMap<DoorNo, bool>,
    /// Each lane's load-cell drift: what it reads with nothing on it, until a `tare`.
    drift: BTreeMap<(DoorNo, LaneNo), f64>,
    /// Grams on each lane that are none of its goods (another lane's product, a
    /// shopper's own item).
    foreign: BTreeMap<(DoorNo, LaneNo), f64>,
    /// What its heartbeats report, °C.
    temp_c: f64,
    /// The firmware it reports at boot (an `upgrade` of `fw` installs a new one, which
    /// the next boot reports) [M5].
    fw: String,
    /// The ads in its screen's rotation [M5].
    ads: std::collections::BTreeSet<String>,
}

/// A running virtual cabinet.
pub struct VirtualCabinet {
    id: CabinetId,
    transport: Arc<dyn DeviceTransport>,
    clock: Arc<dyn DeviceClock>,
    noise: f64,
    state: Arc<Mutex<State>>,
    door_moved: Notify,
}

/// How to acknowledge one command.
#[derive(Clone, Copy)]
struct Ack<'a> {
    cmd_id: &'a str,
    /// The cabinet drops its acks (a fault on demand).
    drop: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl VirtualCabinet {
    /// Builds the cabinet (not connected yet).
    pub fn new(spec: VirtualCabinetSpec, transport: Arc<dyn DeviceTransport>, clock: Arc<dyn DeviceClock>) -> Arc<Self> {
        let lanes = spec
            .doors
            .iter()
            .flat_map(|(d, ls)| ls.iter().map(move |l| ((*d, l.lane), (l.unit_grams, l.count))))
            .collect();
        Arc::new(Self {
            id: spec.id,
            transport,
            clock,
            noise: spec.noise_grams,
            state: Arc::new(Mutex::new(State {
                seq: 0,
                last_ts: 0,
                lanes,
                open: HashSet::new(),
                executed: HashSet::new(),
                rng: StdRng::seed_from_u64(spec.seed),
                faults: spec.faults,
                held: None,
                compartments: spec.compartments.into_iter().collect(),
                drift: BTreeMap::new(),
                foreign: BTreeMap::new(),
                temp_c: 4.0,
                fw: "vc-1.0".into(),
                ads: Default::default(),
            })),
            door_moved: Notify::new(),
        })
    }

    /// Its id.
    pub fn id(&self) -> &CabinetId {
        &self.id
    }

    /// The same cabinet (shelves, sequence, executed commands) on another transport: a
    /// platform restarted on the same store, or a switch from in-process to MQTT.
    pub fn with_transport(self: &Arc<Self>, transport: Arc<dyn DeviceTransport>) -> Arc<Self> {
        let st = lock(&self.state);
        Arc::new(Self {
            id: self.id.clone(),
            transport,
            clock: self.clock.clone(),
            noise: self.noise,
            state: Arc::new(Mutex::new(State {
                seq: st.seq,
                last_ts: st.last_ts,
                lanes: st.lanes.clone(),
                open: st.open.clone(),
                executed: st.executed.clone(),
                rng: st.rng.clone(),
                faults: st.faults.clone(),
                held: None,
                compartments: st.compartments.clone(),
                drift: st.drift.clone(),
                foreign: st.foreign.clone(),
                temp_c: st.temp_c,
                fw: st.fw.clone(),
                ads: st.ads.clone(),
            })),
            door_moved: Notify::new(),
        })
    }

    /// Changes the faults.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.state).faults = faults;
    }

    /// Connects: boots (seq restarts at 0) and reports a stable weight per door; then
    /// serves downlink commands until the connection ends.
    pub async fn connect(self: &Arc<Self>) -> Result<(), TransportError> {
        let mut rx = self.transport.connect().await?;
        let (doors, lanes_per_door) = {
            let mut st = lock(&self.state);
            st.seq = 0;
            let mut per: BTreeMap<DoorNo, u8> = BTreeMap::new();
            for (d, _) in st.lanes.keys() {
                *per.entry(*d).or_default() += 1;
            }
            // A locker's compartments are its doors, with no lanes.
            for d in st.compartments.keys() {
                per.entry(*d).or_default();
            }
            (per.len() as u8, per.values().copied().collect::<Vec<_>>())
        };
        let fw = lock(&self.state).fw.clone();
        self.send(
            UplinkKind::Boot,
            json!({"fw": fw, "hw": "virtual", "doors": doors, "lanes": lanes_per_door}),
        )
        .await?;
        for door in self.doors() {
            self.send_weight(door, true).await?;
        }
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(down) = rx.recv().await {
                if down.kind != tare_protocol::DownlinkKind::Cmd {
                    continue;
                }
                let Ok(cmd) = serde_json::from_slice::<CommandMsg>(&down.payload) else {
                    continue;
                };
                if let Err(e) = this.execute(cmd).await {
                    tracing::warn!(cabinet = %this.id, error = %e, "virtual cabinet uplink failed");
                }
            }
        });
        Ok(())
    }

    /// Sets a lane's load-cell drift: it reads `grams` more than its goods weigh, until a
    /// `tare` zeroes it [B4].
    pub fn set_drift(&self, door: DoorNo, lane: LaneNo, grams: f64) {
        lock(&self.state).drift.insert((door, lane), grams);
    }

    /// The ads in its screen's rotation [M5].
    pub fn ads(&self) -> Vec<String> {
        lock(&self.state).ads.iter().cloned().collect()
    }

    /// The firmware it reports at boot [M5].
    pub fn fw(&self) -> String {
        lock(&self.state).fw.clone()
    }

    /// Sets the temperature its heartbeats report [B8].
    pub fn set_temperature(&self, temp_c: f64) {
        lock(&self.state).temp_c = temp_c;
    }

    /// Power-cycles the device [B7]: the connection drops, every door is found closed
    /// (the shopper pushed it shut while the power was out, no `door` message sent), then
    /// it boots again, reports its weights and heartbeats with its doors' states.
    pub async fn reboot(self: &Arc<Self>) -> Result<(), TransportError> {
        self.disconnect().await?;
        lock(&self.state).open.clear();
        self.door_moved.notify_waiters();
        self.connect().await?;
        self.heartbeat().await
    }

    /// Disconnects (the platform marks the cabinet offline).
    pub async fn disconnect(&self) -> Result<(), TransportError> {
        self.transport.disconnect().await
    }

    /// Its doors, in order.
    pub fn doors(&self) -> Vec<DoorNo> {
        let st = lock(&self.state);
        let mut d: Vec<DoorNo> = st.lanes.keys().map(|(d, _)| *d).collect();
        d.dedup();
        d
    }

    /// Whether `door` is open.
    pub fn is_open(&self, door: DoorNo) -> bool {
        lock(&self.state).open.contains(&door)
    }

    /// Waits until `door` is open or `timeout` passes; returns whether it opened.
    pub async fn wait_open(&self, door: DoorNo, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.door_moved.notified();
            if self.is_open(door) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_open(door);
            }
        }
    }

    /// Items on each lane (the truth the platform must infer).
    pub fn counts(&self) -> BTreeMap<(DoorNo, LaneNo), u32> {
        lock(&self.state).lanes.iter().map(|(k, (_, c))| (*k, *c)).collect()
    }

    /// A shopper takes `n` items from a lane (an unstable reading follows).
    pub async fn take(&self, door: DoorNo, lane: LaneNo, n: u32) -> Result<u32, TransportError> {
        let taken = {
            let mut st = lock(&self.state);
            let Some((_, count)) = st.lanes.get_mut(&(door, lane)) else {
                return Ok(0);
            };
            let taken = n.min(*count);
            *count -= taken;
            taken
        };
        self.send_weight(door, false).await?;
        Ok(taken)
    }

    /// A shopper puts `n` items on a lane (maybe not the one they came from).
    pub async fn put(&self, door: DoorNo, lane: LaneNo, n: u32) -> Result<(), TransportError> {
        if let Some((_, count)) = lock(&self.state).lanes.get_mut(&(door, lane)) {
            *count += n;
        }
        self.send_weight(door, false).await
    }

    /// A shopper puts something of `grams` on a lane that is none of its goods (an item
    /// of another lane, their own): the lane reads it, its count does not change.
    pub async fn put_foreign(&self, door: DoorNo, lane: LaneNo, grams: f64) -> Result<(), TransportError> {
        *lock(&self.state).foreign.entry((door, lane)).or_default() += grams;
        self.send_weight(door, false).await
    }

    /// The shopper closes the door: a `closed` event, unstable readings while the
    /// shelves settle, then a stable one.
    pub async fn close(&self, door: DoorNo) -> Result<(), TransportError> {
        let faults = {
            let mut st = lock(&self.state);
            st.open.remove(&door);
            st.faults.clone()
        };
        self.door_moved.notify_waiters();
        self.send(UplinkKind::Door, json!({"door": door.get(), "state": "closed"})).await?;
        for _ in 0..faults.unstable_after_close {
            self.send_weight(door, false).await?;
        }
        if !faults.never_stable {
            self.send_weight(door, true).await?;
        }
        Ok(())
    }

    /// The shopper closes the door and its `closed` message is lost on the way (its
    /// `seq` is spent, nothing arrives); the readings after it are sent as after any
    /// close. Only a later heartbeat's door states tell the platform [B7].
    pub async fn close_unheard(&self, door: DoorNo) -> Result<(), TransportError> {
        {
            let mut st = lock(&self.state);
            st.open.remove(&door);
            st.seq += 1;
        }
        self.door_moved.notify_waiters();
        self.send_weight(door, true).await
    }

    /// Forces the door open without a command (an unexpected open).
    pub async fn force_open(&self, door: DoorNo) -> Result<(), TransportError> {
        lock(&self.state).open.insert(door);
        self.door_moved.notify_waiters();
        self.send(UplinkKind::Door, json!({"door": door.get(), "state": "open"})).await
    }

    /// Sends a heartbeat.
    pub async fn heartbeat(&self) -> Result<(), TransportError> {
        let doors: Vec<_> = self
            .doors()
            .into_iter()
            .map(|d| json!({"door": d.get(), "state": if self.is_open(d) {"open"} else {"closed"}}))
            .collect();
        let temp_c = lock(&self.state).temp_c;
        self.send(
            UplinkKind::Heartbeat,
            json!({"temp_c": temp_c, "battery": 100, "net": 80, "heating": false, "doors": doors}),
        )
        .await
    }

    /// Runs the device's own cadence until the returned handle is aborted: a heartbeat
    /// every `heartbeat` (30 s in the field) and a stable reading of every closed door
    /// every `closed_weight` (90 s) [D4, D6]. Send failures (a dropped connection) are
    /// logged and the cadence goes on.
    pub fn spawn_cadence(
        self: &Arc<Self>,
        heartbeat: std::time::Duration,
        closed_weight: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut hb = tokio::time::interval(heartbeat);
            let mut wt = tokio::time::interval(closed_weight);
            hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            wt.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first ticks fire at once; the boot already reported, so skip them.
            hb.tick().await;
            wt.tick().await;
            loop {
                let sent = tokio::select! {
                    _ = hb.tick() => this.heartbeat().await,
                    _ = wt.tick() => {
                        let mut r = Ok(());
                        for door in this.doors() {
                            if !this.is_open(door) {
                                r = r.and(this.send_weight(door, true).await);
                            }
                        }
                        r
                    }
                };
                if let Err(e) = sent {
                    tracing::debug!(cabinet = %this.id, error = %e, "cadence message not sent");
                }
            }
        })
    }

    /// Sends a stable reading of `door` now (as the 90 s closed-door cadence would).
    pub async fn report_weight(&self, door: DoorNo) -> Result<(), TransportError> {
        self.send_weight(door, true).await
    }

    /// Executes a command as firmware would: each id at most once (a repeat only repeats
    /// its ack), never after its expiry, and only the contract's commands.
    async fn execute(&self, cmd: CommandMsg) -> Result<(), TransportError> {
        let (repeat, faults) = {
            let mut st = lock(&self.state);
            (!st.executed.insert(cmd.cmd_id.clone()), st.faults.clone())
        };
        let ack = Ack {
            cmd_id: &cmd.cmd_id,
            drop: faults.drop_acks,
        };
        if repeat {
            return self.ack(&ack, Ok(None)).await;
        }
        if self.clock.now_ms() > cmd.expires_at {
            return self.ack(&Ack { drop: false, ..ack }, Err("expired")).await;
        }
        let Ok(spec) = cmd.spec() else {
            return self.ack(&Ack { drop: false, ..ack }, Err("unsupported")).await;
        };
        match spec {
            CommandSpec::OpenDoor { door } => self.open_door(&ack, door, &faults).await,
            CommandSpec::QueryDoor { door } => match self.known_door(door) {
                Some(door) => {
                    let state = if self.is_open(door) { "open" } else { "closed" };
                    self.ack(&ack, Ok(Some(json!({"state": state})))).await
                }
                None => self.ack(&Ack { drop: false, ..ack }, Err("no such door")).await,
            },
            CommandSpec::Tare { door, lane } => self.scale(&ack, door, lane, None).await,
            CommandSpec::Calibrate {
                door,
                lane,
                standard_grams,
            } => self.scale(&ack, door, lane, Some(standard_grams.get())).await,
            CommandSpec::Pop { compartment } => self.pop(&ack, compartment).await,
            CommandSpec::AdAdd { ad_id, .. } => {
                lock(&self.state).ads.insert(ad_id);
                self.ack(&ack, Ok(None)).await
            }
            CommandSpec::AdRemove { ad_id } => {
                lock(&self.state).ads.remove(&ad_id);
                self.ack(&ack, Ok(None)).await
            }
            // A firmware image is installed now and runs from the next boot.
            CommandSpec::Upgrade { component, version, .. } => {
                if component == "fw" {
                    lock(&self.state).fw = version;
                }
                self.ack(&ack, Ok(None)).await
            }
            CommandSpec::SetPriceLabel { .. } | CommandSpec::Lights { .. } | CommandSpec::Heating { .. } => self.ack(&ack, Ok(None)).await,
        }
    }

    /// A door this cabinet has (doors are numbered by their lanes).
    fn known_door(&self, door: u8) -> Option<DoorNo> {
        DoorNo::try_from(door)
            .ok()
            .filter(|d| lock(&self.state).lanes.keys().any(|(door, _)| door == d))
    }

    /// Sends the ack of a command: `Ok(result)` or `Err(detail)`; a cabinet told to drop
    /// acks sends none.
    async fn ack(&self, ack: &Ack<'_>, outcome: Result<Option<serde_json::Value>, &str>) -> Result<(), TransportError> {
        if ack.drop {
            return Ok(());
        }
        let mut v = json!({"cmd_id": ack.cmd_id});
        match outcome {
            Ok(result) => {
                v["status"] = json!("ok");
                if let Some(r) = result {
                    v["result"] = r;
                }
            }
            Err(detail) => {
                v["status"] = json!("error");
                v["detail"] = json!(detail);
            }
        }
        self.send(UplinkKind::Ack, v).await
    }

    /// `open_door`: the last closed-door reading, the ack, the door's own `open` event
    /// (before anyone can reach in), then readings of the open door.
    async fn open_door(&self, ack: &Ack<'_>, door: u8, faults: &Faults) -> Result<(), TransportError> {
        let Some(door) = self.known_door(door) else {
            return self.ack(&Ack { drop: false, ..*ack }, Err("no such door")).await;
        };
        if faults.jammed {
            return self.ack(ack, Err("door jammed")).await;
        }
        if !self.is_open(door) {
            self.send_weight(door, true).await?;
        }
        self.ack(ack, Ok(None)).await?;
        if !faults.lose_open_events {
            self.send(UplinkKind::Door, json!({"door": door.get(), "state": "open", "cmd_id": ack.cmd_id}))
                .await?;
        }
        lock(&self.state).open.insert(door);
        self.send_weight(door, false).await?;
        self.door_moved.notify_waiters();
        Ok(())
    }

    /// `tare` (no standard weight: answers the lane's grams after zeroing) or `calibrate`
    /// (answers the standard weight as measured).
    async fn scale(&self, ack: &Ack<'_>, door: u8, lane: u8, standard: Option<f64>) -> Result<(), TransportError> {
        let known = self
            .known_door(door)
            .zip(LaneNo::try_from(lane).ok())
            .filter(|key| lock(&self.state).lanes.contains_key(key));
        let Some((door, lane)) = known else {
            return self.ack(&Ack { drop: false, ..*ack }, Err("unknown lane")).await;
        };
        let result = match standard {
            // Zeroing takes away the cell's drift; the virtual scale reads net of its tray
            // already, so what is left is the goods' weight.
            None => {
                lock(&self.state).drift.remove(&(door, lane));
                json!({"grams": self.lane_grams(door, lane)})
            }
            Some(grams) => json!({"measured_grams": grams}),
        };
        // Scale answers always go out (an operator waits for the number).
        self.ack(&Ack { drop: false, ..*ack }, Ok(Some(result))).await
    }

    /// `pop`: a locker compartment opens.
    async fn pop(&self, ack: &Ack<'_>, compartment: u32) -> Result<(), TransportError> {
        let known = u8::try_from(compartment)
            .ok()
            .and_then(|c| DoorNo::try_from(c).ok())
            .is_some_and(|c| lock(&self.state).compartments.contains_key(&c));
        if !known {
            return self.ack(&Ack { drop: false, ..*ack }, Err("no such compartment")).await;
        }
        self.ack(ack, Ok(None)).await?;
        self.send(UplinkKind::Compartment, json!({"compartment": compartment, "event": "popped"}))
            .await
    }

    /// Locker: someone takes the item out of `compartment` (or puts one back).
    pub async fn compartment_item(&self, compartment: DoorNo, taken: bool) -> Result<(), TransportError> {
        if let Some(occupied) = lock(&self.state).compartments.get_mut(&compartment) {
            *occupied = !taken;
        }
        let event = if taken { "taken" } else { "returned" };
        self.send(UplinkKind::Compartment, json!({"compartment": compartment.get(), "event": event}))
            .await
    }

    /// The screen played an ad.
    pub async fn ad_played(&self, ad_id: &str, duration_ms: u64) -> Result<(), TransportError> {
        self.send(UplinkKind::AdPlay, json!({"ad_id": ad_id, "duration_ms": duration_ms}))
            .await
    }

    fn state_handle(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }

    fn lane_grams(&self, door: DoorNo, lane: LaneNo) -> f64 {
        lock(&self.state)
            .lanes
            .get(&(door, lane))
            .map_or(0.0, |(unit, count)| unit * f64::from(*count))
    }

    async fn send_weight(&self, door: DoorNo, stable: bool) -> Result<(), TransportError> {
        let lanes: Vec<_> = {
            let mut st = lock(&self.state);
            let readings: Vec<(LaneNo, f64)> = st
                .lanes
                .iter()
                .filter(|((d, _), _)| *d == door)
                .map(|((d, l), (unit, count))| {
                    let extra = st.drift.get(&(*d, *l)).copied().unwrap_or(0.0) + st.foreign.get(&(*d, *l)).copied().unwrap_or(0.0);
                    (*l, unit * f64::from(*count) + extra)
                })
                .collect();
            readings
                .into_iter()
                .map(|(l, g)| {
                    let noise = if self.noise > 0.0 {
                        st.rng.random_range(-self.noise..self.noise)
                    } else {
                        0.0
                    };
                    // Unstable readings swing more (a hand on the shelf, a moving door).
                    let swing = if stable { 0.0 } else { st.rng.random_range(-40.0..40.0) };
                    json!({"lane": l.get(), "grams": ((g + noise + swing) * 10.0).round() / 10.0})
                })
                .collect()
        };
        self.send(UplinkKind::Weight, json!({"door": door.get(), "stable": stable, "lanes": lanes}))
            .await
    }

    async fn send(&self, kind: UplinkKind, mut body: serde_json::Value) -> Result<(), TransportError> {
        let (seq, ts) = {
            let mut st = lock(&self.state);
            let seq = st.seq;
            st.seq += 1;
            let ts = self.clock.now_ms().max(st.last_ts + 1);
            st.last_ts = ts;
            (seq, ts)
        };
        body["id"] = json!(format!("{}-{}-{}", self.id.dn(), ts, seq));
        body["seq"] = json!(seq);
        body["ts"] = json!(ts);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let (duplicate, hold, released) = {
            let mut st = lock(&self.state);
            let (dup, reo) = (st.faults.duplicate_pct, st.faults.reorder_pct);
            let duplicate = dup > 0 && st.rng.random_range(0..100) < dup;
            // A boot is never held (it restarts the sequence); a held message goes out
            // right after the next one.
            let hold = reo > 0 && kind != UplinkKind::Boot && st.held.is_none() && st.rng.random_range(0..100) < reo;
            let released = if hold { None } else { st.held.take() };
            (duplicate, hold, released)
        };
        if hold {
            lock(&self.state).held = Some((kind, bytes));
            // Late, not lost: if nothing else goes out first, it follows 200 ms later.
            let transport = self.transport.clone();
            let state = self.state_handle();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let held = state.lock().unwrap_or_else(|p| p.into_inner()).held.take();
                if let Some((k, b)) = held {
                    let _ = transport.send(k, b).await;
                }
            });
            return Ok(());
        }
        self.transport.send(kind, bytes.clone()).await?;
        if let Some((k, b)) = released {
            self.transport.send(k, b).await?;
        }
        if duplicate {
            self.transport.send(kind, bytes).await?;
        }
        Ok(())
    }
}
