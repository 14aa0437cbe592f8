//! One device connection: CONNECT and authentication, then publishes into the hub and
//! downlinks out, until the device leaves, goes silent past its keep-alive, is replaced by
//! a newer connection, or the endpoint stops.

use super::codec::{self, ConnRefusal, ConnectIn, Inbound, Outbound, PubRefusal, Version, Will};
use super::stream::DeviceStream;
use super::{MqttEndpoint, MAX_FRAME};
use crate::rate::Bucket;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tare_domain::CabinetId;
use tare_platform::devices::{DeviceConnection, IngestError};
use tare_protocol::signing::{DeviceAuthError, MqttClaim};
use tare_protocol::{DeviceTopics, Downlink, DownlinkKind, MAX_PAYLOAD};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a session ended; decides whether the will fires and the disconnect is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT from the device.
    Normal { with_will: bool },
    /// The socket closed or broke, a protocol error, or keep-alive expiry: abnormal, the
    /// will fires.
    Abnormal(&'static str),
    /// A newer connection of the same device replaced this one.
    TakenOver,
    /// The endpoint is stopping.
    Shutdown,
    /// The platform could not record a publish: close without acknowledging it, so the
    /// device sends it again on its next connection.
    PlatformFailure,
}

pub(super) struct Session {
    ep: Arc<MqttEndpoint>,
    version: Version,
    device: CabinetId,
    topics: DeviceTopics,
    will: Option<Will>,
    keep_alive: Option<Duration>,
    /// Granted subscriptions (filter, QoS).
    subscriptions: Vec<(String, u8)>,
    /// Commands waiting for a `down/cmd` subscription.
    pending: VecDeque<Downlink>,
    next_pkid: u16,
    bucket: Bucket,
    /// Bytes of an oversized publish still to skip.
    skip: usize,
    /// Publishes refused on this connection (logs are thinned past the first few, so a
    /// misbehaving device cannot flood them; every refusal is still counted).
    refusals: u64,
    out: BytesMut,
}

/// The largest CONNECT read before authentication: a client id, a signed username and
/// password, and a will of a few dozen bytes fit many times over. Until a connection has
/// authenticated it may hold no more than this.
pub const MAX_CONNECT_FRAME: usize = 4 * 1024;

/// Reads until `buf` holds one whole CONNECT-sized frame, returning its header.
async fn read_frame(stream: &mut DeviceStream, buf: &mut BytesMut) -> Result<codec::FrameHeader, &'static str> {
    loop {
        if let Some(h) = codec::peek_header(buf).map_err(|_| "malformed_frame")? {
            if h.frame_len() > MAX_CONNECT_FRAME {
                return Err("connect_too_large");
            }
            if buf.len() >= h.frame_len() {
                return Ok(h);
            }
        }
        buf.reserve(256);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err("closed_before_connect"),
            Ok(_) => {}
        }
    }
}

/// A connection that has not finished its CONNECT, counted in
/// `connections_pending` while it lives.
struct Pending<'c>(&'c super::MqttCounters);

impl<'c> Pending<'c> {
    fn enter(counters: &'c super::MqttCounters) -> Self {
        counters.connections_pending.fetch_add(1, Ordering::Relaxed);
        Self(counters)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.connections_pending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    /// Serves one TCP connection to its end; over TLS when `tls` is given, the handshake
    /// counted as part of connecting (pending, under the connect timeout).
    pub(super) async fn run(
        ep: Arc<MqttEndpoint>,
        tcp: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let pending = Pending::enter(&ep.counters);
        if ep.counters.connections_pending.load(Ordering::Relaxed) > ep.cfg.max_pending_connects {
            ep.counters.refuse("too_many_pending_connects");
            drop(pending);
            DeviceStream::Plain(tcp).shutdown().await;
            return;
        }
        ep.counters.connections_open.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let mut stream = match tls {
            None => DeviceStream::Plain(tcp),
            // Boxed: the handshake's state is large, and idle sessions keep their future.
            Some(acceptor) => match tokio::time::timeout(ep.cfg.connect_timeout, Box::pin(acceptor.accept(tcp))).await {
                Ok(Ok(tls)) => DeviceStream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    ep.counters.refuse("tls_handshake_failed");
                    tracing::debug!(%peer, error = %e, "mqtt: tls handshake failed");
                    return Self::closed(&ep);
                }
                Err(_) => {
                    ep.counters.refuse("tls_handshake_timeout");
                    return Self::closed(&ep);
                }
            },
        };
        Self::serve(&ep, &mut stream, peer, shutdown, pending).await;
        stream.shutdown().await;
        Self::closed(&ep);
    }

