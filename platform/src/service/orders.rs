//! The scan that starts a purchase [O1, O2] and the order's receipt and payment.
//!
//! Read-repair at scan time: if the shopper's slot or the door is still held by an order
//! that has already ended, the saga's pending (idempotent) effects for it run at once
//! instead of refusing the scan.

use super::ServiceError;
use crate::store::CommandError;
use crate::Platform;
use tare_domain::cabinet::{Cabinet, CabinetCommand, CabinetError, Holder, LanePlan};
use tare_domain::order::{Order, OrderCommand, OrderState};
use tare_domain::payment::Payment;
use tare_domain::shopper::ShopperCommand;
use tare_domain::{CabinetId, DoorNo, UnixMs};

/// How long a door or a shopper's order slot may be held by an order that does not
/// exist before a scan gives it back: a scan takes both before it creates the order, so
/// a crash between leaves them held by nothing. Twice the HTTP request timeout (30 s),
/// after which no scan still in flight can create the order.
pub const ORDER_CREATION_GRACE_MS: i64 = 60_000;

impl Platform {
    /// A scan [O1, O2]: takes the shopper's open-order slot, then the door, then creates
    /// the order (the saga takes it from there). Whatever step refuses, the earlier ones
    /// are undone and nothing else changes.
    pub async fn create_order(&self, shopper_id: &str, cabinet_id: &CabinetId, door: DoorNo) -> Result<Order, ServiceError> {
        let shopper = self.shopper(shopper_id).await?;
        let cabinet = self.cabinet(cabinet_id).await?;
        let door_state = cabinet.door(door).map_err(|e| ServiceError::NotFound {
            code: "door_not_found",
            message: e.to_string(),
        })?;
        // Frozen with the price and calibration versions they are charged and weighed by.
        let lanes: Vec<LanePlan> = door_state
            .lanes
            .values()
            .map(|l| LanePlan {
                calibration_version: l.calibration_version,
                ..l.plan.clone()
            })
            .collect();
        // Refuse an unavailable, locked-out or uncalibrated cabinet, or a busy door before touching the shopper (the
        // door is checked again, atomically, when it is taken).
        cabinet.check_door_sellable(door).map_err(ServiceError::refused)?;
        if let Some(holder) = &door_state.holder {
            let still_busy = match holder {
                Holder::Order {
                    order_id: previous,
                    shopper_id: previous_shopper,
                } => {
                    let prev = self.aggregates.orders.load(previous).await.map_err(ServiceError::from_command)?;
                    if prev.id.is_none() {
                        let acquired_at = door_state.acquired_at;
                        !self
                            .give_back_uncreated(cabinet_id, door, previous, previous_shopper, Some(acquired_at))
                            .await?
                    } else {
                        prev.state.holds_door()
                    }
                }
                Holder::Command { cmd_id } => !self.command_door_is_free(cmd_id).await?,
                _ => true,
            };
            if still_busy {
                return Err(ServiceError::refused(CabinetError::DoorBusy));
            }
        }
        let (Some(provider), Some(confirm_mode)) = (shopper.provider, shopper.confirm_mode) else {
            return Err(ServiceError::Internal("shopper without provider".into()));
        };
        self.check_payments_open(provider).await?;
        let order_id = uuid::Uuid::now_v7().to_string();
        let at = self.clock.now_ms();
        let meta = || self.meta(&order_id, "api:create_order");
        self.begin_shopper_order(shopper_id, &order_id, at).await?;
        let holder = Holder::Order {
            order_id: order_id.clone(),
            shopper_id: shopper_id.to_string(),
        };
        if let Err(e) = self.acquire_door(&cabinet, cabinet_id, door, holder, at, &order_id).await {
            if let Err(u) = self.end_shopper_slot(shopper_id, &order_id, "abandoned", at, meta()).await {
                tracing::error!(%order_id, error = %u, "could not release the shopper's order slot");
            }
            return Err(ServiceError::from_command(e));
        }
        let cmd = OrderCommand::Create {
            order_id: order_id.clone(),
            shopper_id: shopper_id.to_string(),
            cabinet: cabinet_id.clone(),
            door,
            provider,
            confirm_mode,
            lanes,
            planogram_version: cabinet.planogram_version,
            auth_deadline: at + self.saga.auth_timeout_ms,
            at,
        };
        if let Err(e) = self.aggregates.orders.execute(&order_id, cmd, meta()).await {
            // The door and the slot are given back at once if the order surely does not
            // exist (a failed commit may still have landed); else a later scan does it.
            if self.aggregates.orders.load(&order_id).await.is_ok_and(|o| o.id.is_none()) {
                let _ = self.give_back_uncreated(cabinet_id, door, &order_id, shopper_id, None).await;
            }
            return Err(ServiceError::from_command(e));
        }
        self.order(&order_id).await
    }

