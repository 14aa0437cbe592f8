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
}

impl DomainError for PaymentError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound => RejectionKind::NotFound,
            Self::WrongState(_) => RejectionKind::Conflict,
            Self::AmountMismatch { .. } => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "payment_not_found",
            Self::WrongState(_) => "payment_state",
            Self::AmountMismatch { .. } => "amount_mismatch",
        }
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
}

impl Payment {
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
        use PaymentState as S;
        if self.order_id.is_none() && !matches!(command, PaymentCommand::Open { .. }) {
            return Err(PaymentError::NotFound);
        }
        match command {
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
                    return Ok(()); // the create call was repeated: same order, same result
                }
                sink.write(
                    PaymentEvent::PaymentOpened {
                        order_id,
                        provider,
                        confirm_mode,
                        provider_order_ref,
                        confirm_url,
                        at,
                    },
                    self,
                )
                .await;
                if authorized {
                    sink.write(PaymentEvent::PaymentAuthorized { notification_id: None, at }, self)
                        .await;
                }
            }
            PaymentCommand::ConfirmAuthorization { notification_id, at } => match self.state {
                S::AwaitingConfirmation => sink.write(PaymentEvent::PaymentAuthorized { notification_id, at }, self).await,
                S::Cancelled => {
                    sink.write(PaymentEvent::LateAuthorizationReceived { notification_id, at }, self)
                        .await
                }
                _ => {} // duplicate
            },
            PaymentCommand::RequestCollection { amount, at } => {
                if self.state == S::Collected {
                    return Ok(());
                }
                if !matches!(self.state, S::Authorized | S::Collecting) {
                    return Err(PaymentError::WrongState(self.state));
                }
                sink.write(
                    PaymentEvent::CollectionRequested {
                        amount,
                        attempt: self.attempts + 1,
                        at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::RecordCollected {
                transaction_id,
                amount,
                notification_id,
                at,
            } => {
                if self.state == S::Collected {
                    return Ok(()); // duplicate callback or query result
                }
                if self.state != S::Collecting {
                    return Err(PaymentError::WrongState(self.state));
                }
                if amount != self.amount {
                    return Err(PaymentError::AmountMismatch {
                        want: self.amount.get(),
                        got: amount.get(),
                    });
                }
                sink.write(
                    PaymentEvent::PaymentCollected {
                        transaction_id,
                        amount,
                        notification_id,
                        at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::RecordCollectionFailed { reason, at } => {
                if self.state != S::Collecting {
                    return Ok(()); // a stale failure after success changes nothing
                }
                sink.write(
                    PaymentEvent::CollectionFailed {
                        attempt: self.attempts,
                        reason,
                        at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::Cancel { reason, at } => match self.state {
                S::Cancelled => {}
                S::Collecting | S::Collected => return Err(PaymentError::WrongState(self.state)),
                _ => sink.write(PaymentEvent::PaymentCancelled { reason, at }, self).await,
            },
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
            PaymentEvent::PaymentCancelled { .. } => self.state = S::Cancelled,
        }
    }
}

#[cfg(test)]
#[path = "payment_tests.rs"]
mod tests;
