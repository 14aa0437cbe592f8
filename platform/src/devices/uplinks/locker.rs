//! Lockers [seed 000]: `up/compartment` (popped, taken, returned) and `up/ad_play`, both
//! recorded on the cabinet (duplicates dropped by message id).

use crate::devices::{DeviceHub, IngestError};
use tare_domain::cabinet::{CabinetCommand, CompartmentChange};
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_protocol::Uplink;

impl DeviceHub {
    pub(in crate::devices) async fn on_compartment(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        compartment: DoorNo,
        change: CompartmentChange,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let cmd = CabinetCommand::RecordCompartment {
            compartment,
            change,
            msg_id: up.envelope.id.clone(),
            at,
        };
        self.cabinet_cmd(cabinet, cmd, up, at).await
    }

    pub(in crate::devices) async fn on_ad_play(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        ad_id: &str,
        duration_ms: u64,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let cmd = CabinetCommand::RecordAdPlay {
            ad_id: ad_id.to_string(),
            duration_ms,
            msg_id: up.envelope.id.clone(),
            at,
        };
        self.cabinet_cmd(cabinet, cmd, up, at).await
    }
}
