//! The HTTP device API [D3] for cabinets without MQTT (PROTOCOL.md): signed uplinks at
//! `POST /device/v1/up/{kind}` and a long poll for commands at `GET /device/v1/down/cmd`.
//!
//! Every request carries `X-Tare-Device`, `X-Tare-Timestamp` and `X-Tare-Signature` (the
//! HMAC of `{ts}\n{METHOD}\n{path}\n{hex sha256 of the body}`). PROTOCOL.md says `path`;
//! we read it as the path without the query string and, so that firmware written to the
//! other reading also works, accept a signature over the path with its query too.
//!
//! An HTTP device counts as connected while it polls: its first poll attaches it to the
//! hub (so door commands reach it), and a device that has not polled for
//! [`POLL_PRESENCE_MS`] is detached, so no command waits for an absent device [B7].

use super::ApiState;
use crate::rate::{Bucket, RateLimit};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare_domain::{CabinetId, UnixMs};
use tare_platform::devices::{IngestError, IngestOutcome};
use tare_protocol::signing::{check_skew, http_string_to_sign, verify, DEVICE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use tare_protocol::{CommandMsg, Downlink, DownlinkKind, ProtocolError, TimeReply, MAX_PAYLOAD};

/// A device that has not polled for this long is detached (it no longer receives
/// commands, and the platform records it offline).
pub const POLL_PRESENCE_MS: i64 = 90_000;
/// The longest long poll.
pub const MAX_WAIT_S: u64 = 60;

/// Why a device request was refused; each has its status from PROTOCOL.md and is counted.
#[derive(Debug, thiserror::Error)]
pub enum DeviceApiError {
    /// 400: the body or a parameter breaks the contract.
    #[error("{message}")]
    BadRequest {
        /// Metric label.
        reason: &'static str,
        /// The field at fault, if one.
        field: Option<String>,
        /// Why.
        message: String,
    },
    /// 401: missing or wrong signature headers, stale timestamp, unknown or disabled device.
    #[error("{message}")]
    Unauthorized {
        /// Metric label.
        reason: &'static str,
        /// Why.
        message: String,
    },
    /// 413: over 64 KiB.
    #[error("body exceeds {MAX_PAYLOAD} bytes")]
    TooLarge,
    /// 429: the device is over its rate.
    #[error("rate limited; retry after {0:?}")]
    RateLimited(Duration),
    /// 503: the platform could not record it; the device should resend.
    #[error("{0}")]
    Unavailable(String),
}

impl DeviceApiError {
    fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest { reason, .. } | Self::Unauthorized { reason, .. } => reason,
            Self::TooLarge => "too_large",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
        }
    }

    fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthorized {
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for DeviceApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::BadRequest { .. } => (StatusCode::BAD_REQUEST, self.reason()),
            Self::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, self.reason()),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let mut body = json!({"error": {"code": code, "message": self.to_string()}});
        if let Self::BadRequest { field: Some(f), .. } = &self {
            body["error"]["field"] = json!(f);
        }
        let mut resp = (status, Json(body)).into_response();
        if let Self::RateLimited(wait) = self {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = secs.to_string().parse() {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// One polling device's link to the hub.
struct HttpLink {
    connection: u64,
    downlinks: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Downlink>>,
    last_poll: AtomicI64,
}

/// State of the HTTP device API.
pub struct DeviceHttp {
    rate: RateLimit,
    buckets: Mutex<HashMap<CabinetId, Bucket>>,
    links: Mutex<HashMap<CabinetId, Arc<HttpLink>>>,
    closing: tokio::sync::watch::Sender<bool>,
    /// Refusals by reason.
    pub refused: crate::counts::ReasonCounts,
}

impl DeviceHttp {
    /// The API's state with `rate` per device.
    pub fn new(rate: RateLimit) -> Self {
        Self {
            rate,
            buckets: Mutex::default(),
            links: Mutex::default(),
            closing: tokio::sync::watch::channel(false).0,
            refused: crate::counts::ReasonCounts::default(),
        }
    }

    /// Ends every waiting long poll (the server is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Refusals so far for `reason`.
    pub fn refused(&self, reason: &str) -> u64 {
        self.refused.get(reason)
    }

    fn count(&self, e: &DeviceApiError) {
        self.refused.add(e.reason());
    }

    /// Prometheus lines.
    pub fn prometheus(&self) -> String {
        self.refused
            .prometheus("tare_device_http_refused_total", "HTTP device requests refused, by reason.")
    }

    fn take_token(&self, device: &CabinetId) -> Result<(), DeviceApiError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(device.clone())
            .or_insert_with(|| Bucket::new(self.rate))
            .take()
            .map_err(DeviceApiError::RateLimited)
    }
}

/// Checks the signed headers against the body and the device's secret, taking a token
/// of the device's rate first (429 past it, before any store read).
async fn authenticate(s: &ApiState, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<CabinetId, DeviceApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(device), Some(ts), Some(sig)) = (header(DEVICE_HEADER), header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER)) else {
        return Err(DeviceApiError::unauthorized(
            "auth_missing_headers",
            "X-Tare-Device, X-Tare-Timestamp and X-Tare-Signature are required",
        ));
    };
    let device =
        CabinetId::parse(device).map_err(|e| DeviceApiError::unauthorized("auth_malformed", format!("X-Tare-Device: {}", e.reason)))?;
    let ts: i64 = ts
        .parse()
        .map_err(|_| DeviceApiError::unauthorized("auth_malformed", "X-Tare-Timestamp must be Unix milliseconds"))?;
    check_skew(ts, s.platform.now_ms()).map_err(|e| DeviceApiError::unauthorized(e.reason(), e.to_string()))?;
    // The device's rate before its secret is read: a flood under one id costs no store
    // read past its allowance.
    s.device_http.take_token(&device)?;
    let secret = s
        .platform
        .device_secret(&device)
        .await
        .map_err(|e| DeviceApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| DeviceApiError::unauthorized("auth_unknown_device", format!("unknown or disabled device {device}")))?;
    let path_only = http_string_to_sign(ts, method.as_str(), uri.path(), body);
    let with_query = uri
        .path_and_query()
        .map(|pq| http_string_to_sign(ts, method.as_str(), pq.as_str(), body));
    let ok = verify(&secret, &path_only, sig) || with_query.is_some_and(|m| verify(&secret, &m, sig));
    if !ok {
        return Err(DeviceApiError::unauthorized("auth_bad_signature", "bad signature"));
    }
    // Usable once: a captured request replayed while its timestamp is still fresh would
    // deliver its uplink again or drain the device's commands.
    let fresh_until = ts.saturating_add(tare_protocol::signing::MAX_CLOCK_SKEW_MS.abs());
    let first = s
        .platform
        .use_device_signature(&sig.to_ascii_lowercase(), fresh_until)
        .await
        .map_err(|e| DeviceApiError::Unavailable(e.to_string()))?;
    if !first {
        return Err(DeviceApiError::unauthorized(
            "auth_replayed",
            "this signed request was served before",
        ));
    }
    Ok(device)
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, DeviceApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_PAYLOAD) {
        return Err(DeviceApiError::TooLarge);
    }
    axum::body::to_bytes(body, MAX_PAYLOAD).await.map_err(|_| DeviceApiError::TooLarge)
}

