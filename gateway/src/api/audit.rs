//! The auditor's feed and the node's metrics [E2, X3].

use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{Internal, OperatorOnly, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tare_platform::feed::FeedEvent;
use tare_platform::service::{ClusterMetrics, DeviceMetrics, LivenessMetrics, MetricsSnapshot};
use utoipa::{IntoParams, ToSchema};

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FeedQuery {
    /// Events after this feed position (default 0: from the start).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    after: Option<i64>,
    /// At most this many events (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only one stream: `order:ID` (with its payment), `cabinet:ID`, `shopper:ID`, or
    /// any aggregate type and id.
    #[serde(default)]
    #[param(
        pattern = "^(product|cabinet|shopper|order|payment|device_command|reconciliation|anomaly|restock|emergency_stop|campaign|operator):.+$",
        example = "cabinet:wc1.SN001"
    )]
    stream: Option<String>,
    /// Only events at or after this time (Unix ms).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    from_ts: Option<i64>,
    /// Only events before this time (Unix ms). A time window alone reads at most 20,000
    /// events a page: a page may be short and still have more after its `next`.
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    to_ts: Option<i64>,
}

/// An event's metadata as the feed shows it.
#[derive(ToSchema)]
#[allow(dead_code)] // Schema only: the metadata is passed through as stored.
struct EventMetadata {
    /// When the command that produced it ran, Unix ms (a number: the feed turns the
    /// store's string into one).
    time: i64,
    /// The order, session or request the event belongs to.
    correlation_id: String,
    /// The event or request that caused it.
    causation_id: String,
    /// The command's unique id.
    command_id: String,
}

/// One event of the global feed. Fields in alphabetical order: the bytes are those of
/// the untyped body this replaced.
#[derive(Debug, Serialize, ToSchema)]
struct FeedEventDto {
    /// Aggregate id.
    aggregate_id: String,
    /// Aggregate type (`order`, `cabinet`, …).
    #[schema(example = "order")]
    aggregate_type: String,
    /// Stable id (UUIDv5 of aggregate type, id and sequence).
    #[schema(format = "uuid")]
    event_id: String,
    /// Event type.
    #[schema(example = "OrderCreated")]
    event_type: String,
    /// Schema version.
    event_version: String,
    /// `time` (Unix ms), `correlation_id`, `causation_id`, `command_id`.
    #[schema(value_type = EventMetadata)]
    metadata: Value,
    /// The event as stored (keyed by its event type).
    #[schema(value_type = Value)]
    payload: Value,
    /// Position in the global feed (1, 2, 3, … with no gaps).
    position: i64,
    /// Sequence within the aggregate.
    sequence: i64,
}

impl From<FeedEvent> for FeedEventDto {
    fn from(e: FeedEvent) -> Self {
        Self {
            aggregate_id: e.aggregate_id,
            aggregate_type: e.aggregate_type,
            event_id: e.event_id,
            event_type: e.event_type,
            event_version: e.event_version,
            metadata: e.metadata,
            payload: e.payload,
            position: e.position,
            sequence: e.sequence,
        }
    }
}

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EventsPage {
    /// The events, in feed order.
    events: Vec<FeedEventDto>,
    /// The position to pass as `after` next (the last event's position, or `after` when
    /// none).
    next: i64,
}

/// The global event feed.
///
/// Every committed event once, in one stable order, from a position on [E2];
/// optionally one stream (`order:ID` with its payment, `cabinet:ID`, `shopper:ID`) or a
/// time window. `next` is where the next page starts.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "audit",
    operation_id = "listEvents",
    security(("operatorBearer" = [])),
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of the feed.", body = EventsPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 422, description = "`invalid_field`: `after`, `limit`, `from_ts`, `to_ts` (not a number, or out of range), `stream` (not `TYPE:ID` of a known type), or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn events(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after", "must not be negative"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let stream = match q.stream.as_deref() {
        None => None,
        Some(s) => match s.split_once(':') {
            Some((t, id)) if tare_domain::aggregate_types().contains(&t) && !id.is_empty() => Some((t, id)),
            _ => {
                let types = tare_domain::aggregate_types().join(", ");
                return Err(ApiError::invalid("stream", format!("must be TYPE:ID with TYPE one of {types}")));
            }
        },
    };
    for (field, v) in [("from_ts", q.from_ts), ("to_ts", q.to_ts)] {
        if v.is_some_and(|v| v < 0) {
            return Err(ApiError::invalid(field, "must not be negative"));
        }
    }
    let (events, next) = s.platform.events_filtered(after, limit, stream, (q.from_ts, q.to_ts)).await?;
    Ok(Json(EventsPage {
        events: events.into_iter().map(Into::into).collect(),
        next,
    }))
}

