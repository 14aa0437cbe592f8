//! Tare's payment providers [P1–P4]: each provider's wire protocol, spoken for real on
//! both sides of the HTTP connection.
//!
//! - [`wechat`]: WeChat Pay Score (APIv3: WECHATPAY2-SHA256-RSA2048 requests, signed
//!   responses, AEAD_AES_256_GCM notification resources, integer fen);
//! - [`alipay`]: Alipay fund pre-authorization and `trade.pay` (RSA2, yuan strings,
//!   form-POST notifications);
//! - [`keys`]: the provider keys, generated on first start; [`crypto`]: RSA and AES-GCM;
//!   [`money`]: fen and yuan at the boundary; [`refs`]: merchant order numbers;
//! - [`sandbox`]: what both sandboxes share (behaviours on demand, the ledger);
//!   [`notification`]: what a verified callback means, whichever provider sent it.
//!
//! Each provider module has an adapter implementing `tare_sagas::ports::PaymentProvider`
//! over HTTP, a sandbox that plays the provider (mounted on the platform's own listener
//! on the embedded default, so the code a deployment runs is the code the tests run), and
//! the verification of its notifications.
//!
//! Architecture Invariant: money crosses in provider units only here (`money`); keys
//! never appear in logs (`keys` redacts itself).

pub mod alipay;
pub mod crypto;
pub mod keys;
pub mod money;
pub mod notification;
pub mod refs;
pub mod sandbox;
pub mod wechat;
