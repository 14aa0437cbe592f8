//! The sandbox's service orders [PAYMENTS.md §1.2–§1.5, §1.9]: create (original-parameter
//! retries answer the same; different parameters are `INVALID_REQUEST`), the shopper's
//! confirm, complete (once), modify (down, once), cancel, the merchant's `pay`, and the
//! automatic deduction that retries on the behaviour's schedule until it succeeds.

use super::clock::compact_china;
use super::notifier::Event;
use super::sandbox::{Book, Fault, Order, WechatSandbox};
use super::wire::{CancelOrder, Collection, CollectionDetail, CompleteOrder, CreateOrder, ModifyOrder, ServiceOrder};
use crate::refs::order_id_of;
use crate::sandbox::{now_ms, Charge, ConfirmError, Sandbox};
use axum::http::StatusCode;
use tare_domain::Cents;

/// Whether `no` is a valid `out_order_no` (≤ 32 of `[0-9A-Za-z_-|*]`).
fn valid_order_no(no: &str) -> bool {
    !no.is_empty() && no.len() <= 32 && no.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b))
}

/// Whether the order still counts against the shopper (open or unpaid, §0).
fn open(view: &ServiceOrder) -> bool {
    matches!(view.state.as_str(), "CREATED" | "DOING")
}

impl WechatSandbox {
    fn check_app(&self, appid: &str, service_id: &str) -> Result<(), Fault> {
        if appid != self.keys.merchant.appid || service_id != self.keys.merchant.service_id {
            return Err(Fault::param("appid or service_id does not belong to this merchant"));
        }
        Ok(())
    }

    /// `POST /v3/payscore/serviceorder`.
    pub(super) fn create_order(&self, req: CreateOrder) -> Result<ServiceOrder, Fault> {
        if !valid_order_no(&req.out_order_no) {
            return Err(Fault::param("out_order_no must be 1..32 of [0-9A-Za-z_-|*]"));
        }
        self.check_app(&req.appid, &req.service_id)?;
        if req.risk_fund.amount <= 0 {
            return Err(Fault::param("risk_fund.amount must be positive"));
        }
        if !req.need_user_confirm && req.openid.as_deref().unwrap_or("").is_empty() {
            return Err(Fault::param("openid is required when need_user_confirm is false"));
        }
        if let Some(f) = self.system_error(&req.out_order_no) {
            return Err(f);
        }
        let behaviour = self.behaviour();
        let mut book = self.book();
        if let Some(existing) = book.orders.get(&req.out_order_no) {
            if existing.create != req {
                return Err(Fault::invalid("out_order_no already used with different parameters"));
            }
            return Ok(existing.view.clone());
        }
        if behaviour.reject_risk {
            return Err(Fault::invalid("综合评估不通过 (risk assessment failed)"));
        }
        if let Some(openid) = req.openid.as_deref() {
            let pending = book
                .orders
                .values()
                .filter(|o| o.view.openid.as_deref() == Some(openid) && open(&o.view))
                .count();
            if pending >= behaviour.max_pending_per_shopper {
                return Err(Fault::invalid("综合评估不通过 (too many open orders)"));
            }
        }
        let order_id = self.next_id(&mut book, "1000");
        let (state, description, package) = if req.need_user_confirm {
            ("CREATED", None, Some(format!("DEV{}", crate::crypto::random_alphanumeric(40))))
        } else {
            ("DOING", Some("USER_CONFIRM".to_string()), None)
        };
        let view = ServiceOrder {
            appid: req.appid.clone(),
            mchid: self.keys.merchant.mchid.clone(),
            service_id: req.service_id.clone(),
            out_order_no: req.out_order_no.clone(),
            service_introduction: req.service_introduction.clone(),
            state: state.into(),
            state_description: description,
            total_amount: None,
            post_payments: None,
            post_discounts: None,
            risk_fund: Some(req.risk_fund.clone()),
            time_range: Some(req.time_range.clone()),
            attach: req.attach.clone(),
            notify_url: req.notify_url.clone(),
            order_id,
            need_collection: None,
            collection: None,
            openid: req.openid.clone(),
            package,
        };
        let notify_url = req.notify_url.clone().unwrap_or_else(|| self.default_notify_url());
        let order = Order {
            create: req,
            view: view.clone(),
            completed: None,
            modified: false,
            failures_left: behaviour.fail_collections,
            notify_url,
        };
        book.orders.insert(order.create.out_order_no.clone(), order);
        Ok(view)
    }

    /// `GET /v3/payscore/serviceorder?out_order_no=&service_id=&appid=`.
    pub(super) fn query_order(&self, out_order_no: &str, appid: &str, service_id: &str) -> Result<ServiceOrder, Fault> {
        self.check_app(appid, service_id)?;
        if let Some(f) = self.system_error(out_order_no) {
            return Err(f);
        }
        let book = self.book();
        let order = book.orders.get(out_order_no).ok_or_else(Fault::not_found)?;
        let mut view = order.view.clone();
        view.package = None;
        Ok(view)
    }

