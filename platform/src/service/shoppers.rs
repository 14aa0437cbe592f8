//! Shoppers with their accounts [A1], their coupons and their orders.

use super::ServiceError;
use crate::personal_data::Opened;
use crate::Platform;
use tare_domain::coupon::Coupon;
use tare_domain::shopper::{Shopper, ShopperCommand};
use tare_domain::{ConfirmMode, ProviderKind};

/// The field name phone numbers are sealed under.
const PHONE: &str = "phone";

impl Platform {
    /// Creates a shopper with the account, atomically [A1].
    pub async fn create_shopper(
        &self,
        shopper_id: &str,
        phone: String,
        provider: ProviderKind,
        confirm_mode: ConfirmMode,
        token_sha256: String,
    ) -> Result<Shopper, ServiceError> {
        // Checked before a key is made for it (the aggregate checks again).
        if !tare_domain::shopper::valid_phone(&phone) {
            return Err(ServiceError::Invalid {
                field: "phone".into(),
                message: "must be 5-20 digits, optionally after a +".into(),
            });
        }
        // The number goes into the log sealed under this shopper's own key [issue 14].
        let phone_sealed = self
            .personal
            .seal(shopper_id, PHONE, &phone)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let cmd = ShopperCommand::Create {
            shopper_id: shopper_id.to_string(),
            phone,
            phone_sealed: Some(phone_sealed),
            provider,
            confirm_mode,
            token_sha256,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .shoppers
            .execute(shopper_id, cmd, self.meta(shopper_id, "api"))
            .await
            .map_err(ServiceError::from_command)?;
        self.shopper(shopper_id).await
    }

    /// A shopper (404 if unknown).
    pub async fn shopper(&self, shopper_id: &str) -> Result<Shopper, ServiceError> {
        let s = self
            .aggregates
            .shoppers
            .load(shopper_id)
            .await
            .map_err(ServiceError::from_command)?;
        if s.id.is_none() {
            return Err(ServiceError::NotFound {
                code: "shopper_not_found",
                message: "shopper not found".into(),
            });
        }
        Ok(s)
    }

    /// A shopper's phone number: in clear, or `Erased` once their personal data was
    /// erased (404 for an unknown shopper).
    pub async fn shopper_phone(&self, shopper_id: &str) -> Result<Opened, ServiceError> {
        let s = self.shopper(shopper_id).await?;
        match (&s.phone_sealed, s.erased_at) {
            (_, Some(_)) => Ok(Opened::Erased),
            (Some(sealed), None) => self
                .personal
                .open(shopper_id, PHONE, sealed)
                .await
                .map_err(|e| ServiceError::Internal(e.to_string())),
            (None, None) => Ok(Opened::Clear(s.phone)),
        }
    }

    /// Erases a shopper's personal data: their key is destroyed (what was sealed under
    /// it is unreadable from now on, in the log and in every backup taken after) and the
    /// erasure is recorded, with who and why. Again: nothing changes.
    pub async fn erase_shopper(&self, shopper_id: &str, reason: String, by: &str) -> Result<(), ServiceError> {
        self.shopper(shopper_id).await?;
        let at = self.clock.now_ms();
        self.personal.erase(shopper_id, at).await?;
        let cmd = ShopperCommand::Erase {
            by: by.to_string(),
            reason,
            at,
        };
        self.aggregates
            .shoppers
            .execute(shopper_id, cmd, self.meta(shopper_id, "api"))
            .await
            .map_err(ServiceError::from_command)
    }

    /// Puts a coupon in a shopper's wallet.
    pub async fn grant_coupon(&self, shopper_id: &str, coupon: Coupon) -> Result<(), ServiceError> {
        let cmd = ShopperCommand::GrantCoupon {
            coupon,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .shoppers
            .execute(shopper_id, cmd, self.meta(shopper_id, "api"))
            .await
            .map_err(ServiceError::from_command)
    }

    /// A page of orders [R4], by id (creation order: ids are time-ordered), after order
    /// id `after`: those of `shopper`, `cabinet` and in `state` when given. The most
    /// selective index is read (shopper, then cabinet, then state), the other filters
    /// applied to what it yields, reading at most [`ORDER_SCAN`] a page; returns the
    /// orders and, when more may follow, the id to continue after.
    pub async fn list_orders(
        &self,
        filter: OrderFilter<'_>,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<tare_projections::OrderSummary>, Option<String>), ServiceError> {
        use tare_projections::OrderIndex;
        let (view, owner) = match (filter.shopper, filter.cabinet, filter.state) {
            (Some(s), _, _) => ("order_summary", Some(s)),
            (None, Some(c), _) => (OrderIndex::BY_CABINET, Some(c)),
            (None, None, Some(st)) => (OrderIndex::BY_STATE, Some(st)),
            (None, None, None) => ("order_summary", None),
        };
        let (mut out, mut at, mut scanned) = (Vec::new(), after.to_string(), 0);
        loop {
            let docs = self.views.page(view, owner, &at, 500).await?;
            let exhausted = docs.len() < 500;
            for d in docs {
                scanned += 1;
                let Ok(o) = serde_json::from_value::<tare_projections::OrderSummary>(d) else {
                    continue;
                };
                at = o.order_id.clone();
                if filter.matches(&o) {
                    out.push(o);
                    if out.len() == limit {
                        return Ok((out, Some(at)));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
            if scanned >= ORDER_SCAN {
                return Ok((out, Some(at)));
            }
        }
    }

    /// Orders of a shopper from the read model, newest first.
    pub async fn orders_of(&self, shopper_id: &str, limit: i64) -> Result<Vec<tare_projections::OrderSummary>, ServiceError> {
        let docs = self.views.by_owner("order_summary", shopper_id, 10_000).await?;
        let mut out: Vec<tare_projections::OrderSummary> = docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.order_id.cmp(&a.order_id)));
        out.truncate(limit.max(0) as usize);
        Ok(out)
    }
}

/// Most orders one page of a listing reads.
pub const ORDER_SCAN: usize = 10_000;

/// What a listing of orders keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderFilter<'a> {
    /// One shopper's.
    pub shopper: Option<&'a str>,
    /// One cabinet's.
    pub cabinet: Option<&'a str>,
    /// In one state (the API's name).
    pub state: Option<&'a str>,
}

impl OrderFilter<'_> {
    fn matches(&self, o: &tare_projections::OrderSummary) -> bool {
        self.shopper.is_none_or(|s| o.shopper_id == s)
            && self.cabinet.is_none_or(|c| o.cabinet == c)
            && self.state.is_none_or(|st| o.state == st)
    }
}
