//! The interfaces the sagas' effects need from the outside world. The platform and the
//! gateway implement them (sandbox and real payment providers, MQTT/in-process devices).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tare_domain::order::OrderLine;
use tare_domain::weight::StableReading;
use tare_domain::{CabinetId, Cents, ConfirmMode, DoorNo, ProviderKind, UnixMs};

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

/// A payment provider (sandbox or real adapter) [P1, P3].
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

/// Recent weight samples per door, as received from devices [D6].
pub trait TelemetryView: Send + Sync {
    /// The newest stable reading of `door` taken at or before `device_ts`.
    fn stable_at_or_before(&self, cabinet: &CabinetId, door: DoorNo, device_ts: UnixMs) -> Option<StableReading>;
    /// The newest stable reading of `door` taken at or after `device_ts` (never an older
    /// one: the post-close weight must not predate the close) [O5].
    fn newest_stable_since(&self, cabinet: &CabinetId, door: DoorNo, device_ts: UnixMs) -> Option<StableReading>;
}
