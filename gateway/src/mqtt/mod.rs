//! The MQTT device endpoint: cabinets connect here (the embedded default terminates device
//! connections itself, like the seeds' communication service).
//!
//! It is an MQTT *endpoint* for the platform, not a general broker: devices never talk to
//! each other, so all it needs is per-connection authentication [D2], a per-publish and
//! per-subscribe topic check (a device publishes only under its own `up/` and subscribes
//! only under its own `down/`), a route from each publish into the [`DeviceHub`], and a
//! route from the hub's downlinks to the device. MQTT 3.1.1 and 5, QoS 0 and 1 (QoS 2
//! uplinks are completed too), last will, keep-alive. The wire codec is rumqttc's
//! `mqttbytes` (see [`codec`]); why not an embedded broker is in ARCHITECTURE.md.
//!
//! Memory: one task per connection with no read or write buffer while idle (buffers are
//! allocated when bytes arrive and dropped when consumed), so an idle cabinet costs its
//! task, its socket and its hub entry.

pub mod codec;
mod session;
mod stream;

use crate::mqtt::session::Session;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tare_domain::CabinetId;
use tare_platform::clock::PlatformClock;
use tare_platform::devices::DeviceHub;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The largest frame accepted whole: a 64 KiB payload plus room for topic and properties.
/// Larger publishes are skipped without being buffered and refused as `too_large`.
pub const MAX_FRAME: usize = tare_protocol::MAX_PAYLOAD + 1024;

/// Where the endpoint finds device secrets [D2].
#[async_trait::async_trait]
pub trait DeviceCredentials: Send + Sync {
    /// The secret of an enabled, registered device; `None` if unknown or disabled.
    async fn device_secret(&self, device: &CabinetId) -> Result<Option<String>, String>;
}

#[async_trait::async_trait]
impl DeviceCredentials for tare_platform::Platform {
    async fn device_secret(&self, device: &CabinetId) -> Result<Option<String>, String> {
        tare_platform::Platform::device_secret(self, device)
            .await
            .map_err(|e| e.to_string())
    }
}

pub use crate::rate::RateLimit;

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Time a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// Authenticated connections refused beyond this (CONNACK server unavailable),
    /// checked before the CONNECT's signature is.
    pub max_connections: u64,
    /// Connections not yet authenticated that may be open at once; past it a new
    /// connection is closed unread. Counted apart from `max_connections`, so a flood of
    /// idle sockets cannot take a device's place.
    pub max_pending_connects: u64,
    /// Flood control per device.
    pub rate: RateLimit,
    /// Commands held for a device that has not subscribed to `down/cmd` yet.
    pub max_pending_downlinks: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_connections: 250_000,
            max_pending_connects: 10_000,
            rate: RateLimit::default(),
            max_pending_downlinks: 64,
        }
    }
}

/// Counters of the MQTT edge (exported at `/metrics`).
#[derive(Default)]
pub struct MqttCounters {
    /// Connections open now (authenticated or not).
    pub connections_open: AtomicU64,
    /// Connections open now that have not finished their CONNECT.
    pub connections_pending: AtomicU64,
    /// Connections accepted (CONNACK success) since start.
    pub connections_accepted: AtomicU64,
    /// Publishes received.
    pub publishes_in: AtomicU64,
    /// Publishes handed to the hub and accepted.
    pub publishes_accepted: AtomicU64,
    /// Downlinks published to devices.
    pub publishes_out: AtomicU64,
    /// Last wills fired.
    pub wills_fired: AtomicU64,
    /// Keep-alive expiries.
    pub keepalive_timeouts: AtomicU64,
    /// Refusals by reason (connect, publish and subscribe).
    pub refused: crate::counts::ReasonCounts,
}

impl MqttCounters {
    /// Counts one refusal for `reason`.
    pub fn refuse(&self, reason: &'static str) {
        self.refused.add(reason);
    }

    /// Refusals so far for `reason`.
    pub fn refused(&self, reason: &str) -> u64 {
        self.refused.get(reason)
    }

    /// Prometheus text lines.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let g = |n: &AtomicU64| n.load(Ordering::Relaxed);
        s.push_str(&format!("tare_mqtt_connections_open {}\n", g(&self.connections_open)));
        s.push_str(&format!("tare_mqtt_connections_pending {}\n", g(&self.connections_pending)));
        s.push_str(&format!("tare_mqtt_connections_accepted_total {}\n", g(&self.connections_accepted)));
        s.push_str(&format!("tare_mqtt_publishes_in_total {}\n", g(&self.publishes_in)));
        s.push_str(&format!("tare_mqtt_publishes_accepted_total {}\n", g(&self.publishes_accepted)));
        s.push_str(&format!("tare_mqtt_publishes_out_total {}\n", g(&self.publishes_out)));
        s.push_str(&format!("tare_mqtt_wills_fired_total {}\n", g(&self.wills_fired)));
        s.push_str(&format!("tare_mqtt_keepalive_timeouts_total {}\n", g(&self.keepalive_timeouts)));
        s.push_str(&self.refused.prometheus(
            "tare_mqtt_refused_total",
            "MQTT connects, publishes and subscribes refused, by reason.",
        ));
        s
    }
}

/// What every connection of one endpoint shares.
pub struct MqttEndpoint {
    hub: Arc<DeviceHub>,
    credentials: Arc<dyn DeviceCredentials>,
    clock: PlatformClock,
    cfg: MqttConfig,
    /// Traffic counters.
    pub counters: MqttCounters,
    closed: tokio::sync::Notify,
}

impl MqttEndpoint {
    /// An endpoint delivering into `hub`.
    pub fn new(hub: Arc<DeviceHub>, credentials: Arc<dyn DeviceCredentials>, clock: PlatformClock, cfg: MqttConfig) -> Arc<Self> {
        Arc::new(Self {
            hub,
            credentials,
            clock,
            cfg,
            counters: MqttCounters::default(),
            closed: tokio::sync::Notify::new(),
        })
    }
}

/// A running MQTT listener.
pub struct MqttServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The endpoint (counters).
    pub endpoint: Arc<MqttEndpoint>,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl MqttServer {
    /// Binds `addr` and serves device connections.
    pub async fn start(addr: &str, endpoint: Arc<MqttEndpoint>) -> std::io::Result<Self> {
        Self::start_with(addr, endpoint, None).await
    }

    /// Binds `addr` and serves device connections over TLS (`serve --mqtts`, port 8883 by
    /// convention). `endpoint` may be shared with a plain listener: one device limit,
    /// one set of counters.
    pub async fn start_tls(addr: &str, endpoint: Arc<MqttEndpoint>, tls: tokio_rustls::TlsAcceptor) -> std::io::Result<Self> {
        Self::start_with(addr, endpoint, Some(tls)).await
    }

    async fn start_with(addr: &str, endpoint: Arc<MqttEndpoint>, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let ep = endpoint.clone();
        let accept_task = tokio::spawn(async move {
            let mut stop = rx.clone();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let ep = ep.clone();
                            let rx = rx.clone();
                            tokio::spawn(Session::run(ep, stream, peer, rx, tls.clone()));
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "mqtt accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
        });
        Ok(Self {
            addr,
            endpoint,
            shutdown,
            accept_task,
        })
    }

    /// Stops accepting, closes every connection (without firing wills or recording
    /// disconnects: the devices did nothing wrong) and waits for them, up to 5 s.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept_task.await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let closed = self.endpoint.closed.notified();
            if self.endpoint.counters.connections_open.load(Ordering::Relaxed) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return;
            }
        }
    }
}
