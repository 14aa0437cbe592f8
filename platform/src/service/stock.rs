//! Stock reconciliation [R3 (a), B6]: the lanes whose settled closed-door weight
//! disagrees with their ledger (the cabinet classifies each as the readings come; the
//! `stock_discrepancies` view lists them), and the nightly run that records them and
//! raises an anomaly per divergence not raised before.

use super::ServiceError;
use crate::Platform;
use tare_domain::reconciliation::{stock_id, ReconciliationCommand, StockFinding};
use tare_domain::{CabinetId, DoorNo, LaneNo};
use tare_projections::{StockDiscrepancies, StockDiscrepancy};

/// The most discrepancies one listing returns.
const LIST_LIMIT: i64 = 100_000;

/// The finding a nightly run records of a listed discrepancy (`None` for a document
/// that no longer parses into domain values).
fn finding(d: &StockDiscrepancy) -> Option<StockFinding> {
    Some(StockFinding {
        cabinet: CabinetId::parse(&d.cabinet).ok()?,
        door: DoorNo::parse("door", i64::from(d.door)).ok()?,
        lane: LaneNo::parse("lane", i64::from(d.lane)).ok()?,
        sku: d.sku.clone(),
        class: d.class,
        ledger_stock: d.ledger_stock,
        weighed_stock: d.weighed_stock,
        difference: d.difference,
        since: d.since,
        window_from: d.window_from,
        last_session: d.last_session.as_ref().map(|s| format!("{}:{}", s.kind, s.id)),
    })
}

impl Platform {
    /// The lanes whose weight disagrees with their ledger now, of one cabinet or of the
    /// fleet, by cabinet, door and lane.
    pub async fn stock_discrepancies(&self, cabinet: Option<&CabinetId>) -> Result<Vec<StockDiscrepancy>, ServiceError> {
        let docs = match cabinet {
            Some(c) => {
                self.views
                    .by_owner(
                        StockDiscrepancies::VIEW,
                        &StockDiscrepancies::open_owner(&c.to_string()),
                        LIST_LIMIT,
                    )
                    .await?
            }
            None => {
                self.views
                    .by_owner_prefix(StockDiscrepancies::VIEW, StockDiscrepancies::OPEN_PREFIX, LIST_LIMIT)
                    .await?
            }
        };
        let mut items: Vec<StockDiscrepancy> = docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect();
        items.sort_by(|a, b| (&a.cabinet, a.door, a.lane).cmp(&(&b.cabinet, b.door, b.lane)));
        Ok(items)
    }

    /// Records the stock run closing local `date`: every lane that disagrees now, and an
    /// anomaly for each divergence not raised before. Returns what it found.
    pub async fn reconcile_stock(&self, date: &str) -> Result<Vec<StockFinding>, ServiceError> {
        self.await_views().await?;
        let findings: Vec<StockFinding> = self.stock_discrepancies(None).await?.iter().filter_map(finding).collect();
        let id = stock_id(date);
        let cmd = ReconciliationCommand::RecordStockRun {
            date: date.to_string(),
            findings: findings.clone(),
            at: self.clock.now_ms(),
        };
        self.record_reconciliation(&id, cmd, "reconcile:stock").await?;
        Ok(findings)
    }

    /// How many stock runs closing local `date` were recorded.
    pub async fn stock_runs(&self, date: &str) -> Result<u32, ServiceError> {
        let r = self
            .aggregates
            .reconciliations
            .load(&stock_id(date))
            .await
            .map_err(ServiceError::from_command)?;
        Ok(r.runs)
    }
}
