//! The anomaly queue [M3, R4]: what orders and bill reconciliations found, listed for
//! operators and auditors by state and cabinet, and closed by an operator with one
//! action — a refund of the order concerned, a write-off, or a plain resolution —
//! recorded with who, when and why.

use super::ServiceError;
use crate::Platform;
use sha2::{Digest, Sha256};
use tare_domain::anomaly::{AnomalyAction, AnomalyCommand, AnomalyError};
use tare_domain::{CabinetId, Cents};
use tare_projections::{Anomalies, AnomalyDoc};

/// Which anomalies to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyState {
    /// Waiting for someone.
    Open,
    /// Acted on.
    Closed,
}

impl AnomalyState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// What an operator asks to do with an anomaly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnomalyRequest {
    /// Give `amount` back on the anomaly's order.
    Refund {
        /// How much.
        amount: Cents,
    },
    /// Accept the loss (of this much money, when known).
    WriteOff {
        /// How much.
        amount: Option<Cents>,
    },
    /// Nothing to give back or write off.
    Resolve,
}

/// The most anomalies one page of the listing holds (and its default size).
pub const ANOMALY_PAGE_MAX: i64 = 1_000;

/// One page of the anomaly listing.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyPage {
    /// The anomalies, by id.
    pub items: Vec<AnomalyDoc>,
    /// The id to ask for the next page after, when there are more.
    pub next_after: Option<String>,
}

/// The owner range `[owner, owner + 1)` that holds exactly `owner`.
fn exactly(owner: String) -> (String, String) {
    let end = format!("{owner}\u{1}");
    (owner, end)
}

/// The owner range of every owner starting with `prefix` (an ASCII prefix ending in `:`).
fn starting_with(prefix: &str) -> (String, String) {
    (prefix.to_string(), prefix.replace(':', ";"))
}

impl Platform {
    /// A page of the anomalies in `state` (both when `None`) at `cabinet` (all when
    /// `None`): up to `limit` (at most [`ANOMALY_PAGE_MAX`]) whose id sorts after
    /// `after`, by id (ids of one kind follow the order they were found in). Never
    /// silently cut: `next_after` says where the next page starts.
    pub async fn anomalies(
        &self,
        state: Option<AnomalyState>,
        cabinet: Option<&CabinetId>,
        after: &str,
        limit: i64,
    ) -> Result<AnomalyPage, ServiceError> {
        let states = match state {
            Some(s) => vec![s],
            None => vec![AnomalyState::Open, AnomalyState::Closed],
        };
        let owners: Vec<(String, String)> = match (state, cabinet) {
            (None, None) => vec![],
            (_, Some(c)) => states.iter().map(|s| exactly(format!("{}:{c}", s.as_str()))).collect(),
            (Some(s), None) => vec![starting_with(&format!("{}:", s.as_str()))],
        };
        let limit = limit.clamp(1, ANOMALY_PAGE_MAX);
        let docs = self.views.page_in_owner_ranges(Anomalies::VIEW, &owners, after, limit + 1).await?;
        let mut items: Vec<AnomalyDoc> = docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect();
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_after = more.then(|| items.last().map(|a| a.anomaly_id.clone())).flatten();
        Ok(AnomalyPage { items, next_after })
    }