    /// The shopper's tap: CREATED → DOING/USER_CONFIRM, notified as `PAYSCORE.USER_CONFIRM`.
    pub(super) fn confirm_order(&self, out_order_no: &str) -> Result<(), ConfirmError> {
        let (view, url) = {
            let mut book = self.book();
            let order = book.orders.get_mut(out_order_no).ok_or(ConfirmError::NotFound)?;
            if order.view.state != "CREATED" {
                return Err(ConfirmError::NotAwaiting);
            }
            order.view.state = "DOING".into();
            order.view.state_description = Some("USER_CONFIRM".into());
            (order.view.clone(), order.notify_url.clone())
        };
        self.notify_order(&url, "PAYSCORE.USER_CONFIRM", "用户确认订单", view);
        Ok(())
    }

    fn notify_order(&self, url: &str, event_type: &str, summary: &str, mut view: ServiceOrder) {
        view.package = None;
        let resource = serde_json::to_vec(&view).unwrap_or_default();
        self.notify(
            url,
            Event {
                event_type,
                summary,
                original_type: "payscore",
                resource,
            },
        );
    }

    /// `POST …/{out_order_no}/complete`: only from DOING/USER_CONFIRM, once; a repeat with
    /// the same total answers the order as it is now.
    pub(super) fn complete_order(&self, out_order_no: &str, req: CompleteOrder) -> Result<ServiceOrder, Fault> {
        self.check_app(&req.appid, &req.service_id)?;
        let payments: i64 = req.post_payments.iter().map(|p| p.amount).sum();
        let discounts: i64 = req.post_discounts.iter().flatten().map(|d| d.amount).sum();
        if req.total_amount < 0 || payments - discounts != req.total_amount || req.post_payments.len() > 100 {
            return Err(Fault::param("total_amount must be Σpost_payments − Σpost_discounts"));
        }
        if let Some(f) = self.system_error(out_order_no) {
            return Err(f);
        }
        let view = {
            let mut book = self.book();
            let order = book.orders.get_mut(out_order_no).ok_or_else(Fault::not_found)?;
            if order.completed == Some(req.total_amount) {
                return Ok(order.view.clone());
            }
            if order.view.state != "DOING" || order.view.state_description.as_deref() != Some("USER_CONFIRM") {
                return Err(Fault::invalid("当前订单状态不合法 (order is not awaiting completion)"));
            }
            if order.view.risk_fund.as_ref().is_some_and(|r| req.total_amount > r.amount) {
                return Err(Fault::invalid("total_amount exceeds risk_fund.amount"));
            }
            order.completed = Some(req.total_amount);
            let v = &mut order.view;
            v.total_amount = Some(req.total_amount);
            v.post_payments = Some(req.post_payments);
            v.post_discounts = req.post_discounts;
            if req.total_amount == 0 {
                v.state = "DONE".into();
                v.state_description = None;
                v.need_collection = Some(false);
            } else {
                v.state_description = Some("MCH_COMPLETE".into());
                v.need_collection = Some(true);
                v.collection = Some(Collection {
                    state: "USER_PAYING".into(),
                    total_amount: req.total_amount,
                    paying_amount: req.total_amount,
                    paid_amount: 0,
                    details: vec![],
                });
            }
            v.clone()
        };
        if view.state == "DOING" {
            self.schedule_deduction(out_order_no.to_string());
        }
        Ok(view)
    }

    /// `POST …/{out_order_no}/modify`: a lower total, once, while the deduction is pending.
    pub(super) fn modify_order(&self, out_order_no: &str, req: ModifyOrder) -> Result<ServiceOrder, Fault> {
        self.check_app(&req.appid, &req.service_id)?;
        if let Some(f) = self.system_error(out_order_no) {
            return Err(f);
        }
        let mut book = self.book();
        let order = book.orders.get_mut(out_order_no).ok_or_else(Fault::not_found)?;
        let paying = order.view.collection.as_ref().is_some_and(|c| c.state == "USER_PAYING");
        if order.modified && order.completed == Some(req.total_amount) {
            return Ok(order.view.clone());
        }
        if !paying || order.modified {
            return Err(Fault::invalid("只能在待支付状态修改一次 (modify only once while USER_PAYING)"));
        }
        if order.completed.is_none_or(|t| req.total_amount >= t) || req.total_amount <= 0 {
            return Err(Fault::invalid("total_amount may only decrease"));
        }
        order.modified = true;
        order.completed = Some(req.total_amount);
        order.view.total_amount = Some(req.total_amount);
        order.view.post_payments = Some(req.post_payments);
        order.view.post_discounts = req.post_discounts;
        if let Some(c) = order.view.collection.as_mut() {
            c.total_amount = req.total_amount;
            c.paying_amount = req.total_amount;
        }
        Ok(order.view.clone())
    }

