//! `up/door`: a door opened or closed [D8]; the cabinet orders door events by `seq`.

use crate::devices::{DeviceHub, IngestError};
use tare_domain::cabinet::{CabinetCommand, DoorPosition};
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_protocol::uplink::DoorState;
use tare_protocol::Uplink;
use tare_sagas::ports::TelemetryView;

impl DeviceHub {
    pub(in crate::devices) async fn on_door(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        door: DoorNo,
        state: DoorState,
        cmd_id: Option<String>,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let position = state.into();
        // The baseline as this node — the one holding the device — has it: an open's
        // reading is the last one at its instant, a close's the last one before it.
        let before_ts = match position {
            DoorPosition::Closed => up.envelope.ts.saturating_sub(1),
            _ => up.envelope.ts,
        };
        let cmd = CabinetCommand::RecordDoorEvent {
            door,
            position,
            msg_id: up.envelope.id.clone(),
            seq: up.envelope.seq,
            device_ts: up.envelope.ts,
            cmd_id,
            stable_before: self.telemetry.stable_at_or_before(cabinet, door, before_ts),
            at,
        };
        self.watch_door_event(cabinet, door, position, up.envelope.seq, at);
        self.cabinet_cmd(cabinet, cmd, up, at).await
    }
}