/// Metrics.
///
/// The node's metrics in the Prometheus text format: the feed and its consumers'
/// lag, effects, device traffic and refusals, liveness, and (scaled out) the relay,
/// partition workers and routed commands. Any staff token will do (an auditor's is the
/// least power); `serve --metrics ADDR` serves the same text without a token on a
/// listener of its own, for a Prometheus on a private network.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "getMetrics",
    security(("operatorBearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition (version 0.0.4).", content_type = "text/plain", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn metrics(_: Operator, State(s): State<Arc<ApiState>>) -> Result<impl IntoResponse, ApiError> {
    exposition(&s).await
}

/// The metrics text: for `/metrics` behind a staff token on the API's listener, and
/// open on a metrics listener of its own (`serve --metrics`), which only Prometheus
/// should reach.
pub async fn exposition(s: &ApiState) -> Result<impl IntoResponse, ApiError> {
    let m = s.platform.metrics().await?;
    let mut out = Exposition::default();
    out.store(&m);
    out.counter(
        "tare_callbacks_applied_total",
        "Provider callbacks applied.",
        s.counters.callbacks_applied.load(Ordering::Relaxed),
    );
    out.counter(
        "tare_callbacks_refused_total",
        "Provider callbacks refused.",
        s.counters.callbacks_refused.load(Ordering::Relaxed),
    );
    out.counter(
        "tare_callbacks_moot_total",
        "Verified provider callbacks that changed nothing (unknown order, moot by its state).",
        s.counters.callbacks_moot.load(Ordering::Relaxed),
    );
    out.counter(
        "tare_https_handshakes_failed_total",
        "TLS handshakes on the HTTPS listener that failed or timed out (serve --https).",
        s.counters.https_handshakes_failed.load(Ordering::Relaxed),
    );
    out.devices(&m.devices);
    out.liveness(&m.liveness, m.devices.silent_alerts);
    if let Some(c) = &m.cluster {
        out.cluster(c);
    }
    let mut text = out.0;
    text.push_str(&s.device_http.prometheus());
    if let Some(m) = &s.mqtt {
        text.push_str(&m.counters.prometheus());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// Prometheus text exposition of the platform's metrics snapshot, one family at a time.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn sample(&mut self, name: &str, help: &str, kind: &str, v: i64) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }

    fn gauge(&mut self, name: &str, help: &str, v: i64) {
        self.sample(name, help, "gauge", v);
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.sample(name, help, "counter", i64::try_from(v).unwrap_or(i64::MAX));
    }

    /// The feed, the consumers' lag and the effects.
    fn store(&mut self, m: &MetricsSnapshot) {
        self.gauge("tare_feed_head_position", "Highest position in the global feed.", m.feed_head);
        self.gauge(
            "tare_saga_lag_events",
            "Feed events the order saga has not decided yet.",
            m.feed_head - m.saga_position,
        );
        self.gauge(
            "tare_projection_lag_events",
            "Feed events the projections have not applied yet.",
            m.feed_head - m.projections_position,
        );
        self.gauge(
            "tare_effects_pending",
            "Scheduled effects and timers not yet done.",
            m.effects_pending,
        );
        self.gauge("tare_effects_dead", "Effects given up (dead letters).", m.effects_dead);
        self.counter("tare_effects_done_total", "Effects completed by this process.", m.effects_done);
        self.counter("tare_effects_retried_total", "Transient effect failures.", m.effects_retried);
    }

    /// Device traffic, with refusals by reason.
    fn devices(&mut self, d: &DeviceMetrics) {
        self.counter("tare_device_uplinks_accepted_total", "Device messages accepted.", d.accepted);
        self.counter(
            "tare_device_uplinks_duplicate_total",
            "Device messages dropped as duplicates.",
            d.duplicates,
        );
        self.counter("tare_device_downlinks_total", "Commands and replies sent to devices.", d.downlinks);
        self.counter(
            "tare_device_reboots_reconciled_total",
            "Doors closed for their session from a rebooted device's heartbeat [B7].",
            d.reboots_reconciled,
        );
        self.counter(
            "tare_device_lost_closes_heard_total",
            "Door closes never received, heard from a later heartbeat's door states [B7].",
            d.lost_closes_heard,
        );
        self.counter(
            "tare_weight_history_written_total",
            "Weight samples written to the 30-day history [D6].",
            d.weight_history_written,
        );
        self.counter(
            "tare_weight_history_dropped_total",
            "Weight samples dropped because the history's queue was full.",
            d.weight_history_dropped,
        );
        let _ = writeln!(
            self.0,
            "# HELP tare_device_uplinks_rejected_total Device messages refused, by reason.\n# TYPE tare_device_uplinks_rejected_total counter"
        );
        for (reason, n) in &d.rejected {
            let _ = writeln!(self.0, "tare_device_uplinks_rejected_total{{reason=\"{reason}\"}} {n}");
        }
    }

    /// The platform's own health and the devices it judged [D5, B1].
    fn liveness(&mut self, l: &LivenessMetrics, silent_alerts: u64) {
        self.gauge(
            "tare_liveness_healthy",
            "1 while heartbeat intake is above the watermark and ingest keeps up; 0 while silent devices show unknown [B1].",
            i64::from(l.health.healthy),
        );
        self.gauge(
            "tare_liveness_heartbeats_received_window",
            "Heartbeats received in the liveness window.",
            i64::try_from(l.health.received).unwrap_or(i64::MAX),
        );
        self.gauge(
            "tare_liveness_heartbeats_expected_window",
            "Heartbeats the tracked fleet should have sent in the window.",
            l.health.expected.round() as i64,
        );
        self.gauge(
            "tare_liveness_ingest_lag_ms",
            "Median age of heartbeats at arrival.",
            l.health.ingest_lag_ms,
        );
        self.gauge("tare_liveness_tracked", "Devices whose heartbeats are tracked.", l.tracked as i64);
        self.gauge(
            "tare_liveness_undecided",
            "Devices silent while the platform is unhealthy (status unknown).",
            l.undecided as i64,
        );
        self.counter(
            "tare_liveness_silent_alerts_total",
            "Devices recorded offline for silence (operator alerts).",
            silent_alerts,
        );
    }

    /// The relay, the partition workers, telemetry across nodes and routed commands.
    fn cluster(&mut self, c: &ClusterMetrics) {
        for (name, help, v) in [
            (
                "tare_relay_published_total",
                "Events this node's relay published to JetStream (acknowledged).",
                c.relayed,
            ),
            (
                "tare_relay_duplicates_total",
                "Of those, events JetStream already held (deduplicated by event id).",
                c.relay_duplicates,
            ),
            (
                "tare_partition_events_applied_total",
                "Stream events this node's saga and projection workers applied.",
                c.applied,
            ),
            (
                "tare_partition_events_skipped_total",
                "Stream events handed to this node that were applied before (redeliveries).",
                c.skipped,
            ),
            (
                "tare_partition_events_undecodable_total",
                "Stream messages this build could not read (terminated).",
                c.undecodable,
            ),
            (
                "tare_telemetry_published_total",
                "Telemetry records this gateway node published to NATS.",
                c.telemetry_out,
            ),
            ("tare_telemetry_lost_total", "Telemetry records lost before NATS.", c.telemetry_lost),
            (
                "tare_telemetry_ingested_total",
                "Weight samples taken in from other gateway nodes.",
                c.telemetry_in,
            ),
            (
                "tare_commands_routed_total",
                "Device commands this node handed over NATS to the gateway node holding the device.",
                c.commands_routed,
            ),
        ] {
            self.counter(name, help, v);
        }
        self.gauge(
            "tare_relay_leader",
            "1 on the node whose relay publishes the feed now.",
            i64::from(c.relay_leader),
        );
    }
}

#[cfg(test)]
mod stream_tests {
    /// The document's `stream` pattern names exactly the log's aggregate types.
    #[test]
    fn the_stream_pattern_lists_every_aggregate_type() {
        let doc = serde_json::to_value(super::super::openapi_document(tare_platform::Roles::ALL)).unwrap_or_default();
        let params = doc["paths"]["/api/v1/events"]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let pattern = params
            .iter()
            .find(|p| p["name"] == "stream")
            .map(|p| p["schema"]["pattern"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        let mut listed: Vec<&str> = pattern
            .trim_start_matches("^(")
            .split("):")
            .next()
            .unwrap_or_default()
            .split('|')
            .collect();
        let mut types = tare_domain::aggregate_types().to_vec();
        listed.sort_unstable();
        types.sort_unstable();
        assert_eq!(listed, types);
    }
}
