//! Alipay fund pre-authorization (open-platform gateway, RSA2) [PAYMENTS.md §2]: the
//! adapter the platform calls, the sandbox that plays Alipay, and the verification of
//! Alipay's notifications.
//!
//! - [`AlipayAdapter`] implements `PaymentProvider` over HTTP (`adapter`, `client`);
//! - [`AlipaySandbox`] is the gateway for tests and the embedded default (`sandbox`,
//!   `ops`, `ops_trade`, `notify`);
//! - [`verify_notification`] is what `/callbacks/alipay` runs (`callback`);
//! - `sign` holds the RSA2 strings both ends compute, `wire` the vocabulary, `bill` the
//!   zipped GBK CSV bill.

mod adapter;
pub mod bill;
mod callback;
mod client;
mod notify;
mod ops;
mod ops_trade;
mod sandbox;
pub mod sign;
pub mod wire;

#[cfg(test)]
mod tests;

pub use adapter::{AlipayAdapter, ATTEMPTS};
pub use callback::{verify_notification, ACK, NACK};
pub use client::{build_request, parse_response};
pub use sandbox::{AlipaySandbox, SandboxError};
