//! The sandbox's state and its fund-authorization methods [PAYMENTS.md §2.2]: freeze
//! (waiting for the shopper's tap, or authorized at once), unfreeze, cancel, the detail
//! query; the dispatch of every method with the injected system errors. Trades, refunds
//! and bills are in `ops_trade`.
//!
//! Sub codes Alipay does not publish for these cases are the sandbox's own and are named
//! here: `OUT_ORDER_NO_CONFLICT` (an `out_order_no` reused with other parameters),
//! `RISK_CONTROL_REJECT` (the risk check, "综合评估不通过"), `AUTH_ORDER_NOT_EXIST`,
//! `ORDER_ALREADY_CLOSED`, `ORDER_ALREADY_FINISHED`, `REQUEST_AMOUNT_EXCEED`,
//! `ORDER_STATUS_NOT_SUPPORT`.
//!
//! System errors (`Behaviour::system_errors = n`): the first `n` mutating calls of each
//! order (freeze, unfreeze, cancel, `trade.pay`, `trade.refund`; counted per
//! `out_order_no` = `out_trade_no`) answer `20000`/`ACQ.SYSTEM_ERROR`. Deterministically,
//! the odd ones (1st, 3rd, …) do **not** apply the operation and the even ones (2nd, 4th,
//! …) **do** apply it and still answer `20000` — so only a query tells. Queries never fail.

use super::bill::BillRow;
use super::notify::Outgoing;
use super::sign::china_datetime;
use super::wire::{self, business, failure, success, system_error, CODE_INVALID, CODE_MISSING};
use crate::crypto::random_alphanumeric;
use crate::money::{parse_yuan, yuan};
use crate::sandbox::{china_date, now_ms, Behaviour, Charge, ConfirmError, Refund};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use tare_domain::{Cents, UnixMs};

/// A freeze's state (`order_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FreezeStatus {
    /// Waiting for the shopper (`INIT`).
    Init,
    /// Frozen (`AUTHORIZED`).
    Authorized,
    /// Used and nothing left (`FINISH`).
    Finished,
    /// Cancelled or fully unfrozen unused (`CLOSED`).
    Closed,
}

impl FreezeStatus {
    fn wire(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::Authorized => "AUTHORIZED",
            Self::Finished => "FINISH",
            Self::Closed => "CLOSED",
        }
    }
}

/// One fund authorization.
#[derive(Debug, Clone)]
pub(super) struct Freeze {
    pub out_order_no: String,
    pub out_request_no: String,
    pub auth_no: String,
    pub operation_id: String,
    pub amount: Cents,
    pub payer: String,
    pub once: bool,
    pub status: FreezeStatus,
    pub notify_url: Option<String>,
    pub created: UnixMs,
    pub trans: Option<UnixMs>,
    pub paid: Cents,
    pub unfrozen: Cents,
    /// Unfreezes done, by `out_request_no` (amount).
    pub unfreezes: HashMap<String, Cents>,
    /// Closed by `operation.cancel` before Alipay ever saw a freeze.
    pub tombstone: bool,
}

impl Freeze {
    pub fn rest(&self) -> Cents {
        self.amount - self.paid - self.unfrozen
    }
}

/// One trade (`trade.pay` against a freeze).
#[derive(Debug, Clone)]
pub(super) struct Trade {
    pub out_trade_no: String,
    pub trade_no: String,
    pub auth_no: String,
    pub payer: String,
    pub total: Cents,
    pub refunded: Cents,
    pub paid_at: UnixMs,
    pub subject: String,
    pub notify_url: Option<String>,
    /// Refunds by `out_request_no`: (amount, when).
    pub refunds: HashMap<String, (Cents, UnixMs)>,
}

/// Everything the sandbox knows.
pub(super) struct Store {
    pub behaviour: Behaviour,
    pub notify_base: Option<String>,
    pub app_id: String,
    pub seller_id: String,
    pub calls: Vec<(String, Value)>,
    pub charges: Vec<Charge>,
    pub refunds: Vec<Refund>,
    pub bill_rows: Vec<BillRow>,
    pub freezes: HashMap<String, Freeze>,
    pub trades: HashMap<String, Trade>,
    pub bill_tokens: HashMap<String, (String, UnixMs)>,
    system_errors: HashMap<String, u32>,
    pub failures: HashMap<String, u32>,
    held: Option<Outgoing>,
    seq: u64,
}

