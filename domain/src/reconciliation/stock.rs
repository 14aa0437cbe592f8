//! The nightly stock reconciliation [R3 (a), B6]: the lanes whose weight still disagrees
//! with their ledger at the night's run, each raised once as an anomaly (by a stable id
//! of the lane and the divergence's start, so a divergence that lasts several nights is
//! raised once, and a new one on the same lane again). A clean night raises nothing.

use crate::cabinet::StockClass;
use crate::{CabinetId, DoorNo, LaneNo, UnixMs};
use serde::{Deserialize, Serialize};

/// The aggregate id of one night's stock run.
pub fn stock_id(date: &str) -> String {
    format!("stock:{date}")
}

/// One lane that disagrees at the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockFinding {
    /// Cabinet.
    pub cabinet: CabinetId,
    /// Door.
    pub door: DoorNo,
    /// Lane.
    pub lane: LaneNo,
    /// Product the ledger holds there.
    pub sku: String,
    /// Why.
    pub class: StockClass,
    /// Items by the ledger.
    pub ledger_stock: i64,
    /// Whole items by weight (`None`: no reading).
    pub weighed_stock: Option<i64>,
    /// `weighed_stock − ledger_stock`.
    pub difference: i64,
    /// When it began.
    pub since: UnixMs,
    /// When the door last opened before it.
    pub window_from: UnixMs,
    /// The last session on the door before it (`order:ID`, `restock:ID`, `command:ID`…).
    pub last_session: Option<String>,
}

impl StockFinding {
    /// The anomaly's stable id: the lane and the divergence's start.
    pub fn anomaly_id(&self) -> String {
        format!("stock:{}:{}:{}:{}", self.cabinet, self.door.get(), self.lane.get(), self.since)
    }

    /// The anomaly's kind: `stock_` and the class.
    pub fn kind(&self) -> String {
        format!("stock_{}", self.class.as_str())
    }

    /// The order concerned, when the last session on the door was one.
    pub fn order_id(&self) -> Option<String> {
        self.last_session.as_deref()?.strip_prefix("order:").map(str::to_string)
    }

    /// A sentence for the anomaly queue.
    pub fn detail(&self) -> String {
        let weighed = self
            .weighed_stock
            .map_or_else(|| "no reading".to_string(), |w| format!("{w} by weight"));
        let session = self
            .last_session
            .as_deref()
            .map_or_else(String::new, |s| format!("; last session on the door: {s}"));
        format!(
            "{}: door {} lane {} ({}) holds {} against {} in the ledger since {}{session}",
            self.class.as_str(),
            self.door.get(),
            self.lane.get(),
            self.sku,
            weighed,
            self.ledger_stock,
            self.since
        )
    }
}

/// The lane and start of a stock anomaly, read back from its id (`None` for any other
/// anomaly).
pub fn parse_stock_anomaly_id(id: &str) -> Option<(CabinetId, DoorNo, LaneNo, UnixMs)> {
    let mut parts = id.strip_prefix("stock:")?.split(':');
    let cabinet = CabinetId::parse(parts.next()?).ok()?;
    let door = DoorNo::parse("door", parts.next()?.parse().ok()?).ok()?;
    let lane = LaneNo::parse("lane", parts.next()?.parse().ok()?).ok()?;
    let since = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((cabinet, door, lane, since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_names_its_lane_start_and_session() {
        let f = StockFinding {
            cabinet: CabinetId::new("c1", "SN-1").unwrap(),
            door: DoorNo::of(1),
            lane: LaneNo::of(2),
            sku: "gum".into(),
            class: StockClass::UnpaidTake,
            ledger_stock: 10,
            weighed_stock: Some(9),
            difference: -1,
            since: 500,
            window_from: 400,
            last_session: Some("order:o7".into()),
        };
        assert_eq!(f.anomaly_id(), "stock:c1.SN-1:1:2:500");
        assert_eq!(
            parse_stock_anomaly_id(&f.anomaly_id()),
            Some((f.cabinet.clone(), f.door, f.lane, 500))
        );
        assert_eq!(parse_stock_anomaly_id("bills:wechat:2026-12-01:x"), None);
        assert_eq!(parse_stock_anomaly_id("stock:c1.SN-1:1:2:500:9"), None);
        assert_eq!(f.kind(), "stock_unpaid_take");
        assert_eq!(f.order_id().as_deref(), Some("o7"));
        assert!(f.detail().contains("9 by weight against 10"), "{}", f.detail());
        let none = StockFinding {
            last_session: Some("command:c1".into()),
            weighed_stock: None,
            ..f
        };
        assert_eq!(none.order_id(), None);
        assert!(none.detail().contains("no reading"));
    }
}
