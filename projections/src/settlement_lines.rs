//! The lines of the daily settlements [R3 (c)]: each paid order and each refund, with its
//! cabinet and provider, listed by the UTC hour it happened in and its cabinet (`owner`
//! = `{hour:09}/{cabinet}`), so a business day closing at any local hour is one range
//! read of 24 hours. Each order keeps a document (its cabinet, provider, gross, what it
//! refunded so far) that places its later events; it is listed once paid.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::order::{HandSettlement, OrderEvent};
use tare_domain::reconciliation::daily::SettlementLine;
use tare_domain::{AnyEvent, Cents, ProviderKind, UnixMs};

/// An order as the settlement keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct OrderDoc {
    cabinet: String,
    provider: Option<ProviderKind>,
    /// The goods at their prices.
    gross: Cents,
    /// What was to be charged.
    total: Cents,
    /// Refunded so far.
    refunded: Cents,
    /// The sale, once paid.
    line: Option<SettlementLine>,
}

/// A refund's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RefundDoc {
    line: SettlementLine,
}

/// The settlement lines view.
pub struct SettlementLines;

impl SettlementLines {
    /// The view's name.
    pub const VIEW: &'static str = "settlement_lines";

    /// The owner key of hour `hour` (hours since the epoch): every key of that hour sorts
    /// at or after it and before the next hour's.
    pub fn hour_key(hour: i64) -> String {
        format!("{hour:09}/")
    }

    fn owner(at: UnixMs, cabinet: &str) -> String {
        format!("{}{cabinet}", Self::hour_key(at.div_euclid(3_600_000)))
    }

    /// The line a listed document holds.
    pub fn line(doc: &Value) -> Option<SettlementLine> {
        serde_json::from_value(doc.get("line")?.clone()).ok()
    }
}

impl Projection for SettlementLines {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Order(
                OrderEvent::OrderCreated { .. }
                | OrderEvent::WeightsSettled { .. }
                | OrderEvent::OrderPaid { .. }
                | OrderEvent::ChargeSettledByHand {
                    resolution: HandSettlement::PaidOutside { .. },
                    ..
                },
            ) => vec![aggregate_id.to_string()],
            AnyEvent::Order(OrderEvent::OrderRefunded { at, .. }) => {
                vec![aggregate_id.to_string(), format!("{aggregate_id}/refund/{at}")]
            }
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
        let mut o: OrderDoc = docs
            .first()
            .and_then(|(_, d)| d.clone())
            .and_then(|d| serde_json::from_value(d).ok())
            .unwrap_or_default();
        let sale = |o: &OrderDoc, provider: Option<ProviderKind>, collected: Cents, at: UnixMs| SettlementLine::Sale {
            order_id: aggregate_id.to_string(),
            cabinet: o.cabinet.clone(),
            provider,
            gross: o.gross,
            collected,
            at,
        };
        let mut writes = Vec::new();
        match e {
            OrderEvent::OrderCreated { cabinet, provider, .. } => {
                o.cabinet = cabinet.to_string();
                o.provider = Some(*provider);
            }
            OrderEvent::WeightsSettled { subtotal, total, .. } => {
                o.gross = *subtotal;
                o.total = *total;
            }
            OrderEvent::OrderPaid { amount, at, .. } => o.line = Some(sale(&o, o.provider, *amount, *at)),
            OrderEvent::ChargeSettledByHand { at, .. } => o.line = Some(sale(&o, None, o.total, *at)),
            OrderEvent::OrderRefunded { refunded, at } => {
                let amount = Cents::new(refunded.get() - o.refunded.get());
                o.refunded = *refunded;
                let line = SettlementLine::Refund {
                    order_id: aggregate_id.to_string(),
                    cabinet: o.cabinet.clone(),
                    provider: o.provider,
                    amount,
                    at: *at,
                };
                writes.push(DocWrite {
                    id: format!("{aggregate_id}/refund/{at}"),
                    owner: Some(Self::owner(*at, &o.cabinet)),
                    doc: serde_json::to_value(RefundDoc { line }).unwrap_or(Value::Null),
                });
            }
            _ => return vec![],
        }
        let owner = match &o.line {
            Some(SettlementLine::Sale { at, .. }) => Some(Self::owner(*at, &o.cabinet)),
            _ => None,
        };
        writes.insert(
            0,
            DocWrite {
                id: aggregate_id.to_string(),
                owner,
                doc: serde_json::to_value(&o).unwrap_or(Value::Null),
            },
        );
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::weight::{StableReading, WeightSample};
    use tare_domain::{CabinetId, ConfirmMode, DoorNo};

