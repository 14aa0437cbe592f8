//! The gateway's vocabulary [PAYMENTS.md §2, §2.2, §2.5]: method names, result codes and
//! the shape of a synchronous answer, shared by the adapter and the sandbox.

use serde_json::{Map, Value};

/// Freeze that waits for the shopper's confirmation in the Alipay app (confirm each
/// time). The real call is made through `sdkExecute`; the sandbox answers it on the
/// gateway with `status: INIT`.
pub const APP_FREEZE: &str = "alipay.fund.auth.order.app.freeze";
/// Freeze authorized at once (confirm once: the shopper's standing consent stands in
/// for the payment code of the offline freeze).
pub const FREEZE: &str = "alipay.fund.auth.order.freeze";
/// Gives back the unused part of a freeze.
pub const UNFREEZE: &str = "alipay.fund.auth.order.unfreeze";
/// Cancels a freeze whose outcome is unknown or which was never used.
pub const OPERATION_CANCEL: &str = "alipay.fund.auth.operation.cancel";
/// Reads a freeze operation (`order_status` INIT / AUTHORIZED / FINISH / CLOSED).
pub const DETAIL_QUERY: &str = "alipay.fund.auth.operation.detail.query";
/// Collects against a freeze (`auth_no`, `auth_confirm_mode`).
pub const TRADE_PAY: &str = "alipay.trade.pay";
/// Reads a trade (`trade_status`).
pub const TRADE_QUERY: &str = "alipay.trade.query";
/// Refunds synchronously, keyed by `out_request_no`.
pub const TRADE_REFUND: &str = "alipay.trade.refund";
/// Reads a refund by `out_request_no` (data returned ⇒ it succeeded).
pub const REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";
/// Where to fetch a day's bill (a zip of GBK CSV, the URL valid 30 s).
pub const BILL_URL_QUERY: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// Success.
pub const CODE_SUCCESS: &str = "10000";
/// Service unavailable: the outcome is unknown (query, or retry with the same keys).
pub const CODE_UNKNOWN: &str = "20000";
/// A required argument is missing.
pub const CODE_MISSING: &str = "40001";
/// An argument is invalid (including the signature and the app id).
pub const CODE_INVALID: &str = "40002";
/// The business refused (see `sub_code`).
pub const CODE_BUSINESS: &str = "40004";

/// The product code of pre-authorization payments.
pub const PREAUTH_PAY: &str = "PREAUTH_PAY";

/// A decoded synchronous answer (the verified `xxx_response` object).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// `code`.
    pub code: String,
    /// `sub_code`, if any.
    pub sub_code: Option<String>,
    /// `sub_msg` (or `msg`), for humans.
    pub message: String,
    /// Every field.
    pub fields: Map<String, Value>,
}

impl Reply {
    /// Reads an answer object.
    pub fn from_fields(fields: Map<String, Value>) -> Self {
        let s = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
        Self {
            code: s("code").unwrap_or_default(),
            sub_code: s("sub_code"),
            message: s("sub_msg").or_else(|| s("msg")).unwrap_or_default(),
            fields,
        }
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// Whether it is `10000`.
    pub fn is_success(&self) -> bool {
        self.code == CODE_SUCCESS
    }

    /// Whether the outcome is unknown (`20000`, or a `*.SYSTEM_ERROR` sub code).
    pub fn is_unknown(&self) -> bool {
        self.code == CODE_UNKNOWN || self.sub_code.as_deref().is_some_and(|s| s.ends_with("SYSTEM_ERROR"))
    }
}

/// `{code: 10000, msg: Success, …fields}`.
pub fn success(mut fields: Map<String, Value>) -> Map<String, Value> {
    fields.insert("code".into(), CODE_SUCCESS.into());
    fields.insert("msg".into(), "Success".into());
    fields
}

/// A refusal: `{code, msg, sub_code, sub_msg}`.
pub fn failure(code: &str, sub_code: &str, sub_msg: &str) -> Map<String, Value> {
    let msg = match code {
        CODE_UNKNOWN => "Service Currently Unavailable",
        CODE_MISSING => "Missing Required Arguments",
        CODE_INVALID => "Invalid Arguments",
        _ => "Business Failed",
    };
    let mut m = Map::new();
    m.insert("code".into(), code.into());
    m.insert("msg".into(), msg.into());
    m.insert("sub_code".into(), sub_code.into());
    m.insert("sub_msg".into(), sub_msg.into());
    m
}

/// A business refusal (`40004`).
pub fn business(sub_code: &str, sub_msg: &str) -> Map<String, Value> {
    failure(CODE_BUSINESS, sub_code, sub_msg)
}

/// The system error of an unknown outcome (`20000`, `ACQ.SYSTEM_ERROR`).
pub fn system_error() -> Map<String, Value> {
    failure(CODE_UNKNOWN, "ACQ.SYSTEM_ERROR", "系统错误")
}