/// Whether the sandbox answers `method`.
pub(super) fn known(method: &str) -> bool {
    [
        wire::APP_FREEZE,
        wire::FREEZE,
        wire::UNFREEZE,
        wire::OPERATION_CANCEL,
        wire::DETAIL_QUERY,
        wire::TRADE_PAY,
        wire::TRADE_QUERY,
        wire::TRADE_REFUND,
        wire::REFUND_QUERY,
        wire::BILL_URL_QUERY,
    ]
    .contains(&method)
}

/// A string field of `biz_content`.
pub(super) fn field<'a>(biz: &'a Value, key: &str) -> Option<&'a str> {
    biz.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A required amount of `biz_content`: yuan with exactly two decimals, at least 0.01.
pub(super) fn amount_field(biz: &Value, key: &str) -> Result<Cents, Map<String, Value>> {
    let Some(raw) = field(biz, key) else {
        return Err(failure(CODE_MISSING, &format!("isv.missing-{key}"), "缺少必选参数"));
    };
    match parse_yuan(raw) {
        Ok(c) if c.get() > 0 => Ok(c),
        _ => Err(failure(CODE_INVALID, "isv.invalid-parameter", &format!("{key} 金额格式错误"))),
    }
}

/// A required string field, or the `40001` answer naming it.
pub(super) fn required<'a>(biz: &'a Value, key: &str) -> Result<&'a str, Map<String, Value>> {
    field(biz, key).ok_or_else(|| failure(CODE_MISSING, &format!("isv.missing-{key}"), "缺少必选参数"))
}

/// `Ok` or the early answer, for methods written with `?`.
pub(super) type Answer = Result<Map<String, Value>, Map<String, Value>>;

impl Store {
    /// An empty sandbox for the app `app_id` / merchant `seller_id`.
    pub fn new(behaviour: Behaviour, app_id: &str, seller_id: &str) -> Self {
        Self {
            behaviour,
            notify_base: None,
            app_id: app_id.to_string(),
            seller_id: seller_id.to_string(),
            calls: Vec::new(),
            charges: Vec::new(),
            refunds: Vec::new(),
            bill_rows: Vec::new(),
            freezes: HashMap::new(),
            trades: HashMap::new(),
            bill_tokens: HashMap::new(),
            system_errors: HashMap::new(),
            failures: HashMap::new(),
            held: None,
            seq: 0,
        }
    }

    /// A fresh number for ids.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Runs `method`, returning the answer object and the notifications to send.
    pub fn run(&mut self, method: &str, biz: &Value, notify_url: Option<String>, bill_base: &str) -> (Map<String, Value>, Vec<Outgoing>) {
        let mut out = Vec::new();
        let fault = self.order_key(method, biz).and_then(|k| self.system_error_due(&k));
        if fault == Some(false) {
            return (system_error(), Vec::new());
        }
        let answer = match method {
            wire::APP_FREEZE => self.freeze(biz, notify_url, false, &mut out),
            wire::FREEZE => self.freeze(biz, notify_url, true, &mut out),
            wire::UNFREEZE => self.unfreeze(biz, &mut out),
            wire::OPERATION_CANCEL => self.cancel(biz, &mut out),
            wire::DETAIL_QUERY => self.detail(biz),
            wire::TRADE_PAY => self.pay(biz, notify_url, &mut out),
            wire::TRADE_QUERY => self.trade_query(biz),
            wire::TRADE_REFUND => self.refund(biz, &mut out),
            wire::REFUND_QUERY => self.refund_query(biz),
            _ => self.bill_url(biz, bill_base),
        };
        let answer = answer.unwrap_or_else(|refusal| refusal);
        let out = self.order_notifications(out);
        if fault == Some(true) {
            return (system_error(), out);
        }
        (answer, out)
    }

    /// The order a mutating call is about (system errors are counted per order).
    fn order_key(&self, method: &str, biz: &Value) -> Option<String> {
        match method {
            wire::APP_FREEZE | wire::FREEZE | wire::OPERATION_CANCEL => field(biz, "out_order_no").map(str::to_string),
            wire::UNFREEZE => {
                let auth_no = field(biz, "auth_no")?;
                self.freezes.values().find(|f| f.auth_no == auth_no).map(|f| f.out_order_no.clone())
            }
            wire::TRADE_PAY | wire::TRADE_REFUND => self.trade_key(biz),
            _ => None,
        }
    }

