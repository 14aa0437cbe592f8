//! [`AlipayAdapter`]: `PaymentProvider` over Alipay's gateway [PAYMENTS.md §2.2, §2.5].
//!
//! - merchant numbers: `out_order_no` = `out_trade_no` = the order id's 32 hex digits
//!   (`refs`), the freeze's `out_request_no` = `out_order_no`, an unfreeze's
//!   `out_request_no` = `out_order_no` + `U`, a refund's `out_request_no` = the refund
//!   id's 32 hex digits (so every call is idempotent by our own keys);
//! - confirm each time → `alipay.fund.auth.order.app.freeze` (waits for the shopper);
//!   confirm once → `alipay.fund.auth.order.freeze` (authorized at create);
//! - collect → the freeze's `auth_no` from `operation.detail.query`, then `trade.pay`
//!   with `auth_confirm_mode=COMPLETE` (the rest is unfrozen);
//! - a `20000` / `*.SYSTEM_ERROR`, a timeout or an unverifiable answer is resolved by a
//!   query (`operation.detail.query`, `trade.query`, `fastpay.refund.query`) and the call
//!   is repeated with the same keys, at most [`ATTEMPTS`] times; still unknown →
//!   `Unavailable`. Business refusals (`40004`) → `Refused { code: sub_code, message:
//!   sub_msg }`, except where the port has a failure outcome (`collect`, `refund`).

use super::bill;
use super::client::Client;
use super::wire::{self, Reply, CODE_BUSINESS, PREAUTH_PAY};
use crate::keys::AlipayKeys;
use crate::money::{parse_yuan, yuan};
use crate::refs::out_order_no;
use async_trait::async_trait;
use serde_json::json;
use std::time::Duration;
use tare_domain::{Cents, ConfirmMode, ProviderKind};
use tare_sagas::ports::{
    AuthorizationCreated, AuthorizationRequest, BillLine, CollectionOutcome, CollectionRequest, PaymentProvider, ProviderError,
    ProviderOrderStatus, RefundOutcome, RefundRequest,
};

/// How many times a call whose outcome stayed unknown is made (with a query between).
pub const ATTEMPTS: usize = 3;

/// The Alipay payment provider, over HTTP.
pub struct AlipayAdapter {
    client: Client,
    confirm_base: String,
}

impl std::fmt::Debug for AlipayAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayAdapter")
            .field("gateway", &self.client.gateway)
            .finish_non_exhaustive()
    }
}

fn refused(r: &Reply) -> ProviderError {
    ProviderError::Refused {
        code: r.sub_code.clone().unwrap_or_else(|| r.code.clone()),
        message: r.message.clone(),
    }
}

fn unavailable(what: &str) -> ProviderError {
    ProviderError::Unavailable(format!("alipay: {what}"))
}

/// A yuan amount of an answer (an answer with a malformed one is not trusted).
fn amount_of(r: &Reply, key: &str) -> Result<Cents, ProviderError> {
    parse_yuan(r.str(key).unwrap_or("")).map_err(|e| unavailable(&format!("{key}: {e}")))
}

impl AlipayAdapter {
    /// An adapter calling `gateway_url` (`https://openapi.alipay.com/gateway.do`, or the
    /// sandbox's `…/sandbox/alipay/gateway.do`), signing with `keys.app_private_key`,
    /// trusting answers signed with `keys.alipay_public_key`, asking for notifications
    /// at `notify_url`, giving up on a call after `timeout`.
    ///
    /// The confirm URL handed out for confirm-each-time is the sandbox's:
    /// `gateway_url` without its trailing `/gateway.do`, then
    /// `/authorizations/{out_order_no}/confirm`; [`AlipayAdapter::with_confirm_base`]
    /// changes the base.
    pub fn new(gateway_url: &str, keys: AlipayKeys, notify_url: &str, timeout: Duration) -> Self {
        let confirm_base = gateway_url.trim_end_matches('/').trim_end_matches("/gateway.do").to_string();
        Self {
            client: Client::new(gateway_url, keys, notify_url, timeout),
            confirm_base,
        }
    }

