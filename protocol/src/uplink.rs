//! Uplinks (device → platform): the envelope and a body per kind, parsed from the wire
//! into typed values — door and lane numbers, grams, states as enums — so nothing past
//! this module matches on strings again. Parsing is strict about what the contract
//! requires and tolerant of additions (unknown fields are ignored, as the contract allows
//! new optional fields).
//!
//! Two stages: serde reads the wire shape (a wrong type or a missing field is
//! `malformed`), then each value is checked and converted (an out-of-range value is
//! `invalid`, naming the field). The two reasons are counted apart.

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;
use tare_domain::cabinet::{CompartmentChange, DoorPosition};
use tare_domain::weight::{LaneGrams, WeightSample};
use tare_domain::{DoorNo, Grams, LaneNo, UnixMs};

/// The largest payload the contract allows.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The largest plausible reading of one lane (a lane holding 200 kg is a broken sensor).
const MAX_LANE_GRAMS: f64 = 200_000.0;
/// Readings below this are not noise around zero but a fault.
const MIN_LANE_GRAMS: f64 = -500.0;

/// Why a device message was refused (each is logged and counted by reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not JSON, or a field has the wrong type.
    #[error("malformed {kind} message: {detail}")]
    Malformed {
        /// Uplink kind.
        kind: String,
        /// Parser detail (names the field).
        detail: String,
    },
    /// A field is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The uplink kind does not exist.
    #[error("unknown uplink kind `{0}`")]
    UnknownKind(String),
    /// Over 64 KiB.
    #[error("payload of {0} bytes exceeds 65536")]
    TooLarge(usize),
}

impl ProtocolError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::Invalid { .. } => "invalid",
            Self::UnknownKind(_) => "unknown_kind",
            Self::TooLarge(_) => "too_large",
        }
    }

    /// A value out of range in `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The uplink kinds of the contract (the last topic segment, or the HTTP path's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UplinkKind {
    /// `up/boot`: after every power-on / reconnect.
    Boot,
    /// `up/heartbeat`: every 30 s.
    Heartbeat,
    /// `up/weight`: load-cell readings of a door.
    Weight,
    /// `up/door`: a door opened or closed.
    Door,
    /// `up/ack`: the answer to a command.
    Ack,
    /// `up/compartment`: a locker compartment changed.
    Compartment,
    /// `up/ad_play`: an ad played.
    AdPlay,
    /// `up/time`: a time-sync request.
    Time,
    /// `up/status`: the MQTT last will.
    Status,
}

impl UplinkKind {
    /// Every kind, in the contract's order.
    pub const ALL: [Self; 9] = [
        Self::Boot,
        Self::Heartbeat,
        Self::Weight,
        Self::Door,
        Self::Ack,
        Self::Compartment,
        Self::AdPlay,
        Self::Time,
        Self::Status,
    ];

    /// The kind's name in topics and paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Heartbeat => "heartbeat",
            Self::Weight => "weight",
            Self::Door => "door",
            Self::Ack => "ack",
            Self::Compartment => "compartment",
            Self::AdPlay => "ad_play",
            Self::Time => "time",
            Self::Status => "status",
        }
    }
}

impl FromStr for UplinkKind {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, ProtocolError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ProtocolError::UnknownKind(s.to_string()))
    }
}

impl fmt::Display for UplinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The common envelope of every uplink message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    /// Unique per message (reused on resend): 1–64 characters.
    pub id: String,
    /// Per-device counter.
    pub seq: u64,
    /// Device clock, Unix ms (positive).
    pub ts: UnixMs,
}

/// A door's state as a device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DoorState {
    /// `open`.
    Open,
    /// `closed`.
    Closed,
}

impl DoorState {
    /// The state's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    fn parse(field: &str, s: &str) -> Result<Self, ProtocolError> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(ProtocolError::invalid(field, "must be `open` or `closed`")),
        }
    }
}

impl From<DoorState> for DoorPosition {
    fn from(s: DoorState) -> Self {
        match s {
            DoorState::Open => Self::Open,
            DoorState::Closed => Self::Closed,
        }
    }
}

