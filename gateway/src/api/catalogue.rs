//! Products, cabinets and the coupon policy (operator endpoints) [C1, O7].

use super::extract::{ApiJson, Operator};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use tare_domain::cabinet::{Cabinet, DeviceStatus, DoorPosition};
use tare_domain::coupon::CouponPolicy;
use tare_domain::weight::Tolerance;
use tare_domain::{CabinetId, CabinetKind, Cents, DoorNo, GeoPoint, Grams, LaneNo, Sku};
use tare_platform::service::{DoorSpec, LaneSpec};

/// `POST /api/v1/products`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    sku: String,
    name: String,
    unit_grams: f64,
    price_cents: i64,
}

/// A product as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProductDto {
    sku: String,
    name: String,
    unit_grams: f64,
    price_cents: i64,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    lat: f64,
    lng: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToleranceBody {
    abs_grams: f64,
    rel: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLane {
    lane: i64,
    sku: String,
    capacity: u32,
    restock_threshold: u32,
    #[serde(default)]
    tolerance: Option<ToleranceBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDoor {
    door: i64,
    lanes: Vec<NewLane>,
}

/// `POST /api/v1/cabinets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCabinet {
    pk: String,
    dn: String,
    kind: CabinetKind,
    location: Location,
    doors: Vec<NewDoor>,
}

pub async fn create_cabinet(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewCabinet>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = CabinetId::new(&b.pk, &b.dn)?;
    let location = GeoPoint::parse(b.location.lat, b.location.lng)?;
    if b.doors.len() > 16 {
        return Err(ApiError::invalid("doors", "at most 16 doors"));
    }
    let mut doors = Vec::new();
    for (i, d) in b.doors.iter().enumerate() {
        let door = DoorNo::parse("door", d.door).map_err(|e| ApiError::invalid(format!("doors[{i}].door"), e.reason))?;
        let mut lanes = Vec::new();
        for (j, l) in d.lanes.iter().enumerate() {
            let at = |f: &str| format!("doors[{i}].lanes[{j}].{f}");
            let lane = LaneNo::parse("lane", l.lane).map_err(|e| ApiError::invalid(at("lane"), e.reason))?;
            let sku = Sku::parse("sku", &l.sku).map_err(|e| ApiError::invalid(at("sku"), e.reason))?;
            let tolerance = match &l.tolerance {
                Some(t) => Some(Tolerance::parse(t.abs_grams, t.rel).map_err(|e| ApiError::invalid(at(e.field), e.reason))?),
                None => None,
            };
            lanes.push(LaneSpec {
                lane,
                sku,
                capacity: l.capacity,
                restock_threshold: l.restock_threshold,
                tolerance,
            });
        }
        doors.push(DoorSpec { door, lanes });
    }
    let secret: String = {
        let mut rng = rand::rng();
        (0..32).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
    };
    s.platform.register_cabinet(id.clone(), b.kind, location, doors, &secret).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id.to_string(), "device_secret": secret}))))
}

/// The API's cabinet status names.
pub fn status_name(s: DeviceStatus) -> &'static str {
    match s {
        DeviceStatus::Registered => "pending_init",
        DeviceStatus::PendingInit => "pending_init",
        DeviceStatus::Online => "online",
        DeviceStatus::Offline => "offline",
        DeviceStatus::Faulty => "faulty",
    }
}

