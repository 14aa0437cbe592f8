//! The schemas of the HTTP device API's requests and replies [D3] (PROTOCOL.md), for the
//! OpenAPI document. `device` writes these bodies from the platform's protocol types
//! (`CommandMsg`, `TimeReply`), which know nothing of OpenAPI; these types say the same
//! shapes, field for field, and `tests::the_wire_shapes_match` holds them together.

#![allow(dead_code)] // Schema only: `device` parses and writes with the protocol's types.

use utoipa::{IntoParams, ToSchema};

/// The kind of uplink, as the MQTT topic `{pk}/{dn}/up/{kind}` names it.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum UplinkKind {
    /// First message after power-up: the device's doors and lanes.
    Boot,
    /// Periodic liveness and status.
    Heartbeat,
    /// A door's load-cell sample.
    Weight,
    /// A door opened or closed.
    Door,
    /// A command's acknowledgement.
    Ack,
    /// A locker compartment changed.
    Compartment,
    /// An ad played.
    AdPlay,
    /// A time-sync request (answered in the reply).
    Time,
}

/// The `{kind}` of `POST /device/v1/up/{kind}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct UplinkPath {
    /// The uplink's kind (`status`, the MQTT last will, is refused with 400).
    #[param(inline)]
    kind: UplinkKind,
}

/// An uplink recorded.
#[derive(ToSchema)]
pub(super) struct UplinkAccepted {
    /// `accepted`, or `duplicate` for a message id seen before (nothing changes).
    #[schema(value_type = String, pattern = "^(accepted|duplicate)$", example = "accepted")]
    status: String,
}

/// The reply to a time-sync uplink (`kind` = `time`).
#[derive(ToSchema)]
pub(super) struct TimeReplyBody {
    /// Echoed from the request.
    device_send_ts: i64,
    /// When the platform received the request (Unix ms).
    server_recv_ts: i64,
    /// When the platform sent this reply (Unix ms).
    server_send_ts: i64,
}

/// A command for the device (as on the MQTT topic `{pk}/{dn}/down/cmd`).
#[derive(ToSchema)]
pub(super) struct CommandMessage {
    /// The command's arguments (PROTOCOL.md, per type).
    #[schema(value_type = Object)]
    args: serde_json::Value,
    /// Command id: the device executes each at most once and repeats its ack.
    cmd_id: String,
    /// The device refuses the command after this (Unix ms).
    expires_at: i64,
    /// Platform send time (Unix ms).
    ts: i64,
    /// Command type (`open_door`, `query_door`, `calibrate`, …).
    #[serde(rename = "type")]
    kind: String,
}

/// Pending commands, oldest first.
#[derive(ToSchema)]
pub(super) struct Commands {
    /// The commands (empty when none came within the wait).
    commands: Vec<CommandMessage>,
}

/// Query of the long poll.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PollParams {
    /// Seconds to wait for a first command (0-60, default 30).
    #[param(minimum = 0, maximum = 60)]
    wait_s: Option<u64>,
}

#[cfg(test)]
mod tests {
    use tare_protocol::{CommandMsg, TimeReply};
    use utoipa::PartialSchema;

    /// The properties of the documented schema of `T`.
    fn properties<T: PartialSchema>() -> Vec<String> {
        let v = serde_json::to_value(T::schema()).unwrap_or_default();
        let mut keys: Vec<String> = v["properties"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    }

    fn keys(v: serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    }

    #[test]
    fn the_wire_shapes_match() {
        let cmd = CommandMsg {
            cmd_id: "c".into(),
            ts: 1,
            kind: "open_door".into(),
            args: serde_json::json!({"door": 1}),
            expires_at: 2,
        };
        assert_eq!(keys(serde_json::to_value(cmd).unwrap()), properties::<super::CommandMessage>());
        let reply = TimeReply {
            device_send_ts: 1,
            server_recv_ts: 2,
            server_send_ts: 3,
        };
        assert_eq!(keys(serde_json::to_value(reply).unwrap()), properties::<super::TimeReplyBody>());
    }
}
