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
//!
//! Interpretations of PAYMENTS.md (where the notes leave a choice):
//! - confirm each time uses `alipay.fund.auth.order.app.freeze` (the shopper's tap is
//!   the sandbox's `POST /authorizations/{out_order_no}/confirm`); confirm once uses the
//!   synchronous `alipay.fund.auth.order.freeze`, authorized at create. Both carry our
//!   shopper id as `payer_user_id` (the sandbox's per-shopper risk limit keys on it);
//! - `trade.pay` is called with `auth_confirm_mode=COMPLETE`; a repeat of a paid
//!   `out_trade_no` is answered `ACQ.TRADE_HAS_SUCCESS` and resolved by `trade.query`;
//! - system errors: the odd ones leave the operation undone, the even ones apply it and
//!   still answer `20000` (see `ops`); the adapter queries, then repeats with the same
//!   keys, at most [`ATTEMPTS`] times;
//! - notification signatures keep empty values (Java SDK V1, python-alipay-sdk);
//!   request signatures skip them;
//! - a refund's `provider_refund_id` is `{trade_no}_{out_request_no}` (Alipay has no
//!   refund id of its own);
//! - the sandbox serves bills of any day, today included (Alipay: T+1 after 10:00).

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
