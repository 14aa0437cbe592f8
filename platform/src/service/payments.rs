//! Verified provider notifications, applied to the payment [P2].

use super::ServiceError;
use crate::Platform;
use tare_domain::payment::PaymentCommand;
use tare_domain::Cents;

impl Platform {
    /// Applies a verified provider notification that the shopper authorized [P2].
    pub async fn provider_authorized(&self, order_id: &str, notification_id: &str) -> Result<(), ServiceError> {
        let cmd = PaymentCommand::ConfirmAuthorization {
            notification_id: Some(notification_id.to_string()),
            at: self.clock.now_ms(),
        };
        self.apply_notification(order_id, notification_id, cmd).await
    }

    /// Applies a verified provider notification that money was collected [P2].
    pub async fn provider_collected(
        &self,
        order_id: &str,
        notification_id: &str,
        transaction_id: String,
        amount: Cents,
    ) -> Result<(), ServiceError> {
        let cmd = PaymentCommand::RecordCollected {
            transaction_id,
            amount,
            notification_id: Some(notification_id.to_string()),
            at: self.clock.now_ms(),
        };
        self.apply_notification(order_id, notification_id, cmd).await
    }

    /// Applies a verified provider notification that a deduction failed [P2].
    pub async fn provider_collection_failed(&self, order_id: &str, notification_id: &str, reason: String) -> Result<(), ServiceError> {
        let cmd = PaymentCommand::RecordCollectionFailed {
            reason,
            at: self.clock.now_ms(),
        };
        self.apply_notification(order_id, notification_id, cmd).await
    }

    /// Applies `cmd` to the order's payment, caused by provider notification
    /// `notification_id` (so the log says which callback did it).
    async fn apply_notification(&self, order_id: &str, notification_id: &str, cmd: PaymentCommand) -> Result<(), ServiceError> {
        self.aggregates
            .payments
            .execute(order_id, cmd, self.meta(order_id, &format!("callback:{notification_id}")))
            .await
            .map_err(ServiceError::from_command)
    }
}
