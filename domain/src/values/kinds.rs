//! The small closed vocabularies: payment provider, confirmation mode, cabinet kind.

use super::ValueError;
use serde::{Deserialize, Serialize};

/// Which payment provider a shopper pays with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// WeChat Pay Score (integer fen; deducts asynchronously and retries by itself).
    Wechat,
    /// Alipay pre-authorisation (yuan strings; the merchant owns retries).
    Alipay,
}

impl ProviderKind {
    /// The provider's name on the wire (`wechat`, `alipay`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wechat => "wechat",
            Self::Alipay => "alipay",
        }
    }

    /// Parses `wechat` / `alipay`.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValueError> {
        match s {
            "wechat" => Ok(Self::Wechat),
            "alipay" => Ok(Self::Alipay),
            _ => Err(ValueError::new(field, "must be `wechat` or `alipay`")),
        }
    }
}

/// How the shopper authorizes a purchase with the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmMode {
    /// The shopper confirms every purchase in the provider's app.
    EachTime,
    /// The shopper authorized once; each purchase is pre-authorized at once.
    Once,
}

/// The kind of cabinet hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CabinetKind {
    /// Weight-sensing smart cabinet: lanes on load cells behind doors.
    Weight,
    /// Shared locker: compartments that pop on command.
    Locker,
}
