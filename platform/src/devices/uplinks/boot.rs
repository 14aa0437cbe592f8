//! `up/boot` [D1]: the boot must describe the registered planogram (doors, lanes per
//! door; a locker's compartments have none); the device is connected through this node,
//! and a pending cabinet starts its initialization.

use crate::devices::{DeviceHub, IngestError};
use tare_domain::cabinet::{CabinetCommand, DeviceStatus};
use tare_domain::{CabinetId, UnixMs};
use tare_protocol::{ProtocolError, Uplink};

impl DeviceHub {
    pub(in crate::devices) async fn on_boot(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        fw: &str,
        doors: u8,
        lanes: &[u8],
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let before = self.load_cabinet(cabinet).await?;
        if before.id.is_none() {
            return Err(IngestError::UnknownDevice(cabinet.to_string()));
        }
        if let Err(reason) = before.check_boot(doors, lanes) {
            self.counters.reject("boot_mismatch");
            return Err(IngestError::Protocol(ProtocolError::invalid("lanes", reason)));
        }
        let connect = CabinetCommand::ConnectDevice {
            node: self.node.clone(),
            fw: fw.to_string(),
            at,
        };
        self.cabinet_cmd(cabinet, connect, up, at).await?;
        let state = self.load_cabinet(cabinet).await?;
        self.liveness.connected(cabinet, at);
        self.watch_boot(cabinet, &state, up.envelope.ts, at);
        if state.status == DeviceStatus::PendingInit {
            self.begin_initialization(cabinet, &state, up, at).await?;
        }
        Ok(())
    }
}
