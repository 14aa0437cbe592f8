//! The catalogue: products and the operator's coupon rule [C1, O7].

use super::ServiceError;
use crate::db::{Db, DbError};
use crate::Platform;
use tare_domain::coupon::CouponPolicy;
use tare_domain::product::{Product, ProductCommand};
use tare_domain::{Cents, Grams, Sku};

impl Platform {
    /// The operator's coupon rule.
    pub fn coupon_policy(&self) -> CouponPolicy {
        *self.coupon_policy.borrow()
    }

    /// Sets the operator's coupon rule [O7].
    pub async fn set_coupon_policy(&self, policy: CouponPolicy) -> Result<(), ServiceError> {
        let value = serde_json::to_string(&policy).map_err(|e| ServiceError::Internal(e.to_string()))?;
        crate::on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO settings (key, value) VALUES ('coupon_policy', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(&value).execute(pool).await.map_err(DbError::from)?;
        });
        self.coupon_policy.send_replace(policy);
        Ok(())
    }

    /// Registers a product [C1].
    pub async fn register_product(&self, sku: Sku, name: String, unit_grams: Grams, price: Cents) -> Result<Product, ServiceError> {
        let at = self.clock.now_ms();
        let cmd = ProductCommand::Register {
            sku: sku.clone(),
            name,
            unit_grams,
            price,
            at,
        };
        self.aggregates
            .products
            .execute(sku.as_str(), cmd, self.meta(sku.as_str(), "api"))
            .await
            .map_err(ServiceError::from_command)?;
        self.aggregates
            .products
            .load(sku.as_str())
            .await
            .map_err(ServiceError::from_command)
    }

    /// Changes a product's price and/or name [C2]; each lane that holds it is sent the
    /// new label, and charges the new price once its device acknowledges it.
    pub async fn update_product(&self, sku: &Sku, price: Option<Cents>, name: Option<String>) -> Result<Product, ServiceError> {
        let cmd = ProductCommand::Update {
            price,
            name,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .products
            .execute(sku.as_str(), cmd, self.meta(sku.as_str(), "api:update_product"))
            .await
            .map_err(ServiceError::from_command)?;
        self.product(sku).await
    }

    /// A product (404 if unknown).
    pub async fn product(&self, sku: &Sku) -> Result<Product, ServiceError> {
        let p = self
            .aggregates
            .products
            .load(sku.as_str())
            .await
            .map_err(ServiceError::from_command)?;
        if !p.exists() {
            return Err(ServiceError::NotFound {
                code: "product_not_found",
                message: format!("product {sku} not found"),
            });
        }
        Ok(p)
    }
}

/// The coupon rule as last set (the default before any).
pub(crate) async fn load_coupon_policy(db: &Db) -> Result<CouponPolicy, DbError> {
    let sql = "SELECT value FROM settings WHERE key = 'coupon_policy'";
    let row: Option<(String,)> = crate::on_db!(db, pool => sqlx::query_as(sql).fetch_optional(pool).await?);
    Ok(match row {
        Some((v,)) => serde_json::from_str(&v)?,
        None => CouponPolicy::default(),
    })
}
