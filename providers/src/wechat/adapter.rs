//! The platform's WeChat Pay Score client [PAYMENTS.md §1]: `PaymentProvider` over HTTP.
//! Every request is signed with the merchant key; every answer must carry a valid
//! platform signature, or its outcome counts as unknown (`Unavailable`), like a timeout,
//! a 5xx or `SYSTEM_ERROR`. Documented refusals (4xx with a code) are `Refused`, or a
//! `Failed` outcome where the port has one (collections, refunds).

use super::bill::{parse_bill, sha1_hex};
use super::callback::refund_no;
use super::clock::compact_china;
use super::sign::{authorization, verify_response};
use super::wire::{
    ApiError, BillRef, CancelOrder, CompleteOrder, CreateOrder, CreateRefund, Discount, Payment, RefundAmountRequest, RefundObject,
    RiskFund, ServiceOrder, TimeRange,
};
use crate::money::{fen, from_fen};
use crate::refs::out_order_no;
use crate::sandbox::now_ms;
use async_trait::async_trait;
use reqwest::Method;
use serde::de::DeserializeOwned;
use std::io::Read;
use std::time::Duration;
use tare_domain::order::OrderLine;
use tare_domain::{Cents, ConfirmMode, ProviderKind};
use tare_sagas::ports::{
    AuthorizationCreated, AuthorizationRequest, BillLine, CollectionOutcome, CollectionRequest, PaymentProvider, ProviderError,
    ProviderOrderStatus, RefundOutcome, RefundRequest,
};

/// What the shopper sees as the service (≤ 20 characters).
const SERVICE_INTRODUCTION: &str = "无人货柜购物";

/// Codes that mean the merchant's setup is wrong, not the order: never an outcome.
const SETUP_CODES: [&str; 3] = ["SIGN_ERROR", "NO_AUTH", "PARAM_ERROR"];

/// WeChat Pay Score for the platform (sandbox or the real API, by `base_url`).
pub struct WechatAdapter {
    base: String,
    /// Where shoppers reach the sandbox's confirm page (the base unless told otherwise).
    confirm_base: String,
    prefix: String,
    keys: crate::keys::WechatKeys,
    notify_url: String,
    http: reqwest::Client,
}