/// A command's outcome as the device acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// `ok`: executed.
    Ok,
    /// `error`: not executed (including `detail: "expired"`).
    Error,
}

/// What the last will says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// `offline`: the connection died.
    Offline,
    /// `online`: tolerated (some firmware clears its will with it), changes nothing.
    Online,
}

/// A heartbeat's readings [D4].
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// Temperature inside, °C.
    pub temp_c: f64,
    /// Battery, 0–100.
    pub battery: u8,
    /// Network strength, 0–100.
    pub net: u8,
    /// Heating on.
    pub heating: bool,
    /// Each door's state.
    pub doors: Vec<(DoorNo, DoorState)>,
}

/// Uplink bodies, by kind, with their values parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum UplinkBody {
    /// `up/boot`.
    Boot {
        /// Firmware version.
        fw: String,
        /// Hardware version.
        hw: String,
        /// Door count.
        doors: u8,
        /// Lanes per door, door 1 first.
        lanes: Vec<u8>,
    },
    /// `up/heartbeat`.
    Heartbeat(Heartbeat),
    /// `up/weight`.
    Weight {
        /// Door.
        door: DoorNo,
        /// The device's stability flag.
        stable: bool,
        /// Readings per lane.
        lanes: Vec<LaneGrams>,
    },
    /// `up/door`.
    Door {
        /// Door.
        door: DoorNo,
        /// New state.
        state: DoorState,
        /// The command that caused it.
        cmd_id: Option<String>,
    },
    /// `up/ack`.
    Ack {
        /// The command.
        cmd_id: String,
        /// Executed or not.
        status: AckStatus,
        /// Detail.
        detail: Option<String>,
        /// Result object.
        result: Option<serde_json::Value>,
    },
    /// `up/compartment` (lockers: compartments are numbered like doors).
    Compartment {
        /// Compartment.
        compartment: DoorNo,
        /// What happened.
        event: CompartmentChange,
    },
    /// `up/ad_play`.
    AdPlay {
        /// Ad.
        ad_id: String,
        /// How long it played.
        duration_ms: u64,
    },
    /// `up/time`.
    Time {
        /// Device send time.
        device_send_ts: UnixMs,
    },
    /// `up/status` (last will).
    Status {
        /// The state.
        state: DeviceState,
    },
}

/// A parsed uplink message.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    /// Its kind.
    pub kind: UplinkKind,
    /// Envelope.
    pub envelope: Envelope,
    /// Body.
    pub body: UplinkBody,
}

impl Uplink {
    /// A weight uplink as a domain sample (received at `received_at`).
    pub fn weight_sample(&self, received_at: UnixMs) -> Option<(DoorNo, WeightSample)> {
        match &self.body {
            UplinkBody::Weight { door, stable, lanes } => Some((
                *door,
                WeightSample {
                    msg_id: self.envelope.id.clone(),
                    device_ts: self.envelope.ts,
                    received_at,
                    stable: *stable,
                    lanes: lanes.clone(),
                },
            )),
            _ => None,
        }
    }
}

/// The wire shapes, as serde reads them.
mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Boot {
        pub fw: String,
        pub hw: String,
        pub doors: u8,
        pub lanes: Vec<u8>,
    }

    #[derive(Deserialize)]
    pub struct DoorStateMsg {
        pub door: u8,
        pub state: String,
    }

    #[derive(Deserialize)]
    pub struct Heartbeat {
        pub temp_c: f64,
        pub battery: u8,
        pub net: u8,
        pub heating: bool,
        pub doors: Vec<DoorStateMsg>,
    }

    #[derive(Deserialize)]
    pub struct LaneGramsMsg {
        pub lane: u8,
        pub grams: f64,
    }

    #[derive(Deserialize)]
    pub struct Weight {
        pub door: u8,
        pub stable: bool,
        pub lanes: Vec<LaneGramsMsg>,
    }

    #[derive(Deserialize)]
    pub struct Door {
        pub door: u8,
        pub state: String,
        #[serde(default)]
        pub cmd_id: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Ack {
        pub cmd_id: String,
        pub status: String,
        #[serde(default)]
        pub detail: Option<String>,
        #[serde(default)]
        pub result: Option<serde_json::Value>,
    }

    #[derive(Deserialize)]
    pub struct Compartment {
        pub compartment: u32,
        pub event: String,
    }

    #[derive(Deserialize)]
    pub struct AdPlay {
        pub ad_id: String,
        pub duration_ms: u64,
    }

    #[derive(Deserialize)]
    pub struct Time {
        pub device_send_ts: i64,
    }

    #[derive(Deserialize)]
    pub struct Status {
        pub state: String,
    }
}

