//! The NATS connection with this deployment's names: the streams (created or updated
//! idempotently at start), their subjects, and the partition consumers.

use super::{nats_err, ClusterCounters, ClusterError, NatsConfig, WorkerKind, ACK_WAIT, POSITION_HEADER, TELEMETRY_RETENTION};
use async_nats::jetstream::{self, consumer, stream};
use std::sync::Arc;
use std::time::Duration;

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
