//! `up/heartbeat` [D4, D5]: the newest by device time is what operators see; it goes on
//! as telemetry; and a heartbeat from a device not tracked (marked silent, or tracked by
//! no one since a restart) brings it back.

use crate::devices::bus::{HeartbeatInfo, Telemetry, TelemetryBus};
use crate::devices::{lock, DeviceHub, IngestError};
use tare_domain::cabinet::CabinetCommand;
use tare_domain::{CabinetId, UnixMs};
use tare_protocol::uplink::Heartbeat;
use tare_protocol::Uplink;

impl DeviceHub {
    pub(in crate::devices) async fn on_heartbeat(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        hb: &Heartbeat,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let info = HeartbeatInfo {
            device_ts: up.envelope.ts,
            received_at: at,
            temp_c: hb.temp_c,
            battery: hb.battery,
            net: hb.net,
            heating: hb.heating,
            doors: hb.doors.iter().map(|(d, s)| (d.get(), s.as_str().to_string())).collect(),
        };
        {
            let mut last = lock(&self.last_heartbeat);
            if last.get(cabinet).is_none_or(|h| h.device_ts <= info.device_ts) {
                last.insert(cabinet.clone(), info.clone());
            }
        }
        self.bus.publish(Telemetry::Heartbeat {
            cabinet: cabinet.clone(),
            info,
        });
        if !self.liveness.heartbeat(cabinet, up.envelope.ts, at) {
            self.cabinet_cmd(cabinet, CabinetCommand::MarkAlive { at }, up, at).await?;
        }
        self.watch_heartbeat(cabinet, up, hb, at).await
    }
}
