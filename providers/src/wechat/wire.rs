//! The JSON bodies of WeChat Pay Score and the v3 refund API [PAYMENTS.md §1.3–§1.7,
//! §1.10], amounts in integer fen. One set of types for both sides, so the sandbox and
//! the adapter cannot drift apart silently (the Python oracle test checks the format
//! from outside).

use crate::crypto::{aes_gcm_encrypt, random_alphanumeric};
use crate::keys::ApiV3Key;
use serde::{Deserialize, Serialize};

/// A line the shopper is charged for (`post_payments[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// ≤ 20 characters.
    pub name: String,
    /// Fen (the line total).
    pub amount: i64,
    /// ≤ 30 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 1..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// A discount (`post_discounts[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discount {
    /// ≤ 20 characters.
    pub name: String,
    /// ≤ 30 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Fen.
    pub amount: i64,
    /// Count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// `risk_fund`: the most the order may cost (`ESTIMATE_ORDER_COST` for 先享).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskFund {
    /// `ESTIMATE_ORDER_COST` | `DEPOSIT` | `ADVANCE` | `CASH_DEPOSIT`.
    pub name: String,
    /// Fen, > 0.
    pub amount: i64,
    /// ≤ 30 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `time_range`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TimeRange {
    /// `yyyyMMddHHmmss` | `yyyyMMdd` | `OnAccept`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// `yyyyMMddHHmmss` | `yyyyMMdd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

/// `POST /v3/payscore/serviceorder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOrder {
    /// Our order number (32 of `[0-9A-Za-z_-|*]`).
    pub out_order_no: String,
    /// The app.
    pub appid: String,
    /// The Pay Score service.
    pub service_id: String,
    /// ≤ 20 characters, shown to the shopper.
    pub service_introduction: String,
    /// The most the order may cost.
    pub risk_fund: RiskFund,
    /// When the service runs.
    pub time_range: TimeRange,
    /// Echoed in notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// Where notifications go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// The shopper (required when `need_user_confirm` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// Confirm mode (true) or the no-confirm, pre-authorised mode (false).
    pub need_user_confirm: bool,
}

/// `POST …/{out_order_no}/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteOrder {
    /// The app (as at create).
    pub appid: String,
    /// The service.
    pub service_id: String,
    /// What the shopper is charged for.
    pub post_payments: Vec<Payment>,
    /// Discounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_discounts: Option<Vec<Discount>>,
    /// `Σpost_payments − Σpost_discounts`, fen.
    pub total_amount: i64,
    /// The service's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
}

/// `POST …/{out_order_no}/modify` (only downward, once, while the deduction is pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyOrder {
    /// The app.
    pub appid: String,
    /// The service.
    pub service_id: String,
    /// What the shopper is charged for now.
    pub post_payments: Vec<Payment>,
    /// Discounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_discounts: Option<Vec<Discount>>,
    /// The new, lower total.
    pub total_amount: i64,
    /// ≤ 50 characters.
    pub reason: String,
}

/// `POST …/{out_order_no}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// The app.
    pub appid: String,
    /// The service.
    pub service_id: String,
    /// ≤ 50 characters, shown to the shopper.
    pub reason: String,
}

/// `POST …/{out_order_no}/pay` (the merchant asks for the deduction now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayOrder {
    /// The app.
    pub appid: String,
    /// The service.
    pub service_id: String,
}

/// One deduction (`collection.details[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionDetail {
    /// From 1.
    pub seq: u32,
    /// Fen.
    pub amount: i64,
    /// `NEWTON` (Pay Score deducted) | `MCH` (paid elsewhere).
    pub paid_type: String,
    /// `yyyyMMddHHmmss`.
    pub paid_time: String,
    /// The deduction's transaction (refunds name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// `collection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// `USER_PAYING` | `USER_PAID`.
    pub state: String,
    /// Fen.
    pub total_amount: i64,
    /// Fen still to deduct.
    pub paying_amount: i64,
    /// Fen deducted.
    pub paid_amount: i64,
    /// The deductions.
    #[serde(default)]
    pub details: Vec<CollectionDetail>,
}

/// The service order (query answer, create/complete answer, notification resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOrder {
    /// The app.
    pub appid: String,
    /// The merchant.
    pub mchid: String,
    /// The service.
    pub service_id: String,
    /// Our order number.
    pub out_order_no: String,
    /// Shown to the shopper.
    #[serde(default)]
    pub service_introduction: String,
    /// `CREATED` | `DOING` | `DONE` | `REVOKED` | `EXPIRED`.
    pub state: String,
    /// `USER_CONFIRM` | `MCH_COMPLETE` (with `DOING`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_description: Option<String>,
    /// Fen, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<i64>,
    /// Lines (after complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_payments: Option<Vec<Payment>>,
    /// Discounts (after complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_discounts: Option<Vec<Discount>>,
    /// The limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_fund: Option<RiskFund>,
    /// The service's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// Echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// WeChat's order id.
    #[serde(default)]
    pub order_id: String,
    /// Whether money is to be deducted (after a non-zero complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_collection: Option<bool>,
    /// The deduction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<Collection>,
    /// The shopper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// For the mini-program's confirm page (confirm mode, create answer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

