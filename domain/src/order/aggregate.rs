//! The order's state and its decisions: each command is decided by a small method that
//! returns the events (or a refusal), and `apply` folds events into the state. Deciding
//! never mutates; a command that no longer applies decides no events.

use super::{Anomaly, HandSettlement, OrderCommand, OrderError, OrderEvent, OrderLine, OrderState, MAX_DOOR_QUERIES};
use crate::cabinet::LanePlan;
use crate::coupon::{Coupon, CouponChoice, CouponPolicy};
use crate::settlement::{settle, Settlement, Verdict};
use crate::weight::{LaneInference, StableReading};
use crate::{CabinetId, Cents, ConfirmMode, DoorNo, ProviderKind, UnixMs};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

type Decision = Result<Vec<OrderEvent>, OrderError>;

/// An order's current state, including its receipt and evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Id, once created.
    pub id: Option<String>,
    /// Shopper.
    pub shopper_id: String,
    /// Cabinet.
    pub cabinet: Option<CabinetId>,
    /// Door.
    pub door: Option<DoorNo>,
    /// Provider.
    pub provider: Option<ProviderKind>,
    /// Mode.
    pub confirm_mode: Option<ConfirmMode>,
    /// Frozen planogram.
    pub lanes: Vec<LanePlan>,
    /// Its version.
    pub planogram_version: u32,
    /// State.
    pub state: OrderState,
    /// Created at.
    pub created_at: UnixMs,
    /// Authorization deadline.
    pub auth_deadline: UnixMs,
    /// Open command id.
    pub open_cmd_id: Option<String>,
    /// Door queries made.
    pub door_queries: u32,
    /// Open (device clock).
    pub opened_device_ts: Option<UnixMs>,
    /// Close (device clock).
    pub closed_device_ts: Option<UnixMs>,
    /// Close (platform clock).
    pub closed_at: Option<UnixMs>,
    /// Baseline reading.
    pub before: Option<StableReading>,
    /// Reading after the close.
    pub after: Option<StableReading>,
    /// Per-lane inference.
    pub inference: Vec<LaneInference>,
    /// Receipt lines.
    pub lines: Vec<OrderLine>,
    /// Subtotal.
    pub subtotal: Cents,
    /// Coupon.
    pub coupon: Option<CouponChoice>,
    /// Total.
    pub total: Cents,
    /// Anomalies.
    pub anomalies: Vec<Anomaly>,
    /// Deduction attempts.
    pub charge_attempts: u32,
    /// Set when deductions gave up (dead letter) [O8].
    pub dead_lettered: bool,
    /// Set while a failed deduction waits for its scheduled retry.
    pub retry_pending: bool,
    /// Provider transaction.
    pub transaction_id: Option<String>,
    /// Why cancelled.
    pub cancel_reason: Option<String>,
    /// Refunded so far [O9].
    #[serde(default)]
    pub refunded: Cents,
    /// How a dead-lettered charge was settled by hand, and by whom [O8].
    #[serde(default)]
    pub settled_by_hand: Option<(HandSettlement, String)>,
    /// Last change.
    pub updated_at: UnixMs,
}

impl Order {
    /// The charge's half of `apply`: charging, paid, cancelled, refunded, settled by hand.
    fn apply_money(&mut self, event: OrderEvent) {
        use OrderState as S;
        match event {
            OrderEvent::ChargeRequested { attempt, at, .. } => {
                self.charge_attempts = attempt;
                self.retry_pending = false;
                self.dead_lettered = false;
                self.state = S::Charging;
                self.updated_at = at;
            }
            OrderEvent::ChargeFailed { retry_at, at, .. } => {
                self.dead_lettered = retry_at.is_none();
                self.retry_pending = retry_at.is_some();
                self.updated_at = at;
            }
            OrderEvent::OrderPaid { transaction_id, at, .. } => {
                self.transaction_id = Some(transaction_id);
                self.state = S::Paid;
                self.dead_lettered = false;
                self.updated_at = at;
            }
            OrderEvent::OrderCancelled { reason, at } => {
                self.cancel_reason = Some(reason);
                self.state = S::Cancelled;
                self.updated_at = at;
            }
            OrderEvent::OrderRefunded { refunded, at } => {
                self.refunded = refunded;
                self.state = if refunded >= self.total {
                    S::Refunded
                } else {
                    S::PartiallyRefunded
                };
                self.updated_at = at;
            }
            OrderEvent::ChargeSettledByHand { resolution, by, at, .. } => {
                match &resolution {
                    HandSettlement::PaidOutside { reference } => {
                        self.transaction_id = Some(format!("outside:{reference}"));
                        self.state = S::Paid;
                    }
                    HandSettlement::WrittenOff => {
                        self.cancel_reason = Some("written_off".into());
                        self.state = S::Cancelled;
                    }
                }
                self.dead_lettered = false;
                self.retry_pending = false;
                self.settled_by_hand = Some((resolution, by));
                self.updated_at = at;
            }
            // The door's half is applied by `apply`.
            _ => {}
        }
    }

