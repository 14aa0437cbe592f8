//! The purchase saga's effects [O3–O8], one function each: load what the effect needs,
//! apply the domain's rule, issue the command or call the provider, and say whether it is
//! done. The deduction itself is in [`super::collect`].

use super::collect::{collect, retry_collection};
use super::refund::{abandon_payment, mark_order_refunded, send_refund};
use crate::effect::{newest_reading, Effect, EffectError, EffectOutcome};
use crate::ports::{AuthorizationRequest, CommandError, CommandMeta, DoorCommandKind, EffectPorts, ProviderError};
use crate::SagaConfig;
use tare_domain::command::{CommandSpec, CommandStep};
use tare_domain::order::rules::{authorization_limit, open_command_id};
use tare_domain::order::{Order, OrderCommand, OrderState, MAX_DOOR_QUERIES};
use tare_domain::payment::{PaymentCommand, PaymentError};
use tare_domain::shopper::ShopperCommand;
use tare_domain::weight::StableReading;
use tare_domain::{CabinetId, DoorNo, UnixMs};

type Outcome = Result<EffectOutcome, EffectError>;

/// What every effect of one run shares: the ports, the timings, the job's key and now.
pub(super) struct Step<'a> {
    pub(super) ports: &'a EffectPorts,
    pub(super) cfg: &'a SagaConfig,
    pub(super) key: &'a str,
    pub(super) now: UnixMs,
}

impl Step<'_> {
    /// Metadata for a command this step issues within `correlation`.
    pub(super) fn meta(&self, correlation: &str) -> CommandMeta {
        CommandMeta::new(self.now, correlation, format!("job:{}", self.key))
    }

    pub(super) async fn order(&self, order_id: &str) -> Result<Order, EffectError> {
        Ok(self.ports.orders.load(order_id).await?)
    }

    /// Issues `cmd` to the order; done once it committed (or decided nothing).
    pub(super) async fn order_cmd(&self, order_id: &str, cmd: OrderCommand) -> Outcome {
        self.ports.orders.execute(order_id, cmd, self.meta(order_id)).await?;
        Ok(EffectOutcome::Done)
    }

    pub(super) async fn payment_cmd(&self, order_id: &str, cmd: PaymentCommand) -> Result<(), CommandError<PaymentError>> {
        self.ports.payments.execute(order_id, cmd, self.meta(order_id)).await
    }
}

