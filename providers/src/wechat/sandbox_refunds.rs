//! The sandbox's refunds [PAYMENTS.md §1.7] and bills [§1.10]. Refunds name the
//! deduction's `transaction_id`, are accepted as `PROCESSING` and succeed shortly after
//! (with `REFUND.SUCCESS`); one `out_refund_no` refunds at most once, and refunds never
//! exceed the deduction. A bill is the day's charges and refunds (China date), gzipped,
//! with the SHA1 of the plain file.

use super::bill::{render_bill, sha1_hex};
use super::clock::rfc3339_china;
use super::notifier::Event;
use super::sandbox::{lock, Fault, RefundRecord, WechatSandbox};
use super::wire::{BillRef, CreateRefund, RefundAmount, RefundObject, RefundResource};
use crate::sandbox::{china_date, now_ms, Sandbox};
use axum::http::StatusCode;
use std::io::Write;
use std::time::Duration;

/// How long a refund stays `PROCESSING` in the sandbox.
const REFUND_DELAY: Duration = Duration::from_millis(50);

fn valid_refund_no(no: &str) -> bool {
    !no.is_empty() && no.len() <= 64 && no.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
}

impl WechatSandbox {
    /// `POST /v3/refund/domestic/refunds`.
    pub(super) fn create_refund(&self, req: CreateRefund) -> Result<RefundObject, Fault> {
        if !valid_refund_no(&req.out_refund_no) {
            return Err(Fault::param("out_refund_no must be 1..64 of [0-9A-Za-z_-|*@]"));
        }
        if req.amount.currency != "CNY" || req.amount.refund <= 0 || req.amount.total <= 0 {
            return Err(Fault::param("amount must be positive fen in CNY"));
        }
        let Some(transaction_id) = req.transaction_id.clone() else {
            return Err(Fault::param("Pay Score deductions are refunded by transaction_id"));
        };
        if let Some(f) = self.system_error(&req.out_refund_no) {
            return Err(f);
        }
        let view = {
            let mut book = self.book();
            if let Some(existing) = book.refunds.get(&req.out_refund_no) {
                if existing.request.amount != req.amount || existing.request.transaction_id != req.transaction_id {
                    return Err(Fault::invalid("out_refund_no already used with different parameters"));
                }
                return Ok(existing.view.clone());
            }
            let (out_order_no, paid) =
                Self::paid(&book, &transaction_id).ok_or_else(|| Fault::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"))?;
            if req.amount.total != paid {
                return Err(Fault::param("amount.total does not match the transaction"));
            }
            let refunded: i64 = book
                .refunds
                .values()
                .filter(|r| r.request.transaction_id.as_deref() == Some(transaction_id.as_str()) && r.view.status != "CLOSED")
                .map(|r| r.view.amount.refund)
                .sum();
            if refunded + req.amount.refund > paid {
                return Err(Fault::invalid(
                    "申请退款金额超过订单可退金额 (refund exceeds the refundable amount)",
                ));
            }
            let at = now_ms();
            let view = RefundObject {
                refund_id: self.next_id(&mut book, "5030"),
                out_refund_no: req.out_refund_no.clone(),
                transaction_id,
                out_trade_no: out_order_no.clone(),
                channel: "ORIGINAL".into(),
                user_received_account: "支付用户零钱".into(),
                success_time: None,
                create_time: rfc3339_china(at),
                status: "PROCESSING".into(),
                amount: RefundAmount {
                    total: paid,
                    refund: req.amount.refund,
                    payer_total: paid,
                    payer_refund: req.amount.refund,
                    currency: Some("CNY".into()),
                },
            };
            let notify_url = req
                .notify_url
                .clone()
                .or_else(|| book.orders.get(&out_order_no).map(|o| o.notify_url.clone()));
            let record = RefundRecord {
                request: req,
                view: view.clone(),
                out_order_no,
                notify_url: notify_url.unwrap_or_else(|| self.default_notify_url()),
                at,
            };
            book.refunds.insert(view.out_refund_no.clone(), record);
            view
        };
        self.schedule_refund(view.out_refund_no.clone());
        Ok(view)
    }

    fn schedule_refund(&self, out_refund_no: String) {
        let (Some(me), Ok(rt)) = (self.handle(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(REFUND_DELAY).await;
            me.finish_refund(&out_refund_no);
        });
    }

    /// PROCESSING → SUCCESS, notified as `REFUND.SUCCESS` (or → CLOSED, notified as
    /// `REFUND.CLOSED`, while the behaviour says refunds fail).
    fn finish_refund(&self, out_refund_no: &str) {
        let fails = {
            let mut b = lock(&self.behaviour);
            let fails = b.fail_refunds > 0;
            b.fail_refunds = b.fail_refunds.saturating_sub(1);
            fails
        };
        let status = if fails { "CLOSED" } else { "SUCCESS" };
        let (resource, url) = {
            let mut book = self.book();
            let Some(r) = book.refunds.get_mut(out_refund_no) else {
                return;
            };
            if r.view.status != "PROCESSING" {
                return;
            }
            r.view.status = status.into();
            if !fails {
                r.view.success_time = Some(rfc3339_china(now_ms()));
            }
            let v = &r.view;
            let resource = RefundResource {
                mchid: self.keys.merchant.mchid.clone(),
                out_trade_no: v.out_trade_no.clone(),
                transaction_id: v.transaction_id.clone(),
                out_refund_no: v.out_refund_no.clone(),
                refund_id: v.refund_id.clone(),
                refund_status: status.into(),
                success_time: v.success_time.clone(),
                user_received_account: v.user_received_account.clone(),
                amount: RefundAmount {
                    currency: None,
                    ..v.amount.clone()
                },
            };
            (resource, r.notify_url.clone())
        };
        self.notify(
            &url,
            Event {
                event_type: if fails { "REFUND.CLOSED" } else { "REFUND.SUCCESS" },
                summary: if fails { "退款关闭" } else { "退款成功" },
                original_type: "refund",
                resource: serde_json::to_vec(&resource).unwrap_or_default(),
            },
        );
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub(super) fn query_refund(&self, out_refund_no: &str) -> Result<RefundObject, Fault> {
        if let Some(f) = self.system_error(out_refund_no) {
            return Err(f);
        }
        let book = self.book();
        book.refunds
            .get(out_refund_no)
            .map(|r| r.view.clone())
            .ok_or_else(|| Fault::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在"))
    }

    /// `GET /v3/bill/tradebill?bill_date=`: renders the day's bill and answers where to
    /// fetch it (`download_base` is the sandbox's own URL as the merchant reached it).
    pub(super) fn trade_bill(&self, bill_date: &str, download_base: &str) -> Result<BillRef, Fault> {
        if bill_date.len() != 10 || super::clock::parse_bill_time(&format!("{bill_date} 00:00:00")).is_none() {
            return Err(Fault::param("bill_date must be yyyy-MM-dd"));
        }
        let charges: Vec<_> = self.charges().into_iter().filter(|c| china_date(c.at) == bill_date).collect();
        let book = self.book();
        let mut refunds: Vec<_> = book.refunds.values().filter(|r| china_date(r.at) == bill_date).collect();
        refunds.sort_by_key(|r| (r.at, r.view.out_refund_no.clone()));
        let text = render_bill(&self.keys.merchant, &book, &charges, &refunds);
        drop(book);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes())
            .map_err(|_| Fault::new(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "gzip"))?;
        let gz = gz
            .finish()
            .map_err(|_| Fault::new(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "gzip"))?;
        let token = crate::crypto::random_alphanumeric(32);
        self.book().bills.insert(token.clone(), gz);
        Ok(BillRef {
            hash_type: "SHA1".into(),
            hash_value: sha1_hex(text.as_bytes()),
            download_url: format!("{download_base}/v3/billdownload/file?token={token}"),
        })
    }

    /// `GET /v3/billdownload/file?token=`: the gzip file.
    pub(super) fn bill_file(&self, token: &str) -> Option<Vec<u8>> {
        self.book().bills.get(token).cloned()
    }
}