/// `amount` of a refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmountRequest {
    /// Fen to give back.
    pub refund: i64,
    /// Fen the transaction was.
    pub total: i64,
    /// `CNY`.
    pub currency: String,
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRefund {
    /// The deduction's transaction (`collection.details[].transaction_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The deduction's own trade number (never `out_order_no`, §0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// Our refund number: refunds at most once.
    pub out_refund_no: String,
    /// ≤ 80 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the result is notified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// How much.
    pub amount: RefundAmountRequest,
}

/// A refund's amounts (answer and notification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    /// Fen the transaction was.
    pub total: i64,
    /// Fen refunded.
    pub refund: i64,
    /// Fen the payer paid.
    pub payer_total: i64,
    /// Fen the payer gets back.
    pub payer_refund: i64,
    /// `CNY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The refund object (create and query answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundObject {
    /// WeChat's refund id.
    pub refund_id: String,
    /// Ours.
    pub out_refund_no: String,
    /// The deduction.
    pub transaction_id: String,
    /// The deduction's trade number.
    pub out_trade_no: String,
    /// `ORIGINAL` | `BALANCE` | …
    pub channel: String,
    /// Where the money went.
    pub user_received_account: String,
    /// RFC 3339, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// RFC 3339.
    pub create_time: String,
    /// `SUCCESS` | `CLOSED` | `PROCESSING` | `ABNORMAL`.
    pub status: String,
    /// Amounts.
    pub amount: RefundAmount,
}

/// The decrypted resource of a `REFUND.*` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResource {
    /// The merchant.
    pub mchid: String,
    /// The deduction's trade number.
    pub out_trade_no: String,
    /// The deduction.
    pub transaction_id: String,
    /// Ours.
    pub out_refund_no: String,
    /// WeChat's.
    pub refund_id: String,
    /// `SUCCESS` | `CLOSED` | `ABNORMAL`.
    pub refund_status: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// Where the money went.
    #[serde(default)]
    pub user_received_account: String,
    /// Amounts.
    pub amount: RefundAmount,
}

/// An error answer: HTTP status plus `{code, message}` (§1.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// `PARAM_ERROR`, `INVALID_REQUEST`, `SIGN_ERROR`, `SYSTEM_ERROR`, …
    pub code: String,
    /// Human-readable.
    #[serde(default)]
    pub message: String,
}

/// A notification's encrypted resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// base64(ciphertext ‖ tag).
    pub ciphertext: String,
    /// AAD (may be empty).
    #[serde(default)]
    pub associated_data: String,
    /// `payscore` | `refund`.
    #[serde(default)]
    pub original_type: String,
    /// 12 ASCII bytes.
    pub nonce: String,
}

/// A notification (§1.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The same on every resend.
    pub id: String,
    /// RFC 3339 `+08:00`.
    pub create_time: String,
    /// `PAYSCORE.USER_CONFIRM`, `PAYSCORE.USER_PAID`, `REFUND.SUCCESS`, …
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: String,
    /// Human-readable.
    #[serde(default)]
    pub summary: String,
    /// The encrypted order or refund.
    pub resource: EncryptedResource,
}

/// The answer to a bill request (§1.10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillRef {
    /// `SHA1`.
    pub hash_type: String,
    /// SHA1 of the un-gzipped file, hex.
    pub hash_value: String,
    /// Where to fetch it (valid a few minutes).
    pub download_url: String,
}

/// Encrypts a notification resource under the APIv3 key with a fresh 12-character
/// nonce and `associated_data = original_type`.
pub fn encrypt_resource(key: &ApiV3Key, original_type: &str, plaintext: &[u8]) -> EncryptedResource {
    let nonce = random_alphanumeric(12);
    let mut n = [0u8; 12];
    n.copy_from_slice(&nonce.as_bytes()[..12]);
    EncryptedResource {
        algorithm: "AEAD_AES_256_GCM".into(),
        ciphertext: aes_gcm_encrypt(key.bytes(), &n, original_type.as_bytes(), plaintext),
        associated_data: original_type.into(),
        original_type: original_type.into(),
        nonce,
    }
}
