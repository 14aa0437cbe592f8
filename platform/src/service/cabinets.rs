//! Cabinets: registration with the planogram and the device secret [C1, D2], the
//! cabinet's state and its device's presence [D4, D5], device access [D2] and the lane
//! ledger [R2].

use super::ServiceError;
use crate::db::DbError;
use crate::Platform;
use tare_domain::cabinet::{Cabinet, CabinetCommand, DoorPlan, LanePlan};
use tare_domain::weight::Tolerance;
use tare_domain::{CabinetId, CabinetKind, DoorNo, GeoPoint, LaneNo, Sku, UnixMs};
use tare_projections::{LaneLedger, LedgerEntry};

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

/// Which movements of a cabinet's ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    /// Only this door's.
    pub door: Option<DoorNo>,
    /// Only this lane's (door and lane).
    pub lane: Option<(DoorNo, LaneNo)>,
}

/// Rows read per statement of a ledger page.
const LEDGER_CHUNK: usize = 1_000;
/// Statements one ledger page reads at most (a door's page in a busy cabinet).
const LEDGER_SCAN_PAGES: usize = 50;

/// The first `limit` items and, when there were more (or the scan stopped at
/// `scanned`), the position after which the next page starts.
fn page_of(mut items: Vec<LedgerEntry>, limit: usize, scanned: Option<i64>) -> (Vec<LedgerEntry>, Option<i64>) {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(|e| e.position) } else { scanned };
    (items, next)
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
        // The secret first, the cabinet second: a crash in between leaves a secret of no
        // cabinet (no device can use it) that the next registration replaces — never a
        // cabinet that can never log in. The secret is replaced only while no cabinet of
        // this id is in the log, so a losing concurrent registration cannot overwrite the
        // winner's after the fact; the winner writes its own again once registered, in
        // case the loser's landed between its two steps.
        crate::on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO device_credentials (cabinet, secret) VALUES ($1, $2) \
                 ON CONFLICT (cabinet) DO UPDATE SET secret = excluded.secret, disabled = 0 \
                 WHERE NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'cabinet' AND aggregate_id = $1)",
            )
            .bind(&key).bind(device_secret).execute(pool).await.map_err(DbError::from)?;
        });
        self.aggregates
            .cabinets
            .execute(&key, cmd, self.meta(&key, "api"))
            .await
            .map_err(ServiceError::from_command)?;
        crate::on_db!(&self.db, pool => {
            sqlx::query("UPDATE device_credentials SET secret = $2 WHERE cabinet = $1")
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

    /// Marks a signed HTTP device request (by its signature) as served until
    /// `expires_at`; false when it was served before — a replay, refused whichever node
    /// it reaches and after a restart.
    pub async fn use_device_signature(&self, signature: &str, expires_at: UnixMs) -> Result<bool, ServiceError> {
        let inserted = crate::on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO device_http_signatures (signature, expires_at) VALUES ($1, $2) ON CONFLICT (signature) DO NOTHING")
                .bind(signature).bind(expires_at).execute(pool).await.map_err(DbError::from)?.rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Forgets the served signatures whose timestamps are past the skew window (a
    /// request that old is refused as stale anyway).
    pub async fn prune_device_signatures(&self) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        crate::on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM device_http_signatures WHERE expires_at < $1")
                .bind(now).execute(pool).await.map_err(DbError::from)?;
        });
        Ok(())
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

    /// A page of a cabinet's stock movements in feed order after position `after` [R2]
    /// (the lane ledger view): of one lane, one door, or all; with the position to pass
    /// as `after` for the next page (`None`: the end).
    pub async fn ledger_page(
        &self,
        id: &CabinetId,
        filter: LedgerFilter,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<LedgerEntry>, Option<i64>), ServiceError> {
        let cabinet = id.to_string();
        let owner = filter.lane.map(|(d, l)| LaneLedger::lane_owner(&cabinet, d.get(), l.get()));
        let mut items: Vec<LedgerEntry> = Vec::new();
        let mut scanned = after;
        // A door's movements are read from the cabinet's and filtered: a page reads at
        // most LEDGER_SCAN_PAGES statements, then says where to go on.
        for _ in 0..LEDGER_SCAN_PAGES {
            let chunk = (limit + 1).max(LEDGER_CHUNK);
            let cursor = LaneLedger::doc_id(&cabinet, scanned);
            let docs = self.views.page(LaneLedger::VIEW, owner.as_deref(), &cursor, chunk as i64).await?;
            let end = docs.len() < chunk;
            for d in docs {
                let e: LedgerEntry =
                    serde_json::from_value(d).map_err(|e| ServiceError::Internal(format!("a ledger entry does not parse: {e}")))?;
                if e.cabinet != cabinet {
                    return Ok(page_of(items, limit, None));
                }
                scanned = e.position;
                if filter.door.is_none_or(|door| door.get() == e.door) {
                    items.push(e);
                }
                if items.len() > limit {
                    return Ok(page_of(items, limit, None));
                }
            }
            if end {
                return Ok(page_of(items, limit, None));
            }
        }
        Ok(page_of(items, limit, Some(scanned)))
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
