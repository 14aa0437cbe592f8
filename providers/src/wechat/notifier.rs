//! Notification delivery [PAYMENTS.md §1.6, §3]: the envelope with its resource
//! encrypted under the APIv3 key, signed with the platform key over the exact body, POSTed
//! to the merchant's `notify_url` and sent again on the resend schedule until the
//! platform answers 200 or 204 (the same `id` every time). The behaviour's faults
//! (duplicate, reorder, delay, drop) apply here.

use super::clock::rfc3339_china;
use super::sandbox::WechatSandbox;
use super::sign::sign_response;
use super::wire::{encrypt_resource, Envelope};
use crate::sandbox::{now_ms, Sandbox};
use axum::http::HeaderMap;
use std::sync::Arc;
use std::time::Duration;

/// One notification on its way.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    /// Where.
    pub url: String,
    /// The exact body (signed afresh on every attempt, with the same `id`).
    pub body: Vec<u8>,
}

/// What a notification carries, before encryption.
pub(super) struct Event<'a> {
    /// `PAYSCORE.USER_CONFIRM`, …
    pub event_type: &'a str,
    /// Human-readable.
    pub summary: &'a str,
    /// `payscore` | `refund`.
    pub original_type: &'a str,
    /// The order or refund object.
    pub resource: Vec<u8>,
}

impl WechatSandbox {
    /// Sends a notification to `url` (in the background; faults as the behaviour says).
    pub(super) fn notify(&self, url: &str, event: Event<'_>) {
        let faults = self.behaviour().notifications;
        if faults.drop {
            return;
        }
        let envelope = Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            create_time: rfc3339_china(now_ms()),
            event_type: event.event_type.into(),
            resource_type: "encrypt-resource".into(),
            summary: event.summary.into(),
            resource: encrypt_resource(&self.keys.apiv3_key, event.original_type, &event.resource),
        };
        let Ok(body) = serde_json::to_vec(&envelope) else {
            return;
        };
        let delivery = Delivery {
            url: url.to_string(),
            body,
        };
        let (Some(me), Ok(rt)) = (self.handle(), tokio::runtime::Handle::try_current()) else {
            tracing::warn!("wechat sandbox: no runtime to deliver a notification on");
            return;
        };
        let mut batch = vec![delivery];
        if faults.reorder {
            let mut book = self.book();
            match book.held.take() {
                None => {
                    book.held = batch.pop();
                    return;
                }
                Some(held) => batch.push(held),
            }
        }
        let copies = if faults.duplicate { 2 } else { 1 };
        let mut stagger = Duration::ZERO;
        for d in batch {
            for _ in 0..copies {
                rt.spawn(deliver(me.clone(), d.clone(), faults.delay + stagger));
                stagger += Duration::from_millis(40);
            }
        }
    }
}

/// First delivery after `first`, then again on the resend schedule until acknowledged.
async fn deliver(sb: Arc<WechatSandbox>, d: Delivery, first: Duration) {
    tokio::time::sleep(first).await;
    if attempt(&sb, &d).await {
        return;
    }
    for wait in sb.behaviour().resend_schedule {
        tokio::time::sleep(wait).await;
        if attempt(&sb, &d).await {
            return;
        }
    }
    tracing::info!(url = %d.url, "wechat sandbox: notification never acknowledged");
}

/// One POST: acknowledged only by 200 or 204 (anything else, or a timeout, means resend).
async fn attempt(sb: &WechatSandbox, d: &Delivery) -> bool {
    let mut headers = HeaderMap::new();
    sign_response(
        &sb.platform_key,
        &sb.keys.platform.serial_no,
        &d.body,
        now_ms() / 1000,
        &mut headers,
    );
    for url in sb.failover.targets(&d.url) {
        let sent = sb
            .http
            .post(&url)
            .headers(headers.clone())
            .header("Content-Type", "application/json")
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) => return matches!(r.status().as_u16(), 200 | 204),
            Err(e) => tracing::debug!(error = %e, "wechat sandbox: notification not delivered"),
        }
    }
    false
}
