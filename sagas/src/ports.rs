//! The interfaces the sagas' effects need from the outside world: the aggregates (to load
//! state and issue commands), payment providers, the device link, recent telemetry, the
//! operator's settings and a clock. The platform and the gateway implement them (the
//! event store, sandbox and real providers, MQTT/in-process devices); tests implement
//! them in memory.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::anomaly::AnomalyCase;
use tare_domain::cabinet::Cabinet;
use tare_domain::command::DeviceCommand;
use tare_domain::coupon::CouponPolicy;
use tare_domain::order::{Order, OrderLine};
use tare_domain::payment::Payment;
use tare_domain::shopper::Shopper;
use tare_domain::weight::StableReading;
use tare_domain::{CabinetId, Cents, ConfirmMode, DoorNo, ProviderKind, UnixMs};

/// Why a command to an aggregate did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused it (a business rule): retrying cannot help.
    #[error("{0}")]
    Rejected(E),
    /// Optimistic concurrency kept failing after retries.
    #[error("concurrent update, retries exhausted")]
    Conflict,
    /// The store failed (transient: the command may be retried).
    #[error("store: {0}")]
    Store(String),
    /// The store could not be reached (a connection lost, the pool exhausted, the server
    /// restarting): transient, and the caller is told to come back rather than that
    /// something is broken.
    #[error("store unreachable: {0}")]
    Unavailable(String),
}

/// Where a command comes from, stamped on its events [E1]: when, the order (or other
/// process) it belongs to, and the effect or request that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    /// Time of the command (Unix ms).
    pub at: UnixMs,
    /// The order/session/request the events belong to.
    pub correlation_id: String,
    /// The event, effect or request that caused the command.
    pub causation_id: String,
}

impl CommandMeta {
    /// Metadata for a command caused by `causation_id` within `correlation_id`.
    pub fn new(at: UnixMs, correlation_id: impl Into<String>, causation_id: impl Into<String>) -> Self {
        Self {
            at,
            correlation_id: correlation_id.into(),
            causation_id: causation_id.into(),
        }
    }
}

/// One aggregate type's state and command side: the port through which effects load an
/// aggregate and issue commands to it (the platform's event store implements it).
#[async_trait]
pub trait AggregatePort<A: Aggregate>: Send + Sync {
    /// The current state of aggregate `id` (the default state if it has no events).
    async fn load(&self, id: &str) -> Result<A, CommandError<A::Error>>;
    /// Decides `command` on aggregate `id` and commits its events.
    async fn execute(&self, id: &str, command: A::Command, meta: CommandMeta) -> Result<(), CommandError<A::Error>>;
}

/// The operator's settings the effects read (kept current by the platform).
pub trait Settings: Send + Sync {
    /// The coupon rule in force now [O7].
    fn coupon_policy(&self) -> CouponPolicy;
}

/// A source of the current time (a system clock in production, a driven one in tests).
pub trait Clock: Send + Sync {
    /// Now, Unix ms.
    fn now_ms(&self) -> UnixMs;
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Timeout, 5xx, `SYSTEM_ERROR`: the outcome is unknown; retry with the same key or
    /// query.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused (risk check, invalid state, …).
    #[error("provider refused: {code}: {message}")]
    Refused {
        /// Provider's code.
        code: String,
        /// Provider's message.
        message: String,
    },
}

/// Asks the provider for a pre-authorization [O3].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    /// Our order id: the idempotency key (`out_order_no`).
    pub order_id: String,
    /// The shopper.
    pub shopper_id: String,
    /// Mode.
    pub confirm_mode: ConfirmMode,
    /// The most this authorization may later collect.
    pub limit: Cents,
}

/// The provider created the authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCreated {
    /// The provider's reference.
    pub provider_order_ref: String,
    /// Where the shopper confirms (confirm-each-time).
    pub confirm_url: Option<String>,
    /// Already authorized (confirm-once).
    pub authorized: bool,
}

/// Asks the provider to deduct [O8].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionRequest {
    /// Our order id (idempotency key).
    pub order_id: String,
    /// The provider's reference.
    pub provider_order_ref: String,
    /// Amount to collect.
    pub amount: Cents,
    /// Receipt lines (itemized providers show them).
    pub lines: Vec<OrderLine>,
    /// Discount applied.
    pub discount: Cents,
}