    fn require(&self, allowed: &[OrderState]) -> Result<(), OrderError> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(OrderError::WrongState(self.state))
        }
    }

    /// Decides `command` against the current state: the events it causes, or why it is
    /// refused. A command that no longer applies (a repeat, a late timer) decides nothing.
    pub fn decide(&self, command: OrderCommand) -> Decision {
        use OrderState as S;
        if self.id.is_none() && !matches!(command, OrderCommand::Create { .. }) {
            return Err(OrderError::NotFound);
        }
        match command {
            OrderCommand::Create {
                order_id,
                shopper_id,
                cabinet,
                door,
                provider,
                confirm_mode,
                lanes,
                planogram_version,
                auth_deadline,
                at,
            } => {
                if self.id.is_some() {
                    return Err(OrderError::AlreadyExists);
                }
                Ok(vec![OrderEvent::OrderCreated {
                    order_id,
                    shopper_id,
                    cabinet,
                    door,
                    provider,
                    confirm_mode,
                    lanes,
                    planogram_version,
                    auth_deadline,
                    at,
                }])
            }
            // A duplicate or late authorization: nothing to do (a cancelled order's
            // provider side is cancelled by the saga).
            OrderCommand::MarkAuthorized { open_cmd_id, at } => Ok(if self.state == S::Authorizing {
                vec![
                    OrderEvent::OrderAuthorized { at },
                    OrderEvent::DoorOpenRequested { cmd_id: open_cmd_id, at },
                ]
            } else {
                vec![]
            }),
            OrderCommand::ExpireAuthorization { at } => Ok(if self.state == S::Authorizing && at >= self.auth_deadline {
                vec![OrderEvent::OrderCancelled {
                    reason: "authorization_timeout".into(),
                    at,
                }]
            } else {
                vec![]
            }),
            OrderCommand::CheckDoor { attempt, at } => Ok(self.check_door(attempt, at)),
            OrderCommand::FlagDoorLeftOpen { at } => Ok(if self.state == S::Open && !self.anomalies.contains(&Anomaly::DoorLeftOpen) {
                vec![OrderEvent::OrderDoorLeftOpen { at }]
            } else {
                vec![]
            }),
            // A repeat, or an open after the order moved on, decides nothing.
            OrderCommand::MarkDoorOpened { device_ts, before, at } => Ok(if self.state == S::Opening {
                vec![OrderEvent::OrderDoorOpened { device_ts, before, at }]
            } else {
                vec![]
            }),
            OrderCommand::MarkDoorClosed {
                device_ts,
                unexpected,
                fallback_before,
                at,
            } => Ok(self.door_closed(device_ts, unexpected, fallback_before, at)),
            OrderCommand::SettleWeights {
                after,
                coupons,
                policy,
                at,
            } => self.settle_weights(after, &coupons, &policy, at),
            OrderCommand::AbandonWeights { at } => Ok(if self.state == S::Settling {
                let mut anomalies = self.anomalies.clone();
                anomalies.push(Anomaly::NoStableWeight);
                vec![OrderEvent::OrderMarkedAbnormal { anomalies, at }]
            } else {
                vec![]
            }),
            OrderCommand::MarkPaid {
                transaction_id,
                amount,
                at,
            } => self.mark_paid(transaction_id, amount, at),
            OrderCommand::RecordChargeFailure { reason, retry_at, at } => Ok(if self.state == S::Charging && !self.dead_lettered {
                vec![OrderEvent::ChargeFailed {
                    attempt: self.charge_attempts,
                    reason,
                    retry_at,
                    at,
                }]
            } else {
                vec![]
            }),
            // Only after a failure: a retry timer that fires twice charges once, and an
            // operator may retry a dead letter.
            OrderCommand::RetryCharge { at } => Ok(if self.state == S::Charging && (self.retry_pending || self.dead_lettered) {
                vec![OrderEvent::ChargeRequested {
                    amount: self.total,
                    attempt: self.charge_attempts + 1,
                    at,
                }]
            } else {
                vec![]
            }),
            OrderCommand::Cancel { reason, at } => self.cancel(reason, at),
            OrderCommand::RecordRefunds { refunded, at } => Ok(self.record_refunds(refunded, at)),
            OrderCommand::SettleChargeByHand { resolution, by, note, at } => self.settle_by_hand(resolution, by, note, at),
        }
    }

    /// The provider collected: paid, if the amount is the one charged (a repeat of the
    /// confirmation decides nothing) [O8].
    fn mark_paid(&self, transaction_id: String, amount: Cents, at: UnixMs) -> Decision {
        if self.state == OrderState::Paid {
            return Ok(vec![]);
        }
        self.require(&[OrderState::Charging])?;
        if amount != self.total {
            return Err(OrderError::AmountMismatch {
                want: self.total.get(),
                got: amount.get(),
            });
        }
        Ok(vec![OrderEvent::OrderPaid {
            transaction_id,
            amount,
            at,
        }])
    }

    /// The payment's refunds grew: the order is partly or fully refunded [O9]. A repeat (or
    /// an older total) changes nothing.
    fn record_refunds(&self, refunded: Cents, at: UnixMs) -> Vec<OrderEvent> {
        let refundable = matches!(self.state, OrderState::Paid | OrderState::PartiallyRefunded | OrderState::Refunded);
        if !refundable || refunded <= self.refunded {
            return vec![];
        }
        vec![OrderEvent::OrderRefunded { refunded, at }]
    }

    /// Settles a dead-lettered charge by hand [O8]: only while charging after failures.
    fn settle_by_hand(&self, resolution: HandSettlement, by: String, note: String, at: UnixMs) -> Decision {
        if self.state != OrderState::Charging || !(self.dead_lettered || self.retry_pending) {
            return Err(OrderError::WrongState(self.state));
        }
        Ok(vec![OrderEvent::ChargeSettledByHand { resolution, by, note, at }])
    }

    /// Cancels an order whose door has not opened yet (cancelling twice is no error).
    fn cancel(&self, reason: String, at: UnixMs) -> Decision {
        if self.state == OrderState::Cancelled {
            return Ok(vec![]);
        }
        self.require(&[OrderState::Authorizing, OrderState::Authorized, OrderState::Opening])?;
        Ok(vec![OrderEvent::OrderCancelled { reason, at }])
    }

    /// Timer: query the door again, or give up after [`MAX_DOOR_QUERIES`] [O4].
    fn check_door(&self, attempt: u32, at: UnixMs) -> Vec<OrderEvent> {
        if self.state != OrderState::Opening || attempt <= self.door_queries {
            return vec![]; // opened meanwhile, or a repeated timer
        }
        if attempt <= MAX_DOOR_QUERIES {
            let id = self.id.as_deref().unwrap_or_default();
            vec![OrderEvent::DoorQueryRequested {
                attempt,
                cmd_id: format!("{id}-q{attempt}"),
                at,
            }]
        } else {
            vec![OrderEvent::OrderMarkedAbnormal {
                anomalies: vec![Anomaly::DoorNeverOpened],
                at,
            }]
        }
    }

    /// The door closed; a close while the open is still awaited is unexpected whatever
    /// the cabinet thought [D8].
    fn door_closed(&self, device_ts: UnixMs, unexpected: bool, fallback_before: Option<StableReading>, at: UnixMs) -> Vec<OrderEvent> {
        if !matches!(self.state, OrderState::Open | OrderState::Opening) {
            return vec![];
        }
        vec![OrderEvent::OrderDoorClosed {
            device_ts,
            unexpected: unexpected || self.state == OrderState::Opening,
            fallback_before: if self.before.is_none() { fallback_before } else { None },
            at,
        }]
    }

    /// A stable reading after the close arrived: the settlement decides the receipt and
    /// what follows it [O6, O7].
    fn settle_weights(&self, after: StableReading, coupons: &[Coupon], policy: &CouponPolicy, at: UnixMs) -> Decision {
        if self.state != OrderState::Settling {
            return Ok(vec![]);
        }
        if self.closed_device_ts.is_some_and(|closed| after.sample().device_ts < closed) {
            return Err(OrderError::StaleWeight);
        }
        let receipt = match settle(&self.lanes, self.before.as_ref(), &after, &self.anomalies, coupons, policy, at) {
            Settlement::Unweighable { anomalies } => return Ok(vec![OrderEvent::OrderMarkedAbnormal { anomalies, at }]),
            Settlement::Weighed(r) => r,
        };
        let next = match receipt.verdict {
            Verdict::Review => OrderEvent::OrderMarkedAbnormal {
                anomalies: receipt.anomalies.clone(),
                at,
            },
            Verdict::NothingTaken => OrderEvent::OrderCancelled {
                reason: "nothing_taken".into(),
                at,
            },
            Verdict::Free => OrderEvent::OrderPaid {
                transaction_id: String::new(),
                amount: receipt.total,
                at,
            },
            Verdict::Charge => OrderEvent::ChargeRequested {
                amount: receipt.total,
                attempt: 1,
                at,
            },
        };
        Ok(vec![
            OrderEvent::WeightsSettled {
                after,
                inference: receipt.inference,
                lines: receipt.lines,
                subtotal: receipt.subtotal,
                coupon: receipt.coupon,
                total: receipt.total,
                anomalies: receipt.anomalies,
                at,
            },
            next,
        ])
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use OrderState as S;
        match event {
            OrderEvent::OrderCreated {
                order_id,
                shopper_id,
                cabinet,
                door,
                provider,
                confirm_mode,
                lanes,
                planogram_version,
                auth_deadline,
                at,
            } => {
                self.id = Some(order_id);
                self.shopper_id = shopper_id;
                self.cabinet = Some(cabinet);
                self.door = Some(door);
                self.provider = Some(provider);
                self.confirm_mode = Some(confirm_mode);
                self.lanes = lanes;
                self.planogram_version = planogram_version;
                self.auth_deadline = auth_deadline;
                self.created_at = at;
                self.updated_at = at;
                self.state = S::Authorizing;
            }
            OrderEvent::OrderAuthorized { at } => {
                self.state = S::Authorized;
                self.updated_at = at;
            }
            OrderEvent::DoorOpenRequested { cmd_id, at } => {
                self.open_cmd_id = Some(cmd_id);
                self.state = S::Opening;
                self.updated_at = at;
            }
            OrderEvent::DoorQueryRequested { attempt, at, .. } => {
                self.door_queries = attempt;
                self.updated_at = at;
            }
            OrderEvent::OrderDoorOpened { device_ts, before, at } => {
                self.opened_device_ts = Some(device_ts);
                if before.is_some() {
                    self.before = before;
                }
                self.state = S::Open;
                self.updated_at = at;
            }
            OrderEvent::OrderDoorLeftOpen { at } => {
                self.anomalies.push(Anomaly::DoorLeftOpen);
                self.updated_at = at;
            }
            OrderEvent::OrderDoorClosed {
                device_ts,
                unexpected,
                fallback_before,
                at,
            } => {
                self.closed_device_ts = Some(device_ts);
                self.closed_at = Some(at);
                if self.before.is_none() {
                    self.before = fallback_before;
                }
                if unexpected && !self.anomalies.contains(&Anomaly::UnexpectedClose) {
                    self.anomalies.push(Anomaly::UnexpectedClose);
                }
                self.state = S::Settling;
                self.updated_at = at;
            }
            OrderEvent::WeightsSettled {
                after,
                inference,
                lines,
                subtotal,
                coupon,
                total,
                anomalies,
                at,
            } => {
                self.after = Some(after);
                self.inference = inference;
                self.lines = lines;
                self.subtotal = subtotal;
                self.coupon = coupon;
                self.total = total;
                self.anomalies = anomalies;
                self.updated_at = at;
            }
            e @ (OrderEvent::ChargeRequested { .. }
            | OrderEvent::ChargeFailed { .. }
            | OrderEvent::OrderPaid { .. }
            | OrderEvent::OrderCancelled { .. }
            | OrderEvent::OrderRefunded { .. }
            | OrderEvent::ChargeSettledByHand { .. }) => self.apply_money(e),
            OrderEvent::OrderMarkedAbnormal { anomalies, at } => {
                self.anomalies = anomalies;
                self.state = S::Abnormal;
                self.updated_at = at;
            }
        }
    }
}