    /// Gives back a door and a shopper's slot held by `order_id`, an order that does not
    /// exist: at once (`taken_at` `None`, the scan that took them failed), or once they
    /// were taken [`ORDER_CREATION_GRACE_MS`] ago; whether it did. The released door is
    /// weighed closed as after any session.
    async fn give_back_uncreated(
        &self,
        cabinet_id: &CabinetId,
        door: DoorNo,
        order_id: &str,
        shopper_id: &str,
        taken_at: Option<UnixMs>,
    ) -> Result<bool, ServiceError> {
        let at = self.clock.now_ms();
        if taken_at.is_some_and(|taken| at - taken < ORDER_CREATION_GRACE_MS) {
            return Ok(false);
        }
        let meta = || self.meta(order_id, "api:order_never_created");
        let release = CabinetCommand::ReleaseDoor {
            door,
            session_id: order_id.to_string(),
            reason: "order_never_created".into(),
            at,
        };
        self.aggregates
            .cabinets
            .execute(&cabinet_id.to_string(), release, meta())
            .await
            .map_err(ServiceError::from_command)?;
        self.end_shopper_slot(shopper_id, order_id, "abandoned", at, meta()).await?;
        tracing::warn!(%order_id, cabinet = %cabinet_id, door = door.get(), "gave back a door and a slot held by an order never created");
        Ok(true)
    }

    /// Runs one of the saga's (idempotent) effects now, ahead of the executor: used when a
    /// scan would otherwise be refused because an ended order's clean-up has not run yet.
    async fn run_effect_now(&self, key: String, effect: tare_sagas::Effect, at: tare_domain::UnixMs) -> tare_sagas::EffectOutcome {
        self.effects
            .run(&crate::jobs::ClaimedJob {
                key,
                effect,
                attempts: 0,
                due_at: at,
            })
            .await
    }

    /// Takes a door. If the previous purchase on it has finished weighing but its
    /// door-release effect has not run yet, runs that (idempotent) effect now.
    async fn acquire_door(
        &self,
        cabinet: &Cabinet,
        cabinet_id: &CabinetId,
        door: DoorNo,
        holder: Holder,
        at: tare_domain::UnixMs,
        order_id: &str,
    ) -> Result<(), CommandError<CabinetError>> {
        let acquire = || CabinetCommand::AcquireDoor {
            door,
            holder: holder.clone(),
            at,
        };
        let first = self
            .aggregates
            .cabinets
            .execute(&cabinet_id.to_string(), acquire(), self.meta(order_id, "api:create_order"))
            .await;
        let Err(CommandError::Rejected(CabinetError::DoorBusy)) = first else {
            return first;
        };
        let fresh = self.aggregates.cabinets.load(&cabinet_id.to_string()).await?;
        let held_by = fresh
            .door(door)
            .ok()
            .and_then(|d| d.holder.clone())
            .or_else(|| cabinet.door(door).ok().and_then(|d| d.holder.clone()));
        if let Some(Holder::Order { order_id: previous, .. }) = &held_by {
            let prev = self.aggregates.orders.load(previous).await.map_err(|e| match e {
                CommandError::Unavailable(m) => CommandError::Unavailable(m),
                other => CommandError::Store(other.to_string()),
            })?;
            if !prev.state.holds_door() {
                let _ = self
                    .run_effect_now(
                        format!("order:{previous}:finish-door"),
                        tare_sagas::Effect::FinishDoorSession {
                            order_id: previous.clone(),
                        },
                        at,
                    )
                    .await;
                return self
                    .aggregates
                    .cabinets
                    .execute(&cabinet_id.to_string(), acquire(), self.meta(order_id, "api:create_order"))
                    .await;
            }
        }
        // An operator's command that ended still holding the door (its release effect
        // has not run yet) gives it up now.
        if let Some(Holder::Command { cmd_id }) = held_by {
            let free = self.command_door_is_free(&cmd_id).await.map_err(|e| match e {
                ServiceError::Unavailable(m) => CommandError::Unavailable(m),
                other => CommandError::Store(other.to_string()),
            })?;
            if free && self.release_command_door(cabinet_id, door, &cmd_id, "command_ended").await.is_ok() {
                return self
                    .aggregates
                    .cabinets
                    .execute(&cabinet_id.to_string(), acquire(), self.meta(order_id, "api:create_order"))
                    .await;
            }
        }
        first
    }

