//! The order aggregate [O1–O8, B2]: one purchase from scan to payment, and the evidence
//! that explains its charge (the stable readings before and after, the planogram version
//! and tolerances, the per-lane inference and its confidence).
//!
//! The order decides; the order saga only reacts to its events with effects (provider
//! calls, device commands, timers). Timers come back as commands (`ExpireAuthorization`,
//! `CheckDoor`, …) and the order ignores those that no longer apply, which is what makes
//! a timer that fires twice, or late, harmless.

use crate::cabinet::LanePlan;
use crate::coupon::{choose_coupon, Coupon, CouponChoice, CouponPolicy, PricedLine};
use crate::weight::{infer_door, LaneInference, StableReading};
use crate::{CabinetId, Cents, ConfirmMode, DomainError, DoorNo, LaneNo, ProviderKind, RejectionKind, Sku, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// How many times the door is queried after a missing or negative open ack [O4].
pub const MAX_DOOR_QUERIES: u32 = 5;

/// The order's life (API: `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Waiting for the provider's pre-authorization.
    #[default]
    Authorizing,
    /// Authorized (transient: the door command follows in the same commit).
    Authorized,
    /// Door command sent, waiting for the door to open.
    Opening,
    /// Door open, shopper choosing.
    Open,
    /// Door closed, waiting for a stable weight.
    Settling,
    /// Deducting through the provider.
    Charging,
    /// Paid.
    Paid,
    /// Cancelled before anything was charged.
    Cancelled,
    /// Needs an operator (no charge made).
    Abnormal,
    /// Fully refunded.
    Refunded,
    /// Partly refunded.
    PartiallyRefunded,
}

impl OrderState {
    /// Whether the order has reached an end state (nothing more happens by itself).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Paid | Self::Cancelled | Self::Abnormal | Self::Refunded | Self::PartiallyRefunded
        )
    }
}

/// Something an operator should look at [M3].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Anomaly {
    /// The door closed without an open being seen first [D8].
    UnexpectedClose,
    /// A lane got heavier: an item put back in the wrong lane [O6].
    LaneHeavier {
        /// The lane.
        lane: LaneNo,
        /// Items more than before.
        items: i64,
    },
    /// A lane's residual exceeded its tolerance: the count is uncertain [B3].
    LowConfidence {
        /// The lane.
        lane: LaneNo,
        /// The confidence (0..1).
        confidence: f64,
    },
    /// The door never opened after the command and five queries [O4].
    DoorNeverOpened,
    /// No stable weight arrived after the close within the wait [O5].
    NoStableWeight,
    /// No stable weight was known from before the door opened.
    NoWeightBefore,
}

impl Anomaly {
    /// Anomalies that stop the charge (the order goes to an operator instead) [B3].
    pub fn blocks_charge(&self) -> bool {
        !matches!(self, Self::LaneHeavier { .. })
    }
}

/// A charged line of the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The lane it came from.
    pub lane: LaneNo,
    /// Product.
    pub sku: Sku,
    /// Product name.
    pub name: String,
    /// Units.
    pub qty: u32,
    /// Unit price.
    pub unit_price: Cents,
}

