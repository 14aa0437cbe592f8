//! The deduction [O8]: once per attempt. The first run asks the provider to collect; a
//! re-run (after a crash, a timeout or a pending reply) asks the provider what happened
//! instead, so money is never collected twice — and collects again, under the same order
//! id, when the provider never received the request. A failure is resolved by asking first too:
//! the provider may have collected after all.

use super::effects::Step;
use crate::effect::{EffectError, EffectOutcome};
use crate::ports::{CollectionOutcome, CollectionRequest, ProviderOrderStatus};
use tare_domain::order::{OrderCommand, OrderState};
use tare_domain::payment::PaymentCommand;
use tare_domain::Cents;

type Outcome = Result<EffectOutcome, EffectError>;

/// How long a pending deduction waits for the provider's callback before this effect
/// asks the provider itself.
const PENDING_QUERY_FACTOR: i64 = 20;

/// Deducts attempt `attempt` of the order's charge.
pub(super) async fn collect(s: &Step<'_>, order_id: &str, attempt: u32) -> Outcome {
    let order = s.order(order_id).await?;
    if order.state != OrderState::Charging || order.charge_attempts != attempt {
        return Ok(EffectOutcome::Done);
    }
    let payment = s.ports.payments.load(order_id).await?;
    let Some(provider) = order.provider.and_then(|k| s.ports.provider(k)) else {
        return Err(EffectError::Permanent("no provider".into()));
    };
    let req = CollectionRequest {
        order_id: order_id.to_string(),
        provider_order_ref: payment.provider_order_ref.clone(),
        amount: order.total,
        lines: order.lines.clone(),
        discount: order.discount(),
    };
    let outcome = if payment.has_requested_collection(attempt) {
        match provider.query(order_id).await? {
            ProviderOrderStatus::Collected { transaction_id, amount } => CollectionOutcome::Collected { transaction_id, amount },
            ProviderOrderStatus::CollectionFailed { reason } => CollectionOutcome::Failed { reason },
            ProviderOrderStatus::Collecting => CollectionOutcome::Pending,
            // The request never reached the provider (a timeout or a crash before it was
            // sent): ask again, under the same order id, which the provider deduplicates
            // on — the order must not stay `charging` for ever.
            ProviderOrderStatus::Authorized | ProviderOrderStatus::NotFound => provider.collect(req).await?,
            other => return Err(EffectError::Permanent(format!("provider reports {other:?} while collecting"))),
        }
    } else {
        let request = PaymentCommand::RequestCollection {
            amount: order.total,
            at: s.now,
        };
        s.payment_cmd(order_id, request).await?;
        provider.collect(req).await?
    };
    match outcome {
        CollectionOutcome::Collected { transaction_id, amount } => record_collected(s, order_id, transaction_id, amount).await,
        CollectionOutcome::Failed { reason } => {
            s.payment_cmd(order_id, PaymentCommand::RecordCollectionFailed { reason, at: s.now })
                .await?;
            Ok(EffectOutcome::Done)
        }
        // The callback normally settles it; if it is lost, this job asks again.
        CollectionOutcome::Pending => Ok(EffectOutcome::Defer(s.now + s.cfg.door_check_ms.max(1_000) * PENDING_QUERY_FACTOR)),
    }
}

/// Timer after a failed deduction: ask the provider first (a failure followed by a
/// success is resolved by the query), then retry the charge if still unpaid.
pub(super) async fn retry_collection(s: &Step<'_>, order_id: &str) -> Outcome {
    let order = s.order(order_id).await?;
    if order.state != OrderState::Charging {
        return Ok(EffectOutcome::Done);
    }
    let Some(provider) = order.provider.and_then(|k| s.ports.provider(k)) else {
        return Err(EffectError::Permanent("no provider".into()));
    };
    match provider.query(order_id).await? {
        ProviderOrderStatus::Collected { transaction_id, amount } => record_collected(s, order_id, transaction_id, amount).await,
        _ => s.order_cmd(order_id, OrderCommand::RetryCharge { at: s.now }).await,
    }
}

/// The provider says it collected: the payment records it (the order is then paid).
async fn record_collected(s: &Step<'_>, order_id: &str, transaction_id: String, amount: Cents) -> Outcome {
    let cmd = PaymentCommand::RecordCollected {
        transaction_id,
        amount,
        notification_id: None,
        at: s.now,
    };
    s.payment_cmd(order_id, cmd).await?;
    Ok(EffectOutcome::Done)
}
