//! The saga runner and the effect executor.
//!
//! The runner tails the global feed, asks the saga for each event's effects and stores
//! them with its checkpoint in one transaction. The executor claims due effects (with a
//! lease), runs each against the aggregates and the ports, and marks it done, defers it
//! (timers that re-arm, results still pending) or retries it with backoff.

use crate::clock::PlatformClock;
use crate::feed::{Feed, FeedEvent};
use crate::jobs::{ClaimedJob, Jobs};
use crate::store::{Aggregates, CommandError, Meta};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tare_domain::cabinet::CabinetCommand;
use tare_domain::command::{CommandSpec, CommandStep};
use tare_domain::coupon::CouponPolicy;
use tare_domain::order::{Order, OrderCommand, OrderState};
use tare_domain::payment::{PaymentCommand, PaymentError, PaymentState};
use tare_domain::shopper::ShopperCommand;
use tare_domain::{AnyEvent, Cents, ProviderKind, UnixMs};
use tare_sagas::ports::DoorCommandKind;
use tare_sagas::ports::{
    AuthorizationRequest, CollectionOutcome, CollectionRequest, DeviceLink, PaymentProvider, ProviderError, ProviderOrderStatus,
    TelemetryView,
};
use tare_sagas::{decide, Effect, SagaConfig, Scheduled};
use tokio::sync::watch;

/// The name of the order saga's feed checkpoint.
pub const ORDER_SAGA: &str = "saga:order";

/// Decodes a feed event into a domain event (`None`: an aggregate type this build does
/// not know, or a payload it cannot read — logged and skipped, never fatal).
pub fn decode(ev: &FeedEvent) -> Option<AnyEvent> {
    match AnyEvent::decode(&ev.aggregate_type, ev.payload.clone()) {
        Some(Ok(e)) => Some(e),
        Some(Err(err)) => {
            tracing::error!(position = ev.position, event_type = %ev.event_type, error = %err, "undecodable event skipped");
            None
        }
        None => None,
    }
}

/// One pass of the saga runner: decide effects for up to `batch` events after the
/// checkpoint and commit them with the new checkpoint. Returns how many events it read.
pub async fn saga_step(feed: &Feed, jobs: &Jobs, cfg: &SagaConfig, now: UnixMs, batch: i64) -> Result<usize, crate::db::DbError> {
    let from = jobs.checkpoint(ORDER_SAGA).await?;
    let events = feed.read_after(from, batch).await?;
    saga_events(jobs, ORDER_SAGA, &events, cfg, now).await?;
    Ok(events.len())
}

/// Decides the order saga's effects for `events` (in feed order) and stores them with
/// checkpoint `name` in one transaction. Every effect has a key, so deciding an event
/// twice (a redelivery, or two nodes handed it) schedules nothing new.
/// Returns whether the checkpoint moved (false: decided before).
pub async fn saga_events(jobs: &Jobs, name: &str, events: &[FeedEvent], cfg: &SagaConfig, now: UnixMs) -> Result<bool, crate::db::DbError> {
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(false);
    };
    let scheduled: Vec<(i64, Scheduled)> = events
        .iter()
        .filter_map(|ev| decode(ev).map(|e| decide(&ev.aggregate_id, &e, cfg).into_iter().map(move |s| (ev.position, s))))
        .flatten()
        .collect();
    jobs.schedule_with_checkpoint(name, last, &scheduled, now).await
}

/// What running an effect concluded.
#[derive(Debug)]
pub enum EffectOutcome {
    /// Finished.
    Done,
    /// Run again at this time (a re-arming timer, or a result still pending).
    Defer(UnixMs),
    /// Failed transiently: retry with backoff.
    Retry(String),
    /// Failed for good: park as a dead letter for an operator.
    Bury(String),
}

/// Counters of the effect executor.
#[derive(Default)]
pub struct EffectCounters {
    /// Effects finished.
    pub done: AtomicU64,
    /// Transient failures.
    pub retried: AtomicU64,
    /// Dead letters.
    pub buried: AtomicU64,
}

/// Everything effects act on.
pub struct EffectContext {
    /// Aggregates.
    pub aggregates: Arc<Aggregates>,
    /// Payment providers by kind.
    pub providers: HashMap<ProviderKind, Arc<dyn PaymentProvider>>,
    /// Device link.
    pub devices: Arc<dyn DeviceLink>,
    /// Telemetry.
    pub telemetry: Arc<dyn TelemetryView>,
    /// Clock.
    pub clock: PlatformClock,
    /// Saga timings.
    pub cfg: SagaConfig,
    /// The operator's coupon rule.
    pub coupon_policy: watch::Receiver<CouponPolicy>,
    /// Counters.
    pub counters: EffectCounters,
}

