//! The sandbox's trade methods [PAYMENTS.md §2.2 step 3, §2.5]: `trade.pay` against a
//! freeze (once per `out_trade_no`; `COMPLETE` unfreezes the rest), `trade.query`,
//! `trade.refund` (synchronous, keyed by `out_request_no`, a repeat answers
//! `fund_change: N`, never more than was paid), the refund query, and the bill URL.

use super::bill::{BillRow, BillRowKind};
use super::notify::Outgoing;
use super::ops::{amount_field, field, required, Answer, FreezeStatus, Store, Trade};
use super::sign::china_datetime;
use super::wire::{business, failure, success, CODE_INVALID, PREAUTH_PAY};
use crate::crypto::random_alphanumeric;
use crate::money::yuan;
use crate::refs::order_id_of;
use crate::sandbox::{china_date, now_ms, Charge, Refund};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use tare_domain::{Cents, UnixMs};

/// How long a bill URL is valid [PAYMENTS.md §2.5].
const BILL_URL_VALIDITY_MS: UnixMs = 30_000;

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

impl Store {
    /// Collects against a freeze. A second call with the same `out_trade_no` is answered
    /// `ACQ.TRADE_HAS_SUCCESS` (as Alipay does): it never charges twice.
    pub(super) fn pay(&mut self, biz: &Value, notify_url: Option<String>, out: &mut Vec<Outgoing>) -> Answer {
        let out_trade_no = required(biz, "out_trade_no")?.to_string();
        let total = amount_field(biz, "total_amount")?;
        let subject = required(biz, "subject")?.to_string();
        let auth_no = required(biz, "auth_no")?.to_string();
        if field(biz, "product_code").is_some_and(|p| p != PREAUTH_PAY) {
            return Err(failure(CODE_INVALID, "isv.invalid-parameter", "product_code 必须为 PREAUTH_PAY"));
        }
        if self.trades.contains_key(&out_trade_no) {
            return Err(business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"));
        }
        let complete = field(biz, "auth_confirm_mode") == Some("COMPLETE");
        let Some(f) = self.freezes.values().find(|f| f.auth_no == auth_no && !f.tombstone) else {
            return Err(business("ACQ.AUTH_NO_ERROR", "预授权号错误"));
        };
        if f.status != FreezeStatus::Authorized {
            return Err(business("ACQ.TRADE_STATUS_ERROR", "预授权状态不正确"));
        }
        if total > f.rest() {
            return Err(business("ACQ.TOTAL_FEE_EXCEED", "支付金额超过剩余冻结金额"));
        }
        let failed = self.failures.entry(out_trade_no.clone()).or_insert(0);
        if *failed < self.behaviour.fail_collections {
            *failed += 1;
            return Err(business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足"));
        }
        let out_order_no = f.out_order_no.clone();
        let now = now_ms();
        let seq = self.next_seq();
        let trade_no = format!("{}22001{:015}", china_date(now).replace('-', ""), seq);
        let f = self.freezes.get_mut(&out_order_no).ok_or_else(super::wire::system_error)?;
        f.paid = f.paid + total;
        f.trans = Some(now);
        let rest = f.rest();
        if complete && rest.get() > 0 {
            f.unfrozen = f.unfrozen + rest;
        }
        if f.rest().get() == 0 {
            f.status = FreezeStatus::Finished;
        }
        let (f, payer) = (f.clone(), f.payer.clone());
        let trade = Trade {
            out_trade_no: out_trade_no.clone(),
            trade_no: trade_no.clone(),
            auth_no,
            payer,
            total,
            refunded: Cents::ZERO,
            paid_at: now,
            subject,
            notify_url: notify_url.or_else(|| f.notify_url.clone()),
            refunds: HashMap::new(),
        };
        self.charges.push(Charge {
            order_id: order_id_of(&out_trade_no),
            transaction_id: trade_no.clone(),
            amount: total,
            at: now,
        });
        self.bill_rows.push(BillRow {
            trade_no: trade_no.clone(),
            out_trade_no: out_trade_no.clone(),
            subject: trade.subject.clone(),
            kind: BillRowKind::Charge,
            amount: total,
            created: f.created,
            at: now,
        });
        self.trade_notification(&trade, None, out);
        if complete && rest.get() > 0 {
            self.unfreeze_notification_of(&out_order_no, rest, out);
        }
        let answer = Self::trade_fields(&trade);
        self.trades.insert(out_trade_no, trade);
        Ok(success(answer))
    }

    fn unfreeze_notification_of(&mut self, out_order_no: &str, amount: Cents, out: &mut Vec<Outgoing>) {
        if let Some(f) = self.freezes.get(out_order_no).cloned() {
            self.freeze_notification(&f, Some(amount), out);
        }
    }

    /// The fields every trade answer carries.
    fn trade_fields(t: &Trade) -> Map<String, Value> {
        object(json!({
            "trade_no": t.trade_no,
            "out_trade_no": t.out_trade_no,
            "buyer_logon_id": "tar***@example.com",
            "buyer_user_id": t.payer,
            "total_amount": yuan(t.total),
            "receipt_amount": yuan(t.total),
            "buyer_pay_amount": yuan(t.total),
            "gmt_payment": china_datetime(t.paid_at),
            "auth_no": t.auth_no,
        }))
    }

    /// A `trade_status_sync` notification (a payment, or a refund when `refund` is given).
    fn trade_notification(&mut self, t: &Trade, refund: Option<(&str, UnixMs)>, out: &mut Vec<Outgoing>) {
        let Some(url) = self.notify_target(&t.notify_url) else {
            return;
        };
        let status = if t.refunded == t.total { "TRADE_CLOSED" } else { "TRADE_SUCCESS" };
        let mut fields = vec![
            ("trade_no", t.trade_no.clone()),
            ("out_trade_no", t.out_trade_no.clone()),
            ("buyer_id", t.payer.clone()),
            ("seller_id", self.seller_id.clone()),
            ("trade_status", status.to_string()),
            ("total_amount", yuan(t.total)),
            ("receipt_amount", yuan(t.total)),
            ("buyer_pay_amount", yuan(t.total)),
            ("subject", t.subject.clone()),
            ("gmt_create", china_datetime(t.paid_at)),
            ("gmt_payment", china_datetime(t.paid_at)),
        ];
        if let Some((out_request_no, at)) = refund {
            fields.push(("out_biz_no", out_request_no.to_string()));
            fields.push(("refund_fee", yuan(t.refunded)));
            fields.push(("gmt_refund", china_datetime(at)));
        }
        let n = self.notification("trade_status_sync", url, fields);
        out.push(n);
    }

    /// `trade.query` by `out_trade_no` or `trade_no`.
    pub(super) fn trade_query(&mut self, biz: &Value) -> Answer {
        let Some(t) = self.trade_key(biz).and_then(|k| self.trades.get(&k)) else {
            return Err(business("ACQ.TRADE_NOT_EXIST", "交易不存在"));
        };
        let mut m = Self::trade_fields(t);
        let status = if t.refunded == t.total { "TRADE_CLOSED" } else { "TRADE_SUCCESS" };
        m.insert("trade_status".into(), status.into());
        m.insert("send_pay_date".into(), china_datetime(t.paid_at).into());
        Ok(success(m))
    }

    /// `trade.refund`: synchronous; the same `out_request_no` refunds at most once.
    pub(super) fn refund(&mut self, biz: &Value, out: &mut Vec<Outgoing>) -> Answer {
        let Some(key) = self.trade_key(biz).filter(|k| self.trades.contains_key(k)) else {
            return Err(business("ACQ.TRADE_NOT_EXIST", "交易不存在"));
        };
        let amount = amount_field(biz, "refund_amount")?;
        let explicit = field(biz, "out_request_no");
        let out_request_no = explicit.unwrap_or(&key).to_string();
        let now = now_ms();
        let t = self.trades.get_mut(&key).ok_or_else(super::wire::system_error)?;
        let fund_change = if t.refunds.contains_key(&out_request_no) {
            "N"
        } else {
            if explicit.is_none() && amount != t.total {
                return Err(business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与交易金额不一致"));
            }
            if self.behaviour.fail_refunds > 0 {
                self.behaviour.fail_refunds -= 1;
                return Err(business("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足"));
            }
            if t.refunded + amount > t.total {
                return Err(business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限"));
            }
            t.refunded = t.refunded + amount;
            t.refunds.insert(out_request_no.clone(), (amount, now));
            "Y"
        };
        let t = t.clone();
        if fund_change == "Y" {
            self.refunds.push(Refund {
                order_id: order_id_of(&t.out_trade_no),
                refund_id: order_id_of(&out_request_no),
                amount,
                at: now,
                succeeded: true,
            });
            self.bill_rows.push(BillRow {
                trade_no: t.trade_no.clone(),
                out_trade_no: t.out_trade_no.clone(),
                subject: t.subject.clone(),
                kind: BillRowKind::Refund {
                    out_request_no: out_request_no.clone(),
                },
                amount,
                created: t.paid_at,
                at: now,
            });
            self.trade_notification(&t, Some((&out_request_no, now)), out);
        }
        let (done, at) = t.refunds.get(&out_request_no).copied().unwrap_or((amount, now));
        let mut m = Self::trade_fields(&t);
        m.insert("fund_change".into(), fund_change.into());
        m.insert("refund_fee".into(), yuan(t.refunded).into());
        m.insert("send_back_fee".into(), yuan(done).into());
        m.insert("gmt_refund_pay".into(), china_datetime(at).into());
        Ok(success(m))
    }

    /// `fastpay.refund.query`: the refund's data if it happened, else a bare success.
    pub(super) fn refund_query(&mut self, biz: &Value) -> Answer {
        let out_request_no = required(biz, "out_request_no")?;
        let Some(t) = self.trade_key(biz).and_then(|k| self.trades.get(&k)) else {
            return Err(business("ACQ.TRADE_NOT_EXIST", "交易不存在"));
        };
        let Some((amount, at)) = t.refunds.get(out_request_no).copied() else {
            return Ok(success(Map::new()));
        };
        Ok(success(object(json!({
            "trade_no": t.trade_no,
            "out_trade_no": t.out_trade_no,
            "out_request_no": out_request_no,
            "total_amount": yuan(t.total),
            "refund_amount": yuan(amount),
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": china_datetime(at),
        }))))
    }

    /// A bill URL for a day (`bill_type: trade`, `bill_date: yyyy-MM-dd`), valid 30 s.
    /// The sandbox serves any day, today included (Alipay: T+1 after 10:00).
    pub(super) fn bill_url(&mut self, biz: &Value, bill_base: &str) -> Answer {
        let bill_type = required(biz, "bill_type")?;
        let date = required(biz, "bill_date")?.to_string();
        if bill_type != "trade" {
            return Err(business("isp.bill_type_not_supported", "沙箱只提供 trade 账单"));
        }
        let ok = date.len() == 10
            && date
                .bytes()
                .enumerate()
                .all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
        if !ok {
            return Err(failure(CODE_INVALID, "isv.invalid-parameter", "bill_date 格式错误"));
        }
        let token = random_alphanumeric(32);
        let url = format!(
            "{bill_base}/downloadBillFile.resource?bizType=trade&bizDates={}&token={token}",
            date.replace('-', "")
        );
        self.bill_tokens.insert(token, (date, now_ms() + BILL_URL_VALIDITY_MS));
        Ok(success(object(json!({ "bill_download_url": url }))))
    }

    /// The zip a bill token points at (`None` when unknown or expired).
    pub(super) fn bill_file(&self, token: &str, now: UnixMs) -> Option<Result<Vec<u8>, super::bill::BillError>> {
        let (date, expires) = self.bill_tokens.get(token)?;
        if now > *expires {
            return None;
        }
        let rows: Vec<&BillRow> = self.bill_rows.iter().filter(|r| china_date(r.at) == *date).collect();
        Some(super::bill::render(&self.seller_id, date, &rows, now))
    }
}
