//! The live saga tail [E3]: `GET /api/v1/sagas/tail` as Server-Sent Events, one event per
//! saga step, optionally one cabinet's, order's or shopper's. With `from` (or a
//! reconnecting client's `Last-Event-ID`) it reads the log from there and goes on live:
//! history and live are one cursor over the feed, so the seam has no gap and no repeat.

use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{OperatorOnly, Unauthorized};
use super::{ApiError, ApiState};
use crate::tail::{TailContext, TailStep};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;

/// How long the tail waits for new events before reading again (another node's commits
/// wake no one here).
const POLL: Duration = Duration::from_millis(250);

/// Which steps.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TailQuery {
    /// Only this cabinet's steps (`pk.dn`).
    #[serde(default)]
    cabinet: Option<String>,
    /// Only this order's steps (with its payment's and its door commands').
    #[serde(default)]
    order: Option<String>,
    /// Only this shopper's orders' steps.
    #[serde(default)]
    shopper: Option<String>,
    /// Replay from this feed position (inclusive), then follow; without it, only new
    /// steps. A reconnecting client's `Last-Event-ID` takes precedence.
    #[serde(default)]
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    from: Option<i64>,
}

impl TailQuery {
    fn keeps(&self, s: &TailStep) -> bool {
        let is = |want: &Option<String>, got: &Option<String>| want.is_none() || want == got;
        is(&self.cabinet, &s.cabinet) && is(&self.order, &s.order_id) && is(&self.shopper, &s.shopper_id)
    }
}

/// The live saga tail.
///
/// Server-Sent Events, one per saga step: `id:` the feed position, `event: step`,
/// `data:` JSON `{position, at, order_id, cabinet, shopper_id, step, detail,
/// correlation_id}`. With `from` it replays the log from that position first, then
/// follows live, with no gap and no repeat at the seam.
#[utoipa::path(
    get,
    path = "/api/v1/sagas/tail",
    tag = "audit",
    operation_id = "tailSagas",
    security(("operatorBearer" = [])),
    params(TailQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this position (what an SSE client sends when it reconnects).")),
    responses(
        (status = 200, description = "An endless `text/event-stream` of steps.", content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 422, description = "`invalid_field`: `from` (not a position), `Last-Event-ID`, or `query` (an unknown parameter).", body = ErrorBody),
    )
)]
pub(super) async fn tail(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    q: Result<Query<TailQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be a feed position"))?,
        ),
        None => None,
    };
    if q.from.is_some_and(|f| f < 1) {
        return Err(ApiError::invalid("from", "must be a feed position (1 or more)"));
    }
    let after = match (resume, q.from) {
        (Some(r), _) => r,
        (None, Some(f)) => f - 1,
        (None, None) => s.platform.feed_head().await?,
    };
    let state = (s, q, after, TailContext::default(), VecDeque::<Event>::new());
    let stream = futures::stream::unfold(state, |(s, q, mut after, mut ctx, mut ready)| async move {
        loop {
            if let Some(e) = ready.pop_front() {
                return Some((Ok(e), (s, q, after, ctx, ready)));
            }
            let batch = match s.platform.events_after(after, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "saga tail: reading the feed failed; retrying");
                    Vec::new()
                }
            };
            if batch.is_empty() {
                s.platform.wait_for_events(POLL).await;
                continue;
            }
            for ev in &batch {
                after = ev.position;
                let platform = s.platform.clone();
                let step = ctx.step(ev, |order| async move { platform.order_place(&order).await }).await;
                if let Some(step) = step.filter(|st| q.keeps(st)) {
                    let data = serde_json::to_string(&step).unwrap_or_default();
                    ready.push_back(Event::default().id(step.position.to_string()).event("step").data(data));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