fn store_err<E: std::error::Error>(e: CommandError<E>) -> EffectOutcome {
    match e {
        CommandError::Rejected(e) => EffectOutcome::Bury(e.to_string()),
        other => EffectOutcome::Retry(other.to_string()),
    }
}

macro_rules! tryo {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return store_err(e),
        }
    };
}

fn provider_err(e: ProviderError) -> EffectOutcome {
    EffectOutcome::Retry(e.to_string())
}

impl EffectContext {
    fn provider(&self, kind: ProviderKind) -> Option<Arc<dyn PaymentProvider>> {
        self.providers.get(&kind).cloned()
    }

    async fn order(&self, id: &str) -> Result<Order, CommandError<tare_domain::order::OrderError>> {
        self.aggregates.orders.load(id).await
    }

    async fn order_cmd(&self, id: &str, cmd: OrderCommand, key: &str) -> EffectOutcome {
        let meta = Meta::new(self.clock.now_ms(), id, format!("job:{key}"));
        match self.aggregates.orders.execute(id, cmd, meta).await {
            Ok(()) => EffectOutcome::Done,
            Err(e) => store_err(e),
        }
    }

    async fn payment_cmd(&self, id: &str, cmd: PaymentCommand, key: &str) -> Result<(), CommandError<PaymentError>> {
        let meta = Meta::new(self.clock.now_ms(), id, format!("job:{key}"));
        self.aggregates.payments.execute(id, cmd, meta).await
    }