    /// `out_trade_no`, or the one of `trade_no`.
    pub fn trade_key(&self, biz: &Value) -> Option<String> {
        if let Some(o) = field(biz, "out_trade_no") {
            return Some(o.to_string());
        }
        let trade_no = field(biz, "trade_no")?;
        self.trades
            .values()
            .find(|t| t.trade_no == trade_no)
            .map(|t| t.out_trade_no.clone())
    }

    /// `Some(applies)` when this call is answered with a system error (see the module).
    fn system_error_due(&mut self, order: &str) -> Option<bool> {
        let served = self.system_errors.entry(order.to_string()).or_insert(0);
        if *served >= self.behaviour.system_errors {
            return None;
        }
        *served += 1;
        Some(served.is_multiple_of(2))
    }

    /// Applies the reorder fault: a notification is held back until the next one went.
    fn order_notifications(&mut self, out: Vec<Outgoing>) -> Vec<Outgoing> {
        if !self.behaviour.notifications.reorder {
            return out.into_iter().chain(self.held.take()).collect();
        }
        let mut sent = Vec::new();
        for o in out {
            match self.held.take() {
                None => self.held = Some(o),
                Some(h) => sent.extend([o, h]),
            }
        }
        sent
    }

    /// Where a notification goes: the call's `notify_url`, else the platform's callback.
    pub fn notify_target(&self, notify_url: &Option<String>) -> Option<String> {
        notify_url
            .clone()
            .or_else(|| self.notify_base.as_ref().map(|b| format!("{b}/callbacks/alipay")))
    }

    /// The common notification fields.
    pub fn notification(&mut self, notify_type: &str, url: String, fields: Vec<(&str, String)>) -> Outgoing {
        let mut params = vec![
            ("notify_id".to_string(), random_alphanumeric(32)),
            ("notify_type".to_string(), notify_type.to_string()),
            ("notify_time".to_string(), china_datetime(now_ms())),
            ("app_id".to_string(), self.app_id.clone()),
            ("auth_app_id".to_string(), self.app_id.clone()),
            ("charset".to_string(), "utf-8".to_string()),
            ("version".to_string(), "1.0".to_string()),
        ];
        params.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
        Outgoing { url, params }
    }

    /// A `fund_auth_freeze` / `fund_auth_unfreeze` notification of `f`.
    pub(super) fn freeze_notification(&mut self, f: &Freeze, unfreeze: Option<Cents>, out: &mut Vec<Outgoing>) {
        let Some(url) = self.notify_target(&f.notify_url) else {
            return;
        };
        let (kind, op, amount) = match unfreeze {
            None => ("fund_auth_freeze", "FREEZE", f.amount),
            Some(a) => ("fund_auth_unfreeze", "UNFREEZE", a),
        };
        let at = f.trans.unwrap_or(f.created);
        let fields = vec![
            ("auth_no", f.auth_no.clone()),
            ("out_order_no", f.out_order_no.clone()),
            ("operation_id", f.operation_id.clone()),
            ("out_request_no", f.out_request_no.clone()),
            ("operation_type", op.to_string()),
            ("status", "SUCCESS".to_string()),
            ("amount", yuan(amount)),
            ("total_freeze_amount", yuan(f.amount)),
            ("rest_amount", yuan(f.rest())),
            ("total_pay_amount", yuan(f.paid)),
            ("payer_user_id", f.payer.clone()),
            ("gmt_create", china_datetime(f.created)),
            ("gmt_trans", china_datetime(at)),
        ];
        let n = self.notification(kind, url, fields);
        out.push(n);
    }

    /// The answer of a freeze call.
    fn freeze_answer(f: &Freeze) -> Map<String, Value> {
        let mut m = json!({
            "auth_no": f.auth_no,
            "out_order_no": f.out_order_no,
            "out_request_no": f.out_request_no,
            "operation_id": f.operation_id,
            "amount": yuan(f.amount),
            "status": if f.status == FreezeStatus::Init { "INIT" } else { "SUCCESS" },
        });
        if let (Some(t), Some(o)) = (f.trans, m.as_object_mut()) {
            o.insert("gmt_trans".into(), china_datetime(t).into());
        }
        success(m.as_object().cloned().unwrap_or_default())
    }

