//! Shoppers and orders [A1, O1, B2]: creating a shopper (with the account), granting a
//! coupon, scanning a cabinet (creating an order), and the order as a receipt that
//! explains its charge (`receipt`).

use super::error::ErrorBody;
use super::extract::{token_sha256, ApiJson, Caller, Operator, ShopperCaller};
use super::openapi::{Internal, MalformedJson, OperatorOnly, ShopperOnly, TooLarge, Unauthorized};
use super::receipt::{OrderStateDto, OrderSummaryDto, ReceiptDto};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tare_domain::coupon::{Coupon, CouponKind};
use tare_domain::payment::PaymentState;
use tare_domain::{CabinetId, Cents, ConfirmMode, DoorNo, ProviderKind, Sku};
use utoipa::openapi::schema::{Discriminator, OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// A payment provider.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderDto {
    /// WeChat Pay Score.
    Wechat,
    /// Alipay pre-authorisation.
    Alipay,
}

impl From<ProviderDto> for ProviderKind {
    fn from(p: ProviderDto) -> Self {
        match p {
            ProviderDto::Wechat => Self::Wechat,
            ProviderDto::Alipay => Self::Alipay,
        }
    }
}

/// How the shopper authorizes a purchase with the provider.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmModeDto {
    /// The shopper confirms every purchase in the provider's app.
    EachTime,
    /// The shopper authorized once; each purchase is pre-authorized at once.
    Once,
}

impl From<ConfirmModeDto> for ConfirmMode {
    fn from(m: ConfirmModeDto) -> Self {
        match m {
            ConfirmModeDto::EachTime => Self::EachTime,
            ConfirmModeDto::Once => Self::Once,
        }
    }
}

/// `POST /api/v1/shoppers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "13800000000", "provider": "alipay", "confirm_mode": "each_time"}))]
pub(super) struct NewShopper {
    /// Phone number: 5-20 digits, optionally after a `+`.
    #[schema(pattern = r"^\+?[0-9]{5,20}$", example = "13800000000")]
    phone: String,
    /// The provider the shopper pays with.
    provider: ProviderDto,
    /// How the shopper confirms purchases.
    confirm_mode: ConfirmModeDto,
}

/// A new shopper's id and bearer token (shown only here).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"shopper_id": "0190f3c26f3c7a1b9d20e4f1a2b3c4d5", "token": "0190f3c26f3c7a1b9d20e4f1a2b3c4d5.3f2a9c0e1b7d4a6f8e5c2b1a0d9f8e7c6b5a4f3e2d1c0b9a"}))]
pub(super) struct ShopperCreated {
    /// The shopper's id.
    shopper_id: String,
    /// `{shopper_id}.{secret}`: the shopper's bearer token.
    token: String,
}