/// What a deduction call returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollectionOutcome {
    /// Collected now.
    Collected {
        /// Transaction id.
        transaction_id: String,
        /// Amount.
        amount: Cents,
    },
    /// Accepted; the result comes by callback (or query).
    Pending,
    /// Declined (e.g. insufficient funds).
    Failed {
        /// Reason.
        reason: String,
    },
}

/// The provider's view of an order, from a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderOrderStatus {
    /// Unknown to the provider.
    NotFound,
    /// Waiting for the shopper.
    AwaitingConfirmation,
    /// Authorized.
    Authorized,
    /// Deduction in progress.
    Collecting,
    /// Collected.
    Collected {
        /// Transaction id.
        transaction_id: String,
        /// Amount.
        amount: Cents,
    },
    /// Last deduction failed.
    CollectionFailed {
        /// Reason.
        reason: String,
    },
    /// Cancelled.
    Cancelled,
}

/// Asks the provider to give back part or all of a collection [O9].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// Our order id.
    pub order_id: String,
    /// Our refund id: the idempotency key (`out_refund_no` / `out_request_no`); the same
    /// id refunds at most once, so a retry is always safe.
    pub refund_id: String,
    /// The provider's transaction the money came from.
    pub transaction_id: String,
    /// How much to give back.
    pub amount: Cents,
    /// How much the order was charged in all.
    pub charged: Cents,
    /// Why (shown to the shopper by some providers).
    pub reason: String,
}

/// What a refund call returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundOutcome {
    /// The money went back.
    Succeeded {
        /// The provider's refund id.
        provider_refund_id: String,
    },
    /// Accepted; the result comes by notification (or query).
    Pending,
    /// Refused for good (closed, over the refundable amount, …).
    Failed {
        /// Reason.
        reason: String,
    },
}

/// A bill line of one day, as the provider's bill says [R3].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillLine {
    /// Our order id.
    pub order_id: String,
    /// The provider's transaction.
    pub transaction_id: String,
    /// A charge, or a refund of one.
    pub kind: BillLineKind,
    /// The amount (positive for both kinds).
    pub amount: Cents,
    /// When it happened (Unix ms).
    pub at: UnixMs,
}

/// What a bill line records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BillLineKind {
    /// Money collected.
    Charge,
    /// Money given back.
    Refund {
        /// Our refund id.
        refund_id: String,
    },
}

/// A payment provider (sandbox or real adapter) [P1, P3]. Every call is idempotent by
/// its key (the order id, the refund id), so an effect may always run it again.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;
    /// Creates (idempotently, by order id) a pre-authorization.
    async fn create_authorization(&self, req: AuthorizationRequest) -> Result<AuthorizationCreated, ProviderError>;
    /// Cancels the provider order (idempotent).
    async fn cancel(&self, order_id: &str, reason: &str) -> Result<(), ProviderError>;
    /// Completes the order and deducts (idempotent by order id: never collects twice).
    async fn collect(&self, req: CollectionRequest) -> Result<CollectionOutcome, ProviderError>;
    /// Reads the provider's state of an order.
    async fn query(&self, order_id: &str) -> Result<ProviderOrderStatus, ProviderError>;
    /// Refunds (idempotent by the refund id: never more than once per id).
    async fn refund(&self, req: RefundRequest) -> Result<RefundOutcome, ProviderError>;
    /// Reads the provider's state of a refund (`Pending` while processing; a refund the
    /// provider never saw is `Failed` with reason `not_found`).
    async fn refund_status(&self, order_id: &str, refund_id: &str) -> Result<RefundOutcome, ProviderError>;
    /// The provider's bill of one day (`YYYY-MM-DD`, the provider's local date).
    async fn bill(&self, date: &str) -> Result<Vec<BillLine>, ProviderError>;
}

/// What a door command asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorCommandKind {
    /// `open_door`.
    OpenDoor,
    /// `query_door`.
    QueryDoor,
}

/// Why a command could not be handed to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceLinkError {
    /// The device is not connected to any gateway node.
    #[error("device {0} is not connected")]
    NotConnected(String),
}

/// Sends commands to devices (the in-process link, or MQTT through the gateway) [D7].
#[async_trait]
pub trait DeviceLink: Send + Sync {
    /// Hands one command (`type`, `args` as PROTOCOL.md names them) to the device's
    /// connection; the device acknowledges it asynchronously on `up/ack`.
    async fn send_command(
        &self,
        cabinet: &CabinetId,
        cmd_id: &str,
        type_name: &str,
        args: serde_json::Value,
        expires_at: UnixMs,
    ) -> Result<(), DeviceLinkError>;

