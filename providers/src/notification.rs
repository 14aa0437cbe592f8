//! What a provider's verified notification means to the platform, whichever provider
//! sent it, and why an unverifiable one is refused. Each provider's callback module turns
//! its own wire format into a [`Notification`]; the gateway answers the provider in its
//! own way (WeChat 200/204 or 401 `{"code":"FAIL"}`; Alipay `success` or not) and hands the
//! event to the platform.

use tare_domain::Cents;

/// A verified notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The provider's notification id (the same on every resend: WeChat `id`, Alipay
    /// `notify_id`).
    pub id: String,
    /// What it says.
    pub event: NotificationEvent,
}

/// What a verified notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationEvent {
    /// The shopper authorized the order (WeChat `PAYSCORE.USER_CONFIRM`, Alipay
    /// `fund_auth_freeze` SUCCESS).
    Authorized {
        /// Our order id.
        order_id: String,
    },
    /// The money was collected (WeChat `PAYSCORE.USER_PAID`, Alipay `trade_status_sync`
    /// `TRADE_SUCCESS`).
    Collected {
        /// Our order id.
        order_id: String,
        /// The provider's transaction.
        transaction_id: String,
        /// The amount, already checked to be a valid amount.
        amount: Cents,
    },
    /// A deduction failed (the provider may try again by itself).
    CollectionFailed {
        /// Our order id.
        order_id: String,
        /// The provider's reason.
        reason: String,
    },
    /// A refund went through (WeChat `REFUND.SUCCESS`).
    RefundSucceeded {
        /// Our order id.
        order_id: String,
        /// Our refund id.
        refund_id: String,
        /// The provider's refund id.
        provider_refund_id: String,
        /// The amount refunded.
        amount: Cents,
    },
    /// A refund failed for good (WeChat `REFUND.CLOSED`).
    RefundFailed {
        /// Our order id.
        order_id: String,
        /// Our refund id.
        refund_id: String,
        /// Why.
        reason: String,
    },
    /// Genuine, but nothing for the platform to do (an unfreeze, an `ABNORMAL` refund
    /// that WeChat keeps working on, a service the shopper opened): acknowledged all the
    /// same.
    Informational {
        /// What it was.
        what: String,
    },
}

impl NotificationEvent {
    /// The order it is about (none for an informational one).
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Self::Authorized { order_id }
            | Self::Collected { order_id, .. }
            | Self::CollectionFailed { order_id, .. }
            | Self::RefundSucceeded { order_id, .. }
            | Self::RefundFailed { order_id, .. } => Some(order_id),
            Self::Informational { .. } => None,
        }
    }
}

/// Why a notification was refused (answered 401; nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Headers or fields the provider always sends are missing or malformed.
    #[error("malformed notification: {0}")]
    Malformed(String),
    /// The signature does not verify with the provider's public key.
    #[error("bad signature")]
    BadSignature,
    /// The signed timestamp is too old or in the future (a replay).
    #[error("stale timestamp")]
    Stale,
    /// The resource does not decrypt under the APIv3 key (wrong key, tampered, truncated).
    #[error("resource does not decrypt")]
    Decrypt,
    /// It names another merchant or app.
    #[error("notification for another merchant: {0}")]
    ForeignMerchant(String),
    /// An amount is not a valid amount.
    #[error("bad amount: {0}")]
    Amount(String),
}

impl CallbackError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Stale => "stale",
            Self::Decrypt => "decrypt",
            Self::ForeignMerchant(_) => "foreign_merchant",
            Self::Amount(_) => "bad_amount",
        }
    }
}
