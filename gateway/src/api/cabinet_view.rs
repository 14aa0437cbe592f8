//! A cabinet as operators watch it [D1, R1, R4, B4, B8]: status, last heartbeat, doors
//! with each lane's stock, zero and calibration health, and the temperature guard.

use super::cabinets::CabinetPath;
use super::error::ErrorBody;
use super::extract::Operator;
use super::openapi::{Internal, OperatorOnly, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use tare_domain::cabinet::{Cabinet, DeviceStatus, DoorPosition};
use tare_domain::{CabinetId, CabinetKind};
use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// The kind of cabinet hardware.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum KindDto {
    /// Weight-sensing smart cabinet.
    Weight,
    /// Shared locker.
    Locker,
}

impl From<CabinetKind> for KindDto {
    fn from(k: CabinetKind) -> Self {
        match k {
            CabinetKind::Weight => Self::Weight,
            CabinetKind::Locker => Self::Locker,
        }
    }
}

/// A cabinet's connection status [D1, D5, B1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusDto {
    /// Registered and not initialized yet (also a cabinet that never connected).
    PendingInit,
    /// Initialized and connected.
    Online,
    /// Disconnected or silent.
    Offline,
    /// Silent while the platform cannot tell whether the fault is its own [B1].
    Unknown,
    /// Out of service.
    Faulty,
}

impl From<DeviceStatus> for StatusDto {
    fn from(s: DeviceStatus) -> Self {
        match s {
            DeviceStatus::Registered | DeviceStatus::PendingInit => Self::PendingInit,
            DeviceStatus::Online => Self::Online,
            DeviceStatus::Offline => Self::Offline,
            DeviceStatus::Faulty => Self::Faulty,
        }
    }
}

/// A door's (or compartment's) position as last reported.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum PositionDto {
    /// Open.
    Open,
    /// Closed.
    Closed,
    /// Not reported yet.
    Unknown,
}

impl From<DoorPosition> for PositionDto {
    fn from(p: DoorPosition) -> Self {
        match p {
            DoorPosition::Open => Self::Open,
            DoorPosition::Closed => Self::Closed,
            DoorPosition::Unknown => Self::Unknown,
        }
    }
}

/// A lane as the cabinet shows it: the planogram's line and the ledger's stock.
#[derive(Debug, Serialize, ToSchema)]
struct CabinetLaneDto {
    /// Most items the lane holds.
    capacity: u32,
    /// Lane number.
    lane: u8,
    /// Unit price frozen in the planogram.
    price_cents: i64,
    /// Restock threshold.
    restock_threshold: u32,
    /// Product.
    sku: String,
    /// Items on the lane by the ledger.
    stock: i64,
    /// Unit weight in grams.
    unit_grams: f64,
    /// What the lane reads with nothing on it, as drift moved it since its last tare
    /// [B4]: its stock weighs `zero_grams + stock × unit_grams`.
    zero_grams: f64,
    /// Calibration health, 0–100: what is left of its drift limit and of its last
    /// calibration's tolerance; 0 while it must be calibrated [B4].
    health: u8,
    /// The door does not sell until this lane is calibrated (a swap to another unit
    /// weight, a calibration beyond tolerance, or drift past its limit) [M1, B4].
    needs_calibration: bool,
    /// Its calibration version (0: never calibrated here) [M1].
    calibration_version: u32,
    /// Tared while empty since its last stock movement: ready for a standard weight.
    tared: bool,
}

/// A door with its lanes.
#[derive(Debug, Serialize, ToSchema)]
struct CabinetDoorDto {
    /// Door number.
    door: u8,
    /// The id of the session holding the door (order, restock or calibration), or null.
    held_by: Option<String>,
    /// Its lanes.
    lanes: Vec<CabinetLaneDto>,
    /// Its position as last reported.
    state: PositionDto,
}

/// A locker compartment (the locker's door of that number).
#[derive(Debug, Serialize, ToSchema)]
struct CompartmentDto {
    /// Compartment number.
    compartment: u8,
    /// Whether it holds an item, as last reported (null until reported).
    occupied: Option<bool>,
    /// Its position as last reported.
    state: PositionDto,
}

/// A geographic position (WGS-84 degrees).
#[derive(Debug, Serialize, ToSchema)]
struct GeoDto {
    /// Latitude.
    lat: f64,
    /// Longitude.
    lng: f64,
}

/// A door (or compartment) state inside a heartbeat: `[number, state]`.
#[derive(Debug, Serialize)]
struct HeartbeatDoor(u8, String);

impl PartialSchema for HeartbeatDoor {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .prefix_items([
                Schema::from(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(255))),
                Schema::from(ObjectBuilder::new().schema_type(Type::String)),
            ])
            .items(ArrayItems::False)
            .min_items(Some(2))
            .max_items(Some(2))
            .description(Some("A door (or compartment) as the device reports it: `[number, state]`."))
            .into()
    }
}

impl ToSchema for HeartbeatDoor {}

/// The newest heartbeat by device time [D4].
#[derive(Debug, Serialize, ToSchema)]
struct HeartbeatDto {
    /// Battery, 0-100.
    battery: u8,
    /// Device clock, Unix ms.
    device_ts: i64,
    /// Doors (or compartments) as the device reports them.
    doors: Vec<HeartbeatDoor>,
    /// Heating on.
    heating: bool,
    /// Network strength, 0-100.
    net: u8,
    /// Platform receive time, Unix ms.
    received_at: i64,
    /// Temperature, °C.
    temp_c: f64,
}

