//! The sandbox confirm endpoint and provider callbacks [P2, P3]. A callback is verified
//! (timestamp window, HMAC signature) before anything is read from it; an unsigned or
//! forged one gets 401 and changes nothing. Applying a callback is idempotent.

use super::extract::parse_json;
use super::{ApiError, ApiState};
use crate::sandbox::{verify, SandboxNotification, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tare_domain::{Cents, ProviderKind};

fn provider(name: &str) -> Result<ProviderKind, ApiError> {
    ProviderKind::parse("provider", name).map_err(|_| ApiError::NotFound {
        code: "provider_not_found",
        message: format!("no provider `{name}`"),
    })
}

pub(super) async fn sandbox_confirm(
    State(s): State<Arc<ApiState>>,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = provider(&name)?;
    let sandbox = s.sandboxes.get(&kind).ok_or_else(|| ApiError::NotFound {
        code: "sandbox_not_found",
        message: format!("no {name} sandbox"),
    })?;
    sandbox.confirm(&reference).map_err(|e| match e {
        crate::sandbox::ConfirmError::NotFound => ApiError::NotFound {
            code: "authorization_not_found",
            message: e.to_string(),
        },
        crate::sandbox::ConfirmError::NotAwaiting => ApiError::Conflict {
            code: "authorization_state",
            message: e.to_string(),
        },
    })?;
    Ok(Json(json!({"confirmed": reference})))
}

/// Callbacks older or newer than this are refused (replays).
const CALLBACK_WINDOW_MS: i64 = 5 * 60 * 1000;

pub(super) async fn callback(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let refused = |e: ApiError| {
        s.counters.callbacks_refused.fetch_add(1, Ordering::Relaxed);
        e
    };
    let kind = provider(&name).map_err(refused)?;
    let key = s.callback_keys.get(&kind).ok_or_else(|| {
        refused(ApiError::NotFound {
            code: "provider_not_found",
            message: format!("no {name} callbacks"),
        })
    })?;
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(ts), Some(sig)) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER)) else {
        return Err(refused(ApiError::Unauthorized("unsigned notification".into())));
    };
    let ts_ms: i64 = ts.parse().map_err(|_| refused(ApiError::Unauthorized("bad timestamp".into())))?;
    // Real time, not the platform's (possibly driven) clock: the provider signs with its
    // wall clock.
    let now = tare_sagas::ports::Clock::now_ms(&tare_platform::clock::SystemClock);
    if (now - ts_ms).abs() > CALLBACK_WINDOW_MS {
        return Err(refused(ApiError::Unauthorized("stale timestamp".into())));
    }
    if !verify(key, &ts, &body, &sig) {
        tracing::warn!(provider = %name, "callback with a bad signature refused");
        return Err(refused(ApiError::Unauthorized("bad signature".into())));
    }
    let n: SandboxNotification = parse_json(&body).map_err(refused)?;
    let order_id = n.out_order_no.clone();
    let r = match n.event_type.as_str() {
        "AUTHORIZED" => s.platform.provider_authorized(&order_id, &n.id).await,
        "COLLECTED" => {
            let (Some(txn), Some(amount)) = (n.transaction_id.clone(), n.amount_cents) else {
                return Err(refused(ApiError::invalid(
                    "transaction_id",
                    "COLLECTED needs transaction_id and amount_cents",
                )));
            };
            let amount = Cents::parse("amount_cents", amount).map_err(|e| refused(e.into()))?;
            s.platform.provider_collected(&order_id, &n.id, txn, amount).await
        }
        "COLLECTION_FAILED" => {
            s.platform
                .provider_collection_failed(&order_id, &n.id, n.reason.clone().unwrap_or_default())
                .await
        }
        other => return Err(refused(ApiError::invalid("event_type", format!("unknown event type `{other}`")))),
    };
    r.map_err(|e| refused(e.into()))?;
    s.counters.callbacks_applied.fetch_add(1, Ordering::Relaxed);
    Ok(StatusCode::NO_CONTENT)
}
