//! The payment aggregate [P2, O3, O8, B5]: the provider-side life of one order's money,
//! keyed by the order id, which is also the idempotency key sent to the provider
//! (`out_order_no`) for create, confirm, complete, callbacks and queries.
//!
//! Callbacks and query results are applied here and are idempotent by state: a
//! duplicate, retried or out-of-order notification changes nothing the second time.

use crate::{Cents, ConfirmMode, DomainError, ProviderKind, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod refunds;

use refunds::RefundOutcomeFact;
pub use refunds::{PaymentRefund, RefundState};

/// The provider-side state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Not opened yet.
    #[default]
    New,
    /// Created at the provider; the shopper must confirm.
    AwaitingConfirmation,
    /// Pre-authorized.
    Authorized,
    /// Deduction requested.
    Collecting,
    /// Money collected.
    Collected,
    /// Cancelled at the provider (nothing collected).
    Cancelled,
}

/// Commands a payment accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentCommand {
    /// The provider order was created.
    Open {
        /// Order id (= payment id = provider idempotency key).
        order_id: String,
        /// Provider.
        provider: ProviderKind,
        /// Mode.
        confirm_mode: ConfirmMode,
        /// Provider's reference.
        provider_order_ref: String,
        /// Where the shopper confirms (confirm-each-time mode).
        confirm_url: Option<String>,
        /// Whether the provider authorized at once (confirm-once mode).
        authorized: bool,
        /// When.
        at: UnixMs,
    },
    /// The provider says the shopper authorized (callback or query).
    ConfirmAuthorization {
        /// Notification id, if from a callback.
        notification_id: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// A deduction was sent to the provider.
    RequestCollection {
        /// Amount.
        amount: Cents,
        /// When.
        at: UnixMs,
    },
    /// The provider collected (callback, reply or query).
    RecordCollected {
        /// Provider transaction id.
        transaction_id: String,
        /// Amount collected.
        amount: Cents,
        /// Notification id, if from a callback.
        notification_id: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// The provider reported a failed deduction.
    RecordCollectionFailed {
        /// Reason.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// The provider order was cancelled.
    Cancel {
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// An operator settled a charge that kept failing by hand: the provider order is
    /// closed and nothing more is collected through it [O8].
    Abandon {
        /// Why (who and how it was settled).
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// Give back part or all of what was collected [O9]. Refused beyond what is still
    /// refundable, counting refunds in progress, so concurrent requests can never give
    /// back more than was charged.
    RequestRefund {
        /// Our refund id: the provider's idempotency key (`out_refund_no` /
        /// `out_request_no`); the same id asked again with the same amount changes
        /// nothing.
        refund_id: String,
        /// How much.
        amount: Cents,
        /// Why (shown to the shopper by some providers).
        reason: String,
        /// Who asked (an operator, or an upheld anomaly).
        requested_by: String,
        /// A shopper's dispute of the charge (an operator's refund on a complaint),
        /// counted by the dispute-rate rule [B8]; an anomaly's refund is our error, not
        /// the shopper's dispute.
        #[serde(default)]
        dispute: bool,
        /// When.
        at: UnixMs,
    },
    /// The provider gave the money back (reply, notification or query).
    RecordRefundSucceeded {
        /// Our refund id.
        refund_id: String,
        /// The provider's refund id.
        provider_refund_id: String,
        /// Notification id, if from a callback.
        notification_id: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// The provider refused the refund for good (its amount is refundable again).
    RecordRefundFailed {
        /// Our refund id.
        refund_id: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

/// Facts about a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    /// Created at the provider.
    PaymentOpened {
        /// Order id.
        order_id: String,
        /// Provider.
        provider: ProviderKind,
        /// Mode.
        confirm_mode: ConfirmMode,
        /// Provider reference.
        provider_order_ref: String,
        /// Confirm URL.
        confirm_url: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// Pre-authorized.
    PaymentAuthorized {
        /// Notification id.
        notification_id: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// An authorization arrived after the payment was cancelled: the provider side
    /// must be cancelled again (nothing is charged).
    LateAuthorizationReceived {
        /// Notification id.
        notification_id: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// Deduction sent.
    CollectionRequested {
        /// Amount.
        amount: Cents,
        /// Attempt.
        attempt: u32,
        /// When.
        at: UnixMs,
    },
    /// Deduction failed.
    CollectionFailed {
        /// Attempt.
        attempt: u32,
        /// Reason.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// Money collected.
    PaymentCollected {
        /// Transaction.
        transaction_id: String,
        /// Amount.
        amount: Cents,
        /// Notification id.
        notification_id: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// Cancelled at the provider.
    PaymentCancelled {
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// Closed by hand while a deduction kept failing: nothing more is collected [O8].
    PaymentAbandoned {
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// A refund was asked for; its amount is reserved until it ends [O9].
    RefundRequested {
        /// Our refund id.
        refund_id: String,
        /// Amount.
        amount: Cents,
        /// Why.
        reason: String,
        /// Who asked.
        requested_by: String,
        /// A shopper's dispute of the charge, counted by the dispute-rate rule [B8].
        #[serde(default)]
        dispute: bool,
        /// When.
        at: UnixMs,
    },
    /// The money went back.
    RefundSucceeded {
        /// Our refund id.
        refund_id: String,
        /// The amount given back.
        amount: Cents,
        /// The provider's refund id.
        provider_refund_id: String,
        /// Notification id, if from a callback.
        notification_id: Option<String>,
        /// When.
        at: UnixMs,
    },
    /// The provider refused the refund for good.
    RefundFailed {
        /// Our refund id.
        refund_id: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentOpened { .. } => "PaymentOpened",
            Self::PaymentAuthorized { .. } => "PaymentAuthorized",
            Self::LateAuthorizationReceived { .. } => "LateAuthorizationReceived",
            Self::CollectionRequested { .. } => "CollectionRequested",
            Self::CollectionFailed { .. } => "CollectionFailed",
            Self::PaymentCollected { .. } => "PaymentCollected",
            Self::PaymentCancelled { .. } => "PaymentCancelled",
            Self::PaymentAbandoned { .. } => "PaymentAbandoned",
            Self::RefundRequested { .. } => "RefundRequested",
            Self::RefundSucceeded { .. } => "RefundSucceeded",
            Self::RefundFailed { .. } => "RefundFailed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// No such payment.
    #[error("payment not found")]
    NotFound,
    /// The command does not fit the state.
    #[error("payment is {0:?}")]
    WrongState(PaymentState),
    /// The provider reported another amount than was requested.
    #[error("collected {got} but requested {want}")]
    AmountMismatch {
        /// Requested.
        want: i64,
        /// Reported.
        got: i64,
    },
    /// A refund of more than is still refundable (collected, minus refunds made or in
    /// progress).
    #[error("only {refundable} of the charge is still refundable")]
    RefundExceedsCharge {
        /// What could still be refunded.
        refundable: Cents,
    },
    /// A refund of nothing.
    #[error("amount_cents: must be above 0")]
    ZeroRefund,
    /// The refund id is already used for another amount.
    #[error("refund {0} already exists with another amount")]
    RefundIdTaken(String),
    /// No such refund on this payment.
    #[error("refund {0} not found")]
    RefundNotFound(String),
}

impl DomainError for PaymentError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound => RejectionKind::NotFound,
            Self::WrongState(_) => RejectionKind::Conflict,
            Self::AmountMismatch { .. } | Self::ZeroRefund => RejectionKind::Invalid,
            Self::RefundExceedsCharge { .. } | Self::RefundIdTaken(_) => RejectionKind::Conflict,
            Self::RefundNotFound(_) => RejectionKind::NotFound,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "payment_not_found",
            Self::WrongState(_) => "payment_state",
            Self::AmountMismatch { .. } => "amount_mismatch",
            Self::RefundExceedsCharge { .. } => "refund_exceeds_charge",
            Self::ZeroRefund => "invalid_field",
            Self::RefundIdTaken(_) => "refund_id_taken",
            Self::RefundNotFound(_) => "refund_not_found",
        }
    }
    fn field(&self) -> Option<String> {
        matches!(self, Self::ZeroRefund).then(|| "amount_cents".to_string())
    }
}

/// A payment's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Order id, once opened.
    pub order_id: Option<String>,
    /// Provider.
    pub provider: Option<ProviderKind>,
    /// Provider reference.
    pub provider_order_ref: String,
    /// Confirm URL.
    pub confirm_url: Option<String>,
    /// State.
    pub state: PaymentState,
    /// Requested amount.
    pub amount: Cents,
    /// Collected amount.
    pub collected: Cents,
    /// Deduction attempts.
    pub attempts: u32,
    /// Transaction id.
    pub transaction_id: Option<String>,
    /// Refunds by our refund id [O9].
    #[serde(default)]
    pub refunds: BTreeMap<String, PaymentRefund>,
    /// What was given back so far.
    #[serde(default)]
    pub refunded: Cents,
}

impl Payment {
    /// What `command` makes happen, from the payment as it stands: the events, or why
    /// not. Pure: `handle` records them.
    pub fn decide(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        use PaymentState as S;
        if self.order_id.is_none() && !matches!(command, PaymentCommand::Open { .. }) {
            return Err(PaymentError::NotFound);
        }
        Ok(match command {
            PaymentCommand::Open {
                order_id,
                provider,
                confirm_mode,
                provider_order_ref,
                confirm_url,
                authorized,
                at,
            } => {
                if self.order_id.is_some() {
                    return Ok(vec![]); // the create call was repeated: same order, same result
                }
                let opened = PaymentEvent::PaymentOpened {
                    order_id,
                    provider,
                    confirm_mode,
                    provider_order_ref,
                    confirm_url,
                    at,
                };
                let mut events = vec![opened];
                if authorized {
                    events.push(PaymentEvent::PaymentAuthorized { notification_id: None, at });
                }
                events
            }
            PaymentCommand::ConfirmAuthorization { notification_id, at } => match self.state {
                S::AwaitingConfirmation => vec![PaymentEvent::PaymentAuthorized { notification_id, at }],
                S::Cancelled => vec![PaymentEvent::LateAuthorizationReceived { notification_id, at }],
                _ => vec![], // duplicate
            },
            PaymentCommand::RequestCollection { amount, at } => {
                if self.state == S::Collected {
                    return Ok(vec![]);
                }
                if !matches!(self.state, S::Authorized | S::Collecting) {
                    return Err(PaymentError::WrongState(self.state));
                }
                vec![PaymentEvent::CollectionRequested {
                    amount,
                    attempt: self.attempts + 1,
                    at,
                }]
            }
            PaymentCommand::RecordCollected {
                transaction_id,
                amount,
                notification_id,
                at,
            } => self.record_collected(transaction_id, amount, notification_id, at)?,
            PaymentCommand::RecordCollectionFailed { reason, at } => {
                if self.state != S::Collecting {
                    return Ok(vec![]); // a stale failure after success changes nothing
                }
                vec![PaymentEvent::CollectionFailed {
                    attempt: self.attempts,
                    reason,
                    at,
                }]
            }
            PaymentCommand::Cancel { reason, at } => match self.state {
                S::Cancelled => vec![],
                S::Collecting | S::Collected => return Err(PaymentError::WrongState(self.state)),
                _ => vec![PaymentEvent::PaymentCancelled { reason, at }],
            },
            PaymentCommand::Abandon { reason, at } => match self.state {
                S::Cancelled => vec![],
                S::Collected => return Err(PaymentError::WrongState(self.state)),
                _ => vec![PaymentEvent::PaymentAbandoned { reason, at }],
            },
            PaymentCommand::RequestRefund {
                refund_id,
                amount,
                reason,
                requested_by,
                dispute,
                at,
            } => self.request_refund(refund_id, amount, reason, (requested_by, dispute), at)?,
            PaymentCommand::RecordRefundSucceeded {
                refund_id,
                provider_refund_id,
                notification_id,
                at,
            } => {
                let fact = RefundOutcomeFact::Succeeded {
                    provider_refund_id,
                    notification_id,
                    at,
                };
                self.refund_outcome(&refund_id, fact)?
            }
            PaymentCommand::RecordRefundFailed { refund_id, reason, at } => {
                self.refund_outcome(&refund_id, RefundOutcomeFact::Failed { reason, at })?
            }
        })
    }

    /// The provider says it collected: once, and only the amount asked for.
    fn record_collected(
        &self,
        transaction_id: String,
        amount: Cents,
        notification_id: Option<String>,
        at: UnixMs,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        if self.state == PaymentState::Collected {
            return Ok(vec![]); // duplicate callback or query result
        }
        if self.state != PaymentState::Collecting {
            return Err(PaymentError::WrongState(self.state));
        }
        if amount != self.amount {
            return Err(PaymentError::AmountMismatch {
                want: self.amount.get(),
                got: amount.get(),
            });
        }
        Ok(vec![PaymentEvent::PaymentCollected {
            transaction_id,
            amount,
            notification_id,
            at,
        }])
    }

    /// Whether attempt `attempt` of the deduction was already asked of the provider (so
    /// running it again must ask the provider what happened, not collect again) [O8].
    pub fn has_requested_collection(&self, attempt: u32) -> bool {
        self.state == PaymentState::Collecting && self.attempts >= attempt
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use PaymentState as S;
        match event {
            PaymentEvent::PaymentOpened {
                order_id,
                provider,
                provider_order_ref,
                confirm_url,
                ..
            } => {
                self.order_id = Some(order_id);
                self.provider = Some(provider);
                self.provider_order_ref = provider_order_ref;
                self.confirm_url = confirm_url;
                self.state = S::AwaitingConfirmation;
            }
            PaymentEvent::PaymentAuthorized { .. } => self.state = S::Authorized,
            PaymentEvent::LateAuthorizationReceived { .. } => {}
            PaymentEvent::CollectionRequested { amount, attempt, .. } => {
                self.amount = amount;
                self.attempts = attempt;
                self.state = S::Collecting;
            }
            PaymentEvent::CollectionFailed { .. } => {}
            PaymentEvent::PaymentCollected {
                transaction_id, amount, ..
            } => {
                self.transaction_id = Some(transaction_id);
                self.collected = amount;
                self.state = S::Collected;
            }
            PaymentEvent::PaymentCancelled { .. } | PaymentEvent::PaymentAbandoned { .. } => self.state = S::Cancelled,
            PaymentEvent::RefundRequested {
                refund_id,
                amount,
                reason,
                requested_by,
                at,
                ..
            } => {
                let refund = PaymentRefund {
                    amount,
                    state: RefundState::Pending,
                    reason,
                    requested_by,
                    requested_at: at,
                    provider_refund_id: None,
                    failure: None,
                };
                self.refunds.insert(refund_id, refund);
            }
            PaymentEvent::RefundSucceeded {
                refund_id,
                amount,
                provider_refund_id,
                ..
            } => {
                if let Some(r) = self.refunds.get_mut(&refund_id) {
                    r.state = RefundState::Succeeded;
                    r.provider_refund_id = Some(provider_refund_id);
                    r.failure = None;
                }
                self.refunded = self.refunded + amount;
            }
            PaymentEvent::RefundFailed { refund_id, reason, .. } => {
                if let Some(r) = self.refunds.get_mut(&refund_id) {
                    r.state = RefundState::Failed;
                    r.failure = Some(reason);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
