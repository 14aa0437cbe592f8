//! Refunds [O9]: an operator (or an upheld anomaly) gives back part or all of a paid
//! order; the payment reserves the amount at once, so concurrent requests can never give
//! back more than was charged, and the refund saga carries it to the provider. Verified
//! provider notifications of a refund's outcome land here too.

use super::ServiceError;
use crate::store::CommandError;
use crate::Platform;
use tare_domain::payment::{PaymentCommand, PaymentError, PaymentRefund};
use tare_domain::Cents;

/// A refund as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundView {
    /// Our refund id.
    pub refund_id: String,
    /// Its record on the payment.
    pub refund: PaymentRefund,
}

impl Platform {
    /// Asks for a refund of `amount` on order `order_id`, by `by` for `reason` — a
    /// shopper's dispute of the charge, counted by the dispute-rate rule [B8]: 409
    /// `order_not_refundable` unless the order was paid through its provider, 409
    /// `refund_exceeds_charge` beyond what is still refundable.
    pub async fn refund_order(&self, order_id: &str, amount: Cents, reason: String, by: &str) -> Result<RefundView, ServiceError> {
        let refund_id = format!("rf{}", uuid::Uuid::now_v7().simple());
        self.refund_order_as(order_id, refund_id, amount, reason, by, true).await
    }

    /// [`Platform::refund_order`] under a refund id the caller chose: asking again with
    /// the same id and amount changes nothing (the first request stands), so a caller
    /// that derives the id from its own request can retry safely; another amount under
    /// the same id is 409 `refund_id_taken`. `dispute`: whether the shopper disputed the
    /// charge (an anomaly's refund is our error, not a dispute).
    pub async fn refund_order_as(
        &self,
        order_id: &str,
        refund_id: String,
        amount: Cents,
        reason: String,
        by: &str,
        dispute: bool,
    ) -> Result<RefundView, ServiceError> {
        self.order(order_id).await?;
        let cmd = PaymentCommand::RequestRefund {
            refund_id: refund_id.clone(),
            amount,
            reason,
            requested_by: by.to_string(),
            dispute,
            at: self.clock.now_ms(),
        };
        let result = self
            .aggregates
            .payments
            .execute(order_id, cmd, self.meta(order_id, &format!("refund:{by}")))
            .await;
        match result {
            Ok(()) => {}
            Err(CommandError::Rejected(PaymentError::WrongState(_) | PaymentError::NotFound)) => {
                return Err(ServiceError::Conflict {
                    code: "order_not_refundable",
                    message: "only an order paid through its provider can be refunded".into(),
                })
            }
            Err(e) => return Err(ServiceError::from_command(e)),
        }
        let payment = self.payment(order_id).await?;
        let refund = payment
            .refunds
            .get(&refund_id)
            .cloned()
            .ok_or_else(|| ServiceError::Internal("the refund just requested is missing".into()))?;
        Ok(RefundView { refund_id, refund })
    }

    /// Applies a verified provider notification that a refund succeeded.
    pub async fn provider_refunded(
        &self,
        order_id: &str,
        refund_id: &str,
        provider_refund_id: String,
        notification_id: &str,
    ) -> Result<(), ServiceError> {
        let cmd = PaymentCommand::RecordRefundSucceeded {
            refund_id: refund_id.to_string(),
            provider_refund_id,
            notification_id: Some(notification_id.to_string()),
            at: self.clock.now_ms(),
        };
        self.apply_refund_notification(order_id, notification_id, cmd).await
    }

    /// Applies a verified provider notification that a refund failed for good.
    pub async fn provider_refund_failed(
        &self,
        order_id: &str,
        refund_id: &str,
        reason: String,
        notification_id: &str,
    ) -> Result<(), ServiceError> {
        let cmd = PaymentCommand::RecordRefundFailed {
            refund_id: refund_id.to_string(),
            reason,
            at: self.clock.now_ms(),
        };
        self.apply_refund_notification(order_id, notification_id, cmd).await
    }

    /// A notification about a refund this platform never asked for changes nothing (it is
    /// acknowledged all the same: the provider must stop resending it).
    async fn apply_refund_notification(&self, order_id: &str, notification_id: &str, cmd: PaymentCommand) -> Result<(), ServiceError> {
        let meta = self.meta(order_id, &format!("callback:{notification_id}"));
        match self.aggregates.payments.execute(order_id, cmd, meta).await {
            Ok(()) | Err(CommandError::Rejected(PaymentError::RefundNotFound(_) | PaymentError::NotFound)) => Ok(()),
            Err(e) => Err(ServiceError::from_command(e)),
        }
    }
}
