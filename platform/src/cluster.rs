//! The scaled-out mode's NATS side [E1, D6]: the JetStream streams, the relay that
//! publishes the global feed to them, and the partitioned durable consumers through
//! which saga and projection workers on many nodes share the work.
//!
//! - **Streams** (created or updated idempotently at start): `{NS}_EVENTS` holds every
//!   domain event on `{ns}.events.p{NN}.{aggregate_type}` (no ids in subjects: JetStream's
//!   memory grows with distinct subjects); `{NS}_TELEMETRY` holds weight samples and
//!   heartbeats on `{ns}.telemetry.{pk}.{dn}.{kind}` for about a month.
//! - **Relay**: one node at a time (PostgreSQL session advisory lock on a connection of
//!   its own; if the node dies the lock goes with its session) publishes the feed in
//!   order, each event with `Nats-Msg-Id` = event id and its feed position in a header.
//!   On taking the lead it reads its checkpoint back from the stream's last message, so
//!   a crash publishes nothing twice; the id dedupe covers the overlap of two relays.
//! - **Partitions**: an event goes to partition `fnv1a(aggregate_id) % PARTITIONS`, so
//!   all events of one aggregate (a cabinet, an order, a device command) are in one
//!   partition, in feed order. Each worker kind has one durable pull consumer per
//!   partition with `max_ack_pending = 1`: whichever node pulls, at most one event of a
//!   partition is in flight cluster-wide, so order holds and work spreads over nodes by
//!   partition. An event is acknowledged only after its effect committed, together with
//!   the partition's checkpoint; a redelivered event at or before the checkpoint is
//!   skipped. A node that dies mid-event leaves it unacknowledged; JetStream hands it to
//!   another node after `ack_wait`.

use crate::db::{Db, DbError};
use crate::devices::bus::{HeartbeatInfo, Telemetry};
use crate::devices::telemetry::TelemetryBuffer;
use crate::devices::DeviceHub;
use crate::feed::{Feed, FeedEvent};
use crate::store::Aggregates;
use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures::StreamExt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tare_domain::cabinet::DeviceStatus;
use tare_domain::weight::WeightSample;
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_sagas::ports::{DeviceLink, DeviceLinkError};
use tokio::sync::{watch, Mutex};

/// How many partitions the event stream is cut into. Every node must agree on it (it
/// names the consumers and the subjects), so it is a constant of the build.
pub const PARTITIONS: u16 = 16;

/// Header carrying an event's feed position.
pub const POSITION_HEADER: &str = "Tare-Position";

/// How long JetStream waits for an acknowledgement before handing an event to another
/// node (the stall a crashed node's in-flight event causes in its partition).
const ACK_WAIT: Duration = Duration::from_secs(10);

/// About a month of telemetry [D6].
const TELEMETRY_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// The advisory-lock key of the relay's leadership.
const RELAY_LOCK: i64 = 7_361_627;

/// Where NATS is and which names this deployment uses.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port`.
    pub url: String,
    /// Subject prefix and stream-name prefix (`tare` → `tare.events.…`, `TARE_EVENTS`);
    /// tests use a fresh one each so they can run side by side.
    pub namespace: String,
}

impl NatsConfig {
    /// The default names at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: "tare".into(),
        }
    }
}

/// A NATS failure.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Connecting, publishing, a JetStream API call.
    #[error("nats: {0}")]
    Nats(String),
    /// The store.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A bad configuration value (which one, why).
    #[error("config: {0}")]
    Config(String),
}

fn nats_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(e.to_string())
}

/// The worker kinds that consume the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// The order saga (decides effects and timers).
    Sagas,
    /// The projections (read models).
    Projections,
}

impl WorkerKind {
    /// The checkpoint / consumer name stem.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sagas => "saga-order",
            Self::Projections => crate::views::PROJECTIONS,
        }
    }

    /// The checkpoint of partition `p` (`projections/p03`).
    pub fn checkpoint(self, p: u16) -> String {
        format!("{}/p{p:02}", self.name())
    }
}