fn unavailable(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(e.to_string())
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

impl WechatAdapter {
    /// An adapter calling `base_url` (`http://127.0.0.1:8080/sandbox/wechat` on the
    /// embedded default, `https://api.mch.weixin.qq.com` for real), naming `notify_url`
    /// for notifications, giving up on a call after `timeout` (outcome unknown).
    pub fn new(base_url: &str, keys: crate::keys::WechatKeys, notify_url: &str, timeout: Duration) -> Self {
        let base = base_url.trim_end_matches('/').to_string();
        let prefix = reqwest::Url::parse(&base)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self {
            confirm_base: base.clone(),
            base,
            prefix,
            keys,
            notify_url: notify_url.to_string(),
            http,
        }
    }

    /// Shoppers reach the sandbox's confirm page at `base` (`{base}/authorizations/{no}/
    /// confirm`) rather than at the API base (a sandbox behind another name).
    pub fn with_confirm_base(mut self, base: &str) -> Self {
        self.confirm_base = base.trim_end_matches('/').to_string();
        self
    }

    /// One signed call; the answer's signature is checked before anything is read.
    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<String>) -> Result<T, ProviderError> {
        let body = body.unwrap_or_default();
        let auth = authorization(
            &self.keys,
            method.as_str(),
            &format!("{}{path}", self.prefix),
            body.as_bytes(),
            now_ms() / 1000,
        );
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", auth)
            .header("Accept", "application/json");
        if method != Method::GET {
            request = request.header("Content-Type", "application/json").body(body);
        }
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(unavailable)?;
        verify_response(
            &self.keys.platform_public_key,
            &self.keys.platform.serial_no,
            &headers,
            &bytes,
            now_ms(),
        )
        .map_err(|e| unavailable(format!("unverifiable answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("unreadable answer: {e}")));
        }
        let error: ApiError = serde_json::from_slice(&bytes).unwrap_or(ApiError {
            code: status.as_str().to_string(),
            message: String::new(),
        });
        if status.is_server_error() || status.as_u16() == 429 || error.code == "SYSTEM_ERROR" {
            return Err(unavailable(format!("{status} {}: {}", error.code, error.message)));
        }
        Err(ProviderError::Refused {
            code: error.code,
            message: error.message,
        })
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl serde::Serialize) -> Result<T, ProviderError> {
        let body = serde_json::to_string(body).map_err(unavailable)?;
        self.call(Method::POST, path, Some(body)).await
    }

    async fn order(&self, no: &str) -> Result<ServiceOrder, ProviderError> {
        let m = &self.keys.merchant;
        let q =
            serde_urlencoded::to_string([("out_order_no", no), ("service_id", &m.service_id), ("appid", &m.appid)]).map_err(unavailable)?;
        self.call(Method::GET, &format!("/v3/payscore/serviceorder?{q}"), None).await
    }
}

/// The receipt as `post_payments`/`post_discounts` when it adds up to the amount (and
/// fits WeChat's limits), else a single line of the amount.
fn receipt(lines: &[OrderLine], discount: Cents, amount: Cents) -> (Vec<Payment>, Option<Vec<Discount>>) {
    let payments: Vec<Payment> = lines
        .iter()
        .map(|l| Payment {
            name: truncate(&l.name, 20),
            amount: l.unit_price.get().saturating_mul(i64::from(l.qty)),
            description: None,
            count: Some(l.qty),
        })
        .collect();
    let sum: i64 = payments.iter().map(|p| p.amount).sum();
    let fits = !payments.is_empty() && payments.len() <= 100 && lines.iter().all(|l| (1..=100).contains(&l.qty));
    if fits && discount.get() >= 0 && sum - discount.get() == fen(amount) {
        let discounts = (discount.get() > 0).then(|| {
            vec![Discount {
                name: "优惠".into(),
                description: None,
                amount: discount.get(),
                count: Some(1),
            }]
        });
        return (payments, discounts);
    }
    let single = Payment {
        name: "商品".into(),
        amount: fen(amount),
        description: None,
        count: Some(1),
    };
    (vec![single], None)
}

/// The provider's view of a service order (§1.4).
fn status_of(order: &ServiceOrder) -> Result<ProviderOrderStatus, ProviderError> {
    Ok(match (order.state.as_str(), order.state_description.as_deref()) {
        ("CREATED", _) => ProviderOrderStatus::AwaitingConfirmation,
        ("DOING", Some("MCH_COMPLETE")) => ProviderOrderStatus::Collecting,
        ("DOING", _) => ProviderOrderStatus::Authorized,
        ("DONE", _) => {
            let (transaction_id, paid) = order
                .collection
                .as_ref()
                .map(|c| {
                    (
                        c.details.iter().rev().find_map(|d| d.transaction_id.clone()).unwrap_or_default(),
                        c.paid_amount,
                    )
                })
                .unwrap_or_default();
            ProviderOrderStatus::Collected {
                transaction_id,
                amount: from_fen(paid).map_err(unavailable)?,
            }
        }
        _ => ProviderOrderStatus::Cancelled,
    })
}

fn refund_outcome(r: &RefundObject) -> RefundOutcome {
    match r.status.as_str() {
        "SUCCESS" => RefundOutcome::Succeeded {
            provider_refund_id: r.refund_id.clone(),
        },
        "PROCESSING" => RefundOutcome::Pending,
        other => RefundOutcome::Failed { reason: other.to_string() },
    }
}

/// A business refusal as a failed outcome; setup errors and unknown outcomes stay errors.
fn as_failed<T>(e: ProviderError, failed: impl FnOnce(String) -> T) -> Result<T, ProviderError> {
    match e {
        ProviderError::Refused { code, message } if !SETUP_CODES.contains(&code.as_str()) => Ok(failed(format!("{code}: {message}"))),
        other => Err(other),
    }
}

#[async_trait]
impl PaymentProvider for WechatAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Wechat
    }

    async fn create_authorization(&self, req: AuthorizationRequest) -> Result<AuthorizationCreated, ProviderError> {
        let no = out_order_no(&req.order_id);
        let m = &self.keys.merchant;
        let need_user_confirm = req.confirm_mode == ConfirmMode::EachTime;
        let body = CreateOrder {
            out_order_no: no.clone(),
            appid: m.appid.clone(),
            service_id: m.service_id.clone(),
            service_introduction: SERVICE_INTRODUCTION.into(),
            risk_fund: RiskFund {
                name: "ESTIMATE_ORDER_COST".into(),
                amount: fen(req.limit),
                description: Some("购物预估金额".into()),
            },
            time_range: TimeRange {
                start_time: Some("OnAccept".into()),
                end_time: None,
            },
            attach: None,
            notify_url: Some(self.notify_url.clone()),
            openid: Some(req.shopper_id.clone()),
            need_user_confirm,
        };
        let order: ServiceOrder = self.post("/v3/payscore/serviceorder", &body).await?;
        match order.state.as_str() {
            "CREATED" if need_user_confirm => Ok(AuthorizationCreated {
                confirm_url: Some(format!("{}/authorizations/{no}/confirm", self.confirm_base)),
                provider_order_ref: no,
                authorized: false,
            }),
            "DOING" | "DONE" => Ok(AuthorizationCreated {
                provider_order_ref: no,
                confirm_url: None,
                authorized: true,
            }),
            // §1.1: CREATED in the no-confirm mode is a failed create.
            other => Err(ProviderError::Refused {
                code: "INVALID_ORDER_STATE".into(),
                message: format!("create answered state {other}"),
            }),
        }
    }

    /// An order WeChat never saw, or one already cancelled, is cancelled.
    async fn cancel(&self, order_id: &str, reason: &str) -> Result<(), ProviderError> {
        let no = out_order_no(order_id);
        let m = &self.keys.merchant;
        let body = CancelOrder {
            appid: m.appid.clone(),
            service_id: m.service_id.clone(),
            reason: truncate(reason, 50),
        };
        match self
            .post::<serde_json::Value>(&format!("/v3/payscore/serviceorder/{no}/cancel"), &body)
            .await
        {
            Ok(_) => Ok(()),
            Err(ProviderError::Refused { code, .. }) if code == "ORDER_CANCELED" || code == "ORDER_NOT_EXIST" => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn collect(&self, req: CollectionRequest) -> Result<CollectionOutcome, ProviderError> {
        let no = out_order_no(&req.order_id);
        let m = &self.keys.merchant;
        let (post_payments, post_discounts) = receipt(&req.lines, req.discount, req.amount);
        let body = CompleteOrder {
            appid: m.appid.clone(),
            service_id: m.service_id.clone(),
            post_payments,
            post_discounts,
            total_amount: fen(req.amount),
            time_range: Some(TimeRange {
                start_time: None,
                end_time: Some(compact_china(now_ms())),
            }),
        };
        let order: ServiceOrder = match self.post(&format!("/v3/payscore/serviceorder/{no}/complete"), &body).await {
            Ok(o) => o,
            Err(e) => return as_failed(e, |reason| CollectionOutcome::Failed { reason }),
        };
        Ok(match status_of(&order)? {
            ProviderOrderStatus::Collected { transaction_id, amount } => CollectionOutcome::Collected { transaction_id, amount },
            ProviderOrderStatus::Collecting => CollectionOutcome::Pending,
            other => CollectionOutcome::Failed {
                reason: format!("{other:?}"),
            },
        })
    }

    async fn query(&self, order_id: &str) -> Result<ProviderOrderStatus, ProviderError> {
        match self.order(&out_order_no(order_id)).await {
            Ok(order) => status_of(&order),
            Err(ProviderError::Refused { code, .. }) if code == "ORDER_NOT_EXIST" => Ok(ProviderOrderStatus::NotFound),
            Err(e) => Err(e),
        }
    }

    async fn refund(&self, req: RefundRequest) -> Result<RefundOutcome, ProviderError> {
        let body = CreateRefund {
            transaction_id: Some(req.transaction_id.clone()),
            out_trade_no: None,
            out_refund_no: refund_no(&req.order_id, &req.refund_id),
            reason: Some(truncate(&req.reason, 26)),
            notify_url: Some(self.notify_url.clone()),
            amount: RefundAmountRequest {
                refund: fen(req.amount),
                total: fen(req.charged),
                currency: "CNY".into(),
            },
        };
        match self.post::<RefundObject>("/v3/refund/domestic/refunds", &body).await {
            Ok(r) => Ok(refund_outcome(&r)),
            Err(e) => as_failed(e, |reason| RefundOutcome::Failed { reason }),
        }
    }

    async fn refund_status(&self, order_id: &str, refund_id: &str) -> Result<RefundOutcome, ProviderError> {
        let no = refund_no(order_id, refund_id);
        match self
            .call::<RefundObject>(Method::GET, &format!("/v3/refund/domestic/refunds/{no}"), None)
            .await
        {
            Ok(r) => Ok(refund_outcome(&r)),
            Err(ProviderError::Refused { code, .. }) if code == "RESOURCE_NOT_EXISTS" => Ok(RefundOutcome::Failed {
                reason: "not_found".into(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn bill(&self, date: &str) -> Result<Vec<BillLine>, ProviderError> {
        let q = serde_urlencoded::to_string([("bill_date", date), ("bill_type", "ALL"), ("tar_type", "GZIP")]).map_err(unavailable)?;
        let r: BillRef = self.call(Method::GET, &format!("/v3/bill/tradebill?{q}"), None).await?;
        // The file itself is not signed (§1.10): its SHA1 is, inside the signed answer.
        let url = reqwest::Url::parse(&r.download_url).map_err(unavailable)?;
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let auth = authorization(&self.keys, "GET", &path, b"", now_ms() / 1000);
        let response = self.http.get(url).header("Authorization", auth).send().await.map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(format!("bill download: {}", response.status())));
        }
        let gz = response.bytes().await.map_err(unavailable)?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz.as_ref())
            .read_to_string(&mut text)
            .map_err(|e| unavailable(format!("bill file: {e}")))?;
        if !sha1_hex(text.as_bytes()).eq_ignore_ascii_case(&r.hash_value) {
            return Err(unavailable("bill file does not match its SHA1"));
        }
        parse_bill(text.trim_start_matches('\u{feff}')).map_err(unavailable)
    }
}
