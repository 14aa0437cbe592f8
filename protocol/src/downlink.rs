//! Downlinks (platform → device): commands on `down/cmd` and time-sync replies on
//! `down/time`.

use serde::{Deserialize, Serialize};
use std::fmt;
use tare_domain::command::CommandSpec;
use tare_domain::UnixMs;

/// The downlink kinds of the contract (the last topic segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownlinkKind {
    /// `down/cmd` (QoS 1).
    Cmd,
    /// `down/time` (QoS 0).
    Time,
}

impl DownlinkKind {
    /// The kind's name in topics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cmd => "cmd",
            Self::Time => "time",
        }
    }

    /// The MQTT QoS the contract gives it.
    pub fn qos(self) -> u8 {
        match self {
            Self::Cmd => 1,
            Self::Time => 0,
        }
    }
}

impl fmt::Display for DownlinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

impl CommandMsg {
    /// The command as the contract defines it (`type` and `args` together), if this one
    /// is in the contract: what a device executes.
    pub fn spec(&self) -> Result<CommandSpec, serde_json::Error> {
        serde_json::from_value(serde_json::json!({"type": self.kind, "args": self.args}))
    }
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

/// A message for a device: its kind and its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    /// `cmd` or `time`.
    pub kind: DownlinkKind,
    /// JSON payload.
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_reads_back_as_the_contracts() {
        let msg = CommandMsg {
            cmd_id: "c1".into(),
            ts: 1,
            kind: "open_door".into(),
            args: serde_json::json!({"door": 2}),
            expires_at: 10,
        };
        assert_eq!(msg.spec().unwrap(), CommandSpec::OpenDoor { door: 2 });
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["type"], "open_door");
        let odd = CommandMsg {
            kind: "dance".into(),
            ..msg
        };
        assert!(odd.spec().is_err());
    }
}