    /// Runs one effect.
    pub async fn run(&self, job: &ClaimedJob) -> EffectOutcome {
        let now = self.clock.now_ms();
        let key = job.key.as_str();
        match &job.effect {
            Effect::OpenPayment { order_id } => {
                let order = tryo!(self.order(order_id).await);
                if order.state != OrderState::Authorizing {
                    return EffectOutcome::Done;
                }
                let (Some(kind), Some(mode)) = (order.provider, order.confirm_mode) else {
                    return EffectOutcome::Bury("order has no provider".into());
                };
                let Some(provider) = self.provider(kind) else {
                    return EffectOutcome::Bury(format!("no {} provider configured", kind.as_str()));
                };
                // The authorization covers the most the door could be charged.
                let limit = Cents::new(order.lanes.iter().map(|l| l.price.get() * i64::from(l.capacity)).sum());
                let req = AuthorizationRequest {
                    order_id: order_id.clone(),
                    shopper_id: order.shopper_id.clone(),
                    confirm_mode: mode,
                    limit,
                };
                match provider.create_authorization(req).await {
                    Ok(created) => {
                        let cmd = PaymentCommand::Open {
                            order_id: order_id.clone(),
                            provider: kind,
                            confirm_mode: mode,
                            provider_order_ref: created.provider_order_ref,
                            confirm_url: created.confirm_url,
                            authorized: created.authorized,
                            at: now,
                        };
                        tryo!(self.payment_cmd(order_id, cmd, key).await);
                        EffectOutcome::Done
                    }
                    Err(ProviderError::Refused { code, message }) => {
                        self.order_cmd(
                            order_id,
                            OrderCommand::Cancel {
                                reason: format!("authorization_refused: {code}: {message}"),
                                at: now,
                            },
                            key,
                        )
                        .await
                    }
                    Err(e) => provider_err(e),
                }
            }
            Effect::CancelPayment { order_id, reason } => {
                let order = tryo!(self.order(order_id).await);
                if let Some(provider) = order.provider.and_then(|k| self.provider(k)) {
                    if let Err(e) = provider.cancel(order_id, reason).await {
                        return provider_err(e);
                    }
                }
                match self
                    .payment_cmd(
                        order_id,
                        PaymentCommand::Cancel {
                            reason: reason.clone(),
                            at: now,
                        },
                        key,
                    )
                    .await
                {
                    Ok(()) | Err(CommandError::Rejected(PaymentError::NotFound)) => EffectOutcome::Done,
                    Err(e) => store_err(e),
                }
            }
            Effect::AuthorizeOrder { order_id } => {
                self.order_cmd(
                    order_id,
                    OrderCommand::MarkAuthorized {
                        open_cmd_id: format!("{order_id}-open"),
                        at: now,
                    },
                    key,
                )
                .await
            }
            Effect::ExpireAuthorization { order_id } => self.order_cmd(order_id, OrderCommand::ExpireAuthorization { at: now }, key).await,
            Effect::SendDoorCommand {
                order_id,
                kind,
                cmd_id,
                expires_at,
            } => {
                let order = tryo!(self.order(order_id).await);
                if order.state != OrderState::Opening || now > *expires_at {
                    return EffectOutcome::Done;
                }
                let (Some(cabinet), Some(door)) = (order.cabinet.clone(), order.door) else {
                    return EffectOutcome::Bury("order has no cabinet".into());
                };
                // The command is recorded, then delivered and resent by its own steps
                // (DeliverCommand) until acked or expired [D7]; a command is never queued
                // for a device that is away, and never acts after its expiry [B7].
                let spec = match kind {
                    DoorCommandKind::OpenDoor => CommandSpec::OpenDoor { door: door.get() },
                    DoorCommandKind::QueryDoor => CommandSpec::QueryDoor { door: door.get() },
                };
                let step = CommandStep::Issue {
                    cabinet,
                    spec,
                    expires_at: *expires_at,
                    issued_by: format!("order:{order_id}"),
                    at: now,
                };
                let meta = Meta::new(now, order_id.as_str(), format!("job:{key}"));
                match self.aggregates.commands.execute(cmd_id, step, meta).await {
                    Ok(()) => EffectOutcome::Done,
                    Err(e) => store_err(e),
                }
            }
            Effect::DeliverCommand { cmd_id, attempt } => {
                let command = tryo!(self.aggregates.commands.load(cmd_id).await);
                let (Some(spec), Some(cabinet)) = (&command.spec, &command.cabinet) else {
                    return EffectOutcome::Bury("no such command".into());
                };
                if command.state.is_final() || command.attempts >= *attempt {
                    return EffectOutcome::Done;
                }
                let meta = Meta::new(now, command.issued_by.as_str(), format!("job:{key}"));
                if now >= command.expires_at {
                    return match self
                        .aggregates
                        .commands
                        .execute(cmd_id, CommandStep::Expire { at: now }, meta)
                        .await
                    {
                        Ok(()) => EffectOutcome::Done,
                        Err(e) => store_err(e),
                    };
                }
                match self
                    .devices
                    .send_command(cabinet, cmd_id, spec.type_name(), spec.args(), command.expires_at)
                    .await
                {
                    Ok(()) => {
                        let step = CommandStep::RecordDelivery {
                            attempt: *attempt,
                            at: now,
                        };
                        match self.aggregates.commands.execute(cmd_id, step, meta).await {
                            Ok(()) => EffectOutcome::Done,
                            Err(e) => store_err(e),
                        }
                    }
                    // Not connected: look again shortly, until the expiry.
                    Err(_) => EffectOutcome::Defer((now + 1_000).min(command.expires_at)),
                }
            }
            Effect::CheckDoor { order_id, attempt } => {
                self.order_cmd(
                    order_id,
                    OrderCommand::CheckDoor {
                        attempt: *attempt,
                        at: now,
                    },
                    key,
                )
                .await
            }
            Effect::RecordDoorOpened {
                order_id,
                cabinet,
                door,
                device_ts,
            } => {
                let before = self.telemetry.stable_at_or_before(cabinet, *door, *device_ts);
                self.order_cmd(
                    order_id,
                    OrderCommand::MarkDoorOpened {
                        device_ts: *device_ts,
                        before,
                        at: now,
                    },
                    key,
                )
                .await
            }
            Effect::RecordDoorClosed {
                order_id,
                cabinet,
                door,
                device_ts,
                unexpected,
            } => {
                let fallback_before = self.telemetry.stable_at_or_before(cabinet, *door, device_ts - 1);
                let cmd = OrderCommand::MarkDoorClosed {
                    device_ts: *device_ts,
                    unexpected: *unexpected,
                    fallback_before,
                    at: now,
                };
                self.order_cmd(order_id, cmd, key).await
            }
            Effect::SettleWeights {
                order_id,
                poll_ms,
                give_up_at,
            } => {
                let order = tryo!(self.order(order_id).await);
                if order.state != OrderState::Settling {
                    return EffectOutcome::Done;
                }
                let (Some(cabinet), Some(door), Some(closed)) = (order.cabinet.clone(), order.door, order.closed_device_ts) else {
                    return EffectOutcome::Bury("order lacks cabinet/door/close".into());
                };
                match self.telemetry.newest_stable_since(&cabinet, door, closed) {
                    Some(after) => {
                        let shopper = tryo!(self.aggregates.shoppers.load(&order.shopper_id).await);
                        let policy = *self.coupon_policy.borrow();
                        let cmd = OrderCommand::SettleWeights {
                            after,
                            coupons: shopper.available_coupons(),
                            policy,
                            at: now,
                        };
                        self.order_cmd(order_id, cmd, key).await
                    }
                    None if now >= *give_up_at => self.order_cmd(order_id, OrderCommand::AbandonWeights { at: now }, key).await,
                    None => EffectOutcome::Defer((now + poll_ms).min(*give_up_at)),
                }
            }
            Effect::FinishDoorSession { order_id } => {
                let order = tryo!(self.order(order_id).await);
                let (Some(cabinet), Some(door)) = (order.cabinet.clone(), order.door) else {
                    return EffectOutcome::Bury("order has no cabinet".into());
                };
                let cmd = if order.inference.is_empty() {
                    CabinetCommand::ReleaseDoor {
                        door,
                        session_id: order_id.clone(),
                        reason: format!("order_{:?}", order.state).to_lowercase(),
                        at: now,
                    }
                } else {
                    let sold = order
                        .inference
                        .iter()
                        .filter(|i| i.count > 0)
                        .map(|i| (i.lane, i.count as u32))
                        .collect();
                    let charged = matches!(order.state, OrderState::Charging | OrderState::Paid);
                    CabinetCommand::FinishSale {
                        door,
                        order_id: order_id.clone(),
                        sold,
                        charged,
                        at: now,
                    }
                };
                let meta = Meta::new(now, order_id.as_str(), format!("job:{key}"));
                tryo!(self.aggregates.cabinets.execute(&cabinet.to_string(), cmd, meta).await);
                EffectOutcome::Done
            }
            Effect::RedeemCoupon { order_id } => {
                let order = tryo!(self.order(order_id).await);
                let Some(coupon) = order.coupon else { return EffectOutcome::Done };
                let meta = Meta::new(now, order_id.as_str(), format!("job:{key}"));
                let cmd = ShopperCommand::RedeemCoupon {
                    coupon_id: coupon.coupon_id,
                    order_id: order_id.clone(),
                    at: now,
                };
                tryo!(self.aggregates.shoppers.execute(&order.shopper_id, cmd, meta).await);
                EffectOutcome::Done
            }
            Effect::Collect { order_id, attempt } => self.collect(order_id, *attempt, key, now).await,
            Effect::RetryCollection { order_id, .. } => {
                let order = tryo!(self.order(order_id).await);
                if order.state != OrderState::Charging {
                    return EffectOutcome::Done;
                }
                // A failure followed by a success is resolved by asking first [O8].
                let Some(provider) = order.provider.and_then(|k| self.provider(k)) else {
                    return EffectOutcome::Bury("no provider".into());
                };
                match provider.query(order_id).await {
                    Ok(ProviderOrderStatus::Collected { transaction_id, amount }) => {
                        let cmd = PaymentCommand::RecordCollected {
                            transaction_id,
                            amount,
                            notification_id: None,
                            at: now,
                        };
                        tryo!(self.payment_cmd(order_id, cmd, key).await);
                        EffectOutcome::Done
                    }
                    Ok(_) => self.order_cmd(order_id, OrderCommand::RetryCharge { at: now }, key).await,
                    Err(e) => provider_err(e),
                }
            }
            Effect::MarkOrderPaid {
                order_id,
                transaction_id,
                amount,
            } => {
                self.order_cmd(
                    order_id,
                    OrderCommand::MarkPaid {
                        transaction_id: transaction_id.clone(),
                        amount: *amount,
                        at: now,
                    },
                    key,
                )
                .await
            }
            Effect::RecordChargeFailure { order_id, attempt, reason } => {
                let retry_at = (*attempt < self.cfg.max_charge_attempts).then_some(now + self.cfg.charge_retry_ms);
                self.order_cmd(
                    order_id,
                    OrderCommand::RecordChargeFailure {
                        reason: reason.clone(),
                        retry_at,
                        at: now,
                    },
                    key,
                )
                .await
            }
            Effect::EndShopperOrder { order_id, outcome } => {
                let order = tryo!(self.order(order_id).await);
                let meta = Meta::new(now, order_id.as_str(), format!("job:{key}"));
                let cmd = ShopperCommand::EndOrder {
                    order_id: order_id.clone(),
                    outcome: outcome.clone(),
                    at: now,
                };
                tryo!(self.aggregates.shoppers.execute(&order.shopper_id, cmd, meta).await);
                EffectOutcome::Done
            }
        }
    }

