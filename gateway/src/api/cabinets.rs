//! Cabinets (operator endpoints) [C1, D1, D2, R2]: registering one with its planogram,
//! its state, its lanes' ledger, and letting its device in or shutting it out.
//!
//! Response DTOs keep their fields in alphabetical order, at every level: the JSON is
//! byte for byte what these endpoints wrote before they were typed (a `serde_json::Value`
//! object sorts its keys).

use super::error::ErrorBody;
use super::extract::{ApiJson, Operator};
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::weight::Tolerance;
use tare_domain::{CabinetId, CabinetKind, DoorNo, GeoPoint, LaneNo, Sku};
use tare_platform::service::{DoorSpec, LaneSpec};
use utoipa::openapi::schema::{Discriminator, OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Where a cabinet stands (WGS-84 degrees).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude.
    #[schema(minimum = -90, maximum = 90)]
    lat: f64,
    /// Longitude.
    #[schema(minimum = -180, maximum = 180)]
    lng: f64,
}

/// A lane scale's tolerance: error allowed = `abs_grams + rel × load`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToleranceBody {
    /// Fixed part in grams.
    #[schema(minimum = 0, maximum = 1000)]
    abs_grams: f64,
    /// Proportional part (0.003 = 0.3 % of the load).
    #[schema(minimum = 0, maximum = 0.2)]
    rel: f64,
}

/// A lane of a weight cabinet's door. Beyond what the schema says, a lane number is
/// unique within its door, `restock_threshold` must not exceed `capacity`, the product
/// must be registered, and the tolerance at full capacity must stay below half the
/// product's unit weight (422 on the lane's field otherwise).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLane {
    /// Lane number.
    #[schema(minimum = 1, maximum = 64)]
    lane: i64,
    /// A registered product's SKU.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$", example = "cola-330")]
    sku: String,
    /// Most items the lane holds.
    #[schema(minimum = 1, maximum = 1000)]
    capacity: u32,
    /// At or below this stock a restock task is raised; at most `capacity`.
    #[schema(minimum = 0, maximum = 1000)]
    restock_threshold: u32,
    /// The lane scale's tolerance; omitted or null: `{abs_grams: 3, rel: 0.003}`.
    #[serde(default)]
    #[schema(nullable)]
    tolerance: Option<ToleranceBody>,
}

/// A door of a weight cabinet (door numbers are unique within the cabinet).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDoor {
    /// Door number.
    #[schema(minimum = 1, maximum = 16)]
    door: i64,
    /// Its lanes (none is allowed).
    lanes: Vec<NewLane>,
}

/// `POST /api/v1/cabinets`, as parsed. Its schema is [`NewWeightCabinet`] or
/// [`NewLocker`] by `kind`; one struct parses both so a refusal names the field's path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCabinet {
    pk: String,
    dn: String,
    kind: CabinetKind,
    location: Location,
    doors: Vec<NewDoor>,
}

/// The only `kind` of a [`NewWeightCabinet`].
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Schema only.
enum WeightKind {
    /// Weight-sensing smart cabinet.
    Weight,
}

/// The only `kind` of a [`NewLocker`].
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Schema only.
enum LockerKind {
    /// Shared locker.
    Locker,
}

/// A weight cabinet with its planogram: at least one door, each with its lanes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"pk": "wc1", "dn": "SN001", "kind": "weight", "location": {"lat": 31.23, "lng": 121.47},
    "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola-330", "capacity": 10, "restock_threshold": 2}]}]}))]
#[allow(dead_code)] // Schema only: `NewCabinet` parses it.
struct NewWeightCabinet {
    /// Product key (cabinet model).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", example = "wc1")]
    pk: String,
    /// Device name (serial).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", example = "SN001")]
    dn: String,
    /// `weight`.
    kind: WeightKind,
    /// Where it stands.
    location: Location,
    /// Its doors, numbered uniquely.
    #[schema(min_items = 1, max_items = 16)]
    doors: Vec<NewDoor>,
}

/// A locker compartment: a door with no lanes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only: `NewDoor` parses it.
struct NewCompartment {
    /// Compartment number (unique within the locker).
    #[schema(minimum = 1, maximum = 16)]
    door: i64,
    /// Always empty: a compartment has no lanes.
    #[schema(max_items = 0)]
    lanes: Vec<NewLane>,
}

/// A shared locker: one `doors` entry per compartment.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"pk": "lk1", "dn": "SN001", "kind": "locker", "location": {"lat": 31.23, "lng": 121.47},
    "doors": [{"door": 1, "lanes": []}, {"door": 2, "lanes": []}]}))]
#[allow(dead_code)] // Schema only: `NewCabinet` parses it.
struct NewLocker {
    /// Product key (cabinet model).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", example = "lk1")]
    pk: String,
    /// Device name (serial).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", example = "SN001")]
    dn: String,
    /// `locker`.
    kind: LockerKind,
    /// Where it stands.
    location: Location,
    /// Its compartments, numbered uniquely.
    #[schema(min_items = 1, max_items = 16)]
    doors: Vec<NewCompartment>,
}

