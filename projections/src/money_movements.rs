//! Our side of the money, as the providers' bills list it [R3 (b)]: one document per
//! provider charge and per refund, listed by provider day (`owner` =
//! `{provider}:{YYYY-MM-DD}`, the provider's local date of the movement). Refunds keep
//! the day they were asked for (bills date refunds by acceptance) and follow their state.
//! A payment's provider and transaction are kept in a per-payment document (no owner)
//! so its later events can be placed.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::payment::PaymentEvent;
use tare_domain::reconciliation::dates::china_date;
use tare_domain::reconciliation::{BillItem, MoneyKind, MovementState};
use tare_domain::{AnyEvent, Cents, ProviderKind, UnixMs};

/// The money-movements view.
pub struct MoneyMovements;

/// One movement of money through a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyMovement {
    /// The provider.
    pub provider: ProviderKind,
    /// The provider's local date it belongs to.
    pub date: String,
    /// Our order id.
    pub order_id: String,
    /// The provider's transaction.
    pub transaction_id: String,
    /// Charge or refund.
    pub kind: MoneyKind,
    /// Our refund id (refunds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Amount.
    pub amount_cents: Cents,
    /// Where it stands.
    pub state: MovementState,
    /// When it happened (refunds: when asked for).
    pub at: UnixMs,
}

impl MoneyMovement {
    /// The movement as the comparison reads it.
    pub fn item(&self) -> BillItem {
        BillItem {
            order_id: self.order_id.clone(),
            transaction_id: self.transaction_id.clone(),
            kind: self.kind,
            refund_id: self.refund_id.clone(),
            amount_cents: self.amount_cents,
            state: self.state,
            at: self.at,
        }
    }

    fn write(&self, id: String) -> DocWrite {
        DocWrite {
            id,
            owner: Some(MoneyMovements::owner(self.provider, &self.date)),
            doc: serde_json::to_value(self).unwrap_or(Value::Null),
        }
    }
}

/// What the view keeps of a payment to place its movements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PaymentDoc {
    provider: Option<ProviderKind>,
    transaction_id: String,
}

impl MoneyMovements {
    /// The view's name.
    pub const VIEW: &'static str = "money_movements";

    /// The owner key listing one provider day's movements.
    pub fn owner(provider: ProviderKind, date: &str) -> String {
        format!("{}:{date}", provider.as_str())
    }

    fn payment_doc(order_id: &str) -> String {
        format!("payment:{order_id}")
    }
}

fn parse<T: serde::de::DeserializeOwned>(docs: &[(String, Option<Value>)], i: usize) -> Option<T> {
    docs.get(i)
        .and_then(|(_, d)| d.clone())
        .and_then(|d| serde_json::from_value(d).ok())
}