    /// Deducts once per attempt: the first run asks the provider to collect; a re-run
    /// (after a crash, a timeout or a pending reply) asks the provider what happened.
    async fn collect(&self, order_id: &str, attempt: u32, key: &str, now: UnixMs) -> EffectOutcome {
        let order = tryo!(self.order(order_id).await);
        if order.state != OrderState::Charging || order.charge_attempts != attempt {
            return EffectOutcome::Done;
        }
        let payment = tryo!(self.aggregates.payments.load(order_id).await);
        let Some(provider) = order.provider.and_then(|k| self.provider(k)) else {
            return EffectOutcome::Bury("no provider".into());
        };
        let already_requested = payment.state == PaymentState::Collecting && payment.attempts >= attempt;
        let outcome = if already_requested {
            match provider.query(order_id).await {
                Ok(ProviderOrderStatus::Collected { transaction_id, amount }) => CollectionOutcome::Collected { transaction_id, amount },
                Ok(ProviderOrderStatus::CollectionFailed { reason }) => CollectionOutcome::Failed { reason },
                Ok(ProviderOrderStatus::Collecting) => CollectionOutcome::Pending,
                Ok(other) => return EffectOutcome::Bury(format!("provider reports {other:?} while collecting")),
                Err(e) => return provider_err(e),
            }
        } else {
            tryo!(
                self.payment_cmd(
                    order_id,
                    PaymentCommand::RequestCollection {
                        amount: order.total,
                        at: now
                    },
                    key
                )
                .await
            );
            let req = CollectionRequest {
                order_id: order_id.to_string(),
                provider_order_ref: payment.provider_order_ref.clone(),
                amount: order.total,
                lines: order.lines.clone(),
                discount: Cents::new(order.subtotal.get() - order.total.get()),
            };
            match provider.collect(req).await {
                Ok(o) => o,
                Err(e) => return provider_err(e),
            }
        };
        match outcome {
            CollectionOutcome::Collected { transaction_id, amount } => {
                let cmd = PaymentCommand::RecordCollected {
                    transaction_id,
                    amount,
                    notification_id: None,
                    at: now,
                };
                tryo!(self.payment_cmd(order_id, cmd, key).await);
                EffectOutcome::Done
            }
            CollectionOutcome::Failed { reason } => {
                tryo!(
                    self.payment_cmd(order_id, PaymentCommand::RecordCollectionFailed { reason, at: now }, key)
                        .await
                );
                EffectOutcome::Done
            }
            // The callback normally settles it; if it is lost, this job asks again.
            CollectionOutcome::Pending => EffectOutcome::Defer(now + self.cfg.door_check_ms.max(1_000) * 20),
        }
    }
}

