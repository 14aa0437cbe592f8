//! The device wire contract (PROTOCOL.md v1): uplink envelopes and bodies, downlink
//! commands. Parsing here is strict about what the contract requires and tolerant of
//! additions (unknown fields are ignored, as the contract allows new optional fields).

use serde::{Deserialize, Serialize};
use tare_domain::weight::{LaneGrams, WeightSample};
use tare_domain::{DoorNo, Grams, LaneNo, UnixMs};

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
}

/// The largest payload the contract allows.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The common envelope of every uplink message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per message (reused on resend).
    pub id: String,
    /// Per-device counter.
    pub seq: u64,
    /// Device clock, Unix ms.
    pub ts: UnixMs,
}

/// A door state inside a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorStateMsg {
    /// Door number.
    pub door: u8,
    /// `open` / `closed`.
    pub state: String,
}

/// One lane's reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LaneGramsMsg {
    /// Lane number.
    pub lane: u8,
    /// Grams.
    pub grams: f64,
}

/// Uplink bodies, by topic kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UplinkBody {
    /// `up/boot`.
    Boot {
        /// Firmware version.
        fw: String,
        /// Hardware version.
        hw: String,
        /// Door count.
        doors: u8,
        /// Lanes per door.
        lanes: Vec<u8>,
    },
    /// `up/heartbeat`.
    Heartbeat {
        /// Temperature.
        temp_c: f64,
        /// Battery 0–100.
        battery: u8,
        /// Network strength 0–100.
        net: u8,
        /// Heating on.
        heating: bool,
        /// Door states.
        doors: Vec<DoorStateMsg>,
    },
    /// `up/weight`.
    Weight {
        /// Door.
        door: u8,
        /// Stable flag.
        stable: bool,
        /// Readings.
        lanes: Vec<LaneGramsMsg>,
    },
    /// `up/door`.
    Door {
        /// Door.
        door: u8,
        /// `open` / `closed`.
        state: String,
        /// Causing command.
        #[serde(default)]
        cmd_id: Option<String>,
    },
    /// `up/ack`.
    Ack {
        /// The command.
        cmd_id: String,
        /// `ok` / `error`.
        status: String,
        /// Detail.
        #[serde(default)]
        detail: Option<String>,
        /// Result object.
        #[serde(default)]
        result: Option<serde_json::Value>,
    },
    /// `up/compartment`.
    Compartment {
        /// Compartment.
        compartment: u32,
        /// `taken` / `returned` / `popped`.
        event: String,
    },
    /// `up/ad_play`.
    AdPlay {
        /// Ad.
        ad_id: String,
        /// Duration.
        duration_ms: u64,
    },
    /// `up/time`.
    Time {
        /// Device send time.
        device_send_ts: UnixMs,
    },
    /// `up/status` (last will).
    Status {
        /// `offline`.
        state: String,
    },
}

/// A parsed uplink message.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    /// Envelope.
    pub envelope: Envelope,
    /// Body.
    pub body: UplinkBody,
}

#[derive(Deserialize)]
struct Raw<T> {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(flatten)]
    body: T,
}

