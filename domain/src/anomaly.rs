//! The anomaly queue [M3, R4]: one aggregate per thing an operator or finance must look
//! at — an order that went to review, an item put back in the wrong lane, a line of a
//! provider's bill that disagrees with ours. Whatever found it (an order, a bill
//! reconciliation) raises it here once, by a stable id; an operator then closes it with
//! one action — a refund, a write-off or a plain resolution — recorded with who, when
//! and why. Closing is once: a second, different action is refused, the same one
//! repeated (a retried request) changes nothing.

use crate::{CabinetId, Cents, DomainError, DoorNo, LaneNo, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// What was found, and where: the facts an anomaly is opened with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyFacts {
    /// What kind of thing: an order anomaly's code (`no_stable_weight`,
    /// `low_confidence`, `door_never_opened`, `unexpected_close`, `no_weight_before`,
    /// `lane_heavier`), a bill finding (`bill_missing_at_provider`, `bill_missing_here`,
    /// `bill_amount_mismatch`, `bill_status_mismatch`) or a restock's
    /// (`restock_over_capacity`, `restock_uncertain_count`, `restock_not_counted`), or a
    /// lane's stock by weight against its ledger at the nightly run (`stock_drift`,
    /// `stock_wrong_lane`, `stock_equal_weight_swap`, `stock_unpaid_take`,
    /// `stock_data_error`).
    pub kind: String,
    /// The cabinet, when it happened at one.
    pub cabinet: Option<CabinetId>,
    /// The door.
    pub door: Option<DoorNo>,
    /// The lane.
    pub lane: Option<LaneNo>,
    /// The order concerned.
    pub order_id: Option<String>,
    /// The restock session concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restock_id: Option<String>,
    /// A readable sentence.
    pub detail: String,
    /// When it was found.
    pub detected_at: UnixMs,
}

/// How an operator closed an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AnomalyAction {
    /// Money given back to the shopper through the order's provider.
    Refund {
        /// The refund made on the order's payment.
        refund_id: String,
        /// How much.
        amount: Cents,
    },
    /// The loss is accepted (stock or money that will not be recovered).
    WriteOff {
        /// How much money, when the operator put a figure on it.
        amount: Option<Cents>,
    },
    /// Looked at; nothing to give back or write off.
    Resolve,
}

impl AnomalyAction {
    /// The action's name as the API spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Refund { .. } => "refund",
            Self::WriteOff { .. } => "write_off",
            Self::Resolve => "resolve",
        }
    }
}

/// Commands an anomaly accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnomalyCommand {
    /// Open it (again: nothing happens; the first facts stand).
    Raise {
        /// What and where.
        facts: AnomalyFacts,
    },
    /// Close it.
    Act {
        /// How.
        action: AnomalyAction,
        /// Who.
        by: String,
        /// Why, in their words.
        note: String,
        /// When.
        at: UnixMs,
    },
}

/// Facts about an anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnomalyEvent {
    /// Found, and waiting for someone.
    AnomalyOpened {
        /// What and where.
        facts: AnomalyFacts,
    },
    /// Closed by an operator.
    AnomalyClosed {
        /// How.
        action: AnomalyAction,
        /// Who.
        by: String,
        /// Why.
        note: String,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for AnomalyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AnomalyOpened { .. } => "AnomalyOpened",
            Self::AnomalyClosed { .. } => "AnomalyClosed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why an anomaly command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnomalyError {
    /// No anomaly by that id was raised.
    #[error("anomaly not found")]
    NotFound,
    /// It was closed already, another way.
    #[error("the anomaly was closed already ({0})")]
    AlreadyClosed(&'static str),
    /// A refund needs an order to refund.
    #[error("the anomaly concerns no order, so there is nothing to refund")]
    NoOrder,
}

impl DomainError for AnomalyError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound => RejectionKind::NotFound,
            Self::AlreadyClosed(_) | Self::NoOrder => RejectionKind::Conflict,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "anomaly_not_found",
            Self::AlreadyClosed(_) => "anomaly_closed",
            Self::NoOrder => "anomaly_without_order",
        }
    }
}

/// How an anomaly was closed, kept on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyClosing {
    /// How.
    pub action: AnomalyAction,
    /// Who.
    pub by: String,
    /// Why.
    pub note: String,
    /// When.
    pub at: UnixMs,
}

/// One anomaly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomalyCase {
    /// What was found (None: never raised).
    pub facts: Option<AnomalyFacts>,
    /// How it was closed (None: open).
    pub closing: Option<AnomalyClosing>,
}