/// Claims the due effects, runs them (orders side by side, each order's effects in
/// sequence) and records their outcomes. Returns how many it claimed.
pub async fn execute_due(ctx: &EffectContext, jobs: &Jobs, limit: i64, concurrency: usize) -> Result<usize, crate::db::DbError> {
    let now = ctx.clock.now_ms();
    let claimed = jobs.claim_due(now, limit, 30_000).await?;
    let n = claimed.len();
    // One lane per order: its effects run one after another in commit order (a door's
    // open is recorded before its close), different orders run side by side.
    let mut lanes: Vec<Vec<ClaimedJob>> = Vec::new();
    let mut lane_of: HashMap<String, usize> = HashMap::new();
    for job in claimed {
        let i = *lane_of.entry(job.effect.serial_key().to_string()).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[i].push(job);
    }
    let results: Vec<(ClaimedJob, EffectOutcome)> = futures::stream::iter(lanes)
        .map(|lane| async move {
            let mut out = Vec::with_capacity(lane.len());
            for job in lane {
                let outcome = ctx.run(&job).await;
                out.push((job, outcome));
            }
            out
        })
        .buffer_unordered(concurrency)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    let now = ctx.clock.now_ms();
    for (job, outcome) in results {
        match outcome {
            EffectOutcome::Done => {
                ctx.counters.done.fetch_add(1, Ordering::Relaxed);
                jobs.complete(&job.key, now).await?;
            }
            EffectOutcome::Defer(t) => jobs.defer(&job.key, t, None, now).await?,
            EffectOutcome::Retry(err) => {
                ctx.counters.retried.fetch_add(1, Ordering::Relaxed);
                let backoff = (250_i64 << job.attempts.clamp(0, 8)).min(60_000);
                tracing::warn!(key = %job.key, attempts = job.attempts + 1, error = %err, "effect failed, will retry");
                jobs.defer(&job.key, now + backoff, Some(&err), now).await?;
            }
            EffectOutcome::Bury(err) => {
                ctx.counters.buried.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %job.key, error = %err, "effect dead-lettered");
                jobs.bury(&job.key, &err, now).await?;
            }
        }
    }
    Ok(n)
}
