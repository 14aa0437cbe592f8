//! WeChat Pay Score (APIv3) [PAYMENTS.md §1]: the adapter, the sandbox and the
//! notification callback, speaking the real wire format on both sides of the connection:
//!
//! - [`sign`]: `WECHATPAY2-SHA256-RSA2048` request signatures and the `Wechatpay-*`
//!   response/notification signatures (§1.8);
//! - [`wire`]: the JSON bodies (integer fen, §1.3–§1.7);
//! - [`WechatSandbox`]: plays WeChat's server (state machine §1.4, notifications §1.6,
//!   refunds §1.7, bills §1.10) for tests and the embedded default;
//! - [`WechatAdapter`]: the platform's `PaymentProvider` over HTTP;
//! - [`verify_notification`]: what the platform's `/callbacks/wechat` runs.

mod adapter;
pub mod bill;
mod callback;
pub mod clock;
mod notifier;
mod sandbox;
mod sandbox_http;
mod sandbox_orders;
mod sandbox_refunds;
pub mod sign;
pub mod wire;

pub use adapter::WechatAdapter;
pub use callback::{callback_ack_fail, callback_ack_ok, refund_no, verify_notification};
pub use sandbox::{SandboxError, WechatSandbox};

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_callback;
#[cfg(test)]
mod tests_flow;
#[cfg(test)]
mod tests_oracle;
#[cfg(test)]
mod tests_refunds;