    /// Uses `base` + `/authorizations/{out_order_no}/confirm` as the confirm URL.
    pub fn with_confirm_base(mut self, base: &str) -> Self {
        self.confirm_base = base.trim_end_matches('/').to_string();
        self
    }

    /// The freeze of an order (`None`: Alipay never saw it).
    async fn detail(&self, no: &str) -> Result<Option<Reply>, ProviderError> {
        let r = self
            .client
            .call(wire::DETAIL_QUERY, json!({"out_order_no": no, "out_request_no": no}), false)
            .await?;
        match r.sub_code.as_deref() {
            _ if r.is_success() => Ok(Some(r)),
            Some("AUTH_ORDER_NOT_EXIST") => Ok(None),
            _ if r.is_unknown() => Err(unavailable("freeze query: system error")),
            _ => Err(refused(&r)),
        }
    }

    /// The trade of an order (`None`: no payment was made).
    async fn trade(&self, no: &str) -> Result<Option<Reply>, ProviderError> {
        let r = self.client.call(wire::TRADE_QUERY, json!({"out_trade_no": no}), false).await?;
        match r.sub_code.as_deref() {
            _ if r.is_success() => Ok(Some(r)),
            Some("ACQ.TRADE_NOT_EXIST") => Ok(None),
            _ if r.is_unknown() => Err(unavailable("trade query: system error")),
            _ => Err(refused(&r)),
        }
    }

    fn created(&self, no: &str, mode: ConfirmMode, authorized: bool) -> AuthorizationCreated {
        let confirm_url =
            (mode == ConfirmMode::EachTime && !authorized).then(|| format!("{}/authorizations/{no}/confirm", self.confirm_base));
        AuthorizationCreated {
            provider_order_ref: no.to_string(),
            confirm_url,
            authorized,
        }
    }

    /// Makes an idempotent mutating call until it is answered for sure: `Ok(Some)` on
    /// success, `Ok(None)` when the outcome stayed unknown (the caller queries), a
    /// refusal as the reply itself in `Err`.
    async fn attempt(&self, method: &str, biz: &serde_json::Value, notify: bool) -> Result<Option<Reply>, Reply> {
        match self.client.call(method, biz.clone(), notify).await {
            Ok(r) if r.is_success() => Ok(Some(r)),
            Ok(r) if r.is_unknown() => Ok(None),
            Ok(r) => Err(r),
            Err(_) => Ok(None),
        }
    }

    /// Unfreezes the rest of an authorized freeze, or cancels one that is not (yet).
    async fn release(&self, no: &str, reason: &str) -> Result<(), ProviderError> {
        for _ in 0..ATTEMPTS {
            let (method, biz) = match self.detail(no).await? {
                Some(d) if d.str("order_status") == Some("AUTHORIZED") => {
                    let rest = amount_of(&d, "rest_amount")?;
                    let biz = json!({
                        "auth_no": d.str("auth_no").unwrap_or(""),
                        "out_request_no": format!("{no}U"),
                        "amount": yuan(rest),
                        "remark": reason,
                    });
                    (wire::UNFREEZE, biz)
                }
                Some(d) if d.str("order_status") != Some("INIT") => return Ok(()),
                _ => (
                    wire::OPERATION_CANCEL,
                    json!({"out_order_no": no, "out_request_no": no, "remark": reason}),
                ),
            };
            match self.attempt(method, &biz, true).await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => continue,
                Err(r) => return Err(refused(&r)),
            }
        }
        Err(unavailable("cancel: outcome unknown"))
    }
}

