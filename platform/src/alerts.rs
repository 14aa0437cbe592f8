//! Where alerts go [alerts]: a webhook (each alert POSTed as JSON, the alert id in the
//! `Idempotency-Key` header; anything but a 2xx is a failure the saga retries with
//! backoff), or — on the embedded default and in tests — the recording sandbox, an
//! SMS-style outbox that keeps what was sent for `GET /sandbox/alerts`. Either sits
//! behind a rate limit: alerts over it wait for the next minute, never dropped.

use async_trait::async_trait;
use std::sync::Mutex;
use std::time::Duration;
use tare_domain::UnixMs;
use tare_sagas::alerts::Alert;
use tare_sagas::ports::{AlertError, AlertSink};

/// The recording sandbox: keeps every alert sent, once per id.
#[derive(Debug, Default)]
pub struct AlertOutbox {
    sent: Mutex<Vec<Alert>>,
}

impl AlertOutbox {
    /// What was sent, oldest first.
    pub fn sent(&self) -> Vec<Alert> {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl AlertSink for AlertOutbox {
    async fn send(&self, alert: &Alert, _now: UnixMs) -> Result<(), AlertError> {
        let mut sent = self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !sent.iter().any(|a| a.alert_id == alert.alert_id) {
            sent.push(alert.clone());
        }
        Ok(())
    }
}

/// A shared handle on the outbox, as a sink.
pub struct SharedOutbox(pub std::sync::Arc<AlertOutbox>);

#[async_trait]
impl AlertSink for SharedOutbox {
    async fn send(&self, alert: &Alert, now: UnixMs) -> Result<(), AlertError> {
        self.0.send(alert, now).await
    }
}

/// Alerts POSTed to an operator's webhook.
pub struct WebhookSink {
    url: String,
    http: reqwest::Client,
}

impl WebhookSink {
    /// A sink posting to `url`, each request bounded by `timeout`.
    pub fn new(url: String, timeout: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self { url, http }
    }
}

#[async_trait]
impl AlertSink for WebhookSink {
    async fn send(&self, alert: &Alert, _now: UnixMs) -> Result<(), AlertError> {
        let res = self
            .http
            .post(&self.url)
            .header("Idempotency-Key", &alert.alert_id)
            .json(alert)
            .send()
            .await
            .map_err(|e| AlertError::Failed(e.without_url().to_string()))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(AlertError::Failed(format!("webhook answered {}", res.status())))
        }
    }
}

/// At most `per_minute` alerts a minute through `inner`; the rest wait for the next.
pub struct RateLimited<S> {
    inner: S,
    per_minute: u32,
    window: Mutex<(UnixMs, u32)>,
}

impl<S> RateLimited<S> {
    /// `inner`, limited.
    pub fn new(inner: S, per_minute: u32) -> Self {
        Self {
            inner,
            per_minute: per_minute.max(1),
            window: Mutex::new((0, 0)),
        }
    }

    /// The sink behind the limit.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn take(&self, now: UnixMs) -> Result<(), AlertError> {
        let minute = now.div_euclid(60_000);
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.0 != minute {
            *w = (minute, 0);
        }
        if w.1 >= self.per_minute {
            return Err(AlertError::RateLimited((minute + 1) * 60_000));
        }
        w.1 += 1;
        Ok(())
    }
}

#[async_trait]
impl<S: AlertSink> AlertSink for RateLimited<S> {
    async fn send(&self, alert: &Alert, now: UnixMs) -> Result<(), AlertError> {
        self.take(now)?;
        self.inner.send(alert, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str) -> Alert {
        Alert {
            alert_id: id.into(),
            kind: "device_offline".into(),
            cabinet: Some("pk.c1".into()),
            subject: "pk.c1".into(),
            text: "cabinet pk.c1 went offline".into(),
            at: 1,
        }
    }

    #[tokio::test]
    async fn over_the_rate_an_alert_waits_for_the_next_minute_and_the_outbox_keeps_each_once() {
        let sink = RateLimited::new(AlertOutbox::default(), 2);
        let t = 120_000 + 5;
        assert_eq!(sink.send(&alert("a"), t).await, Ok(()));
        assert_eq!(sink.send(&alert("a"), t).await, Ok(()), "a repeat is taken (and kept once)");
        assert_eq!(sink.send(&alert("b"), t).await, Err(AlertError::RateLimited(180_000)));
        assert_eq!(sink.send(&alert("b"), 180_000).await, Ok(()), "the next minute");
        let ids: Vec<String> = sink.inner().sent().into_iter().map(|a| a.alert_id).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
