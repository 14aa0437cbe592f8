//! What both sandboxes share: the behaviours tests, `tare sim` and the demo turn on
//! [issue 10 §4], the ledger of what each sandbox collected and refunded (the ground truth
//! "never charged twice" is checked against), and the [`Sandbox`] handle the platform
//! mounts and drives.

use std::sync::Arc;
use std::time::Duration;
use tare_domain::{Cents, ProviderKind, UnixMs};

/// How a sandbox misbehaves, on demand. The default is a provider on a good day.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Open orders a shopper may have at once before a create is refused as a risk
    /// failure (the providers publish no number; PAYMENTS.md §0).
    pub max_pending_per_shopper: usize,
    /// Refuse every create as a risk failure ("综合评估不通过").
    pub reject_risk: bool,
    /// Deductions that fail (insufficient funds) before one succeeds, per order.
    pub fail_collections: u32,
    /// Refunds that fail for good before one goes through, across the sandbox (WeChat:
    /// `CLOSED` after `PROCESSING`, notified as `REFUND.CLOSED`; Alipay: refused with
    /// `ACQ.SELLER_BALANCE_NOT_ENOUGH`). Counted down as they fail.
    pub fail_refunds: u32,
    /// Calls answered with a system error (WeChat 500 `SYSTEM_ERROR`, Alipay `20000`)
    /// before the real answer, per order: the adapter must query or retry.
    pub system_errors: u32,
    /// Every API answer waits this long first (beyond the adapter's timeout: the outcome
    /// is unknown and the platform must find out).
    pub slow_answers: Duration,
    /// How notifications go wrong.
    pub notifications: NotificationFaults,
    /// When an unacknowledged notification is sent again (WeChat: 15 s, 15 s, 30 s, 3 m, …;
    /// Alipay: 4 m, 10 m, 10 m, 1 h, …). Tests shorten it.
    pub resend_schedule: Vec<Duration>,
    /// WeChat only: when a failed automatic deduction is tried again (unpublished;
    /// PAYMENTS.md §0 makes it configurable).
    pub deduction_schedule: Vec<Duration>,
}

/// How notifications go wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationFaults {
    /// Each is sent twice.
    pub duplicate: bool,
    /// A notification is held back until the next one has gone (they arrive out of order).
    pub reorder: bool,
    /// Each waits this long before its first delivery.
    pub delay: Duration,
    /// None arrives at all (the platform must query).
    pub drop: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            max_pending_per_shopper: 3,
            reject_risk: false,
            fail_collections: 0,
            fail_refunds: 0,
            system_errors: 0,
            slow_answers: Duration::ZERO,
            notifications: NotificationFaults::default(),
            resend_schedule: vec![
                Duration::from_secs(15),
                Duration::from_secs(15),
                Duration::from_secs(30),
                Duration::from_secs(180),
                Duration::from_secs(600),
            ],
            deduction_schedule: vec![Duration::from_millis(200), Duration::from_secs(1), Duration::from_secs(5)],
        }
    }
}

/// One collection a sandbox made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Our order id.
    pub order_id: String,
    /// The provider's transaction.
    pub transaction_id: String,
    /// Amount.
    pub amount: Cents,
    /// When (Unix ms).
    pub at: UnixMs,
}

/// One refund a sandbox accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// Our order id.
    pub order_id: String,
    /// Our refund id (`out_refund_no` / `out_request_no`).
    pub refund_id: String,
    /// Amount.
    pub amount: Cents,
    /// When (Unix ms).
    pub at: UnixMs,
    /// Whether the money went back (false while WeChat is still processing it).
    pub succeeded: bool,
}

/// Why the shopper's confirm tap was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// No such order.
    #[error("authorization not found")]
    NotFound,
    /// The order does not wait for a confirmation (any more).
    #[error("authorization is not awaiting confirmation")]
    NotAwaiting,
}

/// Where else a notification may go when its `notify_url` does not answer at all (the
/// node that asked was killed): the same path on the cluster's other nodes, as a load
/// balancer in front of them would do. An answer that refuses (401, `fail`) is an answer:
/// it is not sent elsewhere.
#[derive(Debug, Default)]
pub struct Failover(std::sync::Mutex<Vec<String>>);

