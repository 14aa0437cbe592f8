//! Shoppers with their accounts [A1], their coupons and their orders.

use super::ServiceError;
use crate::Platform;
use tare_domain::coupon::Coupon;
use tare_domain::shopper::{Shopper, ShopperCommand};
use tare_domain::{ConfirmMode, ProviderKind};

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
        let cmd = ShopperCommand::Create {
            shopper_id: shopper_id.to_string(),
            phone,
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

    /// Orders of a shopper from the read model, newest first.
    pub async fn orders_of(&self, shopper_id: &str, limit: i64) -> Result<Vec<tare_projections::OrderSummary>, ServiceError> {
        let docs = self.views.by_owner("order_summary", shopper_id, 10_000).await?;
        let mut out: Vec<tare_projections::OrderSummary> = docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.order_id.cmp(&a.order_id)));
        out.truncate(limit.max(0) as usize);
        Ok(out)
    }
}
