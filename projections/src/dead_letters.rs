//! The dead-letter list of charges [O8]: an order whose deduction still failed after the
//! retry schedule is listed (owner `open`) until it is retried, paid or settled by hand
//! (owner `closed`, kept for the record). Nothing is ever dropped.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::order::OrderEvent;
use tare_domain::{AnyEvent, UnixMs};

/// One dead-lettered charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeadCharge {
    /// The order.
    pub order_id: String,
    /// The amount that could not be collected.
    pub amount_cents: i64,
    /// Attempts made.
    pub attempts: u32,
    /// The provider's last reason.
    pub last_reason: String,
    /// When it was given up (Unix ms).
    pub since: UnixMs,
    /// Whether it is still waiting for an operator.
    pub open: bool,
    /// How it ended, once closed (`retried`, `paid`, `paid_outside`, `written_off`).
    pub closed_as: Option<String>,
}

/// Dead-lettered charges by order (owner `open` while waiting, `closed` after).
pub struct DeadLetters;

impl DeadLetters {
    /// The view's name.
    pub const VIEW: &'static str = "dead_letters";
}

impl Projection for DeadLetters {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Order(
                OrderEvent::ChargeRequested { .. }
                | OrderEvent::ChargeFailed { .. }
                | OrderEvent::OrderPaid { .. }
                | OrderEvent::ChargeSettledByHand { .. },
            ) => vec![aggregate_id.to_string()],
            _ => vec![],
        }
    }

    fn apply(
        &self,
        docs: &[(String, Option<Value>)],
        aggregate_id: &str,
        event: &AnyEvent,
        _position: i64,
        _time: UnixMs,
    ) -> Vec<DocWrite> {
        let AnyEvent::Order(e) = event else { return vec![] };
        let existing: Option<DeadCharge> = docs
            .first()
            .and_then(|(_, d)| d.clone())
            .and_then(|d| serde_json::from_value(d).ok());
        let d = match (e, existing) {
            (
                OrderEvent::ChargeFailed {
                    attempt,
                    reason,
                    retry_at: None,
                    at,
                },
                prior,
            ) => DeadCharge {
                order_id: aggregate_id.to_string(),
                amount_cents: prior.as_ref().map_or(0, |p| p.amount_cents),
                attempts: *attempt,
                last_reason: reason.clone(),
                since: *at,
                open: true,
                closed_as: None,
            },
            // Remember the amount of each attempt, quietly (no list entry until it fails
            // for good).
            (OrderEvent::ChargeRequested { amount, .. }, None) => {
                return vec![write(
                    aggregate_id,
                    &DeadCharge {
                        order_id: aggregate_id.to_string(),
                        amount_cents: amount.get(),
                        ..DeadCharge::default()
                    },
                    None,
                )]
            }
            (OrderEvent::ChargeRequested { .. }, Some(p)) if p.open => closed(p, "retried"),
            (OrderEvent::OrderPaid { .. }, Some(p)) if p.open => closed(p, "paid"),
            (OrderEvent::ChargeSettledByHand { resolution, .. }, Some(p)) => {
                let how = match resolution {
                    tare_domain::order::HandSettlement::PaidOutside { .. } => "paid_outside",
                    tare_domain::order::HandSettlement::WrittenOff => "written_off",
                };
                closed(p, how)
            }
            _ => return vec![],
        };
        let owner = if d.open { "open" } else { "closed" };
        vec![write(aggregate_id, &d, Some(owner))]
    }
}

fn closed(mut d: DeadCharge, how: &str) -> DeadCharge {
    d.open = false;
    d.closed_as = Some(how.to_string());
    d
}

fn write(id: &str, d: &DeadCharge, owner: Option<&str>) -> DocWrite {
    DocWrite {
        id: id.to_string(),
        owner: owner.map(str::to_string),
        doc: serde_json::to_value(d).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::Cents;

    fn fold(events: &[OrderEvent]) -> Option<(Option<String>, DeadCharge)> {
        let mut doc: Option<(Option<String>, Value)> = None;
        for e in events {
            let docs = vec![("o1".to_string(), doc.as_ref().map(|(_, d)| d.clone()))];
            for w in DeadLetters.apply(&docs, "o1", &AnyEvent::Order(e.clone()), 1, 1) {
                doc = Some((w.owner, w.doc));
            }
        }
        doc.map(|(owner, d)| (owner, serde_json::from_value(d).unwrap()))
    }

    fn requested(attempt: u32) -> OrderEvent {
        OrderEvent::ChargeRequested {
            amount: Cents::new(500),
            attempt,
            at: 1,
        }
    }

    fn failed(attempt: u32, retry_at: Option<UnixMs>) -> OrderEvent {
        OrderEvent::ChargeFailed {
            attempt,
            reason: "NOT_ENOUGH".into(),
            retry_at,
            at: 10,
        }
    }

    #[test]
    fn a_charge_is_listed_only_once_it_fails_for_good_and_closes_when_settled() {
        let (owner, d) = fold(&[requested(1), failed(1, Some(99))]).unwrap();
        assert_eq!(owner, None, "a failure with a retry ahead is not a dead letter");
        assert!(!d.open);
        let dead = [requested(1), failed(1, Some(99)), requested(2), failed(2, None)];
        let (owner, d) = fold(&dead).unwrap();
        assert_eq!(owner.as_deref(), Some("open"));
        assert_eq!((d.amount_cents, d.attempts, d.last_reason.as_str()), (500, 2, "NOT_ENOUGH"));
        let mut retried = dead.to_vec();
        retried.push(requested(3));
        let (owner, d) = fold(&retried).unwrap();
        assert_eq!((owner.as_deref(), d.closed_as.as_deref()), (Some("closed"), Some("retried")));
        let mut settled = dead.to_vec();
        settled.push(OrderEvent::ChargeSettledByHand {
            resolution: tare_domain::order::HandSettlement::WrittenOff,
            by: "admin".into(),
            note: "n".into(),
            at: 20,
        });
        let (owner, d) = fold(&settled).unwrap();
        assert_eq!((owner.as_deref(), d.closed_as.as_deref()), (Some("closed"), Some("written_off")));
    }
}