    /// `POST …/{out_order_no}/cancel`: from CREATED, DOING/USER_CONFIRM or USER_PAYING;
    /// repeating it with the same reason answers the same.
    pub(super) fn cancel_order(&self, out_order_no: &str, req: CancelOrder) -> Result<serde_json::Value, Fault> {
        self.check_app(&req.appid, &req.service_id)?;
        if let Some(f) = self.system_error(out_order_no) {
            return Err(f);
        }
        let mut book = self.book();
        let order = book.orders.get_mut(out_order_no).ok_or_else(Fault::not_found)?;
        match order.view.state.as_str() {
            "CREATED" | "DOING" => {
                order.view.state = "REVOKED".into();
                order.view.state_description = None;
            }
            "REVOKED" => {}
            "DONE" => return Err(Fault::new(StatusCode::BAD_REQUEST, "ORDER_DONE", "订单已完成")),
            _ => return Err(Fault::new(StatusCode::BAD_REQUEST, "INVALID_ORDER_STATE", "订单状态不合法")),
        }
        Ok(serde_json::json!({
            "appid": order.view.appid, "mchid": order.view.mchid, "service_id": order.view.service_id,
            "out_order_no": order.view.out_order_no, "order_id": order.view.order_id,
        }))
    }

    /// `POST …/{out_order_no}/pay`: the merchant asks for the deduction now (one attempt).
    pub(super) fn pay_order(&self, out_order_no: &str, appid: &str, service_id: &str) -> Result<ServiceOrder, Fault> {
        self.check_app(appid, service_id)?;
        if let Some(f) = self.system_error(out_order_no) {
            return Err(f);
        }
        {
            let book = self.book();
            let order = book.orders.get(out_order_no).ok_or_else(Fault::not_found)?;
            if order.view.state == "DONE" {
                return Err(Fault::new(StatusCode::BAD_REQUEST, "ORDER_DONE", "订单已支付"));
            }
            if order.view.collection.as_ref().is_none_or(|c| c.state != "USER_PAYING") || order.view.state != "DOING" {
                return Err(Fault::new(StatusCode::BAD_REQUEST, "INVALID_ORDER_STATE", "订单状态不合法"));
            }
        }
        self.try_deduct(out_order_no);
        self.query_order(out_order_no, appid, service_id)
    }

    /// Deducts in the background: at once, then on the deduction schedule until it works.
    fn schedule_deduction(&self, out_order_no: String) {
        let (Some(me), Ok(rt)) = (self.handle(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        rt.spawn(async move {
            let mut attempt = 0usize;
            loop {
                match me.try_deduct(&out_order_no) {
                    Deduction::Failed => {}
                    Deduction::Paid | Deduction::NotPaying => return,
                }
                let schedule = me.behaviour().deduction_schedule;
                let wait = schedule
                    .get(attempt)
                    .or(schedule.last())
                    .copied()
                    .unwrap_or(std::time::Duration::from_secs(1));
                attempt += 1;
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// One deduction attempt: fails while the behaviour says so, else pays, records the
    /// charge and notifies `PAYSCORE.USER_PAID`.
    fn try_deduct(&self, out_order_no: &str) -> Deduction {
        let (view, url) = {
            let mut book = self.book();
            let transaction_id = self.next_id(&mut book, "4200");
            let Some(order) = book.orders.get_mut(out_order_no) else {
                return Deduction::NotPaying;
            };
            if order.view.state != "DOING" || order.view.collection.as_ref().is_none_or(|c| c.state != "USER_PAYING") {
                return Deduction::NotPaying;
            }
            if order.failures_left > 0 {
                order.failures_left -= 1;
                return Deduction::Failed;
            }
            let at = now_ms();
            let amount = order.completed.unwrap_or(0);
            order.view.state = "DONE".into();
            order.view.state_description = None;
            order.view.collection = Some(Collection {
                state: "USER_PAID".into(),
                total_amount: amount,
                paying_amount: 0,
                paid_amount: amount,
                details: vec![CollectionDetail {
                    seq: 1,
                    amount,
                    paid_type: "NEWTON".into(),
                    paid_time: compact_china(at),
                    transaction_id: Some(transaction_id.clone()),
                }],
            });
            let (view, url) = (order.view.clone(), order.notify_url.clone());
            book.charges.push(Charge {
                order_id: order_id_of(out_order_no),
                transaction_id,
                amount: Cents::new(amount),
                at,
            });
            (view, url)
        };
        self.notify_order(&url, "PAYSCORE.USER_PAID", "微信支付分服务订单支付成功", view);
        Deduction::Paid
    }

    /// The transaction and amount of a paid order (what a refund must name).
    pub(super) fn paid(book: &Book, transaction_id: &str) -> Option<(String, i64)> {
        book.orders.values().find_map(|o| {
            let c = o.view.collection.as_ref()?;
            let d = c.details.iter().find(|d| d.transaction_id.as_deref() == Some(transaction_id))?;
            Some((o.view.out_order_no.clone(), d.amount))
        })
    }
}

/// What one deduction attempt did.
enum Deduction {
    Paid,
    Failed,
    NotPaying,
}
