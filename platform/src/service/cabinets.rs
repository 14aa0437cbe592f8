//! Cabinets: registration with the planogram and the device secret [C1, D2], the
//! cabinet's state and its device's presence [D4, D5], device access [D2] and the lane
//! ledger [R2].

use super::ServiceError;
use crate::db::DbError;
use crate::Platform;
use tare_domain::cabinet::{Cabinet, CabinetCommand, DoorPlan, LanePlan};
use tare_domain::weight::Tolerance;
use tare_domain::{CabinetId, CabinetKind, DoorNo, GeoPoint, LaneNo, Sku, UnixMs};

/// A lane as an operator registers it.
#[derive(Debug, Clone)]
pub struct LaneSpec {
    /// Lane number.
    pub lane: LaneNo,
    /// Product.
    pub sku: Sku,
    /// Capacity.
    pub capacity: u32,
    /// Restock threshold.
    pub restock_threshold: u32,
    /// Scale tolerance (default if `None`).
    pub tolerance: Option<Tolerance>,
}

/// A door as an operator registers it.
#[derive(Debug, Clone)]
pub struct DoorSpec {
    /// Door number.
    pub door: DoorNo,
    /// Lanes.
    pub lanes: Vec<LaneSpec>,
}

/// What the platform knows of a device's presence beyond its cabinet's recorded status.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePresence {
    /// When the device was last heard from (platform clock), on this node.
    pub last_seen: Option<UnixMs>,
    /// Its newest heartbeat (by device time) [D4].
    pub heartbeat: Option<crate::devices::bus::HeartbeatInfo>,
    /// Silent while the platform cannot tell whether the fault is its own: shown as
    /// `unknown` rather than offline [B1].
    pub undecided: bool,
}

impl Platform {
    /// Registers a cabinet with its planogram and stores its device secret [C1, D2].
    pub async fn register_cabinet(
        &self,
        id: CabinetId,
        kind: CabinetKind,
        location: GeoPoint,
        doors: Vec<DoorSpec>,
        device_secret: &str,
    ) -> Result<Cabinet, ServiceError> {
        if kind == CabinetKind::Locker {
            if let Some(i) = doors.iter().position(|d| !d.lanes.is_empty()) {
                return Err(ServiceError::Invalid {
                    field: format!("doors[{i}].lanes"),
                    message: "a locker compartment has no lanes".into(),
                });
            }
        }
        let mut plans = Vec::new();
        for (i, d) in doors.iter().enumerate() {
            let mut lanes = Vec::new();
            for (j, l) in d.lanes.iter().enumerate() {
                let p = self
                    .aggregates
                    .products
                    .load(l.sku.as_str())
                    .await
                    .map_err(ServiceError::from_command)?;
                if !p.exists() {
                    return Err(ServiceError::Invalid {
                        field: format!("doors[{i}].lanes[{j}].sku"),
                        message: format!("unknown product {}", l.sku),
                    });
                }
                lanes.push(LanePlan {
                    lane: l.lane,
                    sku: l.sku.clone(),
                    name: p.name.clone(),
                    unit_grams: p.unit_grams,
                    price: p.price,
                    capacity: l.capacity,
                    restock_threshold: l.restock_threshold,
                    tolerance: l.tolerance.unwrap_or_default(),
                    price_version: 1,
                    calibration_version: 0,
                });
            }
            plans.push(DoorPlan { door: d.door, lanes });
        }
        let key = id.to_string();
        let cmd = CabinetCommand::Register {
            id: id.clone(),
            kind,
            location,
            doors: plans,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .cabinets
            .execute(&key, cmd, self.meta(&key, "api"))
            .await
            .map_err(ServiceError::from_command)?;
        crate::on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO device_credentials (cabinet, secret) VALUES ($1, $2) ON CONFLICT (cabinet) DO NOTHING")
                .bind(&key).bind(device_secret).execute(pool).await.map_err(DbError::from)?;
        });
        self.cabinet(&id).await
    }

    /// A cabinet's state (404 if unknown).
    pub async fn cabinet(&self, id: &CabinetId) -> Result<Cabinet, ServiceError> {
        let c = self
            .aggregates
            .cabinets
            .load(&id.to_string())
            .await
            .map_err(ServiceError::from_command)?;
        if c.id.is_none() {
            return Err(ServiceError::NotFound {
                code: "cabinet_not_found",
                message: format!("cabinet {id} not found"),
            });
        }
        Ok(c)
    }

    /// Lets a device connect again, or shuts it out: its credentials are refused while it
    /// is disabled, and a live connection is closed now [D2].
    pub async fn set_device_access(&self, id: &CabinetId, enabled: bool, by: &str) -> Result<(), ServiceError> {
        self.cabinet(id).await?;
        let key = id.to_string();
        let flag = i32::from(!enabled);
        crate::on_db!(&self.db, pool => {
            sqlx::query("UPDATE device_credentials SET disabled = $1 WHERE cabinet = $2")
                .bind(flag).bind(&key).execute(pool).await.map_err(DbError::from)?;
        });
        let at = self.clock.now_ms();
        self.aggregates
            .cabinets
            .execute(
                &key,
                CabinetCommand::SetDeviceAccess {
                    enabled,
                    by: by.to_string(),
                    at,
                },
                self.meta(&key, "operator:device-access"),
            )
            .await
            .map_err(ServiceError::from_command)?;
        if !enabled {
            self.hub.kick(id).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// A device's secret (for signing checks at the gateway).
    pub async fn device_secret(&self, id: &CabinetId) -> Result<Option<String>, ServiceError> {
        let sql = "SELECT secret FROM device_credentials WHERE cabinet = $1 AND disabled = 0";
        let row: Option<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(id.to_string()).fetch_optional(pool).await.map_err(DbError::from)?);
        Ok(row.map(|r| r.0))
    }

    /// The device's presence as this node sees it [D4, D5, B1].
    pub fn device_presence(&self, id: &CabinetId) -> DevicePresence {
        DevicePresence {
            last_seen: self.hub.last_seen(id),
            heartbeat: self.hub.last_heartbeat(id),
            undecided: self.hub.liveness().is_undecided(id),
        }
    }

    /// The stock of each lane of a cabinet by the ledger (the lane stock view) [R1].
    pub async fn lane_stock(&self, id: &CabinetId) -> Result<Vec<serde_json::Value>, ServiceError> {
        Ok(self.views.by_owner("lane_stock", &id.to_string(), 10_000).await?)
    }

    /// Every stock movement of one lane, oldest first [R2] (the lane ledger view).
    pub async fn lane_ledger(&self, id: &CabinetId, door: DoorNo, lane: LaneNo) -> Result<Vec<serde_json::Value>, ServiceError> {
        let owner = format!("{id}/{door}/{lane}");
        Ok(self.views.by_owner("lane_ledger", &owner, 100_000).await?)
    }
}

impl Platform {
    /// Cabinet `id`'s stored weight samples [D6] (one door, or all) with device time in
    /// `[from, to)`, oldest first, at most `limit`; 404 for an unknown cabinet.
    pub async fn weight_samples(
        &self,
        id: &CabinetId,
        door: Option<tare_domain::DoorNo>,
        (from, to): (UnixMs, UnixMs),
        limit: i64,
    ) -> Result<Vec<crate::weight_history::StoredSample>, ServiceError> {
        self.cabinet(id).await?;
        Ok(self.history.query(id, door, from, to, limit).await?)
    }
}
