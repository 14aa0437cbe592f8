//! Refunds [O9] and charges settled by hand [O8]: the effects that carry a refund the
//! payment recorded to the provider (idempotent by the refund id, so a re-run is always
//! safe), bring its outcome back, and close a provider order an operator settled by hand.

use super::effects::Step;
use crate::effect::{EffectError, EffectOutcome};
use crate::ports::{CommandError, ProviderError, RefundOutcome, RefundRequest};
use tare_domain::order::OrderCommand;
use tare_domain::payment::{PaymentCommand, PaymentError, RefundState};

type Outcome = Result<EffectOutcome, EffectError>;

/// Sends refund `refund_id` of order `order_id` to the provider and records its outcome;
/// one still processing is asked about again after `refund_poll_ms`.
pub(super) async fn send_refund(s: &Step<'_>, order_id: &str, refund_id: &str) -> Outcome {
    let payment = s.ports.payments.load(order_id).await?;
    let Some(refund) = payment.refunds.get(refund_id) else {
        return Err(EffectError::Permanent(format!("payment has no refund {refund_id}")));
    };
    if refund.state != RefundState::Pending {
        return Ok(EffectOutcome::Done);
    }
    let Some(provider) = payment.provider.and_then(|k| s.ports.provider(k)) else {
        return Err(EffectError::Permanent("no provider".into()));
    };
    let Some(transaction_id) = payment.transaction_id.clone() else {
        return Err(EffectError::Permanent("the payment has no transaction to refund".into()));
    };
    let req = RefundRequest {
        order_id: order_id.to_string(),
        refund_id: refund_id.to_string(),
        transaction_id,
        amount: refund.amount,
        charged: payment.collected,
        reason: refund.reason.clone(),
    };
    let outcome = match provider.refund(req).await {
        Ok(o) => o,
        // A definite refusal (over the refundable amount, closed trade) ends the refund;
        // anything else is retried with the same refund id.
        Err(ProviderError::Refused { code, message }) => RefundOutcome::Failed {
            reason: format!("{code}: {message}"),
        },
        Err(e) => return Err(e.into()),
    };
    let cmd = match outcome {
        RefundOutcome::Succeeded { provider_refund_id } => PaymentCommand::RecordRefundSucceeded {
            refund_id: refund_id.to_string(),
            provider_refund_id,
            notification_id: None,
            at: s.now,
        },
        RefundOutcome::Failed { reason } => PaymentCommand::RecordRefundFailed {
            refund_id: refund_id.to_string(),
            reason,
            at: s.now,
        },
        RefundOutcome::Pending => return Ok(EffectOutcome::Defer(s.now + s.cfg.refund_poll_ms)),
    };
    s.payment_cmd(order_id, cmd).await?;
    Ok(EffectOutcome::Done)
}

/// The order records what its payment has refunded in all.
pub(super) async fn mark_order_refunded(s: &Step<'_>, order_id: &str) -> Outcome {
    let payment = s.ports.payments.load(order_id).await?;
    s.order_cmd(
        order_id,
        OrderCommand::RecordRefunds {
            refunded: payment.refunded,
            at: s.now,
        },
    )
    .await
}

/// Closes the provider order of a charge settled by hand (WeChat stops its automatic
/// deductions) and the payment. If the provider collected meanwhile, the effect is a dead
/// letter: an operator must see that the shopper may have paid twice.
pub(super) async fn abandon_payment(s: &Step<'_>, order_id: &str, reason: &str) -> Outcome {
    let order = s.order(order_id).await?;
    if let Some(provider) = order.provider.and_then(|k| s.ports.provider(k)) {
        provider.cancel(order_id, reason).await?;
    }
    let cmd = PaymentCommand::Abandon {
        reason: reason.to_string(),
        at: s.now,
    };
    match s.payment_cmd(order_id, cmd).await {
        Ok(()) | Err(CommandError::Rejected(PaymentError::NotFound)) => Ok(EffectOutcome::Done),
        Err(e) => Err(e.into()),
    }
}