/// Send an uplink.
///
/// `POST /device/v1/up/{kind}` with the same JSON body as the MQTT uplink topic of that
/// kind (PROTOCOL.md), signed with the device secret. Over 64 KiB is 413 unread.
#[utoipa::path(
    post,
    path = "/device/v1/up/{kind}",
    tag = "device",
    operation_id = "deviceUplink",
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceSignature" = [])),
    params(super::device_schema::UplinkPath),
    request_body(content = Object, description = "The uplink's JSON as PROTOCOL.md gives it for `kind` (`id`, `seq`, `ts` and the kind's fields).", content_type = "application/json"),
    responses(
        (status = 200, description = "`kind` = `time`: the time-sync reply.", body = super::device_schema::TimeReplyBody),
        (status = 202, description = "Recorded (or a duplicate, dropped).", body = super::device_schema::UplinkAccepted),
        (status = 400, description = "The body or `kind` breaks the contract; `code` is the reason (e.g. `unknown_kind`, `invalid`), `field` the field at fault if one.", body = super::ErrorBody),
        (status = 401, description = "Missing or malformed signature headers, stale timestamp, bad signature, unknown or disabled device; `code` is the reason (e.g. `auth_missing_headers`, `auth_bad_signature`).", body = super::ErrorBody),
        (status = 413, description = "`too_large`: the body is over 64 KiB.", body = super::ErrorBody),
        (status = 429, description = "`rate_limited`: over the device's rate.", body = super::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`unavailable`: the platform could not record it; resend.", body = super::ErrorBody),
    )
)]
pub(super) async fn uplink(
    State(s): State<Arc<ApiState>>,
    Path(kind): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_at = s.platform.now_ms();
    match handle_uplink(&s, &kind, &method, &uri, &headers, body, received_at).await {
        Ok(r) => r,
        Err(e) => {
            s.device_http.count(&e);
            tracing::warn!(kind, error = %e, "device http request refused");
            e.into_response()
        }
    }
}