/// Commands an order accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// Creates the order after the shopper's slot and the door were taken [O1, O2].
    Create {
        /// Order id.
        order_id: String,
        /// Shopper.
        shopper_id: String,
        /// Cabinet.
        cabinet: CabinetId,
        /// Door.
        door: DoorNo,
        /// Provider.
        provider: ProviderKind,
        /// Mode.
        confirm_mode: ConfirmMode,
        /// The door's lanes as planned now (prices and scales are frozen into the order).
        lanes: Vec<LanePlan>,
        /// Planogram version those lanes come from.
        planogram_version: u32,
        /// When authorization times out [O3].
        auth_deadline: UnixMs,
        /// When.
        at: UnixMs,
    },
    /// The provider pre-authorized the payment: send the door command [O4].
    MarkAuthorized {
        /// Door command id.
        open_cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// Timer: the authorization deadline passed [O3].
    ExpireAuthorization {
        /// When.
        at: UnixMs,
    },
    /// Timer: check whether the door has opened; query again or give up [O4].
    CheckDoor {
        /// Which check (1-based).
        attempt: u32,
        /// When.
        at: UnixMs,
    },
    /// The door opened.
    MarkDoorOpened {
        /// Device clock of the open.
        device_ts: UnixMs,
        /// The last stable reading before the open, if any.
        before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The door closed (possibly without an open seen) [O5, D8].
    MarkDoorClosed {
        /// Device clock of the close.
        device_ts: UnixMs,
        /// Whether the cabinet judged the close unexpected.
        unexpected: bool,
        /// A stable reading from before the close, used if the open was never seen.
        fallback_before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// A stable reading after the close arrived: compute the purchase [O6, O7].
    SettleWeights {
        /// The stable reading (taken no earlier than the close).
        after: StableReading,
        /// The shopper's unspent coupons.
        coupons: Vec<Coupon>,
        /// The operator's coupon policy.
        policy: CouponPolicy,
        /// When.
        at: UnixMs,
    },
    /// Timer: no stable reading came within the wait [O5].
    AbandonWeights {
        /// When.
        at: UnixMs,
    },
    /// The provider collected the money [O8].
    MarkPaid {
        /// Provider transaction id.
        transaction_id: String,
        /// Amount collected.
        amount: Cents,
        /// When.
        at: UnixMs,
    },
    /// A deduction failed; schedule the next try [O8].
    RecordChargeFailure {
        /// Provider's reason.
        reason: String,
        /// When to try again (`None`: give up, dead-letter).
        retry_at: Option<UnixMs>,
        /// When.
        at: UnixMs,
    },
    /// Timer: try the deduction again.
    RetryCharge {
        /// When.
        at: UnixMs,
    },
    /// Cancels an order that has not opened its door yet.
    Cancel {
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

/// Facts about an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The order exists.
    OrderCreated {
        /// Id.
        order_id: String,
        /// Shopper.
        shopper_id: String,
        /// Cabinet.
        cabinet: CabinetId,
        /// Door.
        door: DoorNo,
        /// Provider.
        provider: ProviderKind,
        /// Mode.
        confirm_mode: ConfirmMode,
        /// Frozen planogram.
        lanes: Vec<LanePlan>,
        /// Its version.
        planogram_version: u32,
        /// Authorization deadline.
        auth_deadline: UnixMs,
        /// When.
        at: UnixMs,
    },
    /// Pre-authorized.
    OrderAuthorized {
        /// When.
        at: UnixMs,
    },
    /// The open-door command is to be sent.
    DoorOpenRequested {
        /// Command id.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// The door is to be queried.
    DoorQueryRequested {
        /// Which query (1..=5).
        attempt: u32,
        /// Command id.
        cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// The door opened; the reading before it is the baseline of the charge.
    OrderDoorOpened {
        /// Device clock.
        device_ts: UnixMs,
        /// The baseline reading.
        before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The door closed.
    OrderDoorClosed {
        /// Device clock.
        device_ts: UnixMs,
        /// Whether unexpected.
        unexpected: bool,
        /// Baseline taken at the close when the open was never seen.
        fallback_before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The purchase was computed: the receipt and its evidence [B2].
    WeightsSettled {
        /// The stable reading after the close.
        after: StableReading,
        /// Per-lane inference.
        inference: Vec<LaneInference>,
        /// Charged lines.
        lines: Vec<OrderLine>,
        /// Sum of lines.
        subtotal: Cents,
        /// The coupon applied.
        coupon: Option<CouponChoice>,
        /// Total to charge.
        total: Cents,
        /// Anomalies found.
        anomalies: Vec<Anomaly>,
        /// When.
        at: UnixMs,
    },
    /// A deduction is to be made.
    ChargeRequested {
        /// Amount.
        amount: Cents,
        /// Attempt (1-based).
        attempt: u32,
        /// When.
        at: UnixMs,
    },
    /// A deduction failed.
    ChargeFailed {
        /// Attempt.
        attempt: u32,
        /// Reason.
        reason: String,
        /// Next try (`None`: dead-lettered for an operator) [O8].
        retry_at: Option<UnixMs>,
        /// When.
        at: UnixMs,
    },
    /// Paid.
    OrderPaid {
        /// Provider transaction.
        transaction_id: String,
        /// Amount.
        amount: Cents,
        /// When.
        at: UnixMs,
    },
    /// Cancelled, nothing charged.
    OrderCancelled {
        /// Why (`authorization_timeout`, `nothing_taken`, …).
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// Needs an operator; nothing charged.
    OrderMarkedAbnormal {
        /// Why.
        anomalies: Vec<Anomaly>,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrderCreated { .. } => "OrderCreated",
            Self::OrderAuthorized { .. } => "OrderAuthorized",
            Self::DoorOpenRequested { .. } => "DoorOpenRequested",
            Self::DoorQueryRequested { .. } => "DoorQueryRequested",
            Self::OrderDoorOpened { .. } => "OrderDoorOpened",
            Self::OrderDoorClosed { .. } => "OrderDoorClosed",
            Self::WeightsSettled { .. } => "WeightsSettled",
            Self::ChargeRequested { .. } => "ChargeRequested",
            Self::ChargeFailed { .. } => "ChargeFailed",
            Self::OrderPaid { .. } => "OrderPaid",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderMarkedAbnormal { .. } => "OrderMarkedAbnormal",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Already created.
    #[error("order already exists")]
    AlreadyExists,
    /// Unknown order.
    #[error("order not found")]
    NotFound,
    /// The command does not fit the order's state.
    #[error("order is {0:?}")]
    WrongState(OrderState),
    /// A post-close weight taken before the close was offered [O5].
    #[error("the reading predates the door close")]
    StaleWeight,
    /// The provider collected an amount other than the one charged.
    #[error("collected {got} but charged {want}")]
    AmountMismatch {
        /// Charged.
        want: i64,
        /// Reported.
        got: i64,
    },
}

impl DomainError for OrderError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::AlreadyExists | Self::WrongState(_) => RejectionKind::Conflict,
            Self::NotFound => RejectionKind::NotFound,
            Self::AmountMismatch { .. } | Self::StaleWeight => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::StaleWeight => "stale_weight",
            Self::AlreadyExists => "order_exists",
            Self::NotFound => "order_not_found",
            Self::WrongState(_) => "order_state",
            Self::AmountMismatch { .. } => "amount_mismatch",
        }
    }
}

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
    /// Last change.
    pub updated_at: UnixMs,
}

impl Order {
    fn require(&self, allowed: &[OrderState]) -> Result<(), OrderError> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(OrderError::WrongState(self.state))
        }
    }

    /// The lines the weights say were taken, priced from the frozen planogram.
    fn price_lines(&self, inference: &[LaneInference]) -> Vec<OrderLine> {
        inference
            .iter()
            .filter(|i| i.count > 0)
            .filter_map(|i| {
                let plan = self.lanes.iter().find(|l| l.lane == i.lane)?;
                Some(OrderLine {
                    lane: i.lane,
                    sku: plan.sku.clone(),
                    name: plan.name.clone(),
                    qty: i.count as u32,
                    unit_price: plan.price,
                })
            })
            .collect()
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
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
                sink.write(
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
                    },
                    self,
                )
                .await;
            }
            OrderCommand::MarkAuthorized { open_cmd_id, at } => {
                if self.state != S::Authorizing {
                    // A duplicate or late authorization: nothing to do (a cancelled
                    // order's provider side is cancelled by the saga).
                    return Ok(());
                }
                sink.write(OrderEvent::OrderAuthorized { at }, self).await;
                sink.write(OrderEvent::DoorOpenRequested { cmd_id: open_cmd_id, at }, self).await;
            }
            OrderCommand::ExpireAuthorization { at } => {
                if self.state == S::Authorizing && at >= self.auth_deadline {
                    sink.write(
                        OrderEvent::OrderCancelled {
                            reason: "authorization_timeout".into(),
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            OrderCommand::CheckDoor { attempt, at } => {
                if self.state != S::Opening || attempt <= self.door_queries {
                    return Ok(()); // opened meanwhile, or a repeated timer
                }
                if attempt <= MAX_DOOR_QUERIES {
                    let id = self.id.clone().unwrap_or_default();
                    sink.write(
                        OrderEvent::DoorQueryRequested {
                            attempt,
                            cmd_id: format!("{id}-q{attempt}"),
                            at,
                        },
                        self,
                    )
                    .await;
                } else {
                    sink.write(
                        OrderEvent::OrderMarkedAbnormal {
                            anomalies: vec![Anomaly::DoorNeverOpened],
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            OrderCommand::MarkDoorOpened { device_ts, before, at } => {
                if self.state != S::Opening {
                    return Ok(()); // a repeat, or an open after the order moved on
                }
                sink.write(OrderEvent::OrderDoorOpened { device_ts, before, at }, self).await;
            }
            OrderCommand::MarkDoorClosed {
                device_ts,
                unexpected,
                fallback_before,
                at,
            } => {
                if !matches!(self.state, S::Open | S::Opening) {
                    return Ok(());
                }
                // A close while we still wait for the open is unexpected whatever the
                // cabinet thought [D8].
                let unexpected = unexpected || self.state == S::Opening;
                sink.write(
                    OrderEvent::OrderDoorClosed {
                        device_ts,
                        unexpected,
                        fallback_before: if self.before.is_none() { fallback_before } else { None },
                        at,
                    },
                    self,
                )
                .await;
            }
            OrderCommand::SettleWeights {
                after,
                coupons,
                policy,
                at,
            } => {
                if self.state != S::Settling {
                    return Ok(());
                }
                if self.closed_device_ts.is_some_and(|closed| after.sample().device_ts < closed) {
                    return Err(OrderError::StaleWeight);
                }
                let mut anomalies = self.anomalies.clone();
                let Some(before) = self.before.clone() else {
                    anomalies.push(Anomaly::NoWeightBefore);
                    sink.write(OrderEvent::OrderMarkedAbnormal { anomalies, at }, self).await;
                    return Ok(());
                };
                let scales: Vec<_> = self.lanes.iter().map(LanePlan::scale).collect();
                let inference = match infer_door(&scales, &before, &after) {
                    Ok(i) => i,
                    Err(_) => {
                        anomalies.push(Anomaly::NoStableWeight);
                        sink.write(OrderEvent::OrderMarkedAbnormal { anomalies, at }, self).await;
                        return Ok(());
                    }
                };
                for i in &inference {
                    if !i.within_tolerance {
                        anomalies.push(Anomaly::LowConfidence {
                            lane: i.lane,
                            confidence: i.confidence,
                        });
                    } else if i.count < 0 {
                        anomalies.push(Anomaly::LaneHeavier {
                            lane: i.lane,
                            items: -i.count,
                        });
                    }
                }
                let lines = self.price_lines(&inference);
                let priced: Vec<PricedLine> = lines
                    .iter()
                    .map(|l| PricedLine {
                        sku: l.sku.clone(),
                        qty: l.qty,
                        unit_price: l.unit_price,
                    })
                    .collect();
                let subtotal = Cents(priced.iter().map(|l| l.unit_price.0 * i64::from(l.qty)).sum());
                let blocked = anomalies.iter().any(Anomaly::blocks_charge);
                let coupon = if blocked {
                    None
                } else {
                    choose_coupon(&priced, &coupons, &policy, at)
                };
                let discount = coupon.as_ref().map_or(0, |c| c.discount.0);
                let total = Cents(subtotal.0 - discount);
                sink.write(
                    OrderEvent::WeightsSettled {
                        after,
                        inference,
                        lines: lines.clone(),
                        subtotal,
                        coupon,
                        total,
                        anomalies: anomalies.clone(),
                        at,
                    },
                    self,
                )
                .await;
                if blocked {
                    sink.write(OrderEvent::OrderMarkedAbnormal { anomalies, at }, self).await;
                } else if lines.is_empty() {
                    sink.write(
                        OrderEvent::OrderCancelled {
                            reason: "nothing_taken".into(),
                            at,
                        },
                        self,
                    )
                    .await;
                } else if total.0 == 0 {
                    sink.write(
                        OrderEvent::OrderPaid {
                            transaction_id: String::new(),
                            amount: total,
                            at,
                        },
                        self,
                    )
                    .await;
                } else {
                    sink.write(
                        OrderEvent::ChargeRequested {
                            amount: total,
                            attempt: 1,
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            OrderCommand::AbandonWeights { at } => {
                if self.state == S::Settling {
                    let mut anomalies = self.anomalies.clone();
                    anomalies.push(Anomaly::NoStableWeight);
                    sink.write(OrderEvent::OrderMarkedAbnormal { anomalies, at }, self).await;
                }
            }
            OrderCommand::MarkPaid {
                transaction_id,
                amount,
                at,
            } => {
                if self.state == S::Paid {
                    return Ok(()); // duplicate confirmation
                }
                self.require(&[S::Charging])?;
                if amount != self.total {
                    return Err(OrderError::AmountMismatch {
                        want: self.total.0,
                        got: amount.0,
                    });
                }
                sink.write(
                    OrderEvent::OrderPaid {
                        transaction_id,
                        amount,
                        at,
                    },
                    self,
                )
                .await;
            }
            OrderCommand::RecordChargeFailure { reason, retry_at, at } => {
                if self.state != S::Charging || self.dead_lettered {
                    return Ok(());
                }
                sink.write(
                    OrderEvent::ChargeFailed {
                        attempt: self.charge_attempts,
                        reason,
                        retry_at,
                        at,
                    },
                    self,
                )
                .await;
            }
            OrderCommand::RetryCharge { at } => {
                // Only after a failure: a retry timer that fires twice charges once, and
                // an operator may retry a dead letter.
                if self.state != S::Charging || !(self.retry_pending || self.dead_lettered) {
                    return Ok(());
                }
                sink.write(
                    OrderEvent::ChargeRequested {
                        amount: self.total,
                        attempt: self.charge_attempts + 1,
                        at,
                    },
                    self,
                )
                .await;
            }
            OrderCommand::Cancel { reason, at } => {
                if self.state == S::Cancelled {
                    return Ok(());
                }
                self.require(&[S::Authorizing, S::Authorized, S::Opening])?;
                sink.write(OrderEvent::OrderCancelled { reason, at }, self).await;
            }
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
            OrderEvent::OrderMarkedAbnormal { anomalies, at } => {
                self.anomalies = anomalies;
                self.state = S::Abnormal;
                self.updated_at = at;
            }
        }
    }
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
