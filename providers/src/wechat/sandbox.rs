//! The WeChat Pay Score sandbox: WeChat's server as far as the platform can tell
//! (signed answers, encrypted and signed notifications, the §1.4 state machine, refunds,
//! bills), for the tests and the embedded default. Its state lives here; the routes are
//! in `sandbox_http`, the order operations in `sandbox_orders`, refunds and bills in
//! `sandbox_refunds`, notification delivery in `notifier`.

use super::notifier::Delivery;
use super::wire::{CreateOrder, CreateRefund, RefundObject, ServiceOrder};
use crate::keys::{PrivateKey, WechatKeys};
use crate::sandbox::{now_ms, Behaviour, Charge, ConfirmError, Refund, Sandbox};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tare_domain::{ProviderKind, UnixMs};

/// Why the sandbox cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// It signs as WeChat, so it needs the platform's private key.
    #[error("the WeChat sandbox needs keys.platform_private_key")]
    NoPlatformKey,
}

/// An error answer the sandbox gives (§1.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fault {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Fault {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

/// One service order as the sandbox keeps it.
#[derive(Debug, Clone)]
pub(super) struct Order {
    /// The create request as first given (a repeat must match it).
    pub create: CreateOrder,
    /// What a query answers.
    pub view: ServiceOrder,
    /// The completed total (a repeat complete must match it).
    pub completed: Option<i64>,
    /// Whether `modify` was used (once only).
    pub modified: bool,
    /// Deductions still to fail.
    pub failures_left: u32,
    /// Where its notifications go.
    pub notify_url: String,
}

/// One refund as the sandbox keeps it.
#[derive(Debug, Clone)]
pub(super) struct RefundRecord {
    /// The request as first given.
    pub request: CreateRefund,
    /// What a query answers.
    pub view: RefundObject,
    /// The service order it refunds.
    pub out_order_no: String,
    /// Where its notification goes.
    pub notify_url: String,
    /// Accepted when.
    pub at: UnixMs,
}

/// Everything the sandbox remembers.
#[derive(Debug, Default)]
pub(super) struct Book {
    pub orders: HashMap<String, Order>,
    pub refunds: HashMap<String, RefundRecord>,
    pub charges: Vec<Charge>,
    /// System errors already answered, per order or refund number.
    pub errors_served: HashMap<String, u32>,
    /// Bill files by download token (gzip).
    pub bills: HashMap<String, Vec<u8>>,
    /// A notification held back to arrive after the next one (reorder fault).
    pub held: Option<Delivery>,
    pub seq: u64,
}

/// WeChat Pay Score's server, played for tests and the embedded default (mounted by the
/// platform under `/sandbox/wechat`).
pub struct WechatSandbox {
    pub(super) keys: WechatKeys,
    pub(super) platform_key: PrivateKey,
    pub(super) book: Mutex<Book>,
    pub(super) behaviour: Mutex<Behaviour>,
    notify_base: Mutex<String>,
    pub(super) http: reqwest::Client,
    /// Where notifications go when their `notify_url` does not answer.
    pub(super) failover: crate::sandbox::Failover,
    /// Itself, for the tasks it spawns (deductions, refunds, deliveries).
    me: std::sync::Weak<WechatSandbox>,
}

impl WechatSandbox {
    /// A sandbox signing with `keys.platform_private_key` (required: it is WeChat here).
    pub fn new(keys: WechatKeys, behaviour: Behaviour) -> Result<Arc<Self>, SandboxError> {
        let platform_key = keys.platform_private_key.clone().ok_or(SandboxError::NoPlatformKey)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            keys,
            platform_key,
            book: Mutex::new(Book::default()),
            behaviour: Mutex::new(behaviour),
            notify_base: Mutex::new("http://127.0.0.1:8080".into()),
            failover: crate::sandbox::Failover::default(),
            http,
        }))
    }

    /// The platform's base URL (`http://127.0.0.1:8080`): notifications of requests that
    /// named no `notify_url` go to `{base}/callbacks/wechat`.
    pub fn set_notify_base(&self, base: &str) {
        *lock(&self.notify_base) = base.trim_end_matches('/').to_string();
    }

    /// A strong handle on itself for a spawned task (`None` only while being dropped).
    pub(super) fn handle(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }

    /// Where notifications go when a request named no `notify_url`.
    pub(super) fn default_notify_url(&self) -> String {
        format!("{}/callbacks/wechat", lock(&self.notify_base))
    }

    pub(super) fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    /// `Some(500 SYSTEM_ERROR)` while the behaviour still owes errors for `key` (the
    /// operation is then not applied).
    pub(super) fn system_error(&self, key: &str) -> Option<Fault> {
        let owed = self.behaviour().system_errors;
        let mut book = self.book();
        let served = book.errors_served.entry(key.to_string()).or_insert(0);
        if *served < owed {
            *served += 1;
            return Some(Fault::new(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "系统错误"));
        }
        None
    }

    /// A new id of `digits` digits after `prefix`, unique in this sandbox.
    pub(super) fn next_id(&self, book: &mut Book, prefix: &str) -> String {
        book.seq += 1;
        format!("{prefix}{:016}{:06}", now_ms().rem_euclid(10_i64.pow(16)), book.seq % 1_000_000)
    }
}

/// Locks, surviving a poisoned mutex (a panicked test thread must not wedge the rest).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sandbox for WechatSandbox {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Wechat
    }

    fn api_router(self: Arc<Self>) -> axum::Router {
        super::sandbox_http::router(self)
    }

    fn confirm(&self, provider_order_ref: &str) -> Result<(), ConfirmError> {
        self.confirm_order(provider_order_ref)
    }

    fn charges(&self) -> Vec<Charge> {
        self.book().charges.clone()
    }

    fn refunds(&self) -> Vec<Refund> {
        let book = self.book();
        let mut out: Vec<Refund> = book
            .refunds
            .values()
            .map(|r| Refund {
                order_id: crate::refs::order_id_of(&r.out_order_no),
                refund_id: super::callback::split_refund_no(&r.request.out_refund_no).1,
                amount: tare_domain::Cents::new(r.view.amount.refund),
                at: r.at,
                succeeded: r.view.status == "SUCCESS",
            })
            .collect();
        out.sort_by(|a, b| (a.at, &a.refund_id).cmp(&(b.at, &b.refund_id)));
        out
    }

    fn behaviour(&self) -> Behaviour {
        lock(&self.behaviour).clone()
    }

    fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.behaviour) = b;
    }

    fn set_failover(&self, bases: &[String]) {
        self.failover.set(bases);
    }
}