async fn handle_uplink(
    s: &ApiState,
    kind: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    received_at: UnixMs,
) -> Result<Response, DeviceApiError> {
    let bytes = read_body(headers, body).await?;
    let device = authenticate(s, method, uri, headers, &bytes).await?;
    if kind == "status" {
        // The last will is an MQTT mechanism; an HTTP device has no connection to lose.
        return Err(DeviceApiError::BadRequest {
            reason: "unknown_kind",
            field: None,
            message: "`status` is the MQTT last will; HTTP devices do not send it".into(),
        });
    }
    let outcome = s.platform.devices().ingest(&device, kind, &bytes).await.map_err(|e| match e {
        IngestError::Protocol(p) => DeviceApiError::BadRequest {
            reason: p.reason(),
            field: match &p {
                ProtocolError::Invalid { field, .. } => Some(field.clone()),
                _ => None,
            },
            message: p.to_string(),
        },
        IngestError::UnknownDevice(d) => DeviceApiError::unauthorized("auth_unknown_device", format!("unknown device {d}")),
        IngestError::Store(e) => DeviceApiError::Unavailable(e),
    })?;
    if kind == "time" {
        // The reply goes back in the response (an HTTP device has no down/time topic).
        let device_send_ts = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["device_send_ts"].as_i64())
            .unwrap_or_default();
        let reply = TimeReply {
            device_send_ts,
            server_recv_ts: received_at,
            server_send_ts: s.platform.now_ms(),
        };
        return Ok((StatusCode::OK, Json(reply)).into_response());
    }
    let status = match outcome {
        IngestOutcome::Accepted => "accepted",
        IngestOutcome::Duplicate => "duplicate",
    };
    Ok((StatusCode::ACCEPTED, Json(json!({"status": status}))).into_response())
}

/// Query of the long poll.
#[derive(Debug, serde::Deserialize)]
pub(super) struct PollQuery {
    wait_s: Option<String>,
}