    /// Sends a door command (a shorthand for [`DeviceLink::send_command`]).
    async fn send_door_command(
        &self,
        cabinet: &CabinetId,
        door: DoorNo,
        kind: DoorCommandKind,
        cmd_id: &str,
        expires_at: UnixMs,
    ) -> Result<(), DeviceLinkError> {
        let type_name = match kind {
            DoorCommandKind::OpenDoor => "open_door",
            DoorCommandKind::QueryDoor => "query_door",
        };
        self.send_command(cabinet, cmd_id, type_name, serde_json::json!({ "door": door.get() }), expires_at)
            .await
    }
}

/// Why an alert was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// Over the sink's rate: try again at this time.
    #[error("over the alert rate until {0}")]
    RateLimited(UnixMs),
    /// The receiver did not take it.
    #[error("alert not delivered: {0}")]
    Failed(String),
}

/// Where alerts go: sends one alert (at `now`), idempotently by its id at the receiver.
#[async_trait]
pub trait AlertSink: Send + Sync {
    /// Sends `alert`.
    async fn send(&self, alert: &crate::alerts::Alert, now: UnixMs) -> Result<(), AlertError>;
}

/// Where products are on the shelves [C2]: every lane whose planogram holds a SKU.
#[async_trait]
pub trait PlanogramIndex: Send + Sync {
    /// The lanes holding `sku`, as `(cabinet, door, lane)`.
    async fn lanes_holding(&self, sku: &tare_domain::Sku) -> Result<Vec<(CabinetId, DoorNo, tare_domain::LaneNo)>, String>;
}

/// Recent weight samples per door, as received from devices [D6].
pub trait TelemetryView: Send + Sync {
    /// The newest stable reading of `door` taken at or before `device_ts`.
    fn stable_at_or_before(&self, cabinet: &CabinetId, door: DoorNo, device_ts: UnixMs) -> Option<StableReading>;
    /// The newest stable reading of `door` taken at or after `device_ts` (never an older
    /// one: the post-close weight must not predate the close) [O5].
    fn newest_stable_since(&self, cabinet: &CabinetId, door: DoorNo, device_ts: UnixMs) -> Option<StableReading>;
}

/// Everything the sagas' effects act on, each through its port.
#[derive(Clone)]
pub struct EffectPorts {
    /// Orders.
    pub orders: Arc<dyn AggregatePort<Order>>,
    /// Payments.
    pub payments: Arc<dyn AggregatePort<Payment>>,
    /// Cabinets (door sessions and stock).
    pub cabinets: Arc<dyn AggregatePort<Cabinet>>,
    /// Shoppers (order slot, coupons).
    pub shoppers: Arc<dyn AggregatePort<Shopper>>,
    /// Device commands [D7].
    pub commands: Arc<dyn AggregatePort<DeviceCommand>>,
    /// The anomaly queue [M3].
    pub anomalies: Arc<dyn AggregatePort<AnomalyCase>>,
    /// Restock sessions [O10].
    pub restocks: Arc<dyn AggregatePort<tare_domain::restock::Restock>>,
    /// Products [C1].
    pub products: Arc<dyn AggregatePort<tare_domain::product::Product>>,
    /// Ad and upgrade campaigns [M5].
    pub campaigns: Arc<dyn AggregatePort<tare_domain::campaign::Campaign>>,
    /// Which lanes hold each product [C2].
    pub planograms: Arc<dyn PlanogramIndex>,
    /// Where alerts go (a webhook, or the recording sandbox).
    pub alerts: Arc<dyn AlertSink>,
    /// Payment providers by kind.
    pub providers: HashMap<ProviderKind, Arc<dyn PaymentProvider>>,
    /// The device link.
    pub devices: Arc<dyn DeviceLink>,
    /// Recent weight samples.
    pub telemetry: Arc<dyn TelemetryView>,
    /// The operator's settings.
    pub settings: Arc<dyn Settings>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl EffectPorts {
    /// The provider of `kind`, if one is configured.
    pub fn provider(&self, kind: ProviderKind) -> Option<Arc<dyn PaymentProvider>> {
        self.providers.get(&kind).cloned()
    }
}