    /// Closes anomaly `anomaly_id` as `request` says, by `by` for `note`. A refund is
    /// made on the anomaly's order under a refund id derived from the anomaly, so a
    /// retried request never refunds twice; the anomaly closes only once the refund was
    /// accepted (409 `refund_exceeds_charge`, `order_not_refundable` otherwise, and it
    /// stays open). 404 `anomaly_not_found`; 409 `anomaly_closed` when it was closed
    /// another way, `anomaly_without_order` for a refund of an anomaly about no order.
    pub async fn act_on_anomaly(
        &self,
        anomaly_id: &str,
        request: AnomalyRequest,
        note: String,
        by: &str,
    ) -> Result<AnomalyDoc, ServiceError> {
        let case = self
            .aggregates
            .anomalies
            .load(anomaly_id)
            .await
            .map_err(ServiceError::from_command)?;
        let facts = case.facts.as_ref().ok_or_else(|| ServiceError::refused(AnomalyError::NotFound))?;
        let action = match request {
            AnomalyRequest::Refund { amount } => {
                let order_id = facts
                    .order_id
                    .as_deref()
                    .ok_or_else(|| ServiceError::refused(AnomalyError::NoOrder))?;
                if let Some(c) = &case.closing {
                    if !matches!(c.action, AnomalyAction::Refund { amount: a, .. } if a == amount) {
                        return Err(ServiceError::refused(AnomalyError::AlreadyClosed(c.action.as_str())));
                    }
                }
                let refund_id = anomaly_refund_id(anomaly_id);
                let reason: String = note.chars().take(80).collect();
                self.refund_order_as(order_id, refund_id.clone(), amount, reason, by, false).await?;
                AnomalyAction::Refund { refund_id, amount }
            }
            AnomalyRequest::WriteOff { amount } => {
                if case.closing.is_none() {
                    self.write_off_stock(anomaly_id, by).await?;
                }
                AnomalyAction::WriteOff { amount }
            }
            AnomalyRequest::Resolve => AnomalyAction::Resolve,
        };
        let correlation = facts.order_id.clone().unwrap_or_else(|| anomaly_id.to_string());
        let cmd = AnomalyCommand::Act {
            action,
            by: by.to_string(),
            note,
            at: self.clock.now_ms(),
        };
        let meta = self.meta(&correlation, &format!("operator:{by}:anomaly"));
        self.aggregates
            .anomalies
            .execute(anomaly_id, cmd, meta)
            .await
            .map_err(ServiceError::from_command)?;
        let case = self
            .aggregates
            .anomalies
            .load(anomaly_id)
            .await
            .map_err(ServiceError::from_command)?;
        AnomalyDoc::of_case(anomaly_id, &case).ok_or_else(|| ServiceError::Internal("the anomaly just closed is missing".into()))
    }
}

impl Platform {
    /// A stock anomaly written off [R3 (a)]: its lane's ledger takes the weighed stock
    /// (reason `write_off`), so the lane agrees with its weight again. Other anomalies
    /// move no stock.
    async fn write_off_stock(&self, anomaly_id: &str, by: &str) -> Result<(), ServiceError> {
        let Some((cabinet, door, lane, since)) = tare_domain::reconciliation::parse_stock_anomaly_id(anomaly_id) else {
            return Ok(());
        };
        let key = cabinet.to_string();
        let cmd = tare_domain::cabinet::CabinetCommand::WriteOffDivergence {
            door,
            lane,
            since,
            anomaly_id: anomaly_id.to_string(),
            at: self.clock.now_ms(),
        };
        self.aggregates
            .cabinets
            .execute(&key, cmd, self.meta(&key, &format!("operator:{by}:anomaly")))
            .await
            .map_err(ServiceError::from_command)
    }
}

/// The refund id of an anomaly's refund: the same for every request about it (the
/// providers' idempotency key), 34 characters of `[0-9a-z]`, within both providers' 64.
pub fn anomaly_refund_id(anomaly_id: &str) -> String {
    let digest = Sha256::digest(anomaly_id.as_bytes());
    format!("rfa{}", &hex::encode(digest)[..31])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anomalys_refund_id_is_stable_and_fits_both_providers() {
        let a = anomaly_refund_id("bills:alipay:2026-12-01:missing_here:o1");
        assert_eq!(a, anomaly_refund_id("bills:alipay:2026-12-01:missing_here:o1"));
        assert_ne!(a, anomaly_refund_id("order:o1"));
        assert_eq!(a.len(), 34);
        assert!(a.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
    }
}