macro_rules! parse_as {
    ($kind:expr, $bytes:expr, $variant:ident { $($field:ident : $ty:ty $(= $default:ident)?),* }) => {{
        #[derive(Deserialize)]
        struct Body { $( $(#[serde($default)])? $field: $ty ),* }
        let raw: Raw<Body> = serde_json::from_slice($bytes).map_err(|e| ProtocolError::Malformed { kind: $kind.to_string(), detail: e.to_string() })?;
        Uplink { envelope: raw.envelope, body: UplinkBody::$variant { $( $field: raw.body.$field ),* } }
    }};
}

fn invalid(field: &str, reason: &str) -> ProtocolError {
    ProtocolError::Invalid {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses and validates an uplink of `kind` (the last topic segment, or the HTTP path's).
pub fn parse_uplink(kind: &str, bytes: &[u8]) -> Result<Uplink, ProtocolError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    let up = match kind {
        "boot" => parse_as!(kind, bytes, Boot { fw: String, hw: String, doors: u8, lanes: Vec<u8> }),
        "heartbeat" => parse_as!(kind, bytes, Heartbeat { temp_c: f64, battery: u8, net: u8, heating: bool, doors: Vec<DoorStateMsg> }),
        "weight" => parse_as!(kind, bytes, Weight { door: u8, stable: bool, lanes: Vec<LaneGramsMsg> }),
        "door" => parse_as!(kind, bytes, Door { door: u8, state: String, cmd_id: Option<String> = default }),
        "ack" => {
            parse_as!(kind, bytes, Ack { cmd_id: String, status: String, detail: Option<String> = default, result: Option<serde_json::Value> = default })
        }
        "compartment" => parse_as!(
            kind,
            bytes,
            Compartment {
                compartment: u32,
                event: String
            }
        ),
        "ad_play" => parse_as!(
            kind,
            bytes,
            AdPlay {
                ad_id: String,
                duration_ms: u64
            }
        ),
        "time" => parse_as!(kind, bytes, Time { device_send_ts: i64 }),
        "status" => parse_as!(kind, bytes, Status { state: String }),
        other => return Err(ProtocolError::UnknownKind(other.to_string())),
    };
    validate(&up)?;
    Ok(up)
}

/// The largest plausible reading of one lane (a lane holding 1 t is a broken sensor).
const MAX_LANE_GRAMS: f64 = 200_000.0;
/// Readings below this are not noise around zero but a fault.
const MIN_LANE_GRAMS: f64 = -500.0;

fn validate(up: &Uplink) -> Result<(), ProtocolError> {
    let e = &up.envelope;
    if e.id.is_empty() || e.id.len() > 64 {
        return Err(invalid("id", "must be 1-64 characters"));
    }
    if e.ts <= 0 {
        return Err(invalid("ts", "must be a positive Unix time in ms"));
    }
    match &up.body {
        UplinkBody::Weight { door, lanes, .. } => {
            DoorNo::parse("door", i64::from(*door)).map_err(|e| invalid(e.field, &e.reason))?;
            if lanes.is_empty() {
                return Err(invalid("lanes", "must not be empty"));
            }
            for (i, l) in lanes.iter().enumerate() {
                if !l.grams.is_finite() {
                    return Err(invalid(&format!("lanes[{i}].grams"), "must be a finite number"));
                }
                if !(MIN_LANE_GRAMS..=MAX_LANE_GRAMS).contains(&l.grams) {
                    return Err(invalid(&format!("lanes[{i}].grams"), "out of range"));
                }
                if LaneNo::parse("lane", i64::from(l.lane)).is_err() {
                    return Err(invalid(&format!("lanes[{i}].lane"), "must be between 1 and 64"));
                }
            }
        }
        UplinkBody::Door { door, state, .. } => {
            DoorNo::parse("door", i64::from(*door)).map_err(|e| invalid(e.field, &e.reason))?;
            if state != "open" && state != "closed" {
                return Err(invalid("state", "must be `open` or `closed`"));
            }
        }
        UplinkBody::Ack { cmd_id, status, .. } => {
            if cmd_id.is_empty() {
                return Err(invalid("cmd_id", "must not be empty"));
            }
            if status != "ok" && status != "error" {
                return Err(invalid("status", "must be `ok` or `error`"));
            }
        }
        UplinkBody::Heartbeat { battery, net, temp_c, .. } => {
            if *battery > 100 {
                return Err(invalid("battery", "must be 0-100"));
            }
            if *net > 100 {
                return Err(invalid("net", "must be 0-100"));
            }
            if !temp_c.is_finite() {
                return Err(invalid("temp_c", "must be a finite number"));
            }
        }
        UplinkBody::Compartment { compartment, event } => {
            if *compartment == 0 {
                return Err(invalid("compartment", "must be at least 1"));
            }
            if !["taken", "returned", "popped"].contains(&event.as_str()) {
                return Err(invalid("event", "must be `taken`, `returned` or `popped`"));
            }
        }
        UplinkBody::AdPlay { ad_id, .. } if ad_id.is_empty() || ad_id.len() > 64 => {
            return Err(invalid("ad_id", "must be 1-64 characters"));
        }
        UplinkBody::Status { state } if state != "offline" && state != "online" => {
            return Err(invalid("state", "must be `offline` or `online`"));
        }
        _ => {}
    }
    Ok(())
}

impl Uplink {
    /// A weight uplink as a domain sample (received at `received_at`).
    pub fn weight_sample(&self, received_at: UnixMs) -> Option<(DoorNo, WeightSample)> {
        match &self.body {
            UplinkBody::Weight { door, stable, lanes } => Some((
                DoorNo::of(*door),
                WeightSample {
                    msg_id: self.envelope.id.clone(),
                    device_ts: self.envelope.ts,
                    received_at,
                    stable: *stable,
                    lanes: lanes
                        .iter()
                        .map(|l| LaneGrams {
                            lane: LaneNo::of(l.lane),
                            grams: Grams::of(l.grams),
                        })
                        .collect(),
                },
            )),
            _ => None,
        }
    }
}

/// A downlink command (`{pk}/{dn}/down/cmd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMsg {
    /// Command id (the device executes each at most once).
    pub cmd_id: String,
    /// Platform send time.
    pub ts: UnixMs,
    /// Command type (`open_door`, `query_door`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Arguments.
    pub args: serde_json::Value,
    /// The device refuses it after this.
    pub expires_at: UnixMs,
}

/// A time-sync reply (`{pk}/{dn}/down/time`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeReply {
    /// Echoed.
    pub device_send_ts: UnixMs,
    /// When the platform received the request.
    pub server_recv_ts: UnixMs,
    /// When the platform sent this reply.
    pub server_send_ts: UnixMs,
}

/// A message for a device: the downlink topic kind (`cmd`, `time`) and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    /// `cmd` or `time`.
    pub kind: &'static str,
    /// JSON payload.
    pub payload: Vec<u8>,
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
        }
    }

    #[test]
    fn refuses_what_breaks_the_contract() {
        let check = |kind: &str, json: &str, want: &str| {
            let err = parse_uplink(kind, json.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{kind} {json}: {err}");
        };
        check("weight", "not json", "malformed");
        check("weight", r#"{"seq":1,"ts":1,"door":1,"stable":true,"lanes":[]}"#, "id");
        check(
            "weight",
            r#"{"id":"x","seq":1,"ts":1,"door":1,"stable":true,"lanes":[{"lane":1,"grams":-9000}]}"#,
            "lanes[0].grams",
        );
        check(
            "weight",
            r#"{"id":"x","seq":1,"ts":1,"door":1,"stable":true,"lanes":[{"lane":1,"grams":1e9}]}"#,
            "lanes[0].grams",
        );
        check("door", r#"{"id":"x","seq":1,"ts":1,"door":1,"state":"ajar"}"#, "state");
        check("ack", r#"{"id":"x","seq":1,"ts":1,"cmd_id":"c","status":"maybe"}"#, "status");
        check("nonsense", "{}", "unknown uplink kind");
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(parse_uplink("weight", &big).unwrap_err(), ProtocolError::TooLarge(MAX_PAYLOAD + 1));
    }
}