    /// `app.freeze` (waits for the tap) or `freeze` (authorized at once).
    fn freeze(&mut self, biz: &Value, notify_url: Option<String>, once: bool, out: &mut Vec<Outgoing>) -> Answer {
        let out_order_no = required(biz, "out_order_no")?.to_string();
        let out_request_no = required(biz, "out_request_no")?.to_string();
        required(biz, "order_title")?;
        let amount = amount_field(biz, "amount")?;
        let payer = field(biz, "payer_user_id").unwrap_or("anonymous").to_string();
        if let Some(f) = self.freezes.get(&out_order_no) {
            if f.tombstone {
                return Err(business("ORDER_ALREADY_CLOSED", "订单已关闭"));
            }
            if f.out_request_no == out_request_no && f.amount == amount && f.once == once && f.payer == payer {
                return Ok(Self::freeze_answer(f));
            }
            return Err(business("OUT_ORDER_NO_CONFLICT", "out_order_no 已使用且参数不一致"));
        }
        let pending = self
            .freezes
            .values()
            .filter(|f| f.payer == payer && matches!(f.status, FreezeStatus::Init | FreezeStatus::Authorized) && f.paid.get() == 0)
            .count();
        if self.behaviour.reject_risk || pending >= self.behaviour.max_pending_per_shopper {
            return Err(business("RISK_CONTROL_REJECT", "综合评估不通过"));
        }
        let now = now_ms();
        let seq = self.next_seq();
        let f = Freeze {
            out_order_no: out_order_no.clone(),
            out_request_no,
            auth_no: format!("{}1{:016}", china_date(now).replace('-', ""), seq),
            operation_id: format!("{}2{:016}", china_date(now).replace('-', ""), seq),
            amount,
            payer,
            once,
            status: if once { FreezeStatus::Authorized } else { FreezeStatus::Init },
            notify_url,
            created: now,
            trans: once.then_some(now),
            paid: Cents::ZERO,
            unfrozen: Cents::ZERO,
            unfreezes: HashMap::new(),
            tombstone: false,
        };
        if once {
            self.freeze_notification(&f, None, out);
        }
        let answer = Self::freeze_answer(&f);
        self.freezes.insert(out_order_no, f);
        Ok(answer)
    }

    /// The shopper's tap: an `INIT` freeze becomes `AUTHORIZED` and is notified.
    pub fn confirm(&mut self, out_order_no: &str) -> Result<Vec<Outgoing>, ConfirmError> {
        let f = self
            .freezes
            .get_mut(out_order_no)
            .filter(|f| !f.tombstone)
            .ok_or(ConfirmError::NotFound)?;
        if f.status != FreezeStatus::Init {
            return Err(ConfirmError::NotAwaiting);
        }
        f.status = FreezeStatus::Authorized;
        f.trans = Some(now_ms());
        let f = f.clone();
        let mut out = Vec::new();
        self.freeze_notification(&f, None, &mut out);
        Ok(self.order_notifications(out))
    }