/// A cabinet as operators watch it [D1, R1, R4].
#[derive(Debug, Serialize, ToSchema)]
pub struct CabinetDto {
    /// Lockers only: one entry per compartment; null for weight cabinets.
    compartments: Option<Vec<CompartmentDto>>,
    /// Whether its device may connect (`PUT /api/v1/cabinets/{id}/device`).
    device_enabled: bool,
    /// Its doors with their lanes.
    doors: Vec<CabinetDoorDto>,
    /// The gateway node holding the device's connection.
    gateway_node: Option<String>,
    /// The newest heartbeat's content, or null.
    heartbeat: Option<HeartbeatDto>,
    /// The cabinet id `pk.dn`.
    id: Option<String>,
    /// Its hardware.
    kind: Option<KindDto>,
    /// Unix ms the device was last heard from by this node, or null.
    last_heartbeat_ts: Option<i64>,
    /// Where it stands.
    location: Option<GeoDto>,
    /// Version of the planogram (1 at registration).
    planogram_version: u32,
    /// Connection status.
    status: StatusDto,
    /// The temperature limit and lockout [B8].
    temperature: TemperatureDto,
}

/// A cabinet's temperature guard [B8].
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TemperatureDto {
    /// The limit, °C, or null when not watched.
    pub(super) max_c: Option<f64>,
    /// Set while shoppers are locked out (a heartbeat above the limit), until an
    /// operator resets it; null otherwise.
    pub(super) locked_out: Option<LockoutDto>,
}

/// What locked a cabinet out.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LockoutDto {
    /// The temperature reported, °C.
    temp_c: f64,
    /// When, Unix ms.
    at: i64,
}

impl From<&tare_domain::cabinet::TemperatureGuard> for TemperatureDto {
    fn from(t: &tare_domain::cabinet::TemperatureGuard) -> Self {
        Self {
            max_c: t.max_c,
            locked_out: t.locked.map(|(temp_c, at)| LockoutDto { temp_c, at }),
        }
    }
}

impl CabinetDto {
    fn new(c: &Cabinet, presence: tare_platform::service::DevicePresence) -> Self {
        let doors = c
            .doors
            .values()
            .map(|d| CabinetDoorDto {
                door: d.door.get(),
                held_by: d.holder.as_ref().map(|h| h.session_id().to_string()),
                lanes: d
                    .lanes
                    .values()
                    .map(|l| CabinetLaneDto {
                        capacity: l.plan.capacity,
                        lane: l.plan.lane.get(),
                        price_cents: l.plan.price.get(),
                        restock_threshold: l.plan.restock_threshold,
                        sku: l.plan.sku.to_string(),
                        stock: l.stock,
                        unit_grams: l.plan.unit_grams.get(),
                        zero_grams: (l.zero_grams.get() * 10.0).round() / 10.0,
                        health: l.health(),
                        needs_calibration: l.needs_calibration,
                        calibration_version: l.calibration_version,
                        tared: l.tared,
                    })
                    .collect(),
                state: d.position.into(),
            })
            .collect();
        // A locker's doors are its compartments [seed 000].
        let compartments = (c.kind == Some(CabinetKind::Locker)).then(|| {
            c.doors
                .values()
                .map(|d| CompartmentDto {
                    compartment: d.door.get(),
                    occupied: d.occupied,
                    state: d.position.into(),
                })
                .collect()
        });
        let status = if presence.undecided {
            // Silent while the platform cannot tell whether the fault is its own [B1].
            StatusDto::Unknown
        } else {
            c.status.into()
        };
        Self {
            compartments,
            device_enabled: !c.device_disabled,
            doors,
            gateway_node: c.node.clone(),
            heartbeat: presence.heartbeat.map(|h| HeartbeatDto {
                battery: h.battery,
                device_ts: h.device_ts,
                doors: h.doors.into_iter().map(|(d, s)| HeartbeatDoor(d, s)).collect(),
                heating: h.heating,
                net: h.net,
                received_at: h.received_at,
                temp_c: h.temp_c,
            }),
            id: c.id.as_ref().map(|i| i.to_string()),
            kind: c.kind.map(Into::into),
            last_heartbeat_ts: presence.last_seen,
            location: c.location.map(|l| GeoDto {
                lat: l.lat(),
                lng: l.lng(),
            }),
            planogram_version: c.planogram_version,
            status,
            temperature: (&c.temperature).into(),
        }
    }
}

/// Get a cabinet.
///
/// Returns a cabinet's status, last heartbeat and doors with per-lane stock, for
/// operators watching the fleet [D1, R1, R4].
#[utoipa::path(
    get,
    path = "/api/v1/cabinets/{id}",
    tag = "cabinets",
    operation_id = "getCabinet",
    security(("operatorBearer" = [])),
    params(CabinetPath),
    responses(
        (status = 200, description = "The cabinet.", body = CabinetDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`.", body = ErrorBody),
        (status = 422, description = "`invalid_field` on `cabinet`: the id is not `pk.dn`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_cabinet(_: Operator, State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<CabinetDto>, ApiError> {
    let id = CabinetId::parse(&id)?;
    let c = s.platform.cabinet(&id).await?;
    Ok(Json(CabinetDto::new(&c, s.platform.device_presence(&id))))
}
