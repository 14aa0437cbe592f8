//! The in-process payment sandbox [P3]: one provider simulator behind the same
//! [`PaymentProvider`] trait the real adapters implement, with both authorization modes
//! (confirm-each-time: the shopper confirms at `/sandbox/{provider}/authorizations/{ref}/confirm`;
//! confirm-once: authorized at create) and signed callbacks to `/callbacks/{provider}`
//! that can be configured to arrive twice or late.
//!
//! It keeps a ledger of every collection it made, so tests can prove that no order was
//! charged twice. Idempotent by order id (`out_order_no`), like the real providers.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare_domain::{Cents, ConfirmMode, ProviderKind};
use tare_sagas::ports::{
    AuthorizationCreated, AuthorizationRequest, BillLine, BillLineKind, CollectionOutcome, CollectionRequest, PaymentProvider,
    ProviderError, ProviderOrderStatus, RefundOutcome, RefundRequest,
};

/// Header carrying the callback's signature.
pub const SIGNATURE_HEADER: &str = "x-sandbox-signature";
/// Header carrying the callback's timestamp (Unix ms).
pub const TIMESTAMP_HEADER: &str = "x-sandbox-timestamp";

/// A signed notification the sandbox posts to the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxNotification {
    /// Notification id (the same on redelivery).
    pub id: String,
    /// `AUTHORIZED`, `COLLECTED` or `COLLECTION_FAILED`.
    pub event_type: String,
    /// Our order id.
    pub out_order_no: String,
    /// Transaction id (COLLECTED).
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Amount in cents (COLLECTED).
    #[serde(default)]
    pub amount_cents: Option<i64>,
    /// Failure reason (COLLECTION_FAILED).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `hex(HMAC-SHA256(key, "{timestamp}\n{body}"))`.