fn cabinet_json(c: &Cabinet, last_heartbeat_ts: Option<i64>) -> Value {
    let doors: Vec<Value> = c
        .doors
        .values()
        .map(|d| {
            json!({
                "door": d.door.get(),
                "state": match d.position { DoorPosition::Open => "open", DoorPosition::Closed => "closed", DoorPosition::Unknown => "unknown" },
                "held_by": d.holder.as_ref().map(|h| h.session_id().to_string()),
                "lanes": d.lanes.values().map(|l| json!({
                    "lane": l.plan.lane.get(),
                    "sku": l.plan.sku.as_str(),
                    "stock": l.stock,
                    "capacity": l.plan.capacity,
                    "restock_threshold": l.plan.restock_threshold,
                    "price_cents": l.plan.price.get(),
                    "unit_grams": l.plan.unit_grams,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    // A locker's doors are its compartments [seed 000].
    let compartments: Option<Vec<Value>> = (c.kind == Some(tare_domain::CabinetKind::Locker)).then(|| {
        c.doors
            .values()
            .map(|d| {
                json!({
                    "compartment": d.door.get(),
                    "state": match d.position { DoorPosition::Open => "open", DoorPosition::Closed => "closed", DoorPosition::Unknown => "unknown" },
                    "occupied": d.occupied,
                })
            })
            .collect()
    });
    json!({
        "id": c.id.as_ref().map(|i| i.to_string()),
        "kind": c.kind,
        "compartments": compartments,
        "status": status_name(c.status),
        "location": c.location,
        "planogram_version": c.planogram_version,
        "device_enabled": !c.device_disabled,
        "last_heartbeat_ts": last_heartbeat_ts,
        "gateway_node": c.node,
        "doors": doors,
    })
}

pub async fn get_cabinet(_: Operator, State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = CabinetId::parse(&id)?;
    let c = s.platform.cabinet(&id).await?;
    let presence = s.platform.device_presence(&id);
    let mut v = cabinet_json(&c, presence.last_seen);
    // The newest heartbeat's content [D4].
    v["heartbeat"] = json!(presence.heartbeat);
    // Silent while the platform cannot tell whether the fault is its own [B1].
    if presence.undecided {
        v["status"] = serde_json::json!("unknown");
    }
    Ok(Json(v))
}

/// `GET /api/v1/cabinets/{id}/ledger`: every stock movement of the cabinet's lanes [R2].
pub async fn get_ledger(_: Operator, State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = CabinetId::parse(&id)?;
    let c = s.platform.cabinet(&id).await?;
    let mut lanes = Vec::new();
    for d in c.doors.values() {
        for l in d.lanes.values() {
            let entries = s.platform.lane_ledger(&id, d.door, l.plan.lane).await?;
            lanes.push(json!({"door": d.door.get(), "lane": l.plan.lane.get(), "sku": l.plan.sku.as_str(), "entries": entries}));
        }
    }
    Ok(Json(json!({"cabinet": id.to_string(), "lanes": lanes})))
}

/// `PUT /api/v1/coupon-policy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    max_value_over_amount_pct: Option<u32>,
}

pub async fn put_coupon_policy(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<PolicyBody>,
) -> Result<Json<CouponPolicy>, ApiError> {
    if b.max_value_over_amount_pct.is_some_and(|p| p > 10_000) {
        return Err(ApiError::invalid("max_value_over_amount_pct", "must be at most 10000"));
    }
    let policy = CouponPolicy {
        max_value_over_amount_pct: b.max_value_over_amount_pct,
    };
    s.platform.set_coupon_policy(policy).await?;
    Ok(Json(policy))
}

pub async fn get_coupon_policy(_: Operator, State(s): State<Arc<ApiState>>) -> Json<CouponPolicy> {
    Json(s.platform.coupon_policy())
}

/// Body of `PUT /api/v1/cabinets/{id}/device`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAccess {
    enabled: bool,
}

/// `PUT /api/v1/cabinets/{id}/device` `{"enabled": false}`: shut a device out (its
/// credentials are refused and a live connection is closed) or let it back in [D2].
pub async fn put_device_access(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<DeviceAccess>,
) -> Result<Json<Value>, ApiError> {
    let id = CabinetId::parse(&id)?;
    s.platform.set_device_access(&id, b.enabled, "operator").await?;
    Ok(Json(json!({"id": id.to_string(), "enabled": b.enabled})))
}
