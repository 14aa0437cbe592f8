//! How a simulated cabinet reaches the platform. The cabinet speaks PROTOCOL.md (JSON
//! uplinks by kind, JSON downlinks by kind); a [`DeviceTransport`] carries them:
//!
//! - [`MqttTransport`]: a real MQTT 3.1.1 client (rumqttc) with the contract's signed
//!   CONNECT, own-topic subscription and last will — what `tare sim`, the demo and the
//!   gateway tests use;
//! - [`HttpTransport`]: the HTTP device API (signed requests, a long poll for commands);
//! - an in-process transport straight into the platform's device hub, for saga tests on
//!   a test clock, lives with the platform's wiring (`tare::in_process`), since this crate
//!   knows the platform only through the contract.

use crate::clock::DeviceClock;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare_domain::CabinetId;
use tare_protocol::signing::{http_string_to_sign, mqtt_username, sign, DEVICE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use tare_protocol::{DeviceTopics, Downlink, DownlinkKind, UplinkKind};
use tokio::sync::mpsc;

/// Why a transport operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The platform refused the message or the connection (with its reason).
    #[error("refused: {0}")]
    Refused(String),
    /// Not connected, or the connection broke.
    #[error("link: {0}")]
    Link(String),
}

/// A device-side connection to the platform.
#[async_trait]
pub trait DeviceTransport: Send + Sync {
    /// Connects; downlinks for the device arrive on the returned receiver until the
    /// connection ends.
    async fn connect(&self) -> Result<mpsc::UnboundedReceiver<Downlink>, TransportError>;
    /// Sends one uplink of `kind`.
    async fn send(&self, kind: UplinkKind, payload: Vec<u8>) -> Result<(), TransportError>;
    /// Disconnects cleanly (the platform records the device offline).
    async fn disconnect(&self) -> Result<(), TransportError>;
}

/// Settings of an MQTT device connection.
#[derive(Debug, Clone)]
pub struct MqttDeviceConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// MQTT over TLS (`serve --mqtts`) with this client configuration (see
    /// [`tls_trusting`]); `None` is plain TCP.
    pub tls: Option<Arc<rumqttc::tokio_rustls::rustls::ClientConfig>>,
}