pub fn sign(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a callback signature in constant time.
pub fn verify(key: &[u8], timestamp: &str, body: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// How the sandbox behaves (all of it adjustable while running, for tests).
#[derive(Debug, Clone)]
pub struct SandboxBehaviour {
    /// Collections fail this many times per order before succeeding.
    pub fail_collections: u32,
    /// Deliver every callback twice.
    pub duplicate_callbacks: bool,
    /// Delay before delivering callbacks.
    pub callback_delay: Duration,
    /// Collect asynchronously (reply `Pending`, result by callback) like WeChat Pay
    /// Score, instead of synchronously like Alipay's `trade.pay`.
    pub async_collection: bool,
    /// Open authorizations a shopper may have at once (the seeds: 3 WeChat, 1 Alipay).
    pub max_pending_per_shopper: usize,
    /// Report success to the collector but "lose" the reply (it times out), so the
    /// platform must query to learn the outcome.
    pub lose_collect_replies: u32,
}

impl Default for SandboxBehaviour {
    fn default() -> Self {
        Self {
            fail_collections: 0,
            duplicate_callbacks: false,
            callback_delay: Duration::ZERO,
            async_collection: false,
            max_pending_per_shopper: 3,
            lose_collect_replies: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SandboxState {
    AwaitingConfirmation,
    Authorized,
    Collecting,
    Collected { transaction_id: String, amount: Cents },
    CollectionFailed(String),
    Cancelled,
}

#[derive(Debug, Clone)]
struct SandboxOrder {
    shopper_id: String,
    state: SandboxState,
    failures_left: u32,
    lost_replies_left: u32,
    limit: Cents,
}

/// One collection the sandbox made (its "bill").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCharge {
    /// Our order id.
    pub order_id: String,
    /// Amount.
    pub amount: Cents,
    /// Transaction id.
    pub transaction_id: String,
}

/// The sandbox provider.
pub struct SandboxProvider {
    kind: ProviderKind,
    key: Vec<u8>,
    orders: Mutex<HashMap<String, SandboxOrder>>,
    charges: Mutex<Vec<SandboxCharge>>,
    refunds: Mutex<HashMap<String, RefundOutcome>>,
    refund_ledger: Mutex<Vec<(String, Cents)>>,
    behaviour: Mutex<SandboxBehaviour>,
    callback_bases: Mutex<Vec<String>>,
    http: reqwest::Client,
    public_base: Mutex<String>,
}

/// Why a confirm request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// Unknown reference.
    #[error("authorization not found")]
    NotFound,
    /// Not waiting for confirmation.
    #[error("authorization is not awaiting confirmation")]
    NotAwaiting,
}

impl SandboxProvider {
    /// A sandbox acting as `kind`, signing callbacks with `key`.
    pub fn new(kind: ProviderKind, key: &[u8], behaviour: SandboxBehaviour) -> Arc<Self> {
        Arc::new(Self {
            kind,
            key: key.to_vec(),
            orders: Mutex::default(),
            charges: Mutex::default(),
            refunds: Mutex::default(),
            refund_ledger: Mutex::default(),
            behaviour: Mutex::new(behaviour),
            callback_bases: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            public_base: Mutex::new(String::new()),
        })
    }

    /// The key callbacks are signed with (the platform verifies with the same).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Where to post callbacks (`http://host:port`), known once the HTTP server is bound.
    pub fn set_callback_base(&self, base: &str) {
        *lock(&self.callback_bases) = vec![base.trim_end_matches('/').to_string()];
        *lock(&self.public_base) = base.trim_end_matches('/').to_string();
    }

    /// A sandbox run as its own service for a cluster: callbacks go to any of `callbacks`
    /// (the platform's nodes, tried in turn, as a provider's retries would land on
    /// whichever node the load balancer picks), and shoppers confirm at `public_base`.
    pub fn set_addresses(&self, public_base: &str, callbacks: &[String]) {
        *lock(&self.callback_bases) = callbacks.iter().map(|b| b.trim_end_matches('/').to_string()).collect();
        *lock(&self.public_base) = public_base.trim_end_matches('/').to_string();
    }

    /// Changes the behaviour.
    pub fn set_behaviour(&self, b: SandboxBehaviour) {
        *lock(&self.behaviour) = b;
    }

    /// Every collection made so far.
    pub fn charges(&self) -> Vec<SandboxCharge> {
        lock(&self.charges).clone()
    }

    /// What was refunded so far on order `order_id`.
    pub fn refunded(&self, order_id: &str) -> Cents {
        lock(&self.refund_ledger)
            .iter()
            .filter(|(o, _)| o == order_id)
            .map(|(_, a)| *a)
            .sum()
    }

    /// The shopper's tap on "confirm" [API.md sandbox endpoint].
    pub fn confirm(&self, provider_order_ref: &str) -> Result<(), ConfirmError> {
        let order_id = provider_order_ref.to_string();
        {
            let mut orders = lock(&self.orders);
            let o = orders.get_mut(&order_id).ok_or(ConfirmError::NotFound)?;
            if o.state == SandboxState::Authorized {
                return Ok(()); // a double tap
            }
            if o.state != SandboxState::AwaitingConfirmation {
                return Err(ConfirmError::NotAwaiting);
            }
            o.state = SandboxState::Authorized;
        }
        self.notify(SandboxNotification {
            id: format!("n-auth-{order_id}"),
            event_type: "AUTHORIZED".into(),
            out_order_no: order_id,
            transaction_id: None,
            amount_cents: None,
            reason: None,
        });
        Ok(())
    }

    fn notify(&self, n: SandboxNotification) {
        let bases = lock(&self.callback_bases).clone();
        if bases.is_empty() {
            tracing::warn!(id = %n.id, "sandbox has no callback address; notification dropped");
            return;
        }
        let behaviour = lock(&self.behaviour).clone();
        let (http, key, kind) = (self.http.clone(), self.key.clone(), self.kind);
        tokio::spawn(async move {
            if !behaviour.callback_delay.is_zero() {
                tokio::time::sleep(behaviour.callback_delay).await;
            }
            let copies = if behaviour.duplicate_callbacks { 2 } else { 1 };
            for _ in 0..copies {
                deliver(&http, &key, kind, &bases, &n).await;
            }
        });
    }

    fn collect_now(&self, order_id: &str, o: &mut SandboxOrder, amount: Cents) -> CollectionOutcome {
        if o.failures_left > 0 {
            o.failures_left -= 1;
            o.state = SandboxState::CollectionFailed("insufficient_funds".into());
            return CollectionOutcome::Failed {
                reason: "insufficient_funds".into(),
            };
        }
        let transaction_id = format!("sbx-{}-{}", self.kind.as_str(), uuid::Uuid::new_v4().simple());
        o.state = SandboxState::Collected {
            transaction_id: transaction_id.clone(),
            amount,
        };
        lock(&self.charges).push(SandboxCharge {
            order_id: order_id.to_string(),
            amount,
            transaction_id: transaction_id.clone(),
        });
        CollectionOutcome::Collected { transaction_id, amount }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    async fn create_authorization(&self, req: AuthorizationRequest) -> Result<AuthorizationCreated, ProviderError> {
        let behaviour = lock(&self.behaviour).clone();
        let mut orders = lock(&self.orders);
        let confirm_url = |id: &str| {
            format!(
                "{}/sandbox/{}/authorizations/{id}/confirm",
                lock(&self.public_base),
                self.kind.as_str()
            )
        };
        if let Some(o) = orders.get(&req.order_id) {
            // Same parameters again: same order (WeChat's "原参重入").
            return Ok(AuthorizationCreated {
                provider_order_ref: req.order_id.clone(),
                confirm_url: (o.state == SandboxState::AwaitingConfirmation).then(|| confirm_url(&req.order_id)),
                authorized: o.state != SandboxState::AwaitingConfirmation,
            });
        }
        let pending = orders
            .values()
            .filter(|o| {
                o.shopper_id == req.shopper_id
                    && matches!(
                        o.state,
                        SandboxState::AwaitingConfirmation
                            | SandboxState::Authorized
                            | SandboxState::Collecting
                            | SandboxState::CollectionFailed(_)
                    )
            })
            .count();
        if pending >= behaviour.max_pending_per_shopper {
            return Err(ProviderError::Refused {
                code: "INVALID_REQUEST".into(),
                message: "risk assessment failed: too many open orders".into(),
            });
        }
        let authorized = req.confirm_mode == ConfirmMode::Once;
        orders.insert(
            req.order_id.clone(),
            SandboxOrder {
                shopper_id: req.shopper_id.clone(),
                state: if authorized {
                    SandboxState::Authorized
                } else {
                    SandboxState::AwaitingConfirmation
                },
                failures_left: behaviour.fail_collections,
                lost_replies_left: behaviour.lose_collect_replies,
                limit: req.limit,
            },
        );
        Ok(AuthorizationCreated {
            provider_order_ref: req.order_id.clone(),
            confirm_url: (!authorized).then(|| confirm_url(&req.order_id)),
            authorized,
        })
    }

    async fn cancel(&self, order_id: &str, _reason: &str) -> Result<(), ProviderError> {
        let mut orders = lock(&self.orders);
        match orders.get_mut(order_id) {
            None => Ok(()),
            Some(o) => match o.state {
                SandboxState::Collected { .. } => Err(ProviderError::Refused {
                    code: "ORDER_DONE".into(),
                    message: "order already paid".into(),
                }),
                _ => {
                    o.state = SandboxState::Cancelled;
                    Ok(())
                }
            },
        }
    }

    async fn collect(&self, req: CollectionRequest) -> Result<CollectionOutcome, ProviderError> {
        let behaviour = lock(&self.behaviour).clone();
        let (outcome, lost) = {
            let mut orders = lock(&self.orders);
            let Some(o) = orders.get_mut(&req.order_id) else {
                return Err(ProviderError::Refused {
                    code: "ORDER_NOT_EXIST".into(),
                    message: "no such order".into(),
                });
            };
            if req.amount > o.limit {
                return Err(ProviderError::Refused {
                    code: "PARAM_ERROR".into(),
                    message: "amount above the authorized limit".into(),
                });
            }
            let outcome = match &o.state {
                // Idempotent: a collected order reports its collection again.
                SandboxState::Collected { transaction_id, amount } => CollectionOutcome::Collected {
                    transaction_id: transaction_id.clone(),
                    amount: *amount,
                },
                SandboxState::Cancelled | SandboxState::AwaitingConfirmation => {
                    return Err(ProviderError::Refused {
                        code: "INVALID_ORDER_STATE".into(),
                        message: "order not authorized".into(),
                    })
                }
                _ if behaviour.async_collection => {
                    o.state = SandboxState::Collecting;
                    CollectionOutcome::Pending
                }
                _ => self.collect_now(&req.order_id, o, req.amount),
            };
            let lost = o.lost_replies_left > 0;
            if lost {
                o.lost_replies_left -= 1;
            }
            (outcome, lost)
        };
        if behaviour.async_collection && outcome == CollectionOutcome::Pending {
            // Deduct "later" and say so by callback.
            let mut orders = lock(&self.orders);
            if let Some(o) = orders.get_mut(&req.order_id) {
                let result = self.collect_now(&req.order_id, o, req.amount);
                drop(orders);
                let n = match result {
                    CollectionOutcome::Collected { transaction_id, amount } => SandboxNotification {
                        id: format!("n-paid-{}", req.order_id),
                        event_type: "COLLECTED".into(),
                        out_order_no: req.order_id.clone(),
                        transaction_id: Some(transaction_id),
                        amount_cents: Some(amount.get()),
                        reason: None,
                    },
                    CollectionOutcome::Failed { reason } => SandboxNotification {
                        id: format!("n-fail-{}-{}", req.order_id, uuid::Uuid::new_v4().simple()),
                        event_type: "COLLECTION_FAILED".into(),
                        out_order_no: req.order_id.clone(),
                        transaction_id: None,
                        amount_cents: None,
                        reason: Some(reason),
                    },
                    CollectionOutcome::Pending => return Ok(CollectionOutcome::Pending),
                };
                self.notify(n);
            }
        }
        if lost {
            return Err(ProviderError::Unavailable("reply lost (sandbox)".into()));
        }
        Ok(outcome)
    }

    async fn refund(&self, req: RefundRequest) -> Result<RefundOutcome, ProviderError> {
        let mut refunds = lock(&self.refunds);
        if let Some(done) = refunds.get(&req.refund_id) {
            return Ok(done.clone());
        }
        let charged: Cents = lock(&self.charges)
            .iter()
            .filter(|c| c.order_id == req.order_id)
            .map(|c| c.amount)
            .sum();
        let given: Cents = lock(&self.refund_ledger)
            .iter()
            .filter(|(o, _)| *o == req.order_id)
            .map(|(_, a)| *a)
            .sum();
        let outcome = if given + req.amount > charged {
            RefundOutcome::Failed {
                reason: "REFUND_AMOUNT_EXCEEDS_PAID".into(),
            }
        } else {
            lock(&self.refund_ledger).push((req.order_id.clone(), req.amount));
            RefundOutcome::Succeeded {
                provider_refund_id: format!("sbx-refund-{}", req.refund_id),
            }
        };
        refunds.insert(req.refund_id.clone(), outcome.clone());
        Ok(outcome)
    }

    async fn refund_status(&self, _order_id: &str, refund_id: &str) -> Result<RefundOutcome, ProviderError> {
        Ok(lock(&self.refunds).get(refund_id).cloned().unwrap_or(RefundOutcome::Failed {
            reason: "not_found".into(),
        }))
    }

    async fn bill(&self, _date: &str) -> Result<Vec<BillLine>, ProviderError> {
        Ok(lock(&self.charges)
            .iter()
            .map(|c| BillLine {
                order_id: c.order_id.clone(),
                transaction_id: c.transaction_id.clone(),
                kind: BillLineKind::Charge,
                amount: c.amount,
                at: 0,
            })
            .collect())
    }

    async fn query(&self, order_id: &str) -> Result<ProviderOrderStatus, ProviderError> {
        let orders = lock(&self.orders);
        Ok(match orders.get(order_id).map(|o| &o.state) {
            None => ProviderOrderStatus::NotFound,
            Some(SandboxState::AwaitingConfirmation) => ProviderOrderStatus::AwaitingConfirmation,
            Some(SandboxState::Authorized) => ProviderOrderStatus::Authorized,
            Some(SandboxState::Collecting) => ProviderOrderStatus::Collecting,
            Some(SandboxState::Collected { transaction_id, amount }) => ProviderOrderStatus::Collected {
                transaction_id: transaction_id.clone(),
                amount: *amount,
            },
            Some(SandboxState::CollectionFailed(r)) => ProviderOrderStatus::CollectionFailed { reason: r.clone() },
            Some(SandboxState::Cancelled) => ProviderOrderStatus::Cancelled,
        })
    }
}

/// Posts a notification, retrying on failure (a few times, quickly; the real providers
/// retry for a day).
async fn deliver(http: &reqwest::Client, key: &[u8], kind: ProviderKind, bases: &[String], n: &SandboxNotification) {
    let Ok(body) = serde_json::to_vec(n) else { return };
    for attempt in 0..8u32 {
        // Each retry goes to the next address (a node may be down).
        let url = format!("{}/callbacks/{}", bases[attempt as usize % bases.len()], kind.as_str());
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let sig = sign(key, &ts, &body);
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &ts)
            .header(SIGNATURE_HEADER, sig)
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => tracing::warn!(id = %n.id, status = %resp.status(), "callback refused"),
            Err(e) => tracing::warn!(id = %n.id, error = %e, "callback failed"),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_sagas::ports::{AuthorizationRequest, CollectionRequest};

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = br#"{"id":"n1"}"#;
        let sig = sign(b"k1", "1700000000000", body);
        assert!(verify(b"k1", "1700000000000", body, &sig));
        assert!(!verify(b"k2", "1700000000000", body, &sig), "other key");
        assert!(!verify(b"k1", "1700000000001", body, &sig), "other timestamp");
        assert!(!verify(b"k1", "1700000000000", br#"{"id":"n2"}"#, &sig), "other body");
        assert!(!verify(b"k1", "1700000000000", body, "zz"), "not hex");
    }

    fn auth(order: &str, shopper: &str, mode: ConfirmMode) -> AuthorizationRequest {
        AuthorizationRequest {
            order_id: order.into(),
            shopper_id: shopper.into(),
            confirm_mode: mode,
            limit: Cents::new(10_000),
        }
    }

    fn collect(order: &str, amount: i64) -> CollectionRequest {
        CollectionRequest {
            order_id: order.into(),
            provider_order_ref: order.into(),
            amount: Cents::new(amount),
            lines: vec![],
            discount: Cents::new(0),
        }
    }

    #[tokio::test]
    async fn collects_once_per_order_and_enforces_the_pending_limit() {
        let s = SandboxProvider::new(
            ProviderKind::Alipay,
            b"k",
            SandboxBehaviour {
                max_pending_per_shopper: 1,
                ..Default::default()
            },
        );
        let created = s.create_authorization(auth("o1", "s1", ConfirmMode::Once)).await.unwrap();
        assert!(created.authorized);
        // Same order again: same answer (idempotent create).
        assert_eq!(s.create_authorization(auth("o1", "s1", ConfirmMode::Once)).await.unwrap(), created);
        // A second open order for the same shopper is refused (Alipay allows one).
        assert!(matches!(
            s.create_authorization(auth("o2", "s1", ConfirmMode::Once)).await,
            Err(ProviderError::Refused { .. })
        ));
        // Above the authorized limit: refused.
        assert!(s.collect(collect("o1", 10_001)).await.is_err());
        let first = s.collect(collect("o1", 500)).await.unwrap();
        let again = s.collect(collect("o1", 500)).await.unwrap();
        assert_eq!(first, again, "a repeated collect reports the same collection");
        assert_eq!(s.charges().len(), 1);
        assert!(matches!(
            s.query("o1").await.unwrap(),
            ProviderOrderStatus::Collected { amount, .. } if amount == Cents::new(500)
        ));
        // A cancelled order cannot be collected; cancelling a paid one is refused.
        s.create_authorization(auth("o3", "s2", ConfirmMode::EachTime)).await.unwrap();
        s.cancel("o3", "test").await.unwrap();
        assert!(s.collect(collect("o3", 100)).await.is_err());
        assert!(s.cancel("o1", "test").await.is_err());
    }

    #[tokio::test]
    async fn failures_then_success_and_confirm_states() {
        let s = SandboxProvider::new(
            ProviderKind::Wechat,
            b"k",
            SandboxBehaviour {
                fail_collections: 2,
                ..Default::default()
            },
        );
        s.create_authorization(auth("o1", "s1", ConfirmMode::EachTime)).await.unwrap();
        assert!(s.collect(collect("o1", 100)).await.is_err(), "not confirmed yet");
        assert_eq!(s.confirm("nope"), Err(ConfirmError::NotFound));
        s.confirm("o1").unwrap();
        s.confirm("o1").unwrap(); // a double tap
        assert!(matches!(
            s.collect(collect("o1", 100)).await.unwrap(),
            CollectionOutcome::Failed { .. }
        ));
        assert!(matches!(
            s.collect(collect("o1", 100)).await.unwrap(),
            CollectionOutcome::Failed { .. }
        ));
        assert!(matches!(
            s.collect(collect("o1", 100)).await.unwrap(),
            CollectionOutcome::Collected { .. }
        ));
        assert_eq!(s.charges().len(), 1);
    }
}
