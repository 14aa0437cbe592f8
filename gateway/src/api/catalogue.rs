//! Products and the coupon policy (operator endpoints) [C1, O7].

use super::error::ErrorBody;
use super::extract::{ApiJson, Operator};
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::coupon::CouponPolicy;
use tare_domain::{Cents, Grams, Sku};
use utoipa::ToSchema;

/// `POST /api/v1/products`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sku": "cola-330", "name": "Cola 330ml", "unit_grams": 348, "price_cents": 300}))]
pub struct NewProduct {
    /// A stock-keeping unit code: 1-64 of `[A-Za-z0-9_.-]`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$", example = "cola-330")]
    sku: String,
    /// Display name: 1-64 characters once leading and trailing whitespace is trimmed
    /// (it is stored trimmed).
    #[schema(
        pattern = r"^[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]([\s\S]{0,62}[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "Cola 330ml"
    )]
    name: String,
    /// Weight of one unit in grams: above 0, at most 50000.
    #[schema(exclusive_minimum = 0, maximum = 50000)]
    unit_grams: f64,
    /// Unit price in cents, 0..=100000000.
    #[schema(minimum = 0, maximum = 100_000_000)]
    price_cents: i64,
}

/// A product as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"sku": "cola-330", "name": "Cola 330ml", "unit_grams": 348.0, "price_cents": 300}))]
pub struct ProductDto {
    /// Its SKU.
    sku: String,
    /// Display name.
    name: String,
    /// Weight of one unit in grams.
    unit_grams: f64,
    /// Unit price in cents (a new price reaches the lanes' labels first).
    price_cents: i64,
}

/// Register a product.
///
/// Registers a product (SKU, name, unit weight, price) in the catalogue so cabinets can
/// stock it [C1].
#[utoipa::path(
    post,
    path = "/api/v1/products",
    tag = "catalogue",
    operation_id = "createProduct",
    security(("operatorBearer" = [])),
    request_body = NewProduct,
    responses(
        (status = 201, description = "The product.", body = ProductDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 409, description = "`product_exists`, or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: wrong type, out of range, unknown or missing field; `field` is `sku`, `name`, `unit_grams` or `price_cents`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub async fn create_product(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<ProductDto>), ApiError> {
    let sku = Sku::parse("sku", &b.sku)?;
    let price = Cents::parse("price_cents", b.price_cents)?;
    let unit_grams = Grams::new("unit_grams", b.unit_grams)?;
    let p = s.platform.register_product(sku, b.name, unit_grams, price).await?;
    Ok((
        StatusCode::CREATED,
        Json(ProductDto {
            sku: b.sku,
            name: p.name,
            unit_grams: p.unit_grams.get(),
            price_cents: p.price.get(),
        }),
    ))
}

/// Get a product.
///
/// Returns one catalogue product by SKU [C1].
#[utoipa::path(
    get,
    path = "/api/v1/products/{sku}",
    tag = "catalogue",
    operation_id = "getProduct",
    security(("operatorBearer" = [])),
    params(("sku" = String, Path, description = "The product's SKU (any other text is simply not found).", example = "cola-330")),
    responses(
        (status = 200, description = "The product.", body = ProductDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`product_not_found`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub async fn get_product(_: Operator, State(s): State<Arc<ApiState>>, Path(sku): Path<String>) -> Result<Json<ProductDto>, ApiError> {
    let sku = Sku::parse("sku", &sku).map_err(|_| ApiError::NotFound {
        code: "product_not_found",
        message: format!("product {sku} not found"),
    })?;
    let p = s.platform.product(&sku).await?;
    Ok(Json(ProductDto {
        sku: sku.to_string(),
        name: p.name,
        unit_grams: p.unit_grams.get(),
        price_cents: p.price.get(),
    }))
}

/// What to change of a product: its price, its name, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductChange {
    /// The new unit price in cents (0..=100000000).
    #[schema(minimum = 0, maximum = 100_000_000)]
    price_cents: Option<i64>,
    /// The new name: 1-64 characters once leading and trailing whitespace is trimmed.
    #[schema(
        pattern = r"^[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]([\s\S]{0,62}[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "Cola Zero 330ml"
    )]
    name: Option<String>,
}

