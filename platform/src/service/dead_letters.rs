//! Dead letters [O8]: charges that still failed after the retry schedule, and effects
//! given up for good. An operator sees them, retries them now, or settles a charge by
//! hand (recorded with who and why). Nothing is ever dropped.

use super::ServiceError;
use crate::jobs::BuriedJob;
use crate::Platform;
use tare_domain::order::{HandSettlement, OrderCommand, OrderState};
use tare_projections::{DeadCharge, DeadLetters as DeadLetterView};

/// What waits for an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterList {
    /// Charges that failed for good, oldest first.
    pub charges: Vec<DeadCharge>,
    /// Effects given up for good, newest first.
    pub effects: Vec<BuriedJob>,
}

impl Platform {
    /// The dead letters now.
    pub async fn dead_letters(&self) -> Result<DeadLetterList, ServiceError> {
        let docs = self.views.by_owner(DeadLetterView::VIEW, "open", 10_000).await?;
        let mut charges: Vec<DeadCharge> = docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect();
        charges.sort_by(|a, b| a.since.cmp(&b.since).then(a.order_id.cmp(&b.order_id)));
        let effects = self.jobs.buried(1_000).await?;
        Ok(DeadLetterList { charges, effects })
    }

    /// Tries a dead-lettered charge again now (409 unless the order's charge is dead).
    pub async fn retry_dead_charge(&self, order_id: &str, by: &str) -> Result<(), ServiceError> {
        let order = self.order(order_id).await?;
        if order.state != OrderState::Charging || !order.dead_lettered {
            return Err(not_dead(order.state));
        }
        let cmd = OrderCommand::RetryCharge { at: self.clock.now_ms() };
        self.aggregates
            .orders
            .execute(order_id, cmd, self.meta(order_id, &format!("operator:{by}:retry")))
            .await
            .map_err(ServiceError::from_command)
    }

    /// Settles a charge that kept failing by hand — paid another way, or written off —
    /// recorded with who and why (409 unless the order's charge failed).
    pub async fn settle_dead_charge(&self, order_id: &str, resolution: HandSettlement, note: String, by: &str) -> Result<(), ServiceError> {
        let order = self.order(order_id).await?;
        if order.state != OrderState::Charging || !(order.dead_lettered || order.retry_pending) {
            return Err(not_dead(order.state));
        }
        let cmd = OrderCommand::SettleChargeByHand {
            resolution,
            by: by.to_string(),
            note,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .orders
            .execute(order_id, cmd, self.meta(order_id, &format!("operator:{by}:settle")))
            .await
            .map_err(ServiceError::from_command)
    }

    /// Runs a buried effect again now (404 if `key` is not a buried effect).
    pub async fn retry_dead_effect(&self, key: &str) -> Result<(), ServiceError> {
        if self.jobs.revive(key, self.clock.now_ms()).await? {
            self.aggregates.nudge();
            Ok(())
        } else {
            Err(ServiceError::NotFound {
                code: "dead_letter_not_found",
                message: format!("no buried effect {key}"),
            })
        }
    }
}

fn not_dead(state: OrderState) -> ServiceError {
    ServiceError::Conflict {
        code: "charge_not_dead",
        message: format!("the order is {} and its charge is not a dead letter", state.as_str()),
    }
}