/// The partition of an aggregate: FNV-1a of its id (stable across builds and nodes).
pub fn partition_of(aggregate_id: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in aggregate_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(PARTITIONS)) as u16
}

/// Counters of the NATS side (Prometheus).
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Events the relay published (and JetStream acknowledged).
    pub relayed: AtomicU64,
    /// Of those, ones JetStream reported as duplicates (already in the stream).
    pub relay_duplicates: AtomicU64,
    /// Events applied by this node's workers.
    pub applied: AtomicU64,
    /// Events handed to this node that another delivery had applied already.
    pub skipped: AtomicU64,
    /// Messages on the event stream this build could not read (terminated, logged).
    pub undecodable: AtomicU64,
    /// Telemetry records published to NATS.
    pub telemetry_out: AtomicU64,
    /// Telemetry records lost before NATS (the local bus lagged, or NATS refused).
    pub telemetry_lost: AtomicU64,
    /// Telemetry records received from other nodes.
    pub telemetry_in: AtomicU64,
    /// Device commands handed to another gateway node (and taken by its device link).
    pub commands_routed: AtomicU64,
}

/// A connection to NATS with this deployment's names.
pub struct Nats {
    /// The client (core NATS: commands across nodes, telemetry fan-out).
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    namespace: String,
    /// Counters.
    pub counters: ClusterCounters,
}