impl AnomalyCase {
    /// What `command` makes happen.
    pub fn decide(&self, command: AnomalyCommand) -> Result<Vec<AnomalyEvent>, AnomalyError> {
        match command {
            AnomalyCommand::Raise { facts } => Ok(match self.facts {
                Some(_) => vec![],
                None => vec![AnomalyEvent::AnomalyOpened { facts }],
            }),
            AnomalyCommand::Act { action, by, note, at } => {
                let facts = self.facts.as_ref().ok_or(AnomalyError::NotFound)?;
                if let Some(c) = &self.closing {
                    return if c.action == action {
                        Ok(vec![]) // the same request again
                    } else {
                        Err(AnomalyError::AlreadyClosed(c.action.as_str()))
                    };
                }
                if matches!(action, AnomalyAction::Refund { .. }) && facts.order_id.is_none() {
                    return Err(AnomalyError::NoOrder);
                }
                Ok(vec![AnomalyEvent::AnomalyClosed { action, by, note, at }])
            }
        }
    }
}

impl Aggregate for AnomalyCase {
    const TYPE: &'static str = "anomaly";
    type Command = AnomalyCommand;
    type Event = AnomalyEvent;
    type Error = AnomalyError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AnomalyEvent::AnomalyOpened { facts } => self.facts = Some(facts),
            AnomalyEvent::AnomalyClosed { action, by, note, at } => {
                self.closing = Some(AnomalyClosing { action, by, note, at });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(order: Option<&str>) -> AnomalyFacts {
        AnomalyFacts {
            kind: "no_stable_weight".into(),
            cabinet: Some(CabinetId::parse("pk.c1").unwrap()),
            door: Some(DoorNo::of(1)),
            lane: None,
            order_id: order.map(str::to_string),
            restock_id: None,
            detail: "no stable weight after the close".into(),
            detected_at: 10,
        }
    }

    fn fold(case: &mut AnomalyCase, events: Vec<AnomalyEvent>) {
        for e in events {
            case.apply(e);
        }
    }

    fn act(action: AnomalyAction, by: &str) -> AnomalyCommand {
        AnomalyCommand::Act {
            action,
            by: by.into(),
            note: "checked the video".into(),
            at: 20,
        }
    }

    #[test]
    fn raised_once_then_closed_once_by_one_action() {
        let mut case = AnomalyCase::default();
        assert_eq!(case.decide(act(AnomalyAction::Resolve, "ann")), Err(AnomalyError::NotFound));
        let opened = case.decide(AnomalyCommand::Raise { facts: facts(Some("o1")) }).unwrap();
        assert_eq!(opened, vec![AnomalyEvent::AnomalyOpened { facts: facts(Some("o1")) }]);
        fold(&mut case, opened);
        let mut other = facts(Some("o1"));
        other.detail = "raised again by a re-run".into();
        assert_eq!(case.decide(AnomalyCommand::Raise { facts: other }), Ok(vec![]), "raised once");

        let refund = AnomalyAction::Refund {
            refund_id: "rf1".into(),
            amount: Cents::new(300),
        };
        let closed = case.decide(act(refund.clone(), "ann")).unwrap();
        assert_eq!(
            closed,
            vec![AnomalyEvent::AnomalyClosed {
                action: refund.clone(),
                by: "ann".into(),
                note: "checked the video".into(),
                at: 20
            }]
        );
        fold(&mut case, closed);
        assert_eq!(case.closing.as_ref().map(|c| c.by.as_str()), Some("ann"));
        assert_eq!(case.decide(act(refund, "bob")), Ok(vec![]), "the same refund again changes nothing");
        assert_eq!(
            case.decide(act(AnomalyAction::Resolve, "bob")),
            Err(AnomalyError::AlreadyClosed("refund"))
        );
        assert_eq!(
            case.decide(act(AnomalyAction::WriteOff { amount: None }, "bob"))
                .unwrap_err()
                .code(),
            "anomaly_closed"
        );
    }

    #[test]
    fn only_an_anomaly_about_an_order_can_be_refunded() {
        let mut case = AnomalyCase::default();
        let opened = case.decide(AnomalyCommand::Raise { facts: facts(None) }).unwrap();
        fold(&mut case, opened);
        let refund = AnomalyAction::Refund {
            refund_id: "rf1".into(),
            amount: Cents::new(1),
        };
        assert_eq!(case.decide(act(refund, "ann")), Err(AnomalyError::NoOrder));
        let write_off = AnomalyAction::WriteOff {
            amount: Some(Cents::new(250)),
        };
        assert_eq!(case.decide(act(write_off, "ann")).unwrap().len(), 1);
    }

    #[test]
    fn actions_serialize_as_the_api_names_them() {
        let v = serde_json::to_value(AnomalyAction::WriteOff { amount: None }).unwrap();
        assert_eq!(v["action"], "write_off");
        assert_eq!(AnomalyAction::Resolve.as_str(), "resolve");
    }
}