    /// Gives back (part of) what is still frozen; idempotent by `out_request_no`.
    fn unfreeze(&mut self, biz: &Value, out: &mut Vec<Outgoing>) -> Answer {
        let auth_no = required(biz, "auth_no")?;
        let out_request_no = required(biz, "out_request_no")?.to_string();
        let amount = amount_field(biz, "amount")?;
        let Some(f) = self.freezes.values_mut().find(|f| f.auth_no == auth_no && !f.tombstone) else {
            return Err(business("AUTH_ORDER_NOT_EXIST", "授权单不存在"));
        };
        if !f.unfreezes.contains_key(&out_request_no) {
            if f.status != FreezeStatus::Authorized {
                return Err(business("ORDER_STATUS_NOT_SUPPORT", "授权单状态不支持解冻"));
            }
            if amount > f.rest() {
                return Err(business("REQUEST_AMOUNT_EXCEED", "解冻金额超过剩余冻结金额"));
            }
            f.unfrozen = f.unfrozen + amount;
            f.unfreezes.insert(out_request_no.clone(), amount);
            f.trans = Some(now_ms());
            if f.rest().get() == 0 {
                f.status = if f.paid.get() > 0 {
                    FreezeStatus::Finished
                } else {
                    FreezeStatus::Closed
                };
            }
            let f = f.clone();
            self.freeze_notification(&f, Some(amount), out);
        }
        let f = self
            .freezes
            .values()
            .find(|f| f.auth_no == auth_no)
            .cloned()
            .ok_or_else(system_error)?;
        let done = f.unfreezes.get(&out_request_no).copied().unwrap_or(amount);
        Ok(success(
            json!({
                "auth_no": f.auth_no,
                "out_order_no": f.out_order_no,
                "operation_id": f.operation_id,
                "out_request_no": out_request_no,
                "amount": yuan(done),
                "status": "SUCCESS",
                "gmt_trans": china_datetime(f.trans.unwrap_or(f.created)),
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ))
    }

    /// Closes a freeze that was never used (`action: close` / `unfreeze`); an unknown
    /// `out_order_no` is closed for good so a late freeze with it is refused.
    fn cancel(&mut self, biz: &Value, out: &mut Vec<Outgoing>) -> Answer {
        let out_order_no = required(biz, "out_order_no")?.to_string();
        let out_request_no = field(biz, "out_request_no").unwrap_or("").to_string();
        let now = now_ms();
        let action = match self.freezes.get_mut(&out_order_no) {
            None => {
                let tomb = Freeze {
                    out_order_no: out_order_no.clone(),
                    out_request_no: out_request_no.clone(),
                    auth_no: String::new(),
                    operation_id: String::new(),
                    amount: Cents::ZERO,
                    payer: String::new(),
                    once: false,
                    status: FreezeStatus::Closed,
                    notify_url: None,
                    created: now,
                    trans: Some(now),
                    paid: Cents::ZERO,
                    unfrozen: Cents::ZERO,
                    unfreezes: HashMap::new(),
                    tombstone: true,
                };
                self.freezes.insert(out_order_no.clone(), tomb);
                "close"
            }
            Some(f) if f.paid.get() > 0 => return Err(business("ORDER_ALREADY_FINISHED", "授权单已支付，不能撤销")),
            Some(f) => match f.status {
                FreezeStatus::Init | FreezeStatus::Closed => {
                    f.status = FreezeStatus::Closed;
                    "close"
                }
                _ => {
                    let rest = f.rest();
                    f.unfrozen = f.unfrozen + rest;
                    f.status = FreezeStatus::Closed;
                    f.trans = Some(now);
                    let f = f.clone();
                    self.freeze_notification(&f, Some(rest), out);
                    "unfreeze"
                }
            },
        };
        Ok(success(
            json!({"out_order_no": out_order_no, "out_request_no": out_request_no, "action": action})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ))
    }

    /// `operation.detail.query` by `auth_no` or `out_order_no`.
    fn detail(&mut self, biz: &Value) -> Answer {
        let f = match (field(biz, "auth_no"), field(biz, "out_order_no")) {
            (Some(a), _) => self.freezes.values().find(|f| f.auth_no == a),
            (None, Some(o)) => self.freezes.get(o),
            (None, None) => return Err(failure(CODE_MISSING, "isv.missing-out-order-no", "缺少必选参数")),
        };
        let Some(f) = f else {
            return Err(business("AUTH_ORDER_NOT_EXIST", "授权单不存在"));
        };
        let status = match f.status {
            FreezeStatus::Init => "INIT",
            FreezeStatus::Closed if f.tombstone => "CLOSED",
            _ => "SUCCESS",
        };
        let mut m = json!({
            "auth_no": f.auth_no,
            "out_order_no": f.out_order_no,
            "order_status": f.status.wire(),
            "total_freeze_amount": yuan(f.amount),
            "rest_amount": yuan(f.rest()),
            "total_pay_amount": yuan(f.paid),
            "operation_id": f.operation_id,
            "out_request_no": f.out_request_no,
            "operation_type": "FREEZE",
            "amount": yuan(f.amount),
            "status": status,
            "gmt_create": china_datetime(f.created),
            "payer_user_id": f.payer,
        });
        if let (Some(t), Some(o)) = (f.trans, m.as_object_mut()) {
            o.insert("gmt_trans".into(), china_datetime(t).into());
        }
        Ok(success(m.as_object().cloned().unwrap_or_default()))
    }
}
