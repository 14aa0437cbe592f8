//! Shoppers and orders [A1, O1, B2]: creating a shopper (with the account), scanning a
//! cabinet (creating an order), and the order as a receipt that explains its charge.

use super::extract::{token_sha256, ApiJson, Caller, Operator, ShopperCaller};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tare_domain::coupon::{Coupon, CouponKind};
use tare_domain::order::{Order, OrderState};
use tare_domain::payment::{Payment, PaymentState};
use tare_domain::{CabinetId, Cents, ConfirmMode, DoorNo, ProviderKind, Sku};

/// `POST /api/v1/shoppers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewShopper {
    phone: String,
    provider: ProviderKind,
    confirm_mode: ConfirmMode,
}

pub(super) async fn create_shopper(
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewShopper>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let shopper_id = uuid::Uuid::now_v7().simple().to_string();
    let secret: String = {
        let mut rng = rand::rng();
        (0..24).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
    };
    let token = format!("{shopper_id}.{secret}");
    s.platform
        .create_shopper(&shopper_id, b.phone, b.provider, b.confirm_mode, token_sha256(&token))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"shopper_id": shopper_id, "token": token}))))
}

/// `POST /api/v1/shoppers/{id}/coupons` (operator).
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

pub(super) async fn grant_coupon(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(shopper_id): Path<String>,
    ApiJson(b): ApiJson<NewCoupon>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    if id.is_empty() || id.len() > 64 {
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
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}

/// `POST /api/v1/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewOrder {
    cabinet: String,
    door: i64,
}

pub(super) async fn create_order(
    ShopperCaller(shopper_id): ShopperCaller,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewOrder>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let cabinet = CabinetId::parse(&b.cabinet)?;
    let door = DoorNo::parse("door", b.door)?;
    let order = s.platform.create_order(&shopper_id, &cabinet, door).await?;
    let order_id = order.id.clone().unwrap_or_default();
    // The provider authorization is created by the saga right after; wait a moment for
    // it so the client gets its confirm URL in this reply (it is also in GET).
    let mut payment = s.platform.payment(&order_id).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while payment.state == PaymentState::New && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        payment = s.platform.payment(&order_id).await?;
    }
    let order = s.platform.order(&order_id).await?;
    let mut body = json!({"order_id": order_id, "state": state_name(order.state)});
    if let Some(url) = payment.confirm_url.filter(|_| payment.state == PaymentState::AwaitingConfirmation) {
        body["confirm_url"] = json!(url);
    }
    Ok((StatusCode::CREATED, Json(body)))
}

/// The API's order state names.
pub(super) fn state_name(s: OrderState) -> &'static str {
    match s {
        OrderState::Authorizing => "authorizing",
        OrderState::Authorized => "authorized",
        OrderState::Opening => "opening",
        OrderState::Open => "open",
        OrderState::Settling => "settling",
        OrderState::Charging => "charging",
        OrderState::Paid => "paid",
        OrderState::Cancelled => "cancelled",
        OrderState::Abnormal => "abnormal",
        OrderState::Refunded => "refunded",
        OrderState::PartiallyRefunded => "partially_refunded",
    }
}

fn payment_state_name(s: PaymentState) -> &'static str {
    match s {
        PaymentState::New => "pending",
        PaymentState::AwaitingConfirmation => "awaiting_confirmation",
        PaymentState::Authorized => "authorized",
        PaymentState::Collecting => "collecting",
        PaymentState::Collected => "collected",
        PaymentState::Cancelled => "cancelled",
    }
}

/// The order as a receipt, with the evidence behind the charge [B2].
pub(super) fn receipt(o: &Order, p: &Payment) -> Value {
    let lines: Vec<Value> = o
        .lines
        .iter()
        .map(|l| json!({"sku": l.sku.as_str(), "name": l.name, "lane": l.lane.get(), "qty": l.qty, "unit_price_cents": l.unit_price.get(), "amount_cents": l.unit_price.get() * i64::from(l.qty)}))
        .collect();
    let explanation: Vec<String> = o
        .inference
        .iter()
        .map(|i| {
            let name = o.lanes.iter().find(|l| l.lane == i.lane).map_or(i.sku.as_str(), |l| l.name.as_str());
            let what = match i.count {
                0 => "nothing taken".to_string(),
                n if n > 0 => format!("{n} taken"),
                n => format!("{} more than before (put back in the wrong lane?)", -n),
            };
            format!(
                "lane {} ({}): {:.1} g before, {:.1} g after, {:+.1} g / {} g per item = {:.2} -> {} (residual {:.1} g within ±{:.1} g: {}; confidence {:.0}%)",
                i.lane.get(),
                name,
                i.before_grams,
                i.after_grams,
                i.after_grams - i.before_grams,
                i.unit_grams,
                i.raw_count,
                what,
                i.residual_grams,
                i.tolerance_grams,
                if i.within_tolerance { "yes" } else { "NO, sent to review" },
                i.confidence * 100.0
            )
        })
        .collect();
    json!({
        "order_id": o.id,
        "state": state_name(o.state),
        "cabinet": o.cabinet.as_ref().map(|c| c.to_string()),
        "door": o.door.map(|d| d.get()),
        "shopper_id": o.shopper_id,
        "created_at": o.created_at,
        "updated_at": o.updated_at,
        "lines": lines,
        "subtotal_cents": o.subtotal.get(),
        "discount_cents": o.subtotal.get() - o.total.get(),
        "total_cents": o.total.get(),
        "coupon": o.coupon.as_ref().map(|c| json!({"coupon_id": c.coupon_id, "discount_cents": c.discount.get()})),
        "anomalies": o.anomalies,
        "cancel_reason": o.cancel_reason,
        "charge_attempts": o.charge_attempts,
        "dead_lettered": o.dead_lettered,
        "payment": {
            "provider": o.provider.map(ProviderKind::as_str),
            "provider_order_ref": if p.provider_order_ref.is_empty() { None } else { Some(p.provider_order_ref.clone()) },
            "state": payment_state_name(p.state),
            "transaction_id": p.transaction_id,
            "confirm_url": p.confirm_url.clone().filter(|_| p.state == PaymentState::AwaitingConfirmation),
        },
        "evidence": {
            "planogram_version": o.planogram_version,
            "lanes": o.lanes.iter().map(|l| json!({"lane": l.lane.get(), "sku": l.sku.as_str(), "unit_grams": l.unit_grams, "price_cents": l.price.get(), "tolerance": l.tolerance})).collect::<Vec<_>>(),
            "weight_before": o.before.as_ref().map(|r| r.sample()),
            "weight_after": o.after.as_ref().map(|r| r.sample()),
            "inference": o.inference,
            "explanation": explanation,
        },
    })
}

pub(super) async fn get_order(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    Path(order_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let order = s.platform.order(&order_id).await?;
    if let Caller::Shopper(id) = &caller {
        if *id != order.shopper_id {
            return Err(ApiError::Forbidden("not your order".into()));
        }
    }
    let payment = s.platform.payment(&order_id).await?;
    Ok(Json(receipt(&order, &payment)))
}

pub(super) async fn my_orders(ShopperCaller(shopper_id): ShopperCaller, State(s): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let orders = s.platform.orders_of(&shopper_id, 200).await?;
    Ok(Json(json!({"orders": orders})))
}
