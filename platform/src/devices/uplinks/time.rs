//! `up/time` (a time-sync request, answered on `down/time`) and `up/status` (the last
//! will: the connection died).

use crate::devices::{DeviceHub, IngestError};
use tare_domain::cabinet::CabinetCommand;
use tare_domain::{CabinetId, UnixMs};
use tare_protocol::uplink::DeviceState;
use tare_protocol::{Downlink, DownlinkKind, TimeReply, Uplink};

impl DeviceHub {
    pub(in crate::devices) fn on_time(&self, cabinet: &CabinetId, device_send_ts: UnixMs, at: UnixMs) {
        let reply = TimeReply {
            device_send_ts,
            server_recv_ts: at,
            server_send_ts: self.clock.now_ms(),
        };
        if let Ok(payload) = serde_json::to_vec(&reply) {
            // A device gone meanwhile asks again; nothing to keep.
            let _ = self.send(
                cabinet,
                Downlink {
                    kind: DownlinkKind::Time,
                    payload,
                },
            );
        }
    }

    pub(in crate::devices) async fn on_status(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        state: DeviceState,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        if state == DeviceState::Offline {
            self.liveness.disconnected(cabinet);
            self.cabinet_cmd(cabinet, CabinetCommand::DisconnectDevice { at }, up, at).await?;
        }
        Ok(())
    }
}