/// Change a product's price or name.
///
/// A new price or name is a new label version, sent as `set_price_label` to every lane
/// that holds the product [C2]. Each lane charges the new price from the moment its
/// device acknowledges the label: a scan before that is charged the old price, one after
/// it the new, so a shopper always pays what the label showed. Orders record the price
/// version they were charged with (`evidence.lanes[].price_version`).
#[utoipa::path(
    patch,
    path = "/api/v1/products/{sku}",
    tag = "catalogue",
    operation_id = "updateProduct",
    security(("operatorBearer" = [])),
    params(("sku" = String, Path, description = "The product's SKU.", example = "cola-330")),
    request_body = ProductChange,
    responses(
        (status = 200, description = "The product as changed.", body = ProductDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`product_not_found`.", body = ErrorBody),
        (status = 409, description = "`concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `price_cents`, `name` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub async fn update_product(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(sku): Path<String>,
    ApiJson(b): ApiJson<ProductChange>,
) -> Result<Json<ProductDto>, ApiError> {
    let sku = Sku::parse("sku", &sku).map_err(|_| ApiError::NotFound {
        code: "product_not_found",
        message: format!("product {sku} not found"),
    })?;
    let price = b.price_cents.map(|p| Cents::parse("price_cents", p)).transpose()?;
    let p = s.platform.update_product(&sku, price, b.name).await?;
    Ok(Json(ProductDto {
        sku: sku.to_string(),
        name: p.name,
        unit_grams: p.unit_grams.get(),
        price_cents: p.price.get(),
    }))
}

/// The operator's rule for automatic coupon use, as sent and as shown [O7].
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max_value_over_amount_pct": 30}))]
pub struct PolicyBody {
    /// A cash coupon is used only if its value is at most the amount plus this percentage
    /// (0..=10000); `null`: any coupon on any amount.
    #[schema(minimum = 0, maximum = 10_000)]
    max_value_over_amount_pct: Option<u32>,
}

impl From<CouponPolicy> for PolicyBody {
    fn from(p: CouponPolicy) -> Self {
        Self {
            max_value_over_amount_pct: p.max_value_over_amount_pct,
        }
    }
}

/// Set the coupon policy.
///
/// Sets the operator's rule for automatic coupon use (the most a cash coupon may exceed
/// the amount, in percent) [O7].
#[utoipa::path(
    put,
    path = "/api/v1/coupon-policy",
    tag = "catalogue",
    operation_id = "putCouponPolicy",
    security(("operatorBearer" = [])),
    request_body = PolicyBody,
    responses(
        (status = 200, description = "The policy now in force.", body = PolicyBody),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `max_value_over_amount_pct` (or an unknown field).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub async fn put_coupon_policy(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<PolicyBody>,
) -> Result<Json<PolicyBody>, ApiError> {
    if b.max_value_over_amount_pct.is_some_and(|p| p > 10_000) {
        return Err(ApiError::invalid("max_value_over_amount_pct", "must be at most 10000"));
    }
    let policy = CouponPolicy {
        max_value_over_amount_pct: b.max_value_over_amount_pct,
    };
    s.platform.set_coupon_policy(policy).await?;
    Ok(Json(policy.into()))
}

/// Get the coupon policy.
///
/// Returns the operator's rule for automatic coupon use [O7].
#[utoipa::path(
    get,
    path = "/api/v1/coupon-policy",
    tag = "catalogue",
    operation_id = "getCouponPolicy",
    security(("operatorBearer" = [])),
    responses(
        (status = 200, description = "The policy in force.", body = PolicyBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
    )
)]
pub async fn get_coupon_policy(_: Operator, State(s): State<Arc<ApiState>>) -> Json<PolicyBody> {
    Json(s.platform.coupon_policy().into())
}