    /// Takes the shopper's open-order slot. If an earlier order still holds it but has
    /// already ended (its slot is freed by an effect that may not have run yet), or was
    /// never created, frees it now instead of refusing the shopper.
    async fn begin_shopper_order(&self, shopper_id: &str, order_id: &str, at: tare_domain::UnixMs) -> Result<(), ServiceError> {
        use crate::store::CommandError;
        use tare_domain::shopper::ShopperError;
        let meta = || self.meta(order_id, "api:create_order");
        let begin = || ShopperCommand::BeginOrder {
            order_id: order_id.to_string(),
            max_opens_per_hour: self.max_opens_per_hour,
            max_disputes_per_month: self.max_disputes_per_month,
            at,
        };
        match self.aggregates.shoppers.execute(shopper_id, begin(), meta()).await {
            Err(CommandError::Rejected(ShopperError::UnpaidOrder(previous))) => {
                let outcome = self.slot_outcome(shopper_id, &previous, at).await?;
                self.end_shopper_slot(shopper_id, &previous, outcome, at, meta()).await?;
                self.aggregates
                    .shoppers
                    .execute(shopper_id, begin(), meta())
                    .await
                    .map_err(ServiceError::from_command)
            }
            other => other.map_err(ServiceError::from_command),
        }
    }

    /// How the order `previous` holding the shopper's slot ended, if it did (409
    /// `unpaid_order` if not): an order being created right now by another request does
    /// not exist yet; one that never was (a crash mid-scan) counts as abandoned once
    /// [`ORDER_CREATION_GRACE_MS`] have passed since the slot was taken.
    async fn slot_outcome(&self, shopper_id: &str, previous: &str, at: UnixMs) -> Result<String, ServiceError> {
        let unpaid = || ServiceError::Conflict {
            code: "unpaid_order",
            message: format!("shopper has an unpaid order {previous}"),
        };
        let prev = match self.order(previous).await {
            Ok(prev) => prev,
            Err(ServiceError::NotFound { .. }) => {
                let shopper = self
                    .aggregates
                    .shoppers
                    .load(shopper_id)
                    .await
                    .map_err(ServiceError::from_command)?;
                let begun_at = shopper.recent_opens.back().copied().unwrap_or(0);
                if at - begun_at < ORDER_CREATION_GRACE_MS {
                    return Err(unpaid());
                }
                return Ok("abandoned".into());
            }
            Err(e) => return Err(e),
        };
        if !prev.state.is_terminal() {
            return Err(unpaid());
        }
        if matches!(prev.state, OrderState::Cancelled | OrderState::Abnormal) {
            // Its provider-side order must be gone before the next one is asked
            // for (a provider limits open orders per shopper): run the saga's
            // idempotent cancel now rather than wait for it.
            let effect = tare_sagas::Effect::CancelPayment {
                order_id: previous.to_string(),
                reason: "order_ended".into(),
            };
            if let tare_sagas::EffectOutcome::Retry(e) | tare_sagas::EffectOutcome::Refused(e) | tare_sagas::EffectOutcome::Bury(e) =
                self.run_effect_now(format!("order:{previous}:cancel-payment"), effect, at).await
            {
                return Err(ServiceError::Conflict {
                    code: "previous_order_closing",
                    message: format!("the previous order is still closing at the provider: {e}"),
                });
            }
        }
        Ok(prev.state.as_str().to_string())
    }

    /// Frees the shopper's open-order slot if `order_id` still holds it, as `outcome`.
    async fn end_shopper_slot(
        &self,
        shopper_id: &str,
        order_id: &str,
        outcome: impl Into<String>,
        at: UnixMs,
        meta: crate::store::Meta,
    ) -> Result<(), ServiceError> {
        let end = ShopperCommand::EndOrder {
            order_id: order_id.to_string(),
            outcome: outcome.into(),
            at,
        };
        self.aggregates
            .shoppers
            .execute(shopper_id, end, meta)
            .await
            .map_err(ServiceError::from_command)
    }

    /// An order (404 if unknown).
    pub async fn order(&self, order_id: &str) -> Result<Order, ServiceError> {
        let o = self.aggregates.orders.load(order_id).await.map_err(ServiceError::from_command)?;
        if o.id.is_none() {
            return Err(ServiceError::NotFound {
                code: "order_not_found",
                message: "order not found".into(),
            });
        }
        Ok(o)
    }

    /// An order's payment (default state if not opened yet).
    pub async fn payment(&self, order_id: &str) -> Result<Payment, ServiceError> {
        self.aggregates.payments.load(order_id).await.map_err(ServiceError::from_command)
    }

    /// An order's payment once the saga has opened it at the provider, or as it is after
    /// `wait` (woken by the payment's commit, not by polling the store).
    pub async fn payment_opened(&self, order_id: &str, wait: std::time::Duration) -> Result<Payment, ServiceError> {
        self.aggregates
            .payments
            .wait_until(order_id, wait, |p| p.state != tare_domain::payment::PaymentState::New)
            .await
            .map_err(ServiceError::from_command)
    }
}
