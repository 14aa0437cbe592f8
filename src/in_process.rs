//! A simulated device plugged straight into the platform's device hub, with no network:
//! what saga tests on a test clock use, because an uplink is applied before `send`
//! returns. It carries exactly the bytes the MQTT and HTTP transports carry, through the
//! same hub entry points, so a device behaves the same on every transport.

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use tare_domain::CabinetId;
use tare_platform::clock::PlatformClock;
use tare_platform::devices::{DeviceHub, IngestError};
use tare_protocol::{Downlink, UplinkKind};
use tare_sim::clock::DeviceClock;
use tare_sim::transport::{DeviceTransport, TransportError};
use tokio::sync::mpsc;

/// In-process transport of device `id` into `hub`.
pub struct InProcessTransport {
    hub: Arc<DeviceHub>,
    id: CabinetId,
    connection: Mutex<Option<u64>>,
}

impl InProcessTransport {
    /// A transport for device `id` into `hub`.
    pub fn new(hub: Arc<DeviceHub>, id: CabinetId) -> Arc<Self> {
        Arc::new(Self {
            hub,
            id,
            connection: Mutex::new(None),
        })
    }
}

#[async_trait]
impl DeviceTransport for InProcessTransport {
    async fn connect(&self) -> Result<mpsc::UnboundedReceiver<Downlink>, TransportError> {
        let c = self.hub.attach(&self.id);
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.id);
        Ok(c.downlinks)
    }

    async fn send(&self, kind: UplinkKind, payload: Vec<u8>) -> Result<(), TransportError> {
        self.hub
            .ingest(&self.id, kind.as_str(), &payload)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                IngestError::Store(e) => TransportError::Link(e),
                other => TransportError::Refused(other.to_string()),
            })
    }

    async fn disconnect(&self) -> Result<(), TransportError> {
        let Some(c) = self.connection.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        self.hub
            .detach(&self.id, c, true)
            .await
            .map_err(|e| TransportError::Link(e.to_string()))
    }
}

/// The platform's clock as a simulated device's clock (devices share a test's clock).
pub fn device_clock(clock: &PlatformClock) -> Arc<dyn DeviceClock> {
    let clock = clock.clone();
    Arc::new(move || clock.now_ms())
}
