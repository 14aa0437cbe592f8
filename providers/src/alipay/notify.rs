//! How the sandbox sends notifications [PAYMENTS.md §2.5, §3]: a form POST
//! (`application/x-www-form-urlencoded`) signed with Alipay's key over the sorted
//! parameters without `sign` and `sign_type`; acknowledged only by the body `success`
//! (exactly those 7 bytes); otherwise sent again on `Behaviour::resend_schedule` with the
//! very same body (same `notify_id`, same `sign`). The behaviour's faults apply: `drop`
//! (never sent), `delay` (before the first try), `duplicate` (sent once more after it was
//! acknowledged), `reorder` (held back until the next one went; see `ops`).

use super::sandbox::AlipaySandbox;
use super::sign::sign_notification;
use std::sync::Arc;
use std::time::Duration;

/// A notification waiting to be sent: where to, and its unsigned parameters.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub url: String,
    pub params: Vec<(String, String)>,
}

impl AlipaySandbox {
    /// Sends a batch in order (first tries one after the other, so a reordered pair
    /// really arrives reordered); an unacknowledged one is resent by a task of its own.
    pub(super) async fn deliver(self: Arc<Self>, batch: Vec<Outgoing>) {
        let b = self.behaviour_now();
        if b.notifications.drop {
            return;
        }
        if !b.notifications.delay.is_zero() {
            tokio::time::sleep(b.notifications.delay).await;
        }
        for o in batch {
            let mut params = o.params;
            sign_notification(&self.alipay_key, &mut params);
            let Ok(body) = serde_urlencoded::to_string(&params) else {
                continue;
            };
            if self.post(&o.url, &body).await {
                if b.notifications.duplicate {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    self.post(&o.url, &body).await;
                }
                continue;
            }
            let me = Arc::clone(&self);
            let (schedule, duplicate) = (b.resend_schedule.clone(), b.notifications.duplicate);
            tokio::spawn(async move { me.resend(o.url, body, schedule, duplicate).await });
        }
    }

    /// Sends the same body again on the schedule until it is acknowledged.
    async fn resend(self: Arc<Self>, url: String, body: String, schedule: Vec<Duration>, duplicate: bool) {
        for wait in schedule {
            tokio::time::sleep(wait).await;
            if self.post(&url, &body).await {
                if duplicate {
                    self.post(&url, &body).await;
                }
                return;
            }
        }
        tracing::warn!(url = %url, "alipay sandbox: notification never acknowledged");
    }

    fn behaviour_now(&self) -> crate::sandbox::Behaviour {
        self.lock().behaviour.clone()
    }

    /// One POST; true when the answer's body is exactly `success`.
    async fn post(&self, url: &str, body: &str) -> bool {
        let targets = self.failover.targets(url);
        for url in targets {
            let sent = self
                .http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
                .body(body.to_string())
                .send()
                .await;
            if let Ok(r) = sent {
                return r.bytes().await.is_ok_and(|b| &b[..] == b"success");
            }
        }
        false
    }
}