/// Runs one of the purchase saga's effects.
pub async fn run(ports: &EffectPorts, cfg: &SagaConfig, effect: &Effect, key: &str) -> Outcome {
    let s = Step {
        ports,
        cfg,
        key,
        now: ports.clock.now_ms(),
    };
    let now = s.now;
    match effect {
        Effect::OpenPayment { order_id } => open_payment(&s, order_id).await,
        Effect::CancelPayment { order_id, reason } => cancel_payment(&s, order_id, reason).await,
        Effect::AuthorizeOrder { order_id } => {
            let cmd = OrderCommand::MarkAuthorized {
                open_cmd_id: open_command_id(order_id),
                at: now,
            };
            s.order_cmd(order_id, cmd).await
        }
        Effect::ExpireAuthorization { order_id } => s.order_cmd(order_id, OrderCommand::ExpireAuthorization { at: now }).await,
        Effect::CheckAuthorization { order_id } => check_authorization(&s, order_id).await,
        Effect::SendDoorCommand {
            order_id,
            kind,
            cmd_id,
            expires_at,
        } => send_door_command(&s, order_id, *kind, cmd_id, *expires_at).await,
        Effect::CheckDoor { order_id, attempt } => check_door(&s, cfg, order_id, *attempt).await,
        Effect::RecordDoorOpened {
            order_id,
            cabinet,
            door,
            device_ts,
            before: carried,
            not_before,
        } => {
            let local = ports.telemetry.stable_at_or_before(cabinet, *door, *device_ts);
            let before = newest_reading(carried.clone(), local, *not_before);
            let cmd = OrderCommand::MarkDoorOpened {
                device_ts: *device_ts,
                before,
                at: now,
            };
            s.order_cmd(order_id, cmd).await
        }
        Effect::RecordDoorClosed {
            order_id,
            cabinet,
            door,
            device_ts,
            unexpected,
            before,
            not_before,
        } => {
            record_door_closed(
                &s,
                order_id,
                (cabinet, *door),
                *device_ts,
                *unexpected,
                (before.clone(), *not_before),
            )
            .await
        }
        Effect::SettleWeights {
            order_id,
            poll_ms,
            give_up_at,
        } => settle_weights(&s, order_id, *poll_ms, *give_up_at).await,
        Effect::FinishDoorSession { order_id } => finish_door_session(&s, order_id).await,
        Effect::RedeemCoupon { order_id } => redeem_coupon(&s, order_id).await,
        Effect::Collect { order_id, attempt } => collect(&s, order_id, *attempt).await,
        Effect::RetryCollection { order_id, .. } => retry_collection(&s, order_id).await,
        Effect::MarkOrderPaid {
            order_id,
            transaction_id,
            amount,
        } => {
            let cmd = OrderCommand::MarkPaid {
                transaction_id: transaction_id.clone(),
                amount: *amount,
                at: now,
            };
            s.order_cmd(order_id, cmd).await
        }
        Effect::RecordChargeFailure { order_id, attempt, reason } => {
            let cmd = OrderCommand::RecordChargeFailure {
                reason: reason.clone(),
                retry_at: cfg.charge_retry().next_attempt_at(*attempt, now),
                at: now,
            };
            s.order_cmd(order_id, cmd).await
        }
        Effect::EndShopperOrder { order_id, outcome } => end_shopper_order(&s, order_id, outcome).await,
        Effect::SendRefund { order_id, refund_id } => send_refund(&s, order_id, refund_id).await,
        Effect::MarkOrderRefunded { order_id } => mark_order_refunded(&s, order_id).await,
        Effect::RecordDispute { order_id } => record_dispute(&s, order_id).await,
        Effect::AbandonPayment { order_id, reason } => abandon_payment(&s, order_id, reason).await,
        Effect::DeliverCommand { .. }
        | Effect::FreeCommandDoor { .. }
        | Effect::PushPriceLabels { .. }
        | Effect::SendAlert { .. }
        | Effect::IssueCampaignCommands { .. }
        | Effect::RecordCampaignOutcome { .. }
        | Effect::CheckDoorLeftOpen { .. }
        | Effect::ReconcileBills { .. }
        | Effect::RaiseAnomaly { .. }
        | Effect::OpenRestockDoor { .. }
        | Effect::ExpireRestockOpening { .. }
        | Effect::RecordRestockDoor { .. }
        | Effect::CountRestock { .. }
        | Effect::FinishRestock { .. } => Err(EffectError::Permanent("not a purchase effect".into())),
    }
}

/// Timer: query the door again, or give the order up as `door_never_opened` [O4] — but
/// not while the cabinet has recorded the door opening or closing for this order and the
/// order has not heard of it yet: that record's effect is only late (the job runner or
/// the feed behind after an outage), and giving up would leave the takes unweighed. The
/// check waits for it instead, one door-check interval at a time, for at most the
/// door-open limit from the order's creation (then it gives up as before).
async fn check_door(s: &Step<'_>, cfg: &SagaConfig, order_id: &str, attempt: u32) -> Outcome {
    if attempt > MAX_DOOR_QUERIES {
        let order = s.order(order_id).await?;
        let waiting = order.state == OrderState::Opening && s.now < order.created_at + cfg.door_open_limit_ms;
        if let (true, Some(cabinet), Some(door)) = (waiting, order.cabinet.as_ref(), order.door) {
            let c = s.ports.cabinets.load(&cabinet.to_string()).await?;
            if c.door(door).is_ok_and(|d| d.moved_for(order_id)) {
                return Ok(EffectOutcome::Defer(s.now + cfg.door_check_ms));
            }
        }
    }
    let cmd = OrderCommand::CheckDoor { attempt, at: s.now };
    s.order_cmd(order_id, cmd).await
}