impl PartialSchema for NewCabinet {
    fn schema() -> RefOr<Schema> {
        let mut discriminator = Discriminator::new("kind");
        discriminator.mapping = [
            ("weight".to_string(), "#/components/schemas/NewWeightCabinet".to_string()),
            ("locker".to_string(), "#/components/schemas/NewLocker".to_string()),
        ]
        .into_iter()
        .collect();
        OneOfBuilder::new()
            .item(Ref::from_schema_name(NewWeightCabinet::name()))
            .item(Ref::from_schema_name(NewLocker::name()))
            .discriminator(Some(discriminator))
            .description(Some(
                "A cabinet to register, by `kind`: a weight cabinet with its planogram, or a locker whose doors are its compartments (with no lanes).",
            ))
            .into()
    }
}

impl ToSchema for NewCabinet {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((NewWeightCabinet::name().into(), NewWeightCabinet::schema()));
        schemas.push((NewLocker::name().into(), NewLocker::schema()));
        <NewWeightCabinet as ToSchema>::schemas(schemas);
        <NewLocker as ToSchema>::schemas(schemas);
    }
}

/// A registered cabinet: its id and its device secret (shown only here).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"device_secret": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "id": "wc1.SN001"}))]
pub struct CabinetCreated {
    /// The device's secret (32 random bytes, hex): it signs every device connection.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    device_secret: String,
    /// The cabinet id `pk.dn`.
    id: String,
    /// Look-alike combinations on a door the scales cannot tell apart (e.g. 3 gum vs 1
    /// chips), for the operator to reconsider; one item for one item is refused instead
    /// [B3].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// Register a cabinet.
///
/// Registers a cabinet with its doors and lanes (the planogram) and returns its device
/// secret, shown only once [C1, D1, D2].
#[utoipa::path(
    post,
    path = "/api/v1/cabinets",
    tag = "cabinets",
    operation_id = "createCabinet",
    security(("operatorBearer" = [])),
    request_body = NewCabinet,
    responses(
        (status = 201, description = "The cabinet's id and device secret.", body = CabinetCreated),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 409, description = "`cabinet_exists`, or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`, with the field's path: `pk`, `dn`, `kind`, `location.lat`, `doors`, `doors[0].door` (also a duplicate door), `doors[0].lanes` (lanes on a locker compartment), `doors[0].lanes[1].lane` (also a duplicate lane), `doors[0].lanes[1].capacity`, `doors[0].lanes[1].restock_threshold` (above capacity), `doors[0].lanes[0].sku` (also an unknown product, or one that weighs like another product on its door, one item for one), `doors[0].lanes[0].tolerance` (items cannot be told apart at capacity), `doors[0].lanes[0].tolerance.rel`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn create_cabinet(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewCabinet>,
) -> Result<(StatusCode, Json<CabinetCreated>), ApiError> {
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
    let cabinet = s.platform.register_cabinet(id.clone(), b.kind, location, doors, &secret).await?;
    let warnings = cabinet
        .doors
        .values()
        .flat_map(|d| {
            let lanes: Vec<_> = d.lanes.values().map(|l| l.plan.clone()).collect();
            tare_domain::cabinet::door_ambiguities(&lanes)
                .into_iter()
                .map(move |a| format!("door {}: {}", d.door, a.describe(&lanes)))
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(CabinetCreated {
            device_secret: secret,
            id: id.to_string(),
            warnings,
        }),
    ))
}

/// The `{id}` of a cabinet's paths.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Parameter docs only: handlers parse the id with `CabinetId::parse`.
pub(super) struct CabinetPath {
    /// The cabinet id `pk.dn` (a malformed one is a 422 on field `cabinet`).
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    id: String,
}

/// Body of `PUT /api/v1/cabinets/{id}/device`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false}))]
pub struct DeviceAccess {
    /// `false` shuts the device out; `true` lets it back in.
    enabled: bool,
}

/// Whether a cabinet's device may connect, as set.
#[derive(Serialize, ToSchema)]
pub struct DeviceAccessSet {
    /// As set.
    enabled: bool,
    /// The cabinet id.
    id: String,
}

/// Let a device in or shut it out.
///
/// `{"enabled": false}` shuts a device out (its credentials are refused and a live
/// connection is closed at once); `true` lets it back in [D2].
#[utoipa::path(
    put,
    path = "/api/v1/cabinets/{id}/device",
    tag = "cabinets",
    operation_id = "putDeviceAccess",
    security(("operatorBearer" = [])),
    params(CabinetPath),
    request_body = DeviceAccess,
    responses(
        (status = 200, description = "The device's access as set.", body = DeviceAccessSet),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `cabinet` (the id is not `pk.dn`), `enabled` (missing or not a boolean) or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn put_device_access(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<DeviceAccess>,
) -> Result<Json<DeviceAccessSet>, ApiError> {
    let id = CabinetId::parse(&id)?;
    s.platform.set_device_access(&id, b.enabled, "operator").await?;
    Ok(Json(DeviceAccessSet {
        enabled: b.enabled,
        id: id.to_string(),
    }))
}