#[derive(Deserialize)]
struct Raw<T> {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(flatten)]
    body: T,
}

fn read<T: serde::de::DeserializeOwned>(kind: UplinkKind, bytes: &[u8]) -> Result<(Envelope, T), ProtocolError> {
    let raw: Raw<T> = serde_json::from_slice(bytes).map_err(|e| ProtocolError::Malformed {
        kind: kind.to_string(),
        detail: e.to_string(),
    })?;
    Ok((raw.envelope, raw.body))
}

fn door(field: &str, v: u32) -> Result<DoorNo, ProtocolError> {
    DoorNo::parse("door", i64::from(v)).map_err(|e| ProtocolError::invalid(field, e.reason))
}

/// Parses and validates an uplink of `kind` (the last topic segment, or the HTTP path's).
pub fn parse_uplink(kind: &str, bytes: &[u8]) -> Result<Uplink, ProtocolError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    let kind: UplinkKind = kind.parse()?;
    let (envelope, body) = match kind {
        UplinkKind::Boot => {
            let (e, b) = read::<wire::Boot>(kind, bytes)?;
            let body = UplinkBody::Boot {
                fw: b.fw,
                hw: b.hw,
                doors: b.doors,
                lanes: b.lanes,
            };
            (e, body)
        }
        UplinkKind::Heartbeat => {
            let (e, b) = read::<wire::Heartbeat>(kind, bytes)?;
            (e, UplinkBody::Heartbeat(heartbeat(b)?))
        }
        UplinkKind::Weight => {
            let (e, b) = read::<wire::Weight>(kind, bytes)?;
            (e, weight(b)?)
        }
        UplinkKind::Door => {
            let (e, b) = read::<wire::Door>(kind, bytes)?;
            let body = UplinkBody::Door {
                door: door("door", u32::from(b.door))?,
                state: DoorState::parse("state", &b.state)?,
                cmd_id: b.cmd_id,
            };
            (e, body)
        }
        UplinkKind::Ack => {
            let (e, b) = read::<wire::Ack>(kind, bytes)?;
            (e, ack(b)?)
        }
        UplinkKind::Compartment => {
            let (e, b) = read::<wire::Compartment>(kind, bytes)?;
            let event = match b.event.as_str() {
                "taken" => CompartmentChange::Taken,
                "returned" => CompartmentChange::Returned,
                "popped" => CompartmentChange::Popped,
                _ => return Err(ProtocolError::invalid("event", "must be `taken`, `returned` or `popped`")),
            };
            let body = UplinkBody::Compartment {
                compartment: door("compartment", b.compartment)?,
                event,
            };
            (e, body)
        }
        UplinkKind::AdPlay => {
            let (e, b) = read::<wire::AdPlay>(kind, bytes)?;
            if b.ad_id.is_empty() || b.ad_id.len() > 64 {
                return Err(ProtocolError::invalid("ad_id", "must be 1-64 characters"));
            }
            let body = UplinkBody::AdPlay {
                ad_id: b.ad_id,
                duration_ms: b.duration_ms,
            };
            (e, body)
        }
        UplinkKind::Time => {
            let (e, b) = read::<wire::Time>(kind, bytes)?;
            (
                e,
                UplinkBody::Time {
                    device_send_ts: b.device_send_ts,
                },
            )
        }
        UplinkKind::Status => {
            let (e, b) = read::<wire::Status>(kind, bytes)?;
            let state = match b.state.as_str() {
                "offline" => DeviceState::Offline,
                "online" => DeviceState::Online,
                _ => return Err(ProtocolError::invalid("state", "must be `offline` or `online`")),
            };
            (e, UplinkBody::Status { state })
        }
    };
    check_envelope(&envelope)?;
    Ok(Uplink { kind, envelope, body })
}

