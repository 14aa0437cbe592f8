//! `up/door`: a door opened or closed [D8]; the cabinet orders door events by `seq`.

use crate::devices::{DeviceHub, IngestError};
use tare_domain::cabinet::CabinetCommand;
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_protocol::uplink::DoorState;
use tare_protocol::Uplink;

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
        let cmd = CabinetCommand::RecordDoorEvent {
            door,
            position: state.into(),
            msg_id: up.envelope.id.clone(),
            seq: up.envelope.seq,
            device_ts: up.envelope.ts,
            cmd_id,
            at,
        };
        self.watch_door_moved(cabinet, door, at);
        self.cabinet_cmd(cabinet, cmd, up, at).await
    }
}