impl Failover {
    /// Sets the other nodes' base URLs (`http://host:port`).
    pub fn set(&self, bases: &[String]) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            bases.iter().map(|b| b.trim_end_matches('/').to_string()).collect();
    }

    /// `url` first, then its path and query on every other base.
    pub fn targets(&self, url: &str) -> Vec<String> {
        let mut out = vec![url.to_string()];
        let Ok(parsed) = reqwest::Url::parse(url) else { return out };
        let origin = parsed.origin().ascii_serialization();
        let rest = &url[origin.len().min(url.len())..];
        for base in self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            if *base != origin {
                out.push(format!("{base}{rest}"));
            }
        }
        out
    }
}

/// A provider sandbox, as the platform mounts and drives it.
pub trait Sandbox: Send + Sync + 'static {
    /// Which provider it plays.
    fn kind(&self) -> ProviderKind;
    /// Its HTTP routes, to be nested under `/sandbox/{kind}`: the provider's API (as the
    /// adapter calls it) and its bill files. The shopper's tap is not among them: the
    /// platform serves it (a documented endpoint of its API) through [`Sandbox::confirm`].
    fn api_router(self: Arc<Self>) -> axum::Router;
    /// [`Sandbox::api_router`] and `POST /authorizations/{provider_order_ref}/confirm` (the
    /// shopper's tap): the sandbox on its own (`tare sandbox`, the providers' tests).
    fn router(self: Arc<Self>) -> axum::Router {
        let me = self.clone();
        self.api_router().route(
            "/authorizations/{provider_order_ref}/confirm",
            axum::routing::post(move |axum::extract::Path(no): axum::extract::Path<String>| async move {
                match me.confirm(&no) {
                    Ok(()) => axum::http::StatusCode::NO_CONTENT,
                    Err(ConfirmError::NotFound) => axum::http::StatusCode::NOT_FOUND,
                    Err(ConfirmError::NotAwaiting) => axum::http::StatusCode::CONFLICT,
                }
            }),
        )
    }
    /// The shopper's tap on "confirm" in the provider's app.
    fn confirm(&self, provider_order_ref: &str) -> Result<(), ConfirmError>;
    /// Every collection so far.
    fn charges(&self) -> Vec<Charge>;
    /// Every refund so far.
    fn refunds(&self) -> Vec<Refund>;
    /// The behaviour now.
    fn behaviour(&self) -> Behaviour;
    /// Changes the behaviour (takes effect for the next call).
    fn set_behaviour(&self, b: Behaviour);
    /// Where notifications go when their `notify_url` does not answer (see [`Failover`]).
    fn set_failover(&self, bases: &[String]);
}

/// Now, Unix ms (a sandbox is a provider: it has its own clock).
pub fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The provider's local date (China, UTC+8) of `at`, `YYYY-MM-DD`: the day a bill puts
/// a payment in.
pub fn china_date(at: UnixMs) -> String {
    tare_domain::reconciliation::dates::china_date(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_tries_the_same_path_on_the_other_nodes() {
        let f = Failover::default();
        assert_eq!(
            f.targets("http://127.0.0.1:1/callbacks/wechat"),
            vec!["http://127.0.0.1:1/callbacks/wechat"]
        );
        f.set(&["http://127.0.0.1:1/".into(), "http://127.0.0.1:2".into()]);
        assert_eq!(
            f.targets("http://127.0.0.1:1/callbacks/alipay?x=1"),
            vec!["http://127.0.0.1:1/callbacks/alipay?x=1", "http://127.0.0.1:2/callbacks/alipay?x=1"]
        );
    }

    #[test]
    fn bills_use_the_china_date() {
        assert_eq!(china_date(0), "1970-01-01");
        // 2026-12-01 16:30 UTC is 2026-12-02 00:30 in Beijing.
        assert_eq!(china_date(1_796_142_600_000), "2026-12-02");
        assert_eq!(china_date(1_796_142_600_000 - 3_600_000), "2026-12-01");
        assert_eq!(china_date(951_782_400_000), "2000-02-29");
    }
}