fn check_envelope(e: &Envelope) -> Result<(), ProtocolError> {
    if e.id.is_empty() || e.id.len() > 64 {
        return Err(ProtocolError::invalid("id", "must be 1-64 characters"));
    }
    if e.ts <= 0 {
        return Err(ProtocolError::invalid("ts", "must be a positive Unix time in ms"));
    }
    Ok(())
}

fn heartbeat(b: wire::Heartbeat) -> Result<Heartbeat, ProtocolError> {
    if b.battery > 100 {
        return Err(ProtocolError::invalid("battery", "must be 0-100"));
    }
    if b.net > 100 {
        return Err(ProtocolError::invalid("net", "must be 0-100"));
    }
    if !b.temp_c.is_finite() {
        return Err(ProtocolError::invalid("temp_c", "must be a finite number"));
    }
    let doors = b
        .doors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Ok((
                door(&format!("doors[{i}].door"), u32::from(d.door))?,
                DoorState::parse(&format!("doors[{i}].state"), &d.state)?,
            ))
        })
        .collect::<Result<_, ProtocolError>>()?;
    Ok(Heartbeat {
        temp_c: b.temp_c,
        battery: b.battery,
        net: b.net,
        heating: b.heating,
        doors,
    })
}

fn weight(b: wire::Weight) -> Result<UplinkBody, ProtocolError> {
    let door = door("door", u32::from(b.door))?;
    if b.lanes.is_empty() {
        return Err(ProtocolError::invalid("lanes", "must not be empty"));
    }
    let mut lanes = Vec::with_capacity(b.lanes.len());
    for (i, l) in b.lanes.iter().enumerate() {
        let grams =
            Grams::new("grams", l.grams).map_err(|_| ProtocolError::invalid(format!("lanes[{i}].grams"), "must be a finite number"))?;
        if !(MIN_LANE_GRAMS..=MAX_LANE_GRAMS).contains(&l.grams) {
            return Err(ProtocolError::invalid(format!("lanes[{i}].grams"), "out of range"));
        }
        let lane = LaneNo::parse("lane", i64::from(l.lane)).map_err(|e| ProtocolError::invalid(format!("lanes[{i}].lane"), e.reason))?;
        lanes.push(LaneGrams { lane, grams });
    }
    Ok(UplinkBody::Weight {
        door,
        stable: b.stable,
        lanes,
    })
}