/// Asks the provider for the authorization (covering the most the door could be charged)
/// and opens the payment; a provider that refuses cancels the order [O3].
async fn open_payment(s: &Step<'_>, order_id: &str) -> Outcome {
    let order = s.order(order_id).await?;
    if order.state != OrderState::Authorizing {
        return Ok(EffectOutcome::Done);
    }
    let (Some(kind), Some(mode)) = (order.provider, order.confirm_mode) else {
        return Err(EffectError::Permanent("order has no provider".into()));
    };
    let Some(provider) = s.ports.provider(kind) else {
        return Err(EffectError::Permanent(format!("no {} provider configured", kind.as_str())));
    };
    let req = AuthorizationRequest {
        order_id: order_id.to_string(),
        shopper_id: order.shopper_id.clone(),
        confirm_mode: mode,
        limit: authorization_limit(&order.lanes),
    };
    match provider.create_authorization(req).await {
        Ok(created) => {
            let cmd = PaymentCommand::Open {
                order_id: order_id.to_string(),
                provider: kind,
                confirm_mode: mode,
                provider_order_ref: created.provider_order_ref,
                confirm_url: created.confirm_url,
                authorized: created.authorized,
                at: s.now,
            };
            s.payment_cmd(order_id, cmd).await?;
            Ok(EffectOutcome::Done)
        }
        Err(ProviderError::Refused { code, message }) => {
            let cmd = OrderCommand::Cancel {
                reason: format!("authorization_refused: {code}: {message}"),
                at: s.now,
            };
            s.order_cmd(order_id, cmd).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Cancels the provider order, then the payment (an order that never opened one has
/// nothing to cancel).
async fn cancel_payment(s: &Step<'_>, order_id: &str, reason: &str) -> Outcome {
    let order = s.order(order_id).await?;
    if order.settled_by_hand.is_some() {
        // A charge settled by hand ends its payment mid-deduction: abandoned, not cancelled.
        return super::refund::abandon_payment(s, order_id, reason).await;
    }
    if let Some(provider) = order.provider.and_then(|k| s.ports.provider(k)) {
        provider.cancel(order_id, reason).await?;
    }
    let cmd = PaymentCommand::Cancel {
        reason: reason.to_string(),
        at: s.now,
    };
    match s.payment_cmd(order_id, cmd).await {
        Ok(()) | Err(CommandError::Rejected(PaymentError::NotFound)) => Ok(EffectOutcome::Done),
        Err(e) => Err(e.into()),
    }
}

/// Records the door command; its own delivery steps send and resend it until acked or
/// expired [D7]. It is never queued for a device that is away, and never acts after its
/// expiry [B7].
async fn send_door_command(s: &Step<'_>, order_id: &str, kind: DoorCommandKind, cmd_id: &str, expires_at: UnixMs) -> Outcome {
    let order = s.order(order_id).await?;
    if order.state != OrderState::Opening || s.now > expires_at {
        return Ok(EffectOutcome::Done);
    }
    let (Some(cabinet), Some(door)) = (order.cabinet.clone(), order.door) else {
        return Err(EffectError::Permanent("order has no cabinet".into()));
    };
    let spec = match kind {
        DoorCommandKind::OpenDoor => CommandSpec::OpenDoor { door: door.get() },
        DoorCommandKind::QueryDoor => CommandSpec::QueryDoor { door: door.get() },
    };
    let step = CommandStep::Issue {
        cabinet,
        spec,
        expires_at,
        issued_by: format!("order:{order_id}"),
        holds_door: false, // the order holds it
        at: s.now,
    };
    s.ports.commands.execute(cmd_id, step, s.meta(order_id)).await?;
    Ok(EffectOutcome::Done)
}

/// The door closed: the order records it with the last stable reading before the close
/// (its baseline if the open was never seen).
async fn record_door_closed(
    s: &Step<'_>,
    order_id: &str,
    (cabinet, door): (&CabinetId, DoorNo),
    device_ts: UnixMs,
    unexpected: bool,
    (carried, not_before): (Option<StableReading>, Option<UnixMs>),
) -> Outcome {
    let local = s.ports.telemetry.stable_at_or_before(cabinet, door, device_ts - 1);
    let fallback_before = newest_reading(carried, local, not_before);
    let cmd = OrderCommand::MarkDoorClosed {
        device_ts,
        unexpected,
        fallback_before,
        at: s.now,
    };
    s.order_cmd(order_id, cmd).await
}

/// Timer: looks for a stable reading taken after the close; with one, the order settles
/// (with the shopper's coupons and the operator's policy); without, look again until
/// `give_up_at`, then the order is abnormal [O5].
async fn settle_weights(s: &Step<'_>, order_id: &str, poll_ms: i64, give_up_at: UnixMs) -> Outcome {
    let order = s.order(order_id).await?;
    if order.state != OrderState::Settling {
        return Ok(EffectOutcome::Done);
    }
    let (Some(cabinet), Some(door), Some(closed)) = (order.cabinet.clone(), order.door, order.closed_device_ts) else {
        return Err(EffectError::Permanent("order lacks cabinet/door/close".into()));
    };
    match s.ports.telemetry.newest_stable_since(&cabinet, door, closed) {
        Some(after) => {
            let shopper = s.ports.shoppers.load(&order.shopper_id).await?;
            let cmd = OrderCommand::SettleWeights {
                after,
                coupons: shopper.available_coupons(),
                policy: s.ports.settings.coupon_policy(),
                at: s.now,
            };
            s.order_cmd(order_id, cmd).await
        }
        None if s.now >= give_up_at => s.order_cmd(order_id, OrderCommand::AbandonWeights { at: s.now }).await,
        None => Ok(EffectOutcome::Defer((s.now + poll_ms).min(give_up_at))),
    }
}

/// Ends the order's door session on the cabinet as the domain rule says (a sale, an
/// uncharged take, or a plain release) [O2, R2].
async fn finish_door_session(s: &Step<'_>, order_id: &str) -> Outcome {
    let order = s.order(order_id).await?;
    let (Some(cabinet), Some(cmd)) = (order.cabinet.clone(), order.door_session_end(order_id, s.now)) else {
        return Err(EffectError::Permanent("order has no cabinet".into()));
    };
    s.ports.cabinets.execute(&cabinet.to_string(), cmd, s.meta(order_id)).await?;
    Ok(EffectOutcome::Done)
}

/// Spends the coupon the order used.
async fn redeem_coupon(s: &Step<'_>, order_id: &str) -> Outcome {
    let order = s.order(order_id).await?;
    let Some(coupon) = order.coupon else {
        return Ok(EffectOutcome::Done);
    };
    let cmd = ShopperCommand::RedeemCoupon {
        coupon_id: coupon.coupon_id,
        order_id: order_id.to_string(),
        at: s.now,
    };
    s.ports.shoppers.execute(&order.shopper_id, cmd, s.meta(order_id)).await?;
    Ok(EffectOutcome::Done)
}

/// Counts the order's dispute against its shopper [B8].
async fn record_dispute(s: &Step<'_>, order_id: &str) -> Outcome {
    let order = s.order(order_id).await?;
    let cmd = ShopperCommand::RecordDispute {
        order_id: order_id.to_string(),
        at: s.now,
    };
    s.ports.shoppers.execute(&order.shopper_id, cmd, s.meta(order_id)).await?;
    Ok(EffectOutcome::Done)
}

/// Frees the shopper's open-order slot.
async fn end_shopper_order(s: &Step<'_>, order_id: &str, outcome: &str) -> Outcome {
    let order = s.order(order_id).await?;
    let cmd = ShopperCommand::EndOrder {
        order_id: order_id.to_string(),
        outcome: outcome.to_string(),
        at: s.now,
    };
    s.ports.shoppers.execute(&order.shopper_id, cmd, s.meta(order_id)).await?;
    Ok(EffectOutcome::Done)
}

#[cfg(test)]
#[path = "effects_tests.rs"]
mod tests;

/// While the shopper has not confirmed, asks the provider whether the authorization was
/// given: a lost or late notification never leaves a confirmed shopper at a closed door.
/// Asks again every `auth_check_ms` until the order leaves `authorizing` (authorized,
/// expired or cancelled).
async fn check_authorization(s: &Step<'_>, order_id: &str) -> Outcome {
    let order = s.order(order_id).await?;
    if order.state != OrderState::Authorizing {
        return Ok(EffectOutcome::Done);
    }
    let payment = s.ports.payments.load(order_id).await?;
    if payment.state != tare_domain::payment::PaymentState::AwaitingConfirmation {
        // Not created at the provider yet (ask again later), or already authorized.
        return Ok(match payment.state {
            tare_domain::payment::PaymentState::New => EffectOutcome::Defer(s.now + s.cfg.auth_check_ms),
            _ => EffectOutcome::Done,
        });
    }
    let Some(provider) = order.provider.and_then(|k| s.ports.provider(k)) else {
        return Err(EffectError::Permanent("no provider".into()));
    };
    match provider.query(order_id).await? {
        crate::ports::ProviderOrderStatus::Authorized => {
            let cmd = PaymentCommand::ConfirmAuthorization {
                notification_id: None,
                at: s.now,
            };
            s.payment_cmd(order_id, cmd).await?;
            Ok(EffectOutcome::Done)
        }
        _ => Ok(EffectOutcome::Defer(s.now + s.cfg.auth_check_ms)),
    }
}