    /// Folds `events` of order o1; returns every written document with its owner.
    fn fold(events: &[OrderEvent]) -> std::collections::BTreeMap<String, (Option<String>, Value)> {
        let p = SettlementLines;
        let mut docs = std::collections::BTreeMap::new();
        for e in events {
            let e = AnyEvent::Order(e.clone());
            let touched: Vec<(String, Option<Value>)> = p
                .touches("o1", &e)
                .into_iter()
                .map(|id| {
                    let d = docs.get(&id).map(|(_, d): &(Option<String>, Value)| d.clone());
                    (id, d)
                })
                .collect();
            for w in p.apply(&touched, "o1", &e, 1, 0) {
                docs.insert(w.id, (w.owner, w.doc));
            }
        }
        docs
    }

    fn created() -> OrderEvent {
        OrderEvent::OrderCreated {
            order_id: "o1".into(),
            shopper_id: "s1".into(),
            cabinet: CabinetId::new("c1", "SN-1").unwrap(),
            door: DoorNo::of(1),
            provider: ProviderKind::Wechat,
            confirm_mode: ConfirmMode::EachTime,
            lanes: vec![],
            planogram_version: 1,
            auth_deadline: 0,
            at: 0,
        }
    }

    fn settled(subtotal: i64, total: i64) -> OrderEvent {
        OrderEvent::WeightsSettled {
            after: StableReading::from_sample(WeightSample {
                msg_id: "w".into(),
                device_ts: 0,
                received_at: 0,
                stable: true,
                lanes: vec![],
            })
            .unwrap(),
            inference: vec![],
            lines: vec![],
            subtotal: Cents::new(subtotal),
            coupon: None,
            total: Cents::new(total),
            anomalies: vec![],
            at: 0,
        }
    }

    #[test]
    fn a_paid_order_and_its_refunds_are_listed_by_the_hour_they_happened() {
        let paid_at = 5 * 3_600_000 + 10;
        let refund_at = 30 * 3_600_000;
        let docs = fold(&[
            created(),
            settled(1000, 900),
            OrderEvent::OrderPaid {
                transaction_id: "t1".into(),
                amount: Cents::new(900),
                at: paid_at,
            },
            OrderEvent::OrderRefunded {
                refunded: Cents::new(300),
                at: refund_at,
            },
            OrderEvent::OrderRefunded {
                refunded: Cents::new(500),
                at: refund_at + 1,
            },
        ]);
        let (owner, doc) = &docs["o1"];
        assert_eq!(owner.as_deref(), Some("000000005/c1.SN-1"));
        assert_eq!(
            SettlementLines::line(doc),
            Some(SettlementLine::Sale {
                order_id: "o1".into(),
                cabinet: "c1.SN-1".into(),
                provider: Some(ProviderKind::Wechat),
                gross: Cents::new(1000),
                collected: Cents::new(900),
                at: paid_at,
            })
        );
        let refunds: Vec<(Option<String>, i64)> = docs
            .iter()
            .filter(|(id, _)| id.contains("/refund/"))
            .map(|(_, (owner, d))| match SettlementLines::line(d) {
                Some(SettlementLine::Refund { amount, .. }) => (owner.clone(), amount.get()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            refunds,
            [(Some("000000030/c1.SN-1".into()), 300), (Some("000000030/c1.SN-1".into()), 200)]
        );
    }

    #[test]
    fn an_unpaid_order_is_not_listed_and_one_paid_outside_carries_no_provider() {
        let docs = fold(&[created(), settled(400, 400)]);
        assert_eq!(docs["o1"].0, None);
        let docs = fold(&[
            created(),
            settled(400, 400),
            OrderEvent::ChargeSettledByHand {
                resolution: HandSettlement::PaidOutside { reference: "r1".into() },
                by: "op".into(),
                note: "cash".into(),
                at: 7,
            },
        ]);
        assert!(matches!(
            SettlementLines::line(&docs["o1"].1),
            Some(SettlementLine::Sale { provider: None, collected, .. }) if collected.get() == 400
        ));
    }
}