impl Nats {
    /// Connects and makes sure both streams exist with the expected configuration.
    pub async fn connect(cfg: &NatsConfig) -> Result<Arc<Self>, ClusterError> {
        if cfg.namespace.is_empty() || !cfg.namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(ClusterError::Config(format!(
                "nats namespace {:?}: letters, digits, '_' and '-' only",
                cfg.namespace
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .name("tare")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(&cfg.url)
            .await
            .map_err(nats_err)?;
        let js = jetstream::new(client.clone());
        let nats = Arc::new(Self {
            client,
            js,
            namespace: cfg.namespace.clone(),
            counters: ClusterCounters::default(),
        });
        nats.ensure_streams().await?;
        Ok(nats)
    }

    /// The event stream's name.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.namespace.to_uppercase())
    }

    /// The telemetry stream's name.
    pub fn telemetry_stream(&self) -> String {
        format!("{}_TELEMETRY", self.namespace.to_uppercase())
    }

    /// The subject of an event of `aggregate_type` in partition `p`.
    pub fn event_subject(&self, p: u16, aggregate_type: &str) -> String {
        format!("{}.events.p{p:02}.{aggregate_type}", self.namespace)
    }

    /// The subject of a telemetry record (`cabinet` is `pk.dn`).
    pub fn telemetry_subject(&self, cabinet: &str, kind: &str) -> String {
        format!("{}.telemetry.{cabinet}.{kind}", self.namespace)
    }

    /// The subject a gateway node answers command deliveries on.
    pub fn gateway_subject(&self, node: &str) -> String {
        format!("{}.gateway.{node}.command", self.namespace)
    }

    /// Creates the streams, or updates them to this configuration (idempotent).
    pub async fn ensure_streams(&self) -> Result<(), ClusterError> {
        let events = stream::Config {
            name: self.events_stream(),
            subjects: vec![format!("{}.events.>", self.namespace)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let telemetry = stream::Config {
            name: self.telemetry_stream(),
            subjects: vec![format!("{}.telemetry.>", self.namespace)],
            storage: stream::StorageType::File,
            max_age: TELEMETRY_RETENTION,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        for cfg in [events, telemetry] {
            match self.js.get_stream(&cfg.name).await {
                Ok(_) => {
                    self.js.update_stream(&cfg).await.map_err(nats_err)?;
                }
                Err(_) => {
                    self.js.get_or_create_stream(cfg).await.map_err(nats_err)?;
                }
            }
        }
        Ok(())
    }

    /// Deletes both streams (tests clean up after themselves).
    pub async fn delete_streams(&self) -> Result<(), ClusterError> {
        for name in [self.events_stream(), self.telemetry_stream()] {
            self.js.delete_stream(&name).await.map_err(nats_err)?;
        }
        Ok(())
    }

    /// The feed position of the last event in the stream (0 when empty): where a relay
    /// taking the lead resumes.
    pub async fn relayed_head(&self) -> Result<i64, ClusterError> {
        let mut s = self.js.get_stream(self.events_stream()).await.map_err(nats_err)?;
        let last = s.info().await.map_err(nats_err)?.state.last_sequence;
        if last == 0 {
            return Ok(0);
        }
        let msg = s.get_raw_message(last).await.map_err(nats_err)?;
        msg.headers
            .get(POSITION_HEADER)
            .and_then(|v| v.as_str().parse::<i64>().ok())
            .ok_or_else(|| ClusterError::Nats(format!("stream message {last} has no {POSITION_HEADER} header")))
    }

    /// The durable consumer of worker `kind` for partition `p` (created if missing).
    pub async fn partition_consumer(&self, kind: WorkerKind, p: u16) -> Result<consumer::PullConsumer, ClusterError> {
        let name = format!("{}-p{p:02}", kind.name());
        let stream = self.js.get_stream(self.events_stream()).await.map_err(nats_err)?;
        stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{}.events.p{p:02}.>", self.namespace),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 1,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats_err)
    }
}

/// The relay: publishes the feed to the event stream while this node leads.
pub struct Relay {
    nats: Arc<Nats>,
    feed: Feed,
    db: Db,
    /// The leadership session and the position relayed so far.
    lead: Mutex<Option<(sqlx::PgConnection, i64)>>,
}

impl Relay {
    /// A relay of `feed` (PostgreSQL) to `nats`.
    pub fn new(nats: Arc<Nats>, feed: Feed, db: Db) -> Self {
        Self {
            nats,
            feed,
            db,
            lead: Mutex::new(None),
        }
    }

    /// Gives up the lead (at shutdown): closing the session frees the lock for another
    /// node at once rather than when the process exits.
    pub async fn release(&self) {
        if let Some((conn, _)) = self.lead.lock().await.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
    }

    /// Whether this node leads the relay now.
    pub async fn is_leader(&self) -> bool {
        self.lead.lock().await.is_some()
    }

    /// Takes the lead if it is free, then publishes up to `batch` feed events after the
    /// relayed position. Returns how many it published. On any failure it gives up the
    /// lead, so the next step starts again from what the stream holds.
    pub async fn step(&self, batch: i64) -> Result<usize, ClusterError> {
        let mut lead = self.lead.lock().await;
        if lead.is_none() {
            let Db::Postgres(pool) = &self.db else {
                return Err(ClusterError::Config("the relay needs the PostgreSQL store".into()));
            };
            let mut conn = pool.acquire().await.map_err(DbError::from)?.detach();
            let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(&mut conn)
                .await
                .map_err(DbError::from)?;
            if !got {
                return Ok(0);
            }
            let head = self.nats.relayed_head().await?;
            tracing::info!(from = head, "relay: leading");
            *lead = Some((conn, head));
        }
        let result = self.publish_batch(&mut lead, batch).await;
        if result.is_err() {
            // Dropping the connection ends the session and frees the lock.
            *lead = None;
        }
        result
    }

    async fn publish_batch(&self, lead: &mut Option<(sqlx::PgConnection, i64)>, batch: i64) -> Result<usize, ClusterError> {
        let Some((conn, from)) = lead.as_mut() else {
            return Ok(0);
        };
        // The lock lives as long as this session: make sure it still does.
        sqlx::query("SELECT 1").execute(&mut *conn).await.map_err(DbError::from)?;
        let events = self.feed.read_after(*from, batch).await?;
        let mut acks = Vec::with_capacity(events.len());
        for ev in &events {
            let payload = serde_json::to_vec(ev).map_err(DbError::from)?;
            let mut headers = HeaderMap::new();
            headers.insert(POSITION_HEADER, ev.position.to_string().as_str());
            let subject = self.nats.event_subject(partition_of(&ev.aggregate_id), &ev.aggregate_type);
            let ack = self
                .nats
                .js
                .send_publish(
                    subject,
                    jetstream::message::PublishMessage::build()
                        .payload(payload.into())
                        .headers(headers)
                        .message_id(&ev.event_id),
                )
                .await
                .map_err(nats_err)?;
            acks.push(ack);
        }
        for ack in acks {
            let ack = ack.await.map_err(nats_err)?;
            self.nats.counters.relayed.fetch_add(1, Ordering::Relaxed);
            if ack.duplicate {
                self.nats.counters.relay_duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(last) = events.last() {
            *from = last.position;
        }
        Ok(events.len())
    }
}

/// Consumes partition `p` for worker `kind` until `shutdown`: pulls one event at a
/// time (the consumer allows one in flight), hands it to `apply` (which commits the
/// effect with the partition checkpoint and says whether it applied it), then
/// acknowledges it. A failed `apply` is negatively acknowledged for redelivery.
pub async fn consume_partition<F, Fut>(nats: Arc<Nats>, kind: WorkerKind, p: u16, mut shutdown: watch::Receiver<bool>, apply: F)
where
    F: Fn(FeedEvent) -> Fut + Send,
    Fut: Future<Output = Result<bool, DbError>> + Send,
{
    let mut consumer: Option<consumer::PullConsumer> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if consumer.is_none() {
            match nats.partition_consumer(kind, p).await {
                Ok(c) => {
                    consumer = Some(c);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(worker = kind.name(), partition = p, error = %e, "consumer unavailable; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(c) = consumer.as_ref() else { continue };
        let batch = tokio::select! {
            _ = shutdown.changed() => return,
            b = c.batch().max_messages(1).expires(Duration::from_secs(1)).messages() => b,
        };
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(worker = kind.name(), partition = p, error = %e, "pull failed; reconnecting the consumer");
                consumer = None;
                continue;
            }
        };
        while let Some(msg) = batch.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(worker = kind.name(), partition = p, error = %e, "pull ended");
                    break;
                }
            };
            let event: FeedEvent = match serde_json::from_slice(&msg.payload) {
                Ok(ev) => ev,
                Err(e) => {
                    nats.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(worker = kind.name(), partition = p, error = %e, "undecodable message on the event stream; terminated");
                    let _ = msg.ack_with(jetstream::AckKind::Term).await;
                    continue;
                }
            };
            let position = event.position;
            match apply(event).await {
                Ok(applied) => {
                    let counter = if applied { &nats.counters.applied } else { &nats.counters.skipped };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = msg.ack().await {
                        // Redelivered later and skipped by the checkpoint.
                        tracing::warn!(worker = kind.name(), partition = p, position, error = %e, "ack failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = kind.name(), partition = p, position, error = %e, "event not applied; redelivery requested");
                    let _ = msg.ack_with(jetstream::AckKind::Nak(Some(Duration::from_millis(500)))).await;
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }
}

/// A device command handed from the node that runs the effect to the gateway node that
/// holds the device's connection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RoutedCommand {
    cabinet: String,
    cmd_id: String,
    #[serde(rename = "type")]
    type_name: String,
    args: serde_json::Value,
    expires_at: UnixMs,
}

/// The gateway node's answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RoutedReply {
    delivered: bool,
}

/// How long a node waits for the holding gateway node to take a command. A command not
/// taken is reported `NotConnected`, and the command's own resend covers it [D7].
const ROUTE_TIMEOUT: Duration = Duration::from_secs(2);

/// The device link of a scaled-out node [D7]: a device connected here gets the command
/// from the local hub; otherwise the cabinet's last `DeviceConnected` names the gateway
/// node that holds it, and the command goes there over NATS (request/reply, so a door
/// command is never queued for an absent device [B7]).
pub struct RoutedDevices {
    hub: Arc<DeviceHub>,
    aggregates: Arc<Aggregates>,
    nats: Arc<Nats>,
}

impl RoutedDevices {
    /// Routes through `nats` what `hub` does not hold.
    pub fn new(hub: Arc<DeviceHub>, aggregates: Arc<Aggregates>, nats: Arc<Nats>) -> Self {
        Self { hub, aggregates, nats }
    }
}

#[async_trait::async_trait]
impl DeviceLink for RoutedDevices {
    async fn send_command(
        &self,
        cabinet: &CabinetId,
        cmd_id: &str,
        type_name: &str,
        args: serde_json::Value,
        expires_at: UnixMs,
    ) -> Result<(), DeviceLinkError> {
        if self.hub.is_attached(cabinet) {
            return self.hub.send_command(cabinet, cmd_id, type_name, args, expires_at).await;
        }
        let not_connected = || DeviceLinkError::NotConnected(cabinet.to_string());
        let state = self
            .aggregates
            .cabinets
            .load(&cabinet.to_string())
            .await
            .map_err(|_| not_connected())?;
        let connected = matches!(state.status, DeviceStatus::Online | DeviceStatus::PendingInit);
        let Some(node) = state.node.filter(|n| connected && *n != self.hub.node()) else {
            return Err(not_connected());
        };
        let body = serde_json::to_vec(&RoutedCommand {
            cabinet: cabinet.to_string(),
            cmd_id: cmd_id.to_string(),
            type_name: type_name.to_string(),
            args,
            expires_at,
        })
        .map_err(|_| not_connected())?;
        let reply = tokio::time::timeout(
            ROUTE_TIMEOUT,
            self.nats.client.request(self.nats.gateway_subject(&node), body.into()),
        )
        .await
        .map_err(|_| not_connected())?
        .map_err(|e| {
            tracing::debug!(%cabinet, %node, error = %e, "gateway node did not take the command");
            not_connected()
        })?;
        match serde_json::from_slice::<RoutedReply>(&reply.payload) {
            Ok(RoutedReply { delivered: true }) => {
                self.nats.counters.commands_routed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(not_connected()),
        }
    }
}

/// On a gateway node: takes commands other nodes route here and hands them to the local
/// hub, answering whether the device's connection took it.
pub async fn serve_routed_commands(nats: Arc<Nats>, hub: Arc<DeviceHub>, mut shutdown: watch::Receiver<bool>) {
    let subject = nats.gateway_subject(hub.node());
    let mut sub = match nats.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot take routed commands");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let delivered = match serde_json::from_slice::<RoutedCommand>(&msg.payload) {
            Ok(c) => match CabinetId::parse(&c.cabinet) {
                Ok(cabinet) => hub
                    .send_command(&cabinet, &c.cmd_id, &c.type_name, c.args, c.expires_at)
                    .await
                    .is_ok(),
                Err(_) => false,
            },
            Err(e) => {
                tracing::warn!(error = %e, "undecodable routed command");
                false
            }
        };
        if let Some(reply) = msg.reply {
            let body = serde_json::to_vec(&RoutedReply { delivered }).unwrap_or_default();
            let _ = nats.client.publish(reply, body.into()).await;
        }
    }
}

/// A telemetry record on NATS (weights and heartbeats, with the gateway node that
/// received it, so that node does not ingest its own records twice).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TelemetryRecord {
    node: String,
    cabinet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    door: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sample: Option<WeightSample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heartbeat: Option<HeartbeatInfo>,
}

/// On a gateway node: publishes the hub's telemetry to the telemetry stream
/// (`{ns}.telemetry.{pk}.{dn}.weight|heartbeat`) [D6]. Records the local bus dropped
/// because this task lagged are counted as lost.
pub async fn forward_telemetry(nats: Arc<Nats>, hub: Arc<DeviceHub>, mut shutdown: watch::Receiver<bool>) {
    let mut rx = hub.bus().subscribe();
    let node = hub.node().to_string();
    loop {
        let t = tokio::select! {
            _ = shutdown.changed() => return,
            t = rx.recv() => t,
        };
        let (subject, record) = match t {
            Ok(Telemetry::Weight { cabinet, door, sample }) => (
                nats.telemetry_subject(&cabinet.to_string(), "weight"),
                TelemetryRecord {
                    node: node.clone(),
                    cabinet: cabinet.to_string(),
                    door: Some(door.get()),
                    sample: Some(sample),
                    heartbeat: None,
                },
            ),
            Ok(Telemetry::Heartbeat { cabinet, info }) => (
                nats.telemetry_subject(&cabinet.to_string(), "heartbeat"),
                TelemetryRecord {
                    node: node.clone(),
                    cabinet: cabinet.to_string(),
                    door: None,
                    sample: None,
                    heartbeat: Some(info),
                },
            ),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                nats.counters.telemetry_lost.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Ok(body) = serde_json::to_vec(&record) else { continue };
        match nats.client.publish(subject, body.into()).await {
            Ok(()) => nats.counters.telemetry_out.fetch_add(1, Ordering::Relaxed),
            Err(_) => nats.counters.telemetry_lost.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// On a saga node: takes other gateway nodes' weight samples into the local telemetry
/// buffer, so the stable-weight checks of an order find them whichever node runs the
/// effect. The last two minutes are read back from the stream at start, so a node that
/// joins (or restarts) mid-purchase has the door's history.
pub async fn ingest_telemetry(nats: Arc<Nats>, node: String, buffer: Arc<TelemetryBuffer>, mut shutdown: watch::Receiver<bool>) {
    let filter = format!("{}.telemetry.*.*.weight", nats.namespace);
    // Read again from a little before the last sample seen (or two minutes back at
    // start) whenever the consumer has to be made anew (NATS restarted, stream moved).
    let mut from = time::OffsetDateTime::now_utc() - time::Duration::seconds(120);
    loop {
        let consumer = async {
            let stream = nats.js.get_stream(nats.telemetry_stream()).await.map_err(nats_err)?;
            stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: from },
                    ..Default::default()
                })
                .await
                .map_err(nats_err)?
                .messages()
                .await
                .map_err(nats_err)
        };
        let mut messages = match consumer.await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the telemetry stream; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.changed() => return,
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => { tracing::debug!(error = %e, "telemetry stream hiccup"); continue }
                    None => break,
                },
            };
            from = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
            let Ok(rec) = serde_json::from_slice::<TelemetryRecord>(&msg.payload) else {
                continue;
            };
            if rec.node == node {
                continue;
            }
            let door = rec.door.and_then(|d| DoorNo::try_from(d).ok());
            if let (Ok(cabinet), Some(door), Some(sample)) = (CabinetId::parse(&rec.cabinet), door, rec.sample) {
                nats.counters.telemetry_in.fetch_add(1, Ordering::Relaxed);
                buffer.push(&cabinet, door, sample);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Pinned: every node and every build must agree.
        assert_eq!(partition_of("a.b"), partition_of("a.b"));
        let mut hits = [0u32; PARTITIONS as usize];
        for i in 0..1600 {
            hits[partition_of(&format!("order-{i}")) as usize] += 1;
        }
        assert!(hits.iter().all(|&n| n > 50), "uneven spread: {hits:?}");
        assert_eq!(WorkerKind::Projections.checkpoint(3), "projections/p03");
    }
}