/// Create a shopper.
///
/// Creates a shopper together with their account and returns the shopper's bearer
/// token, shown only once [A1].
#[utoipa::path(
    post,
    path = "/api/v1/shoppers",
    tag = "shoppers",
    operation_id = "createShopper",
    request_body = NewShopper,
    responses(
        (status = 201, description = "The shopper's id and token.", body = ShopperCreated),
        (status = 400, response = MalformedJson),
        (status = 409, description = "`shopper_exists`, or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `phone`, `provider`, `confirm_mode` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn create_shopper(
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewShopper>,
) -> Result<(StatusCode, Json<ShopperCreated>), ApiError> {
    let shopper_id = uuid::Uuid::now_v7().simple().to_string();
    let secret: String = {
        let mut rng = rand::rng();
        (0..24).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
    };
    let token = format!("{shopper_id}.{secret}");
    s.platform
        .create_shopper(&shopper_id, b.phone, b.provider.into(), b.confirm_mode.into(), token_sha256(&token))
        .await?;
    Ok((StatusCode::CREATED, Json(ShopperCreated { shopper_id, token })))
}

/// `POST /api/v1/shoppers/{id}/coupons` (operator), as parsed. Its schema is
/// [`CashCoupon`] or [`GroupBuyCoupon`] by `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCoupon {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value_cents: Option<i64>,
    #[serde(default)]
    min_spend_cents: Option<i64>,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    price_cents: Option<i64>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// The only `type` of a [`CashCoupon`].
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Schema only.
enum CashType {
    /// A fixed amount off.
    Cash,
}

/// The only `type` of a [`GroupBuyCoupon`].
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Schema only.
enum GroupBuyType {
    /// One unit at the group-buy price.
    GroupBuy,
}

/// A cash coupon: `value_cents` off an order of at least `min_spend_cents`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "cash", "value_cents": 200, "min_spend_cents": 0}))]
#[allow(dead_code)] // Schema only: `NewCoupon` parses it.
struct CashCoupon {
    /// `cash`.
    #[serde(rename = "type")]
    kind: CashType,
    /// Face value in cents.
    #[schema(minimum = 0, maximum = 100_000_000)]
    value_cents: i64,
    /// Smallest subtotal it applies to (default 0).
    #[schema(minimum = 0, maximum = 100_000_000)]
    min_spend_cents: Option<i64>,
    /// The coupon's id, 1-64 characters (default: a new one); granting the same id
    /// again changes nothing.
    #[schema(min_length = 1, max_length = 64)]
    id: Option<String>,
    /// Unix ms after which it is void.
    expires_at: Option<i64>,
    /// Ignored on a cash coupon.
    sku: Option<String>,
    /// Ignored on a cash coupon.
    price_cents: Option<i64>,
}

/// A group-buy coupon: one unit of `sku` at `price_cents`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "group_buy", "sku": "cola-330", "price_cents": 99}))]
#[allow(dead_code)] // Schema only: `NewCoupon` parses it.
struct GroupBuyCoupon {
    /// `group_buy`.
    #[serde(rename = "type")]
    kind: GroupBuyType,
    /// The product it applies to.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$", example = "cola-330")]
    sku: String,
    /// The price of that one unit with the coupon, in cents.
    #[schema(minimum = 0, maximum = 100_000_000)]
    price_cents: i64,
    /// The coupon's id, 1-64 characters (default: a new one); granting the same id
    /// again changes nothing.
    #[schema(min_length = 1, max_length = 64)]
    id: Option<String>,
    /// Unix ms after which it is void.
    expires_at: Option<i64>,
    /// Ignored on a group-buy coupon.
    value_cents: Option<i64>,
    /// Ignored on a group-buy coupon.
    min_spend_cents: Option<i64>,
}

impl PartialSchema for NewCoupon {
    fn schema() -> RefOr<Schema> {
        let mut discriminator = Discriminator::new("type");
        discriminator.mapping = [
            ("cash".to_string(), "#/components/schemas/CashCoupon".to_string()),
            ("group_buy".to_string(), "#/components/schemas/GroupBuyCoupon".to_string()),
        ]
        .into_iter()
        .collect();
        OneOfBuilder::new()
            .item(Ref::from_schema_name(CashCoupon::name()))
            .item(Ref::from_schema_name(GroupBuyCoupon::name()))
            .discriminator(Some(discriminator))
            .description(Some("A coupon to put in a shopper's wallet, by `type`."))
            .into()
    }
}

impl ToSchema for NewCoupon {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((CashCoupon::name().into(), CashCoupon::schema()));
        schemas.push((GroupBuyCoupon::name().into(), GroupBuyCoupon::schema()));
        <CashCoupon as ToSchema>::schemas(schemas);
        <GroupBuyCoupon as ToSchema>::schemas(schemas);
    }
}

/// A granted coupon's id.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CouponGranted {
    /// The coupon's id.
    id: String,
}

/// Grant a coupon.
///
/// Puts a cash or group-buy coupon in a shopper's wallet, to be applied automatically to
/// a later purchase [O7, A2].
#[utoipa::path(
    post,
    path = "/api/v1/shoppers/{id}/coupons",
    tag = "shoppers",
    operation_id = "grantCoupon",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The shopper's id.")),
    request_body = NewCoupon,
    responses(
        (status = 201, description = "The coupon's id.", body = CouponGranted),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`shopper_not_found`.", body = ErrorBody),
        (status = 409, description = "`concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `type`, `value_cents`, `min_spend_cents`, `sku`, `price_cents`, `id` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn grant_coupon(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(shopper_id): Path<String>,
    ApiJson(b): ApiJson<NewCoupon>,
) -> Result<(StatusCode, Json<CouponGranted>), ApiError> {
    let kind = match b.kind.as_str() {
        "cash" => CouponKind::Cash {
            value: Cents::parse(
                "value_cents",
                b.value_cents
                    .ok_or_else(|| ApiError::invalid("value_cents", "required for a cash coupon"))?,
            )?,
            min_spend: Cents::parse("min_spend_cents", b.min_spend_cents.unwrap_or(0))?,
        },
        "group_buy" => CouponKind::GroupBuy {
            sku: Sku::parse(
                "sku",
                b.sku
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid("sku", "required for a group-buy coupon"))?,
            )?,
            price: Cents::parse(
                "price_cents",
                b.price_cents
                    .ok_or_else(|| ApiError::invalid("price_cents", "required for a group-buy coupon"))?,
            )?,
        },
        _ => return Err(ApiError::invalid("type", "must be `cash` or `group_buy`")),
    };
    let id = b.id.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    // Characters, as the message says and the document's `maxLength` counts them.
    if id.is_empty() || id.chars().count() > 64 {
        return Err(ApiError::invalid("id", "must be 1-64 characters"));
    }
    s.platform.shopper(&shopper_id).await?;
    s.platform
        .grant_coupon(
            &shopper_id,
            Coupon {
                id: id.clone(),
                kind,
                expires_at: b.expires_at,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CouponGranted { id })))
}