    /// A connection counted open has ended.
    fn closed(ep: &MqttEndpoint) {
        ep.counters.connections_open.fetch_sub(1, Ordering::Relaxed);
        ep.closed.notify_waiters();
    }

    async fn serve(
        ep: &Arc<MqttEndpoint>,
        stream: &mut DeviceStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        pending: Pending<'_>,
    ) {
        let mut buf = BytesMut::with_capacity(256);
        let header = match tokio::time::timeout(ep.cfg.connect_timeout, read_frame(stream, &mut buf)).await {
            Ok(Ok(h)) => h,
            Ok(Err(reason)) => {
                ep.counters.refuse(reason);
                return;
            }
            Err(_) => {
                ep.counters.refuse("connect_timeout");
                return;
            }
        };
        let frame = buf.split_to(header.frame_len());
        if header.packet_type() != 1 {
            ep.counters.refuse("first_packet_not_connect");
            tracing::warn!(%peer, "mqtt: first packet is not CONNECT");
            return;
        }
        let version = match codec::connect_version(&frame, &header) {
            Ok(v) => v,
            Err(e) => {
                ep.counters.refuse("unsupported_protocol");
                tracing::warn!(%peer, error = %e, "mqtt: refused protocol");
                // Answer in 3.1.1 framing, which every client version can read.
                let _ = Self::write_now(stream, Version::V311, &Outbound::ConnAck(Some(ConnRefusal::ProtocolVersion))).await;
                return;
            }
        };
        let connect = match codec::decode(version, &frame) {
            Ok(Inbound::Connect(c)) => c,
            Ok(_) | Err(_) => {
                ep.counters.refuse("malformed_connect");
                return;
            }
        };
        // At capacity, refused before the signature is checked or a secret read.
        let open = ep.counters.connections_open.load(Ordering::Relaxed);
        if open.saturating_sub(ep.counters.connections_pending.load(Ordering::Relaxed)) >= ep.cfg.max_connections {
            ep.counters.refuse("at_capacity");
            let _ = Self::write_now(stream, version, &Outbound::ConnAck(Some(ConnRefusal::Unavailable))).await;
            return;
        }
        // Boxed, like every call into the platform below: an idle session's task then
        // holds only its own small state, not the largest future it might await.
        let device = match Box::pin(Self::authenticate(ep, &connect)).await {
            Ok(d) => d,
            Err((refusal, reason, detail)) => {
                ep.counters.refuse(reason);
                tracing::warn!(%peer, client_id = %connect.client_id, reason, detail = %detail, "mqtt: connect refused");
                let _ = Self::write_now(stream, version, &Outbound::ConnAck(Some(refusal))).await;
                return;
            }
        };
        drop(pending);
        if Self::write_now(stream, version, &Outbound::ConnAck(None)).await.is_err() {
            return;
        }
        ep.counters.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let connection = ep.hub.attach(&device);
        let mut session = Session {
            ep: ep.clone(),
            version,
            topics: DeviceTopics::of(&device),
            device,
            will: connect.will,
            keep_alive: (connect.keep_alive > 0).then(|| Duration::from_millis(connect.keep_alive as u64 * 1500)),
            subscriptions: Vec::new(),
            pending: VecDeque::new(),
            next_pkid: 0,
            bucket: Bucket::new(ep.cfg.rate),
            skip: 0,
            refusals: 0,
            out: BytesMut::new(),
        };
        let connection_id = connection.id;
        let end = session.pump(stream, buf, connection, shutdown).await;
        Box::pin(session.finish(end, connection_id)).await;
    }

    async fn authenticate(ep: &MqttEndpoint, c: &ConnectIn) -> Result<CabinetId, (ConnRefusal, &'static str, String)> {
        let claim = MqttClaim::parse(&c.client_id, c.username.as_deref(), c.password.as_deref(), ep.clock.now_ms()).map_err(|e| {
            let refusal = match e {
                DeviceAuthError::Malformed(_) => ConnRefusal::BadCredentials,
                DeviceAuthError::IdentityMismatch { .. } => ConnRefusal::BadClientId,
                _ => ConnRefusal::NotAuthorized,
            };
            (refusal, e.reason(), e.to_string())
        })?;
        let secret = ep
            .credentials
            .device_secret(&claim.device)
            .await
            .map_err(|e| (ConnRefusal::Unavailable, "credential_store_unavailable", e))?
            .ok_or_else(|| {
                (
                    ConnRefusal::NotAuthorized,
                    "auth_unknown_device",
                    format!("unknown or disabled device {}", claim.device),
                )
            })?;
        claim
            .verify(&secret)
            .map_err(|e| (ConnRefusal::NotAuthorized, e.reason(), e.to_string()))?;
        if let Some(will) = &c.will {
            let own = DeviceTopics::of(&claim.device).will();
            if will.topic != own {
                return Err((
                    ConnRefusal::NotAuthorized,
                    "will_topic_denied",
                    format!("will topic `{}` is not the device's own `{own}`", will.topic),
                ));
            }
        }
        Ok(claim.device)
    }

