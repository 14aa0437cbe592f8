//! `up/weight`: samples are telemetry, not log events [D6]: kept per door for the
//! stable-weight checks, published on the telemetry bus, and a pending cabinet's stable
//! readings count its opening stock [D1].

use crate::devices::bus::{Telemetry, TelemetryBus};
use crate::devices::{DeviceHub, IngestError};
use tare_domain::{CabinetId, UnixMs};
use tare_protocol::Uplink;

impl DeviceHub {
    pub(in crate::devices) async fn on_weight(&self, cabinet: &CabinetId, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        let Some((door, sample)) = up.weight_sample(at) else {
            return Ok(());
        };
        self.telemetry.push(cabinet, door, sample.clone());
        if let Some(h) = self.history.get() {
            h.record(cabinet, door, &sample);
        }
        self.bus.publish(Telemetry::Weight {
            cabinet: cabinet.clone(),
            door,
            sample: sample.clone(),
        });
        self.watch_weight(cabinet, door, &sample, up, at).await?;
        self.maybe_initialize(cabinet, door, sample, up, at).await
    }
}