/// `POST /api/v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cabinet": "wc1.SN001", "door": 1}))]
pub(super) struct NewOrder {
    /// The cabinet scanned, `pk.dn`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    cabinet: String,
    /// The door to open.
    #[schema(minimum = 1, maximum = 16)]
    door: i64,
}

/// A new order (the reply to a scan).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OrderCreated {
    /// Where the shopper confirms the authorization in the provider's app, while it
    /// waits for that.
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm_url: Option<String>,
    /// The order's id.
    order_id: String,
    /// Its state.
    state: OrderStateDto,
}

/// Scan a cabinet.
///
/// Creates an order for the calling shopper at a cabinet's door; the provider's
/// authorization follows, then the door opens [O1].
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    operation_id = "createOrder",
    security(("shopperBearer" = [])),
    request_body = NewOrder,
    responses(
        (status = 201, description = "The order.", body = OrderCreated),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = ShopperOnly),
        (status = 404, description = "`cabinet_not_found`, `door_not_found` or `shopper_not_found`.", body = ErrorBody),
        (status = 409, description = "The cabinet is busy or offline, the shopper has an unpaid order, or a rule stops the order: `cabinet_busy`, `cabinet_unavailable`, `unpaid_order`, `payments_stopped` (the emergency switch), `too_many_opens` (the open-frequency rule), `too_many_disputes` (the dispute-rate rule), `lane_needs_calibration` (a swapped lane not calibrated yet).", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `cabinet`, `door` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn create_order(
    ShopperCaller(shopper_id): ShopperCaller,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewOrder>,
) -> Result<(StatusCode, Json<OrderCreated>), ApiError> {
    let cabinet = CabinetId::parse(&b.cabinet)?;
    let door = DoorNo::parse("door", b.door)?;
    let order = s.platform.create_order(&shopper_id, &cabinet, door).await?;
    let order_id = order.id.clone().unwrap_or_default();
    // The provider authorization is created by the saga right after; wait a moment for
    // it so the client gets its confirm URL in this reply (it is also in GET).
    let payment = s.platform.payment_opened(&order_id, Duration::from_secs(2)).await?;
    let order = s.platform.order(&order_id).await?;
    let confirm_url = payment.confirm_url.filter(|_| payment.state == PaymentState::AwaitingConfirmation);
    Ok((
        StatusCode::CREATED,
        Json(OrderCreated {
            confirm_url,
            order_id,
            state: order.state.into(),
        }),
    ))
}

/// Get an order.
///
/// The order as a receipt that explains its charge: lines, coupon, payment and the
/// evidence (planogram, stable readings, per-lane inference) [B2]. A shopper sees only
/// their own orders.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    operation_id = "getOrder",
    security(("operatorBearer" = []), ("shopperBearer" = [])),
    params(("id" = String, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The receipt.", body = ReceiptDto),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: another shopper's order.", body = ErrorBody),
        (status = 404, description = "`order_not_found`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_order(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    Path(order_id): Path<String>,
) -> Result<Json<ReceiptDto>, ApiError> {
    let order = s.platform.order(&order_id).await?;
    if let Caller::Shopper(id) = &caller {
        if *id != order.shopper_id {
            return Err(ApiError::Forbidden("not your order".into()));
        }
    }
    let payment = s.platform.payment(&order_id).await?;
    Ok(Json(ReceiptDto::new(&order, &payment)))
}

/// The calling shopper's orders.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MyOrders {
    /// Newest first, up to 200 (from the order-summary read model).
    #[schema(max_items = 200)]
    orders: Vec<OrderSummaryDto>,
}

/// My orders.
///
/// Lists the calling shopper's own orders, newest first (up to 200) [R4].
#[utoipa::path(
    get,
    path = "/api/v1/shoppers/me/orders",
    tag = "shoppers",
    operation_id = "listMyOrders",
    security(("shopperBearer" = [])),
    responses(
        (status = 200, description = "The shopper's orders.", body = MyOrders),
        (status = 401, response = Unauthorized),
        (status = 403, response = ShopperOnly),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn my_orders(
    ShopperCaller(shopper_id): ShopperCaller,
    State(s): State<Arc<ApiState>>,
) -> Result<Json<MyOrders>, ApiError> {
    let orders = s.platform.orders_of(&shopper_id, 200).await?;
    Ok(Json(MyOrders {
        orders: orders.into_iter().map(Into::into).collect(),
    }))
}
