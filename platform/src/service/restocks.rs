//! Restocking [O10, M2]: the tasks (one per cabinet, what to bring) and the sessions an
//! operator starts at a door — no charge, exclusive with purchases — whose counts come
//! from the weights and are booked on the lane ledger with reason `restock`.

use super::ServiceError;
use crate::Platform;
use tare_domain::cabinet::{CabinetCommand, CabinetError, Holder, LanePlan};
use tare_domain::command::CommandSpec;
use tare_domain::restock::{Restock, RestockCommand, RestockLane};
use tare_domain::{CabinetId, DoorNo, LaneNo, Sku};
use tare_projections::{RestockTaskDoc, RestockTasks};

/// The most tasks one page of the listing holds (and its default size).
pub const TASK_PAGE_MAX: i64 = 1_000;

impl Platform {
    /// Starts a restock session at `door` of `cabinet` for operator `by`: the door is
    /// taken for it and opened. 404 `cabinet_not_found` / `door_not_found`; 422 `door`
    /// for a door without lanes (a locker's); 409 `cabinet_unavailable` unless online,
    /// `cabinet_busy` while anyone holds the door (a shopper's purchase, another session).
    /// A race with a scan that takes the door first ends the session as `failed`
    /// (`door_busy`).
    pub async fn start_restock(&self, cabinet: &CabinetId, door: DoorNo, by: &str) -> Result<(String, Restock), ServiceError> {
        let c = self.cabinet(cabinet).await?;
        let d = c.door(door).map_err(ServiceError::refused)?;
        c.check_available().map_err(ServiceError::refused)?;
        match &d.holder {
            None => {}
            // An operator's command that ended gives the door up now.
            Some(Holder::Command { cmd_id }) if self.command_door_is_free(cmd_id).await? => {
                self.release_command_door(cabinet, door, cmd_id, "command_ended").await?;
            }
            Some(_) => return Err(ServiceError::refused(CabinetError::DoorBusy)),
        }
        let lanes: Vec<RestockLane> = d
            .lanes
            .values()
            .map(|l| RestockLane {
                plan: l.plan.clone(),
                stock: l.stock,
            })
            .collect();
        let restock_id = format!("rs{}", uuid::Uuid::now_v7().simple());
        let cmd = RestockCommand::Start {
            cabinet: cabinet.clone(),
            door,
            lanes,
            by: by.to_string(),
            open_cmd_id: format!("cmd-{restock_id}-open"),
            at: self.clock.now_ms(),
        };
        self.aggregates
            .restocks
            .execute(&restock_id, cmd, self.meta(&restock_id, &format!("operator:{by}:restock")))
            .await
            .map_err(ServiceError::from_command)?;
        let r = self.restock(&restock_id).await?;
        Ok((restock_id, r))
    }

    /// A restock session (404 `restock_not_found`).
    pub async fn restock(&self, restock_id: &str) -> Result<Restock, ServiceError> {
        let r = self
            .aggregates
            .restocks
            .load(restock_id)
            .await
            .map_err(ServiceError::from_command)?;
        if r.cabinet.is_none() {
            return Err(ServiceError::NotFound {
                code: "restock_not_found",
                message: format!("restock {restock_id} not found"),
            });
        }
        Ok(r)
    }

    /// A page of the open restock tasks (every cabinet with a lane at or below its
    /// threshold): up to `limit` (at most [`TASK_PAGE_MAX`]) of the cabinets after
    /// `after`, by cabinet id, with the cabinet to ask for the next page after when there
    /// are more — never silently cut. Or `cabinet`'s picture whether or not it needs
    /// anything.
    pub async fn restock_tasks(
        &self,
        cabinet: Option<&CabinetId>,
        after: &str,
        limit: i64,
    ) -> Result<(Vec<RestockTaskDoc>, Option<String>), ServiceError> {
        let limit = limit.clamp(1, TASK_PAGE_MAX);
        let docs = match cabinet {
            Some(c) => self.views.get(RestockTasks::VIEW, &c.to_string()).await?.into_iter().collect(),
            None => self.views.page(RestockTasks::VIEW, Some("needed"), after, limit + 1).await?,
        };
        let mut tasks: Vec<RestockTaskDoc> = docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect();
        let more = tasks.len() as i64 > limit;
        tasks.truncate(limit as usize);
        let next_after = more.then(|| tasks.last().map(|t| t.cabinet.clone())).flatten();
        Ok((tasks, next_after))
    }
}

/// What a swapped lane is to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneProduct {
    /// The product.
    pub sku: Sku,
    /// Most items.
    pub capacity: u32,
    /// Its restock threshold.
    pub restock_threshold: u32,
}

/// A lane swap as done.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneSwap {
    /// The cabinet's planogram version now.
    pub planogram_version: u32,
    /// Whether the lane must be calibrated before its door sells again.
    pub needs_calibration: bool,
}

impl Platform {
    /// Puts product `sku` on lane `lane` of `door` [C2]: a planogram version change,
    /// only for an empty lane of a free door (409 `lane_not_empty`, `cabinet_busy`); the
    /// lane's label is sent the product's name and price; a different unit weight
    /// blocks the door until the lane is calibrated (`calibrate`). 404 for an unknown
    /// cabinet, door, lane or product; 422 `capacity` / `restock_threshold` out of
    /// range.
    pub async fn swap_lane(
        &self,
        cabinet: &CabinetId,
        door: DoorNo,
        lane: LaneNo,
        new: &LaneProduct,
        by: &str,
    ) -> Result<LaneSwap, ServiceError> {
        let LaneProduct {
            sku,
            capacity,
            restock_threshold,
        } = new;
        let product = self.product(sku).await?;
        let c = self.cabinet(cabinet).await?;
        let current = c
            .door(door)
            .map_err(ServiceError::refused)?
            .lanes
            .get(&lane)
            .ok_or_else(|| ServiceError::refused(CabinetError::UnknownLane(lane)))?;
        let plan = LanePlan {
            lane,
            sku: sku.clone(),
            name: product.name.clone(),
            unit_grams: product.unit_grams,
            price: product.price,
            capacity: *capacity,
            restock_threshold: *restock_threshold,
            tolerance: current.plan.tolerance,
            price_version: product.label_version.max(1),
            calibration_version: 0, // the cabinet keeps the live one
        };
        let at = self.clock.now_ms();
        let cmd = CabinetCommand::SwapLane { door, plan, at };
        self.aggregates
            .cabinets
            .execute(
                &cabinet.to_string(),
                cmd,
                self.meta(&cabinet.to_string(), &format!("operator:{by}:swap")),
            )
            .await
            .map_err(ServiceError::from_command)?;
        let c = self.cabinet(cabinet).await?;
        let l = &c.door(door).map_err(ServiceError::refused)?.lanes[&lane];
        // The shelf's label shows the new product.
        let label = CommandSpec::SetPriceLabel {
            door: door.get(),
            lane: lane.get(),
            price_cents: l.plan.price.get(),
            name: l.plan.name.clone(),
        };
        self.issue_command(cabinet, label, tare_sagas::pricing::PRICE_LABEL_TTL_MS, &format!("swap:{by}"))
            .await?;
        Ok(LaneSwap {
            planogram_version: c.planogram_version,
            needs_calibration: l.needs_calibration,
        })
    }
}