#[async_trait]
impl PaymentProvider for AlipayAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Alipay
    }

    async fn create_authorization(&self, req: AuthorizationRequest) -> Result<AuthorizationCreated, ProviderError> {
        let no = out_order_no(&req.order_id);
        let method = if req.confirm_mode == ConfirmMode::Once {
            wire::FREEZE
        } else {
            wire::APP_FREEZE
        };
        let biz = json!({
            "out_order_no": no,
            "out_request_no": no,
            "order_title": "Tare 无人售货柜",
            "amount": yuan(req.limit),
            "product_code": PREAUTH_PAY,
            "payer_user_id": req.shopper_id,
            "timeout_express": "2d",
        });
        for _ in 0..ATTEMPTS {
            match self.attempt(method, &biz, true).await {
                Ok(Some(r)) => return Ok(self.created(&no, req.confirm_mode, r.str("status") == Some("SUCCESS"))),
                Err(r) => return Err(refused(&r)),
                Ok(None) => {}
            }
            match self.detail(&no).await? {
                Some(d) => match d.str("order_status") {
                    Some("INIT") => return Ok(self.created(&no, req.confirm_mode, false)),
                    Some("AUTHORIZED") | Some("FINISH") => return Ok(self.created(&no, req.confirm_mode, true)),
                    _ => {
                        return Err(ProviderError::Refused {
                            code: "ORDER_ALREADY_CLOSED".into(),
                            message: "the freeze is closed".into(),
                        })
                    }
                },
                None => continue,
            }
        }
        Err(unavailable("freeze: outcome unknown"))
    }

    async fn cancel(&self, order_id: &str, reason: &str) -> Result<(), ProviderError> {
        self.release(&out_order_no(order_id), reason).await
    }

    async fn collect(&self, req: CollectionRequest) -> Result<CollectionOutcome, ProviderError> {
        let no = out_order_no(&req.order_id);
        if req.amount.get() == 0 {
            // Nothing taken: Alipay cannot pay 0.00, so the whole freeze goes back.
            self.release(&no, "nothing taken").await?;
            return Ok(CollectionOutcome::Collected {
                transaction_id: String::new(),
                amount: Cents::ZERO,
            });
        }
        let Some(d) = self.detail(&no).await? else {
            return Err(ProviderError::Refused {
                code: "AUTH_ORDER_NOT_EXIST".into(),
                message: "no freeze for this order".into(),
            });
        };
        let subject: Vec<String> = req.lines.iter().map(|l| format!("{}×{}", l.name, l.qty)).collect();
        let subject = if subject.is_empty() {
            "Tare 无人售货柜".to_string()
        } else {
            subject.join(" ").chars().take(120).collect()
        };
        let biz = json!({
            "out_trade_no": no,
            "total_amount": yuan(req.amount),
            "subject": subject,
            "product_code": PREAUTH_PAY,
            "auth_no": d.str("auth_no").unwrap_or(""),
            "auth_confirm_mode": "COMPLETE",
        });
        for _ in 0..ATTEMPTS {
            match self.attempt(wire::TRADE_PAY, &biz, true).await {
                Ok(Some(r)) => {
                    let transaction_id = r.str("trade_no").unwrap_or("").to_string();
                    return Ok(CollectionOutcome::Collected {
                        transaction_id,
                        amount: amount_of(&r, "total_amount")?,
                    });
                }
                Err(r) if r.sub_code.as_deref() == Some("ACQ.TRADE_HAS_SUCCESS") => {}
                Err(r) if r.code == CODE_BUSINESS => {
                    return Ok(CollectionOutcome::Failed {
                        reason: r.sub_code.clone().unwrap_or(r.message),
                    });
                }
                Err(r) => return Err(refused(&r)),
                Ok(None) => {}
            }
            if let Some(t) = self.trade(&no).await? {
                return match t.str("trade_status") {
                    Some("TRADE_SUCCESS" | "TRADE_FINISHED" | "TRADE_CLOSED") => Ok(CollectionOutcome::Collected {
                        transaction_id: t.str("trade_no").unwrap_or("").to_string(),
                        amount: amount_of(&t, "total_amount")?,
                    }),
                    _ => Ok(CollectionOutcome::Pending),
                };
            }
        }
        Err(unavailable("trade.pay: outcome unknown"))
    }

    async fn query(&self, order_id: &str) -> Result<ProviderOrderStatus, ProviderError> {
        let no = out_order_no(order_id);
        if let Some(t) = self.trade(&no).await? {
            return Ok(match t.str("trade_status") {
                Some("TRADE_SUCCESS" | "TRADE_FINISHED" | "TRADE_CLOSED") => ProviderOrderStatus::Collected {
                    transaction_id: t.str("trade_no").unwrap_or("").to_string(),
                    amount: amount_of(&t, "total_amount")?,
                },
                _ => ProviderOrderStatus::Collecting,
            });
        }
        Ok(match self.detail(&no).await? {
            None => ProviderOrderStatus::NotFound,
            Some(d) => match d.str("order_status") {
                Some("INIT") => ProviderOrderStatus::AwaitingConfirmation,
                Some("AUTHORIZED") => ProviderOrderStatus::Authorized,
                _ => ProviderOrderStatus::Cancelled,
            },
        })
    }

    async fn refund(&self, req: RefundRequest) -> Result<RefundOutcome, ProviderError> {
        let no = out_order_no(&req.order_id);
        let request_no = out_order_no(&req.refund_id);
        let biz = json!({
            "out_trade_no": no,
            "refund_amount": yuan(req.amount),
            "out_request_no": request_no,
            "refund_reason": req.reason,
        });
        for _ in 0..ATTEMPTS {
            match self.attempt(wire::TRADE_REFUND, &biz, false).await {
                Ok(Some(r)) => {
                    let trade_no = r.str("trade_no").unwrap_or(&req.transaction_id);
                    return Ok(RefundOutcome::Succeeded {
                        provider_refund_id: format!("{trade_no}_{request_no}"),
                    });
                }
                Err(r) if r.code == CODE_BUSINESS => {
                    return Ok(RefundOutcome::Failed {
                        reason: r.sub_code.clone().unwrap_or(r.message),
                    });
                }
                Err(r) => return Err(refused(&r)),
                Ok(None) => {}
            }
            if let RefundOutcome::Succeeded { provider_refund_id } = self.refund_status(&req.order_id, &req.refund_id).await? {
                return Ok(RefundOutcome::Succeeded { provider_refund_id });
            }
        }
        Err(unavailable("trade.refund: outcome unknown"))
    }

    async fn refund_status(&self, order_id: &str, refund_id: &str) -> Result<RefundOutcome, ProviderError> {
        let no = out_order_no(order_id);
        let request_no = out_order_no(refund_id);
        let r = self
            .client
            .call(wire::REFUND_QUERY, json!({"out_trade_no": no, "out_request_no": request_no}), false)
            .await?;
        if r.is_success() {
            if r.str("refund_amount").is_none() {
                return Ok(RefundOutcome::Failed {
                    reason: "not_found".into(),
                });
            }
            amount_of(&r, "refund_amount")?;
            let trade_no = r.str("trade_no").unwrap_or("");
            return Ok(RefundOutcome::Succeeded {
                provider_refund_id: format!("{trade_no}_{request_no}"),
            });
        }
        match r.sub_code.as_deref() {
            Some("ACQ.TRADE_NOT_EXIST") => Ok(RefundOutcome::Failed {
                reason: "not_found".into(),
            }),
            _ if r.is_unknown() => Err(unavailable("refund query: system error")),
            _ => Err(refused(&r)),
        }
    }

    async fn bill(&self, date: &str) -> Result<Vec<BillLine>, ProviderError> {
        let r = self
            .client
            .call(wire::BILL_URL_QUERY, json!({"bill_type": "trade", "bill_date": date}), false)
            .await?;
        if !r.is_success() {
            return Err(if r.is_unknown() {
                unavailable("bill url: system error")
            } else {
                refused(&r)
            });
        }
        let url = r.str("bill_download_url").ok_or_else(|| unavailable("bill url missing"))?;
        let zip = self.client.fetch(url).await?;
        bill::parse(&zip).map_err(|e| unavailable(&e.to_string()))
    }
}
