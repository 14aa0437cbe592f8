//! The auditor's feed, metrics and the OpenAPI document [E2, X3].

use super::extract::Operator;
use super::{ApiError, ApiState};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

pub(super) async fn events(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after", "must not be negative"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let events = s
        .platform
        .feed
        .read_after(after, limit)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let next = events.last().map_or(after, |e| e.position);
    Ok(Json(json!({"events": events, "next": next})))
}

pub(super) async fn metrics(State(s): State<Arc<ApiState>>) -> Result<impl IntoResponse, ApiError> {
    let p = &s.platform;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, v: i64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    let head = p.feed.head().await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let jobs = p.jobs.counts().await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let saga = p
        .jobs
        .checkpoint(tare_platform::runner::ORDER_SAGA)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let views = p
        .jobs
        .checkpoint(tare_platform::views::PROJECTIONS)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    gauge("tare_feed_head_position", "Highest position in the global feed.", "gauge", head);
    gauge(
        "tare_saga_lag_events",
        "Feed events the order saga has not decided yet.",
        "gauge",
        head - saga,
    );
    gauge(
        "tare_projection_lag_events",
        "Feed events the projections have not applied yet.",
        "gauge",
        head - views,
    );
    gauge(
        "tare_effects_pending",
        "Scheduled effects and timers not yet done.",
        "gauge",
        jobs.pending,
    );
    gauge("tare_effects_dead", "Effects given up (dead letters).", "gauge", jobs.dead);
    let c = &p.effects.counters;
    gauge(
        "tare_effects_done_total",
        "Effects completed by this process.",
        "counter",
        c.done.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "tare_effects_retried_total",
        "Transient effect failures.",
        "counter",
        c.retried.load(Ordering::Relaxed) as i64,
    );
    let d = &p.hub.counters;
    gauge(
        "tare_device_uplinks_accepted_total",
        "Device messages accepted.",
        "counter",
        d.accepted.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "tare_device_uplinks_duplicate_total",
        "Device messages dropped as duplicates.",
        "counter",
        d.duplicates.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "tare_device_downlinks_total",
        "Commands and replies sent to devices.",
        "counter",
        d.sent.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "tare_callbacks_applied_total",
        "Provider callbacks applied.",
        "counter",
        s.counters.callbacks_applied.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "tare_callbacks_refused_total",
        "Provider callbacks refused.",
        "counter",
        s.counters.callbacks_refused.load(Ordering::Relaxed) as i64,
    );
    let now = p.clock.now_ms();
    let health = p.hub.liveness.health(now);
    gauge(
        "tare_liveness_healthy",
        "1 while heartbeat intake is above the watermark and ingest keeps up; 0 while silent devices show unknown [B1].",
        "gauge",
        i64::from(health.healthy),
    );
    gauge(
        "tare_liveness_heartbeats_received_window",
        "Heartbeats received in the liveness window.",
        "gauge",
        health.received as i64,
    );
    gauge(
        "tare_liveness_heartbeats_expected_window",
        "Heartbeats the tracked fleet should have sent in the window.",
        "gauge",
        health.expected.round() as i64,
    );
    gauge(
        "tare_liveness_ingest_lag_ms",
        "Median age of heartbeats at arrival.",
        "gauge",
        health.ingest_lag_ms,
    );
    gauge(
        "tare_liveness_tracked",
        "Devices whose heartbeats are tracked.",
        "gauge",
        p.hub.liveness.tracked() as i64,
    );
    gauge(
        "tare_liveness_undecided",
        "Devices silent while the platform is unhealthy (status unknown).",
        "gauge",
        p.hub.liveness.undecided_count() as i64,
    );
    gauge(
        "tare_liveness_silent_alerts_total",
        "Devices recorded offline for silence (operator alerts).",
        "counter",
        p.hub.counters.silent_alerts.load(Ordering::Relaxed) as i64,
    );
    if let Some(n) = &p.nats {
        let c = &n.counters;
        for (name, help, v) in [
            (
                "tare_relay_published_total",
                "Events this node's relay published to JetStream (acknowledged).",
                &c.relayed,
            ),
            (
                "tare_relay_duplicates_total",
                "Of those, events JetStream already held (deduplicated by event id).",
                &c.relay_duplicates,
            ),
            (
                "tare_partition_events_applied_total",
                "Stream events this node's saga and projection workers applied.",
                &c.applied,
            ),
            (
                "tare_partition_events_skipped_total",
                "Stream events handed to this node that were applied before (redeliveries).",
                &c.skipped,
            ),
            (
                "tare_partition_events_undecodable_total",
                "Stream messages this build could not read (terminated).",
                &c.undecodable,
            ),
            (
                "tare_telemetry_published_total",
                "Telemetry records this gateway node published to NATS.",
                &c.telemetry_out,
            ),
            (
                "tare_telemetry_lost_total",
                "Telemetry records lost before NATS.",
                &c.telemetry_lost,
            ),
            (
                "tare_telemetry_ingested_total",
                "Weight samples taken in from other gateway nodes.",
                &c.telemetry_in,
            ),
            (
                "tare_commands_routed_total",
                "Device commands this node handed over NATS to the gateway node holding the device.",
                &c.commands_routed,
            ),
        ] {
            gauge(name, help, "counter", v.load(Ordering::Relaxed) as i64);
        }
        let leader = match &p.relay {
            Some(r) => r.is_leader().await,
            None => false,
        };
        gauge(
            "tare_relay_leader",
            "1 on the node whose relay publishes the feed now.",
            "gauge",
            i64::from(leader),
        );
    }
    let _ = writeln!(
        out,
        "# HELP tare_device_uplinks_rejected_total Device messages refused, by reason.\n# TYPE tare_device_uplinks_rejected_total counter"
    );
    for (reason, n) in d.rejected.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(out, "tare_device_uplinks_rejected_total{{reason=\"{reason}\"}} {n}");
    }
    out.push_str(&s.device_http.prometheus());
    if let Some(m) = &s.mqtt {
        out.push_str(&m.counters.prometheus());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

/// The OpenAPI document, kept beside the code in `docs/openapi.json`.
pub(super) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/openapi.json"),
    )
}