/// A TLS client configuration that trusts the certificates in the PEM file `ca` (the
/// platform's own certificate when it is self-signed, or the CA that issued it).
pub fn tls_trusting(ca: &std::path::Path) -> Result<Arc<rumqttc::tokio_rustls::rustls::ClientConfig>, TransportError> {
    use rumqttc::tokio_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |what: String| TransportError::Link(format!("{}: {what}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(format!("cannot read it as PEM: {e}")))? {
        let cert = cert.map_err(|e| bad(format!("a malformed certificate: {e}")))?;
        roots.add(cert).map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A device connection over real MQTT 3.1.1 (rumqttc), per PROTOCOL.md: client id
/// `{pk}.{dn}`, username `{pk}.{dn}|{ts}`, password the HMAC of the username, a
/// subscription to `{pk}/{dn}/down/#`, and a last will `{"state":"offline"}` on
/// `{pk}/{dn}/up/status`, retained.
pub struct MqttTransport {
    id: CabinetId,
    secret: String,
    clock: Arc<dyn DeviceClock>,
    cfg: MqttDeviceConfig,
    client: tokio::sync::Mutex<Option<(rumqttc::AsyncClient, tokio::task::JoinHandle<()>)>>,
    unacked: Arc<std::sync::Mutex<Unacked>>,
    /// Set by a deliberate disconnect, so the connection is not re-established.
    closing: Arc<std::sync::atomic::AtomicBool>,
}

/// QoS 1 uplinks the platform has not acknowledged yet: PROTOCOL.md has the device
/// resend them with the same `id` after a reconnect (an MQTT session is not kept, so
/// the client library would drop them).
#[derive(Default)]
struct Unacked {
    /// (packet id once written, topic, payload), oldest first.
    entries: Vec<(Option<u16>, String, Vec<u8>)>,
}

impl Unacked {
    fn lock(m: &std::sync::Mutex<Self>) -> std::sync::MutexGuard<'_, Self> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client wrote a QoS 1 publish with `pkid`: it is the oldest unassigned one.
    fn written(&mut self, pkid: u16) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0.is_none()) {
            e.0 = Some(pkid);
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some(i) = self.entries.iter().position(|e| e.0 == Some(pkid)) {
            self.entries.remove(i);
        }
    }
}

impl MqttTransport {
    /// A transport for device `id` with its provisioned `secret`.
    pub fn new(id: CabinetId, secret: String, clock: Arc<dyn DeviceClock>, cfg: MqttDeviceConfig) -> Arc<Self> {
        Arc::new(Self {
            id,
            secret,
            clock,
            cfg,
            client: tokio::sync::Mutex::new(None),
            unacked: Arc::default(),
            closing: Arc::default(),
        })
    }

    fn topics(&self) -> DeviceTopics {
        DeviceTopics::of(&self.id)
    }
}

#[async_trait]
impl DeviceTransport for MqttTransport {
    async fn connect(&self) -> Result<mpsc::UnboundedReceiver<Downlink>, TransportError> {
        use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
        let now = self.clock.now_ms();
        let username = mqtt_username(&self.id, now);
        let password = sign(&self.secret, &username);
        let mut opts = MqttOptions::new(self.id.to_string(), self.cfg.host.clone(), self.cfg.port);
        opts.set_credentials(username, password);
        opts.set_keep_alive(self.cfg.keep_alive);
        opts.set_clean_session(true);
        if let Some(tls) = &self.cfg.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.clone())));
        }
        let will = serde_json::json!({"id": format!("will-{}-{now}", self.id.dn()), "seq": 0, "ts": now, "state": "offline"});
        opts.set_last_will(LastWill::new(
            self.topics().will(),
            serde_json::to_vec(&will).unwrap_or_default(),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut events) = AsyncClient::new(opts, 64);
        // A cabinet sends small messages back to back (the pre-open weight, then the
        // ack): with Nagle's algorithm the second waits for the broker's delayed ACK,
        // 40 ms on Linux — firmware on an embedded TCP stack sends at once.
        let mut net = events.network_options();
        net.set_tcp_nodelay(true);
        events.set_network_options(net);
        // Wait for the CONNACK so a refused connection is an error here, not later.
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != rumqttc::ConnectReturnCode::Success {
                        return Err(TransportError::Refused(format!("{:?}", ack.code)));
                    }
                    break;
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(TransportError::Refused(format!("{code:?}"))),
                Err(e) => return Err(TransportError::Link(e.to_string())),
            }
        }
        client
            .subscribe(self.topics().all_downlinks(), QoS::AtLeastOnce)
            .await
            .map_err(|e| TransportError::Link(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let topics = self.topics();
        let id = self.id.clone();
        let resubscribe = (client.clone(), topics.all_downlinks());
        let unacked = self.unacked.clone();
        let closing = self.closing.clone();
        closing.store(false, std::sync::atomic::Ordering::SeqCst);
        let (secret, clock) = (self.secret.clone(), self.clock.clone());
        let task = tokio::spawn(async move {
            // As firmware does: a lost connection is re-established, the `down/#`
            // subscription renewed and every unacknowledged QoS 1 uplink resent with its
            // id (the platform drops the copies it already has).
            let mut backoff = Duration::from_millis(100);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(100);
                        let (client, topic) = &resubscribe;
                        let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                        let mut u = Unacked::lock(&unacked);
                        for e in u.entries.iter_mut() {
                            e.0 = None;
                            let _ = client.try_publish(e.1.clone(), QoS::AtLeastOnce, false, e.2.clone());
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) if pkid != 0 => Unacked::lock(&unacked).written(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Unacked::lock(&unacked).acked(ack.pkid),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let kind = if p.topic == topics.downlink(DownlinkKind::Cmd) {
                            DownlinkKind::Cmd
                        } else if p.topic == topics.downlink(DownlinkKind::Time) {
                            DownlinkKind::Time
                        } else {
                            continue;
                        };
                        if tx
                            .send(Downlink {
                                kind,
                                payload: p.payload.to_vec(),
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) if closing.load(std::sync::atomic::Ordering::SeqCst) => return,
                    Err(e) => {
                        tracing::debug!(device = %id, error = %e, "sim mqtt connection lost; reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        // Each CONNECT is signed anew: the contract's timestamp must be
                        // fresh, so the first connection's credentials go stale.
                        let username = mqtt_username(&id, clock.now_ms());
                        let password = sign(&secret, &username);
                        events.mqtt_options.set_credentials(username, password);
                    }
                }
            }
        });
        if let Some((old, t)) = self.client.lock().await.replace((client, task)) {
            let _ = old.disconnect().await;
            t.abort();
        }
        Ok(rx)
    }

    async fn send(&self, kind: UplinkKind, payload: Vec<u8>) -> Result<(), TransportError> {
        // QoS as the contract's uplink table gives it.
        let qos = match kind {
            UplinkKind::Heartbeat | UplinkKind::Weight | UplinkKind::Time => rumqttc::QoS::AtMostOnce,
            _ => rumqttc::QoS::AtLeastOnce,
        };
        let guard = self.client.lock().await;
        let (client, _) = guard.as_ref().ok_or_else(|| TransportError::Link("not connected".into()))?;
        let topic = self.topics().uplink(kind);
        if qos == rumqttc::QoS::AtLeastOnce {
            Unacked::lock(&self.unacked).entries.push((None, topic.clone(), payload.clone()));
        }
        client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|e| TransportError::Link(e.to_string()))
    }

    async fn disconnect(&self) -> Result<(), TransportError> {
        if let Some((client, task)) = self.client.lock().await.take() {
            self.closing.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = client.disconnect().await;
            // Let the event loop write the DISCONNECT before it is dropped.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        Ok(())
    }
}

/// A device connection over the HTTP device API (PROTOCOL.md): signed `POST
/// /device/v1/up/{kind}` for uplinks and a long poll of `GET /device/v1/down/cmd` for
/// commands. A `time` uplink's reply comes back in its response and is delivered as a
/// `time` downlink.
pub struct HttpTransport {
    id: CabinetId,
    secret: String,
    clock: Arc<dyn DeviceClock>,
    base_url: String,
    http: reqwest::Client,
    state: Mutex<Option<(mpsc::UnboundedSender<Downlink>, tokio::task::JoinHandle<()>)>>,
}

impl HttpTransport {
    /// A transport for device `id` against the platform at `base_url` (`http://host:port`).
    pub fn new(id: CabinetId, secret: String, clock: Arc<dyn DeviceClock>, base_url: &str) -> Arc<Self> {
        Arc::new(Self {
            id,
            secret,
            clock,
            base_url: base_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            state: Mutex::new(None),
        })
    }

    /// The three signed headers for a request.
    pub fn signed_headers(id: &CabinetId, secret: &str, ts: i64, method: &str, path: &str, body: &[u8]) -> [(&'static str, String); 3] {
        let sig = sign(secret, &http_string_to_sign(ts, method, path, body));
        [
            (DEVICE_HEADER, id.to_string()),
            (TIMESTAMP_HEADER, ts.to_string()),
            (SIGNATURE_HEADER, sig),
        ]
    }

    fn request(&self, method: reqwest::Method, path: &str, query: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let headers = Self::signed_headers(&self.id, &self.secret, self.clock.now_ms(), method.as_str(), path, &body);
        let mut r = self.http.request(method, format!("{}{path}{query}", self.base_url)).body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r
    }
}

#[async_trait]
impl DeviceTransport for HttpTransport {
    async fn connect(&self) -> Result<mpsc::UnboundedReceiver<Downlink>, TransportError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let poller = {
            let tx = tx.clone();
            let this = Self {
                id: self.id.clone(),
                secret: self.secret.clone(),
                clock: self.clock.clone(),
                base_url: self.base_url.clone(),
                http: self.http.clone(),
                state: Mutex::new(None),
            };
            tokio::spawn(async move {
                loop {
                    let resp = this
                        .request(reqwest::Method::GET, "/device/v1/down/cmd", "?wait_s=20", Vec::new())
                        .send()
                        .await;
                    let cmds = match resp {
                        Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                        _ => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            None
                        }
                    };
                    for c in cmds.iter().flat_map(|v| v["commands"].as_array().cloned().unwrap_or_default()) {
                        if tx
                            .send(Downlink {
                                kind: DownlinkKind::Cmd,
                                payload: serde_json::to_vec(&c).unwrap_or_default(),
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
            })
        };
        if let Some((_, old)) = self.state.lock().unwrap_or_else(|p| p.into_inner()).replace((tx, poller)) {
            old.abort();
        }
        Ok(rx)
    }

    async fn send(&self, kind: UplinkKind, payload: Vec<u8>) -> Result<(), TransportError> {
        let resp = self
            .request(reqwest::Method::POST, &format!("/device/v1/up/{kind}"), "", payload)
            .header("content-type", "application/json")
            .send()
            .await
            .map_err(|e| TransportError::Link(e.to_string()))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| TransportError::Link(e.to_string()))?;
        if !status.is_success() {
            let why = String::from_utf8_lossy(&body).into_owned();
            return Err(if status.is_server_error() {
                TransportError::Link(why)
            } else {
                TransportError::Refused(format!("{status}: {why}"))
            });
        }
        if kind == UplinkKind::Time {
            if let Some((tx, _)) = self.state.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = tx.send(Downlink {
                    kind: DownlinkKind::Time,
                    payload: body.to_vec(),
                });
            }
        }
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), TransportError> {
        if let Some((_, poller)) = self.state.lock().unwrap_or_else(|p| p.into_inner()).take() {
            poller.abort();
        }
        Ok(())
    }
}