/// Long-poll for commands.
///
/// `GET /device/v1/down/cmd?wait_s=30`: pending commands, oldest first, as
/// `{"commands": [...]}`; waits up to `wait_s` (0–60, default 30) for the first one. A
/// device counts as connected while it polls.
#[utoipa::path(
    get,
    path = "/device/v1/down/cmd",
    tag = "device",
    operation_id = "devicePoll",
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceSignature" = [])),
    params(super::device_schema::PollParams),
    responses(
        (status = 200, description = "The pending commands (none if none came within the wait).", body = super::device_schema::Commands),
        (status = 400, description = "`invalid` on `wait_s` (not an integer from 0 to 60) or on `query` (a query string that does not parse, e.g. `wait_s` twice).", body = super::ErrorBody),
        (status = 401, description = "Missing or malformed signature headers, stale timestamp, bad signature, unknown or disabled device; `code` is the reason.", body = super::ErrorBody),
        (status = 413, description = "`too_large`: a body over 64 KiB.", body = super::ErrorBody),
        (status = 429, description = "`rate_limited`: over the device's rate.", body = super::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`unavailable`: the platform could not check the device's credentials.", body = super::ErrorBody),
    )
)]
pub(super) async fn poll(
    State(s): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Response {
    // A query string that does not parse is the device's 400 (JSON, after the signature
    // check like any other), not axum's plain-text rejection.
    let q = q.map(|Query(q)| q).map_err(|e| e.body_text());
    match handle_poll(&s, &method, &uri, &headers, q, body).await {
        Ok(r) => r,
        Err(e) => {
            s.device_http.count(&e);
            tracing::warn!(error = %e, "device http poll refused");
            e.into_response()
        }
    }
}

async fn handle_poll(
    s: &ApiState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    q: Result<PollQuery, String>,
    body: Body,
) -> Result<Response, DeviceApiError> {
    let bytes = read_body(headers, body).await?;
    let device = authenticate(s, method, uri, headers, &bytes).await?;
    let q = q.map_err(|message| DeviceApiError::BadRequest {
        reason: "invalid",
        field: Some("query".into()),
        message,
    })?;
    let wait_s = match q.wait_s.as_deref() {
        None => 30,
        Some(w) => match w.parse::<u64>() {
            Ok(n) if n <= MAX_WAIT_S => n,
            _ => {
                return Err(DeviceApiError::BadRequest {
                    reason: "invalid",
                    field: Some("wait_s".into()),
                    message: format!("wait_s must be an integer from 0 to {MAX_WAIT_S}"),
                })
            }
        },
    };
    let now = s.platform.now_ms();
    let link = {
        let mut links = s.device_http.links.lock().unwrap_or_else(|p| p.into_inner());
        let current = links
            .get(&device)
            .filter(|l| s.platform.devices().is_current(&device, l.connection))
            .cloned();
        match current {
            Some(l) => l,
            None => {
                let c = s.platform.devices().attach(&device);
                let l = Arc::new(HttpLink {
                    connection: c.id,
                    downlinks: tokio::sync::Mutex::new(c.downlinks),
                    last_poll: AtomicI64::new(now),
                });
                links.insert(device.clone(), l.clone());
                l
            }
        }
    };
    link.last_poll.store(now, Ordering::Relaxed);
    let mut rx = link.downlinks.lock().await;
    // Only commands go out here (time replies go back in the up/time response), and an
    // expired command is never handed out: it must not act late [B7].
    let usable = |d: Downlink| -> Option<CommandMsg> {
        let c = (d.kind == DownlinkKind::Cmd)
            .then(|| serde_json::from_slice::<CommandMsg>(&d.payload).ok())
            .flatten()?;
        (c.expires_at >= s.platform.now_ms()).then_some(c)
    };
    let mut commands = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_s);
    let mut closing = s.device_http.closing.subscribe();
    loop {
        while let Ok(d) = rx.try_recv() {
            commands.extend(usable(d));
        }
        if !commands.is_empty() || wait_s == 0 {
            break;
        }
        if *closing.borrow() {
            break;
        }
        tokio::select! {
            got = tokio::time::timeout_at(deadline, rx.recv()) => match got {
                Ok(Some(d)) => commands.extend(usable(d)),
                // Replaced by a newer connection (it moved to MQTT), or waited long enough.
                Ok(None) | Err(_) => break,
            },
            _ = closing.changed() => break,
        }
    }
    link.last_poll.store(s.platform.now_ms(), Ordering::Relaxed);
    Ok((StatusCode::OK, Json(json!({ "commands": commands }))).into_response())
}

/// Detaches HTTP devices that stopped polling, and forgets served signatures past the
/// skew window; run periodically.
pub async fn reap_absent(s: &ApiState) {
    if let Err(e) = s.platform.prune_device_signatures().await {
        tracing::warn!(error = %e, "pruning served device signatures failed");
    }
    let now = s.platform.now_ms();
    let gone: Vec<(CabinetId, u64)> = {
        let mut links = s.device_http.links.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<_> = links
            .iter()
            .filter(|(_, l)| now - l.last_poll.load(Ordering::Relaxed) > POLL_PRESENCE_MS)
            .map(|(d, l)| (d.clone(), l.connection))
            .collect();
        for (d, _) in &gone {
            links.remove(d);
        }
        gone
    };
    for (device, connection) in gone {
        if let Err(e) = s.platform.devices().detach(&device, connection, true).await {
            tracing::warn!(%device, error = %e, "could not record an HTTP device as gone");
        }
    }
}