    async fn write_now(stream: &mut DeviceStream, version: Version, p: &Outbound) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        codec::encode(version, p, &mut out).map_err(std::io::Error::other)?;
        stream.write_all(&out).await
    }

    fn queue(&mut self, p: Outbound) {
        if let Err(e) = codec::encode(self.version, &p, &mut self.out) {
            tracing::error!(device = %self.device, error = %e, "mqtt: could not encode an outbound packet");
        }
    }

    async fn pump(
        &mut self,
        stream: &mut DeviceStream,
        mut buf: BytesMut,
        mut conn: DeviceConnection,
        mut shutdown: watch::Receiver<bool>,
    ) -> End {
        let mut deadline = self.keep_alive.map(|k| Instant::now() + k);
        loop {
            if let Err(end) = self.process(&mut buf).await {
                let _ = self.flush(stream).await;
                return end;
            }
            if buf.is_empty() {
                // Idle connections hold no buffer.
                buf = BytesMut::new();
            }
            if self.flush(stream).await.is_err() {
                return End::Abnormal("write_failed");
            }
            tokio::select! {
                got = stream.read_some(&mut buf) => match got {
                    Ok(0) => return End::Abnormal("connection_lost"),
                    Ok(_) => deadline = self.keep_alive.map(|k| Instant::now() + k),
                    Err(_) => return End::Abnormal("socket_error"),
                },
                down = conn.downlinks.recv() => match down {
                    Some(d) => self.deliver(d),
                    None => return End::TakenOver,
                },
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                    self.ep.counters.keepalive_timeouts.fetch_add(1, Ordering::Relaxed);
                    return End::Abnormal("keepalive_timeout");
                }
                _ = shutdown.changed() => return End::Shutdown,
            }
        }
    }

    async fn flush(&mut self, stream: &mut DeviceStream) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        stream.write_all(&out).await
    }

    /// Handles every whole frame in `buf`.
    async fn process(&mut self, buf: &mut BytesMut) -> Result<(), End> {
        loop {
            if self.skip > 0 {
                let k = self.skip.min(buf.len());
                buf.advance(k);
                self.skip -= k;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            let Some(h) = codec::peek_header(buf).map_err(|_| End::Abnormal("malformed_frame"))? else {
                return Ok(());
            };
            if h.frame_len() > MAX_FRAME {
                if h.packet_type() != 3 {
                    self.ep.counters.refuse("frame_too_large");
                    return Err(End::Abnormal("frame_too_large"));
                }
                // An oversized publish: read its head, refuse it, skip the rest unbuffered.
                let Some(head) = codec::peek_publish_head(&h, buf).map_err(|_| End::Abnormal("malformed_frame"))? else {
                    return Ok(());
                };
                self.ep.counters.publishes_in.fetch_add(1, Ordering::Relaxed);
                self.ep.counters.refuse("too_large");
                tracing::warn!(device = %self.device, topic = %head.topic, bytes = h.remaining, "mqtt: publish over 64 KiB refused");
                if head.qos > 0 {
                    let why = format!("payload exceeds {MAX_PAYLOAD} bytes");
                    self.queue(Outbound::PubAck {
                        pkid: head.pkid,
                        refused: Some((PubRefusal::TooLarge, why)),
                    });
                }
                let whole = h.frame_len();
                let k = whole.min(buf.len());
                buf.advance(k);
                self.skip = whole - k;
                continue;
            }
            if buf.len() < h.frame_len() {
                return Ok(());
            }
            let frame = buf.split_to(h.frame_len());
            let packet = codec::decode(self.version, &frame).map_err(|e| {
                self.ep.counters.refuse("malformed_packet");
                tracing::warn!(device = %self.device, error = %e, "mqtt: malformed packet");
                End::Abnormal("malformed_packet")
            })?;
            self.handle(packet).await?;
        }
    }

    async fn handle(&mut self, packet: Inbound) -> Result<(), End> {
        match packet {
            Inbound::Publish(p) => {
                self.ep.counters.publishes_in.fetch_add(1, Ordering::Relaxed);
                if let Err(wait) = self.bucket.take() {
                    self.ep.counters.refuse("rate_limited");
                    tokio::time::sleep(wait).await;
                    let _ = self.bucket.take();
                }
                let refused = Box::pin(self.publish(&p.topic, &p.payload)).await?;
                match p.qos {
                    0 => {}
                    1 => self.queue(Outbound::PubAck { pkid: p.pkid, refused }),
                    _ => self.queue(Outbound::PubRec(p.pkid)),
                }
            }
            Inbound::PubRel(pkid) => self.queue(Outbound::PubComp(pkid)),
            Inbound::PubAck(_) | Inbound::PubRec(_) | Inbound::PubComp(_) => {}
            Inbound::Subscribe { pkid, filters } => {
                let codes = filters
                    .into_iter()
                    .map(|(filter, qos)| {
                        let own = self.topics.is_own_downlink_filter(&filter) && rumqttc::mqttbytes::valid_filter(&filter);
                        if !own {
                            self.ep.counters.refuse("subscribe_denied");
                            tracing::warn!(device = %self.device, %filter, "mqtt: subscription outside the device's down/ refused");
                            return None;
                        }
                        let granted = qos.min(1);
                        self.subscriptions.retain(|(f, _)| *f != filter);
                        self.subscriptions.push((filter, granted));
                        Some(granted)
                    })
                    .collect();
                self.queue(Outbound::SubAck { pkid, codes });
                // Commands that waited for the subscription go out now, oldest first.
                let waiting: Vec<_> = self.pending.drain(..).collect();
                for d in waiting {
                    self.deliver(d);
                }
            }
            Inbound::Unsubscribe { pkid, filters } => {
                self.subscriptions.retain(|(f, _)| !filters.contains(f));
                self.queue(Outbound::UnsubAck { pkid, n: filters.len() });
            }
            Inbound::PingReq => self.queue(Outbound::PingResp),
            Inbound::Disconnect { with_will } => return Err(End::Normal { with_will }),
            Inbound::Connect(_) => {
                self.ep.counters.refuse("second_connect");
                return Err(End::Abnormal("second_connect"));
            }
            Inbound::Unexpected(what) => {
                self.ep.counters.refuse("unexpected_packet");
                tracing::warn!(device = %self.device, packet = what, "mqtt: a packet only a server sends");
                return Err(End::Abnormal("unexpected_packet"));
            }
        }
        Ok(())
    }

    /// Checks and hands one publish to the hub; `Some(refusal)` if it was not applied.
    async fn publish(&mut self, topic: &str, payload: &Bytes) -> Result<Option<(PubRefusal, String)>, End> {
        let Some(kind) = self.topics.uplink_kind(topic) else {
            self.ep.counters.refuse("topic_denied");
            self.refusals += 1;
            if self.refusals <= 10 || self.refusals.is_power_of_two() {
                tracing::warn!(device = %self.device, %topic, refusals = self.refusals, "mqtt: publish outside the device's own up/ refused");
            }
            return Ok(Some((
                PubRefusal::NotAuthorized,
                format!("a device may publish only under {}", self.topics.uplink_prefix()),
            )));
        };
        if payload.len() > MAX_PAYLOAD {
            self.ep.counters.refuse("too_large");
            return Ok(Some((PubRefusal::TooLarge, format!("payload exceeds {MAX_PAYLOAD} bytes"))));
        }
        match Box::pin(self.ep.hub.ingest(&self.device, kind, payload)).await {
            Ok(_) => {
                self.ep.counters.publishes_accepted.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            // Logged and counted by the hub.
            Err(IngestError::Protocol(e)) => Ok(Some((PubRefusal::PayloadInvalid, e.to_string()))),
            Err(IngestError::UnknownDevice(d)) => Ok(Some((PubRefusal::NotAuthorized, format!("unknown device {d}")))),
            Err(IngestError::Store(e)) => {
                tracing::error!(device = %self.device, error = %e, "mqtt: could not record a publish; closing so the device resends");
                Err(End::PlatformFailure)
            }
        }
    }

    /// Sends a downlink if the device subscribed to its topic; holds commands until it does.
    fn deliver(&mut self, d: Downlink) {
        let topic = self.topics.downlink(d.kind);
        let granted = self
            .subscriptions
            .iter()
            .filter(|(f, _)| rumqttc::mqttbytes::matches(&topic, f))
            .map(|(_, q)| *q)
            .max();
        let Some(granted) = granted else {
            if d.kind == DownlinkKind::Cmd {
                if self.pending.len() >= self.ep.cfg.max_pending_downlinks {
                    self.pending.pop_front();
                    self.ep.counters.refuse("pending_downlinks_overflow");
                }
                self.pending.push_back(d);
            } else {
                self.ep.counters.refuse("downlink_without_subscription");
            }
            return;
        };
        // Commands go at QoS 1 (the contract), time replies at QoS 0; never above the grant.
        let qos = granted.min(d.kind.qos());
        let pkid = if qos > 0 {
            self.next_pkid = self.next_pkid.checked_add(1).filter(|p| *p != 0).unwrap_or(1);
            self.next_pkid
        } else {
            0
        };
        self.ep.counters.publishes_out.fetch_add(1, Ordering::Relaxed);
        self.queue(Outbound::Publish {
            topic,
            qos,
            pkid,
            payload: Bytes::from(d.payload),
        });
    }

    async fn finish(&mut self, end: End, connection: u64) {
        let fire_will = matches!(end, End::Abnormal(_) | End::Normal { with_will: true });
        let mut will_recorded = false;
        if let (true, Some(will)) = (fire_will, self.will.take()) {
            self.ep.counters.wills_fired.fetch_add(1, Ordering::Relaxed);
            match self.ep.hub.ingest(&self.device, "status", &will.payload).await {
                Ok(tare_platform::devices::IngestOutcome::Accepted) => will_recorded = true,
                // A will reused from an earlier connection (same message id): the
                // disconnect below still records that the device went away.
                Ok(tare_platform::devices::IngestOutcome::Duplicate) => {}
                Err(e) => tracing::warn!(device = %self.device, error = %e, "mqtt: last will refused"),
            }
        }
        if let End::Abnormal(reason) = end {
            tracing::info!(device = %self.device, reason, "mqtt: connection ended abnormally");
        }
        let record = matches!(end, End::Normal { .. } | End::Abnormal(_)) && !will_recorded;
        if let Err(e) = self.ep.hub.detach(&self.device, connection, record).await {
            tracing::warn!(device = %self.device, error = %e, "mqtt: could not record the disconnect");
        }
    }
}

#[cfg(test)]
mod tests {
    /// An idle connection's task is the session future: keep it small (100,000 idle
    /// cabinets × this size is most of the endpoint's memory).
    #[test]
    fn the_session_future_stays_small() {
        fn size_of_session_future() -> usize {
            let ep: std::sync::Arc<super::MqttEndpoint> = unreachable_endpoint();
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
                let peer = stream.local_addr().unwrap();
                let fut = super::Session::run(ep, stream, peer, rx, None);
                std::mem::size_of_val(&fut)
            })
        }
        fn unreachable_endpoint() -> std::sync::Arc<super::MqttEndpoint> {
            struct NoCredentials;
            #[async_trait::async_trait]
            impl crate::mqtt::DeviceCredentials for NoCredentials {
                async fn device_secret(&self, _: &tare_domain::CabinetId) -> Result<Option<String>, String> {
                    Ok(None)
                }
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let db_dir = std::env::temp_dir().join(format!("tare-size-{}", std::process::id()));
            let hub = rt.block_on(async {
                let db = tare_platform::db::Db::open_sqlite(&db_dir).await.unwrap();
                let aggregates = std::sync::Arc::new(tare_platform::store::Aggregates::new(&db, true));
                std::sync::Arc::new(tare_platform::devices::DeviceHub::new(
                    aggregates,
                    std::sync::Arc::new(tare_platform::devices::telemetry::TelemetryBuffer::default()),
                    tare_platform::clock::PlatformClock::System,
                    "n".into(),
                    tare_platform::devices::liveness::LivenessConfig::default(),
                ))
            });
            let _ = std::fs::remove_dir_all(&db_dir);
            crate::mqtt::MqttEndpoint::new(
                hub,
                std::sync::Arc::new(NoCredentials),
                tare_platform::clock::PlatformClock::System,
                crate::mqtt::MqttConfig::default(),
            )
        }
        let size = size_of_session_future();
        eprintln!("session future: {size} bytes");
        assert!(size < 2048, "the session future is {size} bytes");
    }
}