impl Projection for MoneyMovements {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        let AnyEvent::Payment(e) = event else { return vec![] };
        let pay = Self::payment_doc(aggregate_id);
        match e {
            PaymentEvent::PaymentOpened { .. } => vec![pay],
            PaymentEvent::PaymentCollected { .. } => vec![pay, format!("charge:{aggregate_id}")],
            PaymentEvent::RefundRequested { refund_id, .. }
            | PaymentEvent::RefundSucceeded { refund_id, .. }
            | PaymentEvent::RefundFailed { refund_id, .. } => vec![pay, format!("refund:{refund_id}")],
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
        let AnyEvent::Payment(e) = event else { return vec![] };
        let mut pay: PaymentDoc = parse(docs, 0).unwrap_or_default();
        let pay_write = |p: &PaymentDoc| DocWrite {
            id: Self::payment_doc(aggregate_id),
            owner: None,
            doc: serde_json::to_value(p).unwrap_or(Value::Null),
        };
        match e {
            PaymentEvent::PaymentOpened { provider, .. } => {
                pay.provider = Some(*provider);
                vec![pay_write(&pay)]
            }
            PaymentEvent::PaymentCollected {
                transaction_id,
                amount,
                at,
                ..
            } => {
                let Some(provider) = pay.provider else { return vec![] };
                pay.transaction_id = transaction_id.clone();
                let m = MoneyMovement {
                    provider,
                    date: china_date(*at),
                    order_id: aggregate_id.to_string(),
                    transaction_id: transaction_id.clone(),
                    kind: MoneyKind::Charge,
                    refund_id: None,
                    amount_cents: *amount,
                    state: MovementState::Succeeded,
                    at: *at,
                };
                vec![pay_write(&pay), m.write(format!("charge:{aggregate_id}"))]
            }
            PaymentEvent::RefundRequested { refund_id, amount, at, .. } => {
                let Some(provider) = pay.provider else { return vec![] };
                let m = MoneyMovement {
                    provider,
                    date: china_date(*at),
                    order_id: aggregate_id.to_string(),
                    transaction_id: pay.transaction_id.clone(),
                    kind: MoneyKind::Refund,
                    refund_id: Some(refund_id.clone()),
                    amount_cents: *amount,
                    state: MovementState::Pending,
                    at: *at,
                };
                vec![m.write(format!("refund:{refund_id}"))]
            }
            PaymentEvent::RefundSucceeded { refund_id, .. } | PaymentEvent::RefundFailed { refund_id, .. } => {
                let Some(mut m) = parse::<MoneyMovement>(docs, 1) else {
                    return vec![];
                };
                m.state = if matches!(e, PaymentEvent::RefundSucceeded { .. }) {
                    MovementState::Succeeded
                } else {
                    MovementState::Failed
                };
                vec![m.write(format!("refund:{refund_id}"))]
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tare_domain::ConfirmMode;

    /// Folds `events` of payment `id` the way the runner does; the documents by id with
    /// their owners.
    fn fold(id: &str, events: Vec<PaymentEvent>) -> BTreeMap<String, (Option<String>, Value)> {
        let mut store: BTreeMap<String, (Option<String>, Value)> = BTreeMap::new();
        for e in events {
            let e = AnyEvent::Payment(e);
            let docs: Vec<_> = MoneyMovements
                .touches(id, &e)
                .into_iter()
                .map(|d| {
                    let v = store.get(&d).map(|(_, v)| v.clone());
                    (d, v)
                })
                .collect();
            for w in MoneyMovements.apply(&docs, id, &e, 0, 0) {
                store.insert(w.id, (w.owner, w.doc));
            }
        }
        store
    }

    const T: UnixMs = 1_796_142_600_000; // 2026-12-02 00:30 in Beijing

    fn opened(provider: ProviderKind) -> PaymentEvent {
        PaymentEvent::PaymentOpened {
            order_id: "o1".into(),
            provider,
            confirm_mode: ConfirmMode::Once,
            provider_order_ref: "ref".into(),
            confirm_url: None,
            at: T - 7_200_000,
        }
    }

    fn collected(at: UnixMs) -> PaymentEvent {
        PaymentEvent::PaymentCollected {
            transaction_id: "t1".into(),
            amount: Cents::new(500),
            notification_id: None,
            at,
        }
    }

    fn movement(store: &BTreeMap<String, (Option<String>, Value)>, id: &str) -> (Option<String>, MoneyMovement) {
        let (owner, v) = store.get(id).unwrap_or_else(|| panic!("no {id}"));
        (owner.clone(), serde_json::from_value(v.clone()).unwrap())
    }

    #[test]
    fn a_charge_is_listed_on_the_providers_local_day() {
        let s = fold("o1", vec![opened(ProviderKind::Wechat), collected(T)]);
        let (owner, m) = movement(&s, "charge:o1");
        assert_eq!(owner.as_deref(), Some("wechat:2026-12-02"));
        assert_eq!(
            m,
            MoneyMovement {
                provider: ProviderKind::Wechat,
                date: "2026-12-02".into(),
                order_id: "o1".into(),
                transaction_id: "t1".into(),
                kind: MoneyKind::Charge,
                refund_id: None,
                amount_cents: Cents::new(500),
                state: MovementState::Succeeded,
                at: T,
            }
        );
        // An hour earlier it was still the 1st in Beijing.
        let s = fold("o1", vec![opened(ProviderKind::Alipay), collected(T - 3_600_000)]);
        assert_eq!(movement(&s, "charge:o1").0.as_deref(), Some("alipay:2026-12-01"));
        // The payment's own document is not listed under any day.
        assert_eq!(s["payment:o1"].0, None);
    }

    #[test]
    fn nothing_is_listed_before_money_moves() {
        let s = fold(
            "o1",
            vec![
                opened(ProviderKind::Wechat),
                PaymentEvent::PaymentAuthorized {
                    notification_id: None,
                    at: T,
                },
                PaymentEvent::CollectionRequested {
                    amount: Cents::new(500),
                    attempt: 1,
                    at: T,
                },
                PaymentEvent::CollectionFailed {
                    attempt: 1,
                    reason: "funds".into(),
                    at: T,
                },
            ],
        );
        assert!(s.values().all(|(owner, _)| owner.is_none()), "{s:?}");
    }

    #[test]
    fn refunds_keep_their_day_and_follow_their_state() {
        let requested = |id: &str, at| PaymentEvent::RefundRequested {
            refund_id: id.into(),
            amount: Cents::new(100),
            reason: "damaged".into(),
            requested_by: "op".into(),
            dispute: false,
            at,
        };
        let day2 = T + 86_400_000;
        let base = vec![
            opened(ProviderKind::Wechat),
            collected(T),
            requested("r1", day2),
            requested("r2", day2),
        ];
        let s = fold("o1", base.clone());
        let (owner, m) = movement(&s, "refund:r1");
        assert_eq!(owner.as_deref(), Some("wechat:2026-12-03"));
        assert_eq!(
            (m.kind, m.refund_id.as_deref(), m.transaction_id.as_str(), m.state, m.amount_cents),
            (MoneyKind::Refund, Some("r1"), "t1", MovementState::Pending, Cents::new(100))
        );
        let mut events = base;
        events.push(PaymentEvent::RefundSucceeded {
            refund_id: "r1".into(),
            amount: Cents::new(100),
            provider_refund_id: "pr1".into(),
            notification_id: None,
            at: day2 + 86_400_000,
        });
        events.push(PaymentEvent::RefundFailed {
            refund_id: "r2".into(),
            reason: "closed".into(),
            at: day2,
        });
        let s = fold("o1", events);
        let (owner, m) = movement(&s, "refund:r1");
        assert_eq!((owner.as_deref(), m.state), (Some("wechat:2026-12-03"), MovementState::Succeeded));
        assert_eq!(movement(&s, "refund:r2").1.state, MovementState::Failed);
        assert_eq!(m.item().refund_id.as_deref(), Some("r1"));
    }
}
