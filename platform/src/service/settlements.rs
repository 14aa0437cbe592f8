//! Daily settlements per cabinet [R3 (c)]: one local business day's paid orders and
//! refunds (the `settlement_lines` view, one range read of the day's 24 hours) summed per
//! cabinet by `tare_domain::reconciliation::daily`, closing at the configured local hour
//! with the configured fee rates.

use super::ServiceError;
use crate::Platform;
use tare_domain::reconciliation::daily::{day_window, settle, CabinetSettlement, SettlementLine};
use tare_domain::{CabinetId, UnixMs};
use tare_projections::SettlementLines;

/// The most lines one day is read with.
const DAY_LINES: i64 = 5_000_000;

/// One business day's settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySettlement {
    /// The local date.
    pub date: String,
    /// The local hour the day closes at.
    pub close_hour: i64,
    /// The day's window, `[from, to)` Unix ms.
    pub from: UnixMs,
    /// Its end.
    pub to: UnixMs,
    /// Per cabinet with money that day.
    pub cabinets: Vec<CabinetSettlement>,
}

impl Platform {
    /// The settlement of local date `date` (`YYYY-MM-DD`, checked by the caller), of one
    /// cabinet or every cabinet with money that day.
    pub async fn settlements(&self, date: &str, cabinet: Option<&CabinetId>) -> Result<DaySettlement, ServiceError> {
        let close_hour = self.saga.settlement_close_hour;
        let (from, to) = day_window(date, close_hour).ok_or_else(|| ServiceError::Invalid {
            field: "date".into(),
            message: "must be a calendar date YYYY-MM-DD".into(),
        })?;
        let hour = |t: UnixMs| SettlementLines::hour_key(t.div_euclid(3_600_000));
        let docs = self
            .views
            .by_owner_range(SettlementLines::VIEW, &hour(from), &hour(to), DAY_LINES)
            .await?;
        let wanted = cabinet.map(ToString::to_string);
        let lines: Vec<SettlementLine> = docs
            .iter()
            .filter_map(SettlementLines::line)
            .filter(|l| {
                let (c, at) = match l {
                    SettlementLine::Sale { cabinet, at, .. } | SettlementLine::Refund { cabinet, at, .. } => (cabinet, *at),
                };
                (from..to).contains(&at) && wanted.as_ref().is_none_or(|w| w == c)
            })
            .collect();
        Ok(DaySettlement {
            date: date.to_string(),
            close_hour,
            from,
            to,
            cabinets: settle(&lines, &self.saga.fees),
        })
    }
}
