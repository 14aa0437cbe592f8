//! The sagas' timings: every delay of a purchase and of a device command.

use serde::{Deserialize, Serialize};
use tare_domain::order::rules::ChargeRetry;
use tare_domain::reconciliation::daily::FeeRates;

/// Timings of the purchase (all durations in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaConfig {
    /// How long the shopper has to authorize [O3] (default 60 s).
    pub auth_timeout_ms: i64,
    /// How long to wait for the door to open before each query [O4] (default 3 s).
    pub door_check_ms: i64,
    /// Wait after the close before looking for a stable weight [O5] (default 500 ms).
    pub stable_wait_ms: i64,
    /// How much longer to keep looking [O5] (default 2 s).
    pub stable_extra_ms: i64,
    /// How often to look again meanwhile (default 250 ms).
    pub stable_poll_ms: i64,
    /// Delay before retrying a failed deduction [O8] (default 1 h).
    pub charge_retry_ms: i64,
    /// Deduction attempts before the order is dead-lettered for an operator [O8].
    pub max_charge_attempts: u32,
    /// How long a door command stays valid on the device [B7] (default 10 s).
    pub command_ttl_ms: i64,
    /// How long to wait for a device's ack before resending a command [D7] (default 3 s).
    pub command_resend_ms: i64,
    /// How long a refund the provider is still processing waits before it is asked
    /// about again [O9] (default 30 s).
    #[serde(default = "default_refund_poll_ms")]
    pub refund_poll_ms: i64,
    /// How often an order waiting for the shopper's confirmation asks the provider
    /// whether it was given, in case the provider's notification is late or lost [P2]
    /// (default 5 s).
    #[serde(default = "default_auth_check_ms")]
    pub auth_check_ms: i64,
    /// When the nightly bill reconciliation runs, in minutes after local (China)
    /// midnight: the previous day's bills are ready from 10:00 [R3] (default 600).
    #[serde(default = "default_bills_at_minute")]
    pub bills_at_minute: i64,
    /// A purchase's door open longer than this raises a `door_left_open` anomaly (and
    /// its alert) [B7] (default 5 min).
    #[serde(default = "default_door_open_limit_ms")]
    pub door_open_limit_ms: i64,
    /// The local (China) hour the business day of the daily settlements closes at
    /// [R3 (c)] (default 0: midnight).
    #[serde(default)]
    pub settlement_close_hour: i64,
    /// The providers' fee rates the daily settlements apply [R3 (c)].
    #[serde(default)]
    pub fees: FeeRates,
}

fn default_door_open_limit_ms() -> i64 {
    300_000
}

fn default_bills_at_minute() -> i64 {
    600
}

fn default_refund_poll_ms() -> i64 {
    30_000
}

fn default_auth_check_ms() -> i64 {
    5_000
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            auth_timeout_ms: 60_000,
            door_check_ms: 3_000,
            stable_wait_ms: 500,
            stable_extra_ms: 2_000,
            stable_poll_ms: 250,
            charge_retry_ms: 3_600_000,
            max_charge_attempts: 24,
            command_ttl_ms: 10_000,
            command_resend_ms: 3_000,
            refund_poll_ms: default_refund_poll_ms(),
            auth_check_ms: default_auth_check_ms(),
            bills_at_minute: default_bills_at_minute(),
            door_open_limit_ms: default_door_open_limit_ms(),
            settlement_close_hour: 0,
            fees: FeeRates::default(),
        }
    }
}

impl SagaConfig {
    /// How a failed deduction is retried [O8].
    pub fn charge_retry(&self) -> ChargeRetry {
        ChargeRetry {
            max_attempts: self.max_charge_attempts,
            retry_ms: self.charge_retry_ms,
        }
    }
}