fn ack(b: wire::Ack) -> Result<UplinkBody, ProtocolError> {
    if b.cmd_id.is_empty() {
        return Err(ProtocolError::invalid("cmd_id", "must not be empty"));
    }
    let status = match b.status.as_str() {
        "ok" => AckStatus::Ok,
        "error" => AckStatus::Error,
        _ => return Err(ProtocolError::invalid("status", "must be `ok` or `error`")),
    };
    Ok(UplinkBody::Ack {
        cmd_id: b.cmd_id,
        status,
        detail: b.detail,
        result: b.result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_uplink_kind_from_the_contract() {
        let cases = [
            ("boot", r#"{"id":"a","seq":0,"ts":1,"fw":"1.0","hw":"h","doors":1,"lanes":[4]}"#),
            (
                "heartbeat",
                r#"{"id":"b","seq":1,"ts":1,"temp_c":4.5,"battery":90,"net":70,"heating":false,"doors":[{"door":1,"state":"closed"}]}"#,
            ),
            (
                "weight",
                r#"{"id":"c","seq":2,"ts":1,"door":1,"stable":true,"lanes":[{"lane":1,"grams":1234.5}]}"#,
            ),
            ("door", r#"{"id":"d","seq":3,"ts":1,"door":1,"state":"open","cmd_id":"x"}"#),
            (
                "ack",
                r#"{"id":"e","seq":4,"ts":1,"cmd_id":"x","status":"ok","result":{"state":"open"}}"#,
            ),
            ("compartment", r#"{"id":"f","seq":5,"ts":1,"compartment":3,"event":"taken"}"#),
            ("ad_play", r#"{"id":"g","seq":6,"ts":1,"ad_id":"ad1","duration_ms":15000}"#),
            ("time", r#"{"id":"h","seq":7,"ts":1,"device_send_ts":1}"#),
            ("status", r#"{"id":"i","seq":8,"ts":1,"state":"offline"}"#),
        ];
        for (kind, json) in cases {
            let up = parse_uplink(kind, json.as_bytes()).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(up.envelope.ts, 1);
            assert_eq!(up.kind.as_str(), kind);
        }
        let door = parse_uplink("door", cases[3].1.as_bytes()).unwrap();
        assert_eq!(
            door.body,
            UplinkBody::Door {
                door: DoorNo::of(1),
                state: DoorState::Open,
                cmd_id: Some("x".into())
            }
        );
        let hb = parse_uplink("heartbeat", cases[1].1.as_bytes()).unwrap();
        assert!(matches!(hb.body, UplinkBody::Heartbeat(Heartbeat { ref doors, .. }) if doors == &[(DoorNo::of(1), DoorState::Closed)]));
    }

    #[test]
    fn refuses_what_breaks_the_contract() {
        let check = |kind: &str, json: &str, want: &str, reason: &str| {
            let err = parse_uplink(kind, json.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{kind} {json}: {err}");
            assert_eq!(err.reason(), reason, "{kind} {json}: {err}");
        };
        check("weight", "not json", "malformed", "malformed");
        check("weight", r#"{"seq":1,"ts":1,"door":1,"stable":true,"lanes":[]}"#, "id", "malformed");
        check(
            "weight",
            r#"{"id":"x","seq":1,"ts":1,"door":1,"stable":true,"lanes":[{"lane":1,"grams":-9000}]}"#,
            "lanes[0].grams",
            "invalid",
        );
        check(
            "weight",
            r#"{"id":"x","seq":1,"ts":1,"door":1,"stable":true,"lanes":[{"lane":1,"grams":1e9}]}"#,
            "lanes[0].grams",
            "invalid",
        );
        check(
            "weight",
            r#"{"id":"x","seq":1,"ts":1,"door":17,"stable":true,"lanes":[{"lane":1,"grams":1}]}"#,
            "door",
            "invalid",
        );
        check(
            "weight",
            r#"{"id":"x","seq":1,"ts":1,"door":1,"stable":true,"lanes":[{"lane":65,"grams":1}]}"#,
            "lanes[0].lane",
            "invalid",
        );
        check("door", r#"{"id":"x","seq":1,"ts":1,"door":1,"state":"ajar"}"#, "state", "invalid");
        check("door", r#"{"id":"x","seq":1,"ts":1,"door":0,"state":"open"}"#, "door", "invalid");
        check(
            "ack",
            r#"{"id":"x","seq":1,"ts":1,"cmd_id":"c","status":"maybe"}"#,
            "status",
            "invalid",
        );
        check(
            "heartbeat",
            r#"{"id":"b","seq":1,"ts":1,"temp_c":4.5,"battery":90,"net":70,"heating":false,"doors":[{"door":1,"state":"ajar"}]}"#,
            "doors[0].state",
            "invalid",
        );
        check(
            "compartment",
            r#"{"id":"f","seq":5,"ts":1,"compartment":300,"event":"taken"}"#,
            "compartment",
            "invalid",
        );
        check("nonsense", "{}", "unknown uplink kind", "unknown_kind");
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(parse_uplink("weight", &big).unwrap_err(), ProtocolError::TooLarge(MAX_PAYLOAD + 1));
    }
}
