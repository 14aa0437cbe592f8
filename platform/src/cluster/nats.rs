//! The NATS connection with this deployment's names: the streams (created or updated
//! idempotently at start), their subjects, and the partition consumers.

use super::{nats_err, ClusterCounters, ClusterError, NatsConfig, WorkerKind, ACK_WAIT, POSITION_HEADER, TELEMETRY_RETENTION};
use async_nats::jetstream::{self, consumer, stream};
use std::sync::Arc;
use std::time::Duration;

/// How the event stream's description names the store it is bound to (stream metadata
/// needs nats-server 2.10; a description works on 2.2 and later).
const STORE_BINDING: &str = "tare events of store ";

/// A connection to NATS with this deployment's names.
pub struct Nats {
    /// The client (core NATS: commands across nodes, telemetry fan-out).
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    pub(super) namespace: String,
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
        for mut cfg in [events, telemetry] {
            match self.js.get_stream(&cfg.name).await {
                Ok(mut existing) => {
                    // The description holds the store the stream is bound to: kept.
                    cfg.description = existing.info().await.map_err(nats_err)?.config.description.clone();
                    self.js.update_stream(&cfg).await.map_err(nats_err)?;
                }
                Err(_) => {
                    self.js.get_or_create_stream(cfg).await.map_err(nats_err)?;
                }
            }
        }
        Ok(())
    }

    /// Binds the event stream to store `store_id` whose feed ends at `feed_head`, or
    /// checks the binding made before: a stream of another store (a namespace reused for
    /// a new database) or one ahead of the feed (the store restored from an older backup)
    /// would have the relay resume past events this store never relayed, so nothing would
    /// progress, silently. Either is refused here with its remedy. An unbound stream (made
    /// before streams were bound) is bound if it is not ahead of the feed.
    pub async fn bind_to_store(&self, store_id: &str, feed_head: i64) -> Result<(), ClusterError> {
        let name = self.events_stream();
        let mut stream = self.js.get_stream(&name).await.map_err(nats_err)?;
        let mut config = stream.info().await.map_err(nats_err)?.config.clone();
        let bound = config
            .description
            .as_deref()
            .and_then(|d| d.strip_prefix(STORE_BINDING))
            .map(str::to_string);
        if let Some(other) = bound.as_deref().filter(|b| *b != store_id) {
            return Err(ClusterError::Config(format!(
                "the JetStream stream {name} holds the events of store {other}, not of this store ({store_id}): \
                 give this store its own namespace (--nats-namespace), or delete the stream (`nats stream rm {name}`) \
                 if that store is gone, so this store's feed is published into a new one"
            )));
        }
        let relayed = self.relayed_head().await?;
        if relayed > feed_head {
            return Err(ClusterError::Config(format!(
                "the JetStream stream {name} is ahead of this store's feed (relayed up to position {relayed}, \
                 the feed ends at {feed_head}): the store was restored from an older backup or lost events. \
                 Delete the stream (`nats stream rm {name}`, with every node stopped): the relay then publishes \
                 the feed again from the start, and the workers skip what their checkpoints already hold"
            )));
        }
        if bound.is_none() {
            config.description = Some(format!("{STORE_BINDING}{store_id}"));
            self.js.update_stream(&config).await.map_err(nats_err)?;
            tracing::info!(stream = %name, %store_id, "event stream bound to this store");
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
