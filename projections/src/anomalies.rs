//! The anomaly queue as operators list it [M3, R4]: one document per anomaly, listed by
//! state and cabinet (owner `open:{cabinet}` / `closed:{cabinet}`, `-` for none), each
//! with how it was closed — the action, who, when and why — once it is.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::anomaly::{AnomalyAction, AnomalyCase, AnomalyEvent, AnomalyFacts};
use tare_domain::{AnyEvent, UnixMs};

/// How an anomaly was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyClosingDoc {
    /// `refund`, `write_off` or `resolve`.
    pub action: String,
    /// The money given back or written off, in cents, when there was a figure.
    pub amount_cents: Option<i64>,
    /// The refund made, for a refund.
    pub refund_id: Option<String>,
    /// Who.
    pub by: String,
    /// Why.
    pub note: String,
    /// When (Unix ms).
    pub at: UnixMs,
}

/// One anomaly in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyDoc {
    /// Its id.
    pub anomaly_id: String,
    /// What kind of thing was found.
    pub kind: String,
    /// The cabinet (`pk.dn`).
    pub cabinet: Option<String>,
    /// The door.
    pub door: Option<u8>,
    /// The lane.
    pub lane: Option<u8>,
    /// The order concerned.
    pub order_id: Option<String>,
    /// The restock session concerned.
    #[serde(default)]
    pub restock_id: Option<String>,
    /// When it was found (Unix ms).
    pub detected_at: UnixMs,
    /// `open` or `closed`.
    pub state: String,
    /// A readable sentence.
    pub detail: String,
    /// How it was closed.
    pub closing: Option<AnomalyClosingDoc>,
}

impl AnomalyDoc {
    /// The listing key: state, then cabinet.
    pub fn owner(&self) -> String {
        format!("{}:{}", self.state, self.cabinet.as_deref().unwrap_or("-"))
    }

    /// A newly opened anomaly.
    pub fn opened(anomaly_id: &str, facts: &AnomalyFacts) -> Self {
        Self {
            anomaly_id: anomaly_id.to_string(),
            kind: facts.kind.clone(),
            cabinet: facts.cabinet.as_ref().map(ToString::to_string),
            door: facts.door.map(|d| d.get()),
            lane: facts.lane.map(|l| l.get()),
            order_id: facts.order_id.clone(),
            restock_id: facts.restock_id.clone(),
            detected_at: facts.detected_at,
            state: "open".into(),
            detail: facts.detail.clone(),
            closing: None,
        }
    }

    /// Closes it: how, by whom, why, when.
    pub fn close(&mut self, action: &AnomalyAction, by: &str, note: &str, at: UnixMs) {
        let (amount_cents, refund_id) = match action {
            AnomalyAction::Refund { refund_id, amount } => (Some(amount.get()), Some(refund_id.clone())),
            AnomalyAction::WriteOff { amount } => (amount.map(|a| a.get()), None),
            AnomalyAction::Resolve => (None, None),
        };
        self.state = "closed".into();
        self.closing = Some(AnomalyClosingDoc {
            action: action.as_str().to_string(),
            amount_cents,
            refund_id,
            by: by.to_string(),
            note: note.to_string(),
            at,
        });
    }

    /// The document of anomaly `anomaly_id` as its aggregate stands now (what the view
    /// will hold once it has caught up); `None` if it was never raised.
    pub fn of_case(anomaly_id: &str, case: &AnomalyCase) -> Option<Self> {
        let mut doc = Self::opened(anomaly_id, case.facts.as_ref()?);
        if let Some(c) = &case.closing {
            doc.close(&c.action, &c.by, &c.note, c.at);
        }
        Some(doc)
    }
}

/// The anomaly queue.
pub struct Anomalies;

impl Anomalies {
    /// The view's name.
    pub const VIEW: &'static str = "anomalies";
}

impl Projection for Anomalies {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Anomaly(_) => vec![aggregate_id.to_string()],
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
        let AnyEvent::Anomaly(e) = event else { return vec![] };
        let existing: Option<AnomalyDoc> = docs
            .first()
            .and_then(|(_, d)| d.clone())
            .and_then(|d| serde_json::from_value(d).ok());
        let doc = match (e, existing) {
            (AnomalyEvent::AnomalyOpened { facts }, None) => AnomalyDoc::opened(aggregate_id, facts),
            (AnomalyEvent::AnomalyClosed { action, by, note, at }, Some(mut d)) => {
                d.close(action, by, note, *at);
                d
            }
            _ => return vec![],
        };
        vec![DocWrite {
            id: aggregate_id.to_string(),
            owner: Some(doc.owner()),
            doc: serde_json::to_value(&doc).unwrap_or(Value::Null),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::{CabinetId, Cents, DoorNo, LaneNo};

    fn fold(events: &[AnomalyEvent]) -> (Option<String>, AnomalyDoc) {
        let mut doc: Option<(Option<String>, Value)> = None;
        for e in events {
            let docs = vec![("a1".to_string(), doc.as_ref().map(|(_, d)| d.clone()))];
            for w in Anomalies.apply(&docs, "a1", &AnyEvent::Anomaly(e.clone()), 1, 1) {
                doc = Some((w.owner, w.doc));
            }
        }
        let (owner, d) = doc.unwrap();
        (owner, serde_json::from_value(d).unwrap())
    }

    #[test]
    fn an_anomaly_is_listed_open_by_cabinet_then_closed_with_who_and_why() {
        let opened = AnomalyEvent::AnomalyOpened {
            facts: AnomalyFacts {
                kind: "lane_heavier".into(),
                cabinet: Some(CabinetId::parse("pk.c1").unwrap()),
                door: Some(DoorNo::of(2)),
                lane: Some(LaneNo::of(3)),
                order_id: Some("o1".into()),
                restock_id: None,
                detail: "put back".into(),
                detected_at: 5,
            },
        };
        let (owner, d) = fold(std::slice::from_ref(&opened));
        assert_eq!(owner.as_deref(), Some("open:pk.c1"));
        assert_eq!((d.state.as_str(), d.door, d.lane, d.closing), ("open", Some(2), Some(3), None));
        let closed = AnomalyEvent::AnomalyClosed {
            action: AnomalyAction::Refund {
                refund_id: "rf1".into(),
                amount: Cents::new(250),
            },
            by: "ann".into(),
            note: "shopper called".into(),
            at: 9,
        };
        let (owner, d) = fold(&[opened, closed]);
        assert_eq!(owner.as_deref(), Some("closed:pk.c1"));
        let c = d.closing.unwrap();
        assert_eq!(
            (c.action.as_str(), c.amount_cents, c.refund_id.as_deref(), c.by.as_str(), c.at),
            ("refund", Some(250), Some("rf1"), "ann", 9)
        );
    }
}
