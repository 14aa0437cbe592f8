//! Refunds of a payment [O9]: each is reserved when asked for, so what is still
//! refundable (collected minus refunds made or in progress) bounds every new request, and
//! concurrent requests — serialized by the aggregate — can never give back more than was
//! charged.

use super::{Payment, PaymentError, PaymentEvent, PaymentState};
use crate::{Cents, UnixMs};
use serde::{Deserialize, Serialize};

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Asked of the provider; its amount is reserved.
    Pending,
    /// The money went back.
    Succeeded,
    /// Refused for good; its amount is refundable again.
    Failed,
}

impl RefundState {
    /// The state's name on the wire (`pending`, `succeeded`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One refund of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefund {
    /// Amount.
    pub amount: Cents,
    /// Where it stands.
    pub state: RefundState,
    /// Why it was asked for.
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: UnixMs,
    /// The provider's refund id, once it succeeded.
    pub provider_refund_id: Option<String>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

impl Payment {
    /// What can still be refunded: collected, minus refunds made or in progress.
    pub fn refundable(&self) -> Cents {
        let reserved: Cents = self
            .refunds
            .values()
            .filter(|r| r.state != RefundState::Failed)
            .map(|r| r.amount)
            .sum();
        self.collected - reserved
    }

    /// Decides a refund request [O9].
    pub(super) fn request_refund(
        &self,
        refund_id: String,
        amount: Cents,
        reason: String,
        (requested_by, dispute): (String, bool),
        at: UnixMs,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        if let Some(existing) = self.refunds.get(&refund_id) {
            return if existing.amount == amount {
                Ok(vec![])
            } else {
                Err(PaymentError::RefundIdTaken(refund_id))
            };
        }
        if self.state != PaymentState::Collected {
            return Err(PaymentError::WrongState(self.state));
        }
        if amount == Cents::ZERO {
            return Err(PaymentError::ZeroRefund);
        }
        let refundable = self.refundable();
        if amount > refundable {
            return Err(PaymentError::RefundExceedsCharge { refundable });
        }
        Ok(vec![PaymentEvent::RefundRequested {
            refund_id,
            amount,
            reason,
            requested_by,
            dispute,
            at,
        }])
    }

    /// Decides a refund's outcome; a repeat, or an outcome after another outcome, changes
    /// nothing (a success is final; a failure is final unless the provider later says it
    /// succeeded after all).
    pub(super) fn refund_outcome(&self, refund_id: &str, outcome: RefundOutcomeFact) -> Result<Vec<PaymentEvent>, PaymentError> {
        let r = self
            .refunds
            .get(refund_id)
            .ok_or_else(|| PaymentError::RefundNotFound(refund_id.to_string()))?;
        Ok(match (r.state, outcome) {
            (RefundState::Succeeded, _) | (RefundState::Failed, RefundOutcomeFact::Failed { .. }) => vec![],
            (
                _,
                RefundOutcomeFact::Succeeded {
                    provider_refund_id,
                    notification_id,
                    at,
                },
            ) => vec![PaymentEvent::RefundSucceeded {
                refund_id: refund_id.to_string(),
                amount: r.amount,
                provider_refund_id,
                notification_id,
                at,
            }],
            (RefundState::Pending, RefundOutcomeFact::Failed { reason, at }) => vec![PaymentEvent::RefundFailed {
                refund_id: refund_id.to_string(),
                reason,
                at,
            }],
        })
    }
}

/// A refund's outcome as reported (the two commands' common part).
pub(super) enum RefundOutcomeFact {
    Succeeded {
        provider_refund_id: String,
        notification_id: Option<String>,
        at: UnixMs,
    },
    Failed {
        reason: String,
        at: UnixMs,
    },
}
