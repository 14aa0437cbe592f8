//! Filling the anomaly queue [M3, R4]: whatever finds something an operator must look at
//! — an order sent to review, an item put back in the wrong lane, a bill line that
//! disagrees with ours — has it raised once in the queue, under an id derived from what
//! found it, so a redelivered event or a re-run raises nothing new.

use crate::effect::{Effect, EffectError, EffectOutcome, Scheduled};
use crate::ports::{CommandMeta, EffectPorts};
use tare_domain::anomaly::{AnomalyCommand, AnomalyFacts};
use tare_domain::cabinet::CabinetEvent;
use tare_domain::order::{Anomaly, OrderEvent};
use tare_domain::reconciliation::ReconciliationEvent;
use tare_domain::restock::RestockEvent;
use tare_domain::{AnyEvent, CabinetId, LaneNo, UnixMs};

/// The anomalies one event of aggregate `aggregate_id` raises (and the timer that
/// watches a purchase's open door).
pub fn decide(aggregate_id: &str, event: &AnyEvent, cfg: &crate::SagaConfig) -> Vec<Scheduled> {
    if let AnyEvent::Order(OrderEvent::OrderDoorOpened { at, .. }) = event {
        return vec![Scheduled::at(
            format!("order:{aggregate_id}:door-left-open"),
            at + cfg.door_open_limit_ms,
            Effect::CheckDoorLeftOpen {
                order_id: aggregate_id.to_string(),
            },
        )];
    }
    let raised: Vec<(String, AnomalyFacts)> = match event {
        AnyEvent::Order(OrderEvent::OrderMarkedAbnormal { anomalies, at }) => {
            let Some(first) = anomalies.iter().find(|a| a.blocks_charge()).or(anomalies.first()) else {
                return vec![];
            };
            let codes: Vec<&str> = anomalies.iter().map(Anomaly::code).collect();
            let facts = AnomalyFacts {
                kind: first.code().to_string(),
                cabinet: None,
                door: None,
                lane: first.lane(),
                order_id: Some(aggregate_id.to_string()),
                restock_id: None,
                detail: format!("order sent to review, nothing charged: {}", codes.join(", ")),
                detected_at: *at,
            };
            vec![(format!("order:{aggregate_id}"), facts)]
        }
        AnyEvent::Order(OrderEvent::WeightsSettled { anomalies, at, .. }) => anomalies
            .iter()
            .filter_map(|a| match a {
                Anomaly::LaneHeavier { lane, items } => Some((
                    format!("order:{aggregate_id}:lane_heavier:{}", lane.get()),
                    AnomalyFacts {
                        kind: a.code().to_string(),
                        cabinet: None,
                        door: None,
                        lane: Some(*lane),
                        order_id: Some(aggregate_id.to_string()),
                        restock_id: None,
                        detail: format!(
                            "lane {} got heavier by about {items} item(s): something was put back in the wrong lane",
                            lane.get()
                        ),
                        detected_at: *at,
                    },
                )),
                _ => None,
            })
            .collect(),
        AnyEvent::Reconciliation(ReconciliationEvent::AnomalyRaised {
            anomaly_id,
            kind,
            order_id,
            detail,
            at,
            ..
        }) => vec![(
            anomaly_id.clone(),
            AnomalyFacts {
                kind: kind.as_str().to_string(),
                cabinet: None,
                door: None,
                lane: None,
                order_id: Some(order_id.clone()),
                restock_id: None,
                detail: detail.clone(),
                detected_at: *at,
            },
        )],
        AnyEvent::Reconciliation(ReconciliationEvent::StockAnomalyRaised { anomaly_id, finding, at }) => vec![(
            anomaly_id.clone(),
            AnomalyFacts {
                kind: finding.kind(),
                cabinet: Some(finding.cabinet.clone()),
                door: Some(finding.door),
                lane: Some(finding.lane),
                order_id: finding.order_id(),
                restock_id: finding
                    .last_session
                    .as_deref()
                    .and_then(|s| s.strip_prefix("restock:"))
                    .map(str::to_string),
                detail: finding.detail(),
                detected_at: *at,
            },
        )],
        AnyEvent::Restock(e) => restock_anomalies(aggregate_id, e),
        AnyEvent::Cabinet(e) => cabinet_anomalies(aggregate_id, e),
        _ => vec![],
    };
    raised
        .into_iter()
        .map(|(anomaly_id, facts)| {
            let due = facts.detected_at;
            Scheduled::at(
                format!("anomaly:{anomaly_id}:raise"),
                due,
                Effect::RaiseAnomaly { anomaly_id, facts },
            )
        })
        .collect()
}

/// A cabinet's findings: a calibration beyond its limit, a lane drifted too far, a
/// temperature lockout [M1, B4, B8].
fn cabinet_anomalies(aggregate_id: &str, e: &CabinetEvent) -> Vec<(String, AnomalyFacts)> {
    match e {
    CabinetEvent::LaneCalibrated {
        door,
        lane,
        standard_grams,
        measured_grams,
        within_limit: false,
        cmd_id,
        at,
        ..
    } => vec![(
        format!("calibration:{cmd_id}"),
        AnomalyFacts {
            kind: "calibration_out_of_limit".into(),
            cabinet: CabinetId::parse(aggregate_id).ok(),
            door: Some(*door),
            lane: Some(*lane),
            order_id: None,
            restock_id: None,
            detail: format!(
                "lane {} measured {:.1} g under a {:.1} g standard: beyond its tolerance; the door stays blocked until it calibrates within it",
                lane.get(),
                measured_grams.get(),
                standard_grams.get()
            ),
            detected_at: *at,
        },
    )],
    CabinetEvent::LaneDriftBlocked {
        door,
        lane,
        zero_grams,
        limit_grams,
        at,
        ..
    } => vec![(
        format!("drift:{aggregate_id}:{}:{}:{at}", door.get(), lane.get()),
        AnomalyFacts {
            kind: "lane_drift_blocked".into(),
            cabinet: CabinetId::parse(aggregate_id).ok(),
            door: Some(*door),
            lane: Some(*lane),
            order_id: None,
            restock_id: None,
            detail: format!(
                "lane {} reads {:.1} g with nothing on it, beyond its drift limit of {:.1} g: the door is blocked from sale until the lane is emptied, tared and calibrated",
                lane.get(),
                zero_grams.get(),
                limit_grams.get()
            ),
            detected_at: *at,
        },
    )],
    CabinetEvent::TemperatureLockedOut { temp_c, max_c, at } => vec![(
        format!("temperature:{aggregate_id}:{at}"),
        AnomalyFacts {
            kind: "temperature_lockout".into(),
            cabinet: CabinetId::parse(aggregate_id).ok(),
            door: None,
            lane: None,
            order_id: None,
            restock_id: None,
            detail: format!(
                "the cabinet reported {temp_c:.1} °C, above its limit of {max_c:.1} °C: shoppers are locked out until an operator checks the goods and resets it"
            ),
            detected_at: *at,
        },
    )],
        _ => vec![],
    }
}

/// A restock's findings: lanes the weights say were filled beyond capacity (not booked),
/// counts outside the tolerance, and a session that could not be counted at all.
fn restock_anomalies(restock_id: &str, e: &RestockEvent) -> Vec<(String, AnomalyFacts)> {
    let facts = |kind: &str, lane: Option<LaneNo>, detail: String, at: UnixMs| AnomalyFacts {
        kind: kind.to_string(),
        cabinet: None,
        door: None,
        lane,
        order_id: None,
        restock_id: Some(restock_id.to_string()),
        detail,
        detected_at: at,
    };
    match e {
        RestockEvent::RestockCounted { lines, at, .. } => {
            let mut out = Vec::new();
            for l in lines {
                let n = l.lane.get();
                if l.excess > 0 {
                    let detail = format!(
                        "lane {n} ({}) was filled with {} but had room for {}: {} beyond capacity, not booked",
                        l.sku, l.counted, l.added, l.excess
                    );
                    out.push((
                        format!("restock:{restock_id}:over_capacity:{n}"),
                        facts("restock_over_capacity", Some(l.lane), detail, *at),
                    ));
                }
                if !l.within_tolerance {
                    let detail = format!(
                        "lane {n} ({}) counted {} with confidence {:.2}: outside tolerance",
                        l.sku, l.counted, l.confidence
                    );
                    out.push((
                        format!("restock:{restock_id}:uncertain:{n}"),
                        facts("restock_uncertain_count", Some(l.lane), detail, *at),
                    ));
                }
            }
            out
        }
        RestockEvent::RestockFailed { reason, at } if reason == "no_stable_weight" || reason == "no_weight_before" => {
            let detail = format!("the restock could not be counted ({reason}): nothing was booked");
            vec![(format!("restock:{restock_id}"), facts("restock_not_counted", None, detail, *at))]
        }
        _ => vec![],
    }
}

/// Timer: if the purchase's door is still open, its session ends safely [B8]: the order
/// is flagged so that, when the door finally closes, what the weights show is counted
/// and booked but not charged to the shopper without an operator (anyone could have
/// reached in); and `door_left_open` is raised for an operator now.
pub async fn door_left_open(ports: &EffectPorts, order_id: &str, key: &str) -> Result<EffectOutcome, EffectError> {
    let order = ports.orders.load(order_id).await?;
    if order.state != tare_domain::order::OrderState::Open {
        return Ok(EffectOutcome::Done);
    }
    let now = ports.clock.now_ms();
    let meta = CommandMeta::new(now, order_id, format!("job:{key}"));
    ports
        .orders
        .execute(order_id, tare_domain::order::OrderCommand::FlagDoorLeftOpen { at: now }, meta)
        .await?;
    let facts = AnomalyFacts {
        kind: "door_left_open".into(),
        cabinet: order.cabinet.clone(),
        door: order.door,
        lane: None,
        order_id: Some(order_id.to_string()),
        restock_id: None,
        detail: format!(
            "the door of order {order_id} is still open {} s after it opened",
            (now - order.created_at) / 1000
        ),
        detected_at: now,
    };
    raise(ports, &format!("order:{order_id}:door_left_open"), &facts, key).await
}

/// Raises anomaly `anomaly_id`, with the cabinet and door of its order when it concerns
/// one of ours (a bill line may name an order this platform never had).
pub async fn raise(ports: &EffectPorts, anomaly_id: &str, facts: &AnomalyFacts, key: &str) -> Result<EffectOutcome, EffectError> {
    let mut facts = facts.clone();
    if let (Some(order_id), None) = (&facts.order_id, &facts.cabinet) {
        let order = ports.orders.load(order_id).await?;
        facts.cabinet = order.cabinet;
        facts.door = order.door;
    }
    if let (Some(restock_id), None) = (&facts.restock_id, &facts.cabinet) {
        let restock = ports.restocks.load(restock_id).await?;
        facts.cabinet = restock.cabinet;
        facts.door = restock.door;
    }
    let correlation = facts
        .order_id
        .clone()
        .or_else(|| facts.restock_id.clone())
        .unwrap_or_else(|| anomaly_id.to_string());
    let meta = CommandMeta::new(ports.clock.now_ms(), correlation, format!("job:{key}"));
    ports.anomalies.execute(anomaly_id, AnomalyCommand::Raise { facts }, meta).await?;
    Ok(EffectOutcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::reconciliation::AnomalyKind;
    use tare_domain::weight::{StableReading, WeightSample};
    use tare_domain::ProviderKind;

    fn raised(s: &[Scheduled]) -> Vec<(&str, &str, Option<u8>)> {
        s.iter()
            .map(|s| match &s.effect {
                Effect::RaiseAnomaly { anomaly_id, facts } => (anomaly_id.as_str(), facts.kind.as_str(), facts.lane.map(|l| l.get())),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn an_order_in_review_raises_one_anomaly_named_by_its_first_blocking_cause() {
        let e = AnyEvent::Order(OrderEvent::OrderMarkedAbnormal {
            anomalies: vec![
                Anomaly::LaneHeavier {
                    lane: LaneNo::of(1),
                    items: 1,
                },
                Anomaly::LowConfidence {
                    lane: LaneNo::of(2),
                    confidence: 0.2,
                },
            ],
            at: 50,
        });
        let s = decide("o1", &e, &crate::SagaConfig::default());
        assert_eq!(raised(&s), [("order:o1", "low_confidence", Some(2))]);
        assert_eq!((s[0].key.as_str(), s[0].due_at), ("anomaly:order:o1:raise", 50));
        let Effect::RaiseAnomaly { facts, .. } = &s[0].effect else {
            unreachable!()
        };
        assert_eq!(facts.order_id.as_deref(), Some("o1"));
        assert!(facts.detail.contains("lane_heavier, low_confidence"), "{}", facts.detail);
    }

    #[test]
    fn a_heavier_lane_on_a_charged_order_raises_one_per_lane_and_bills_raise_theirs() {
        let settled = |anomalies| {
            AnyEvent::Order(OrderEvent::WeightsSettled {
                after: StableReading::from_sample(WeightSample {
                    msg_id: "m1".into(),
                    device_ts: 1,
                    received_at: 1,
                    stable: true,
                    lanes: vec![],
                })
                .unwrap(),
                inference: vec![],
                lines: vec![],
                subtotal: tare_domain::Cents::ZERO,
                coupon: None,
                total: tare_domain::Cents::ZERO,
                anomalies,
                at: 9,
            })
        };
        let heavier = |lane| Anomaly::LaneHeavier {
            lane: LaneNo::of(lane),
            items: 1,
        };
        let s = decide(
            "o2",
            &settled(vec![heavier(1), Anomaly::UnexpectedClose, heavier(3)]),
            &crate::SagaConfig::default(),
        );
        assert_eq!(
            raised(&s),
            [
                ("order:o2:lane_heavier:1", "lane_heavier", Some(1)),
                ("order:o2:lane_heavier:3", "lane_heavier", Some(3))
            ]
        );
        assert!(decide("o2", &settled(vec![]), &crate::SagaConfig::default()).is_empty());

        let bill = AnyEvent::Reconciliation(ReconciliationEvent::AnomalyRaised {
            anomaly_id: "bills:alipay:2026-12-01:missing_here:o3".into(),
            kind: AnomalyKind::BillMissingHere,
            order_id: "o3".into(),
            provider: ProviderKind::Alipay,
            date: "2026-12-01".into(),
            detail: "on the bill, not ours".into(),
            ours: None,
            theirs: None,
            at: 7,
        });
        assert_eq!(
            raised(&decide("bills:alipay:2026-12-01", &bill, &crate::SagaConfig::default())),
            [("bills:alipay:2026-12-01:missing_here:o3", "bill_missing_here", None)]
        );
    }

    #[test]
    fn a_nightly_stock_finding_raises_its_lane_with_the_order_behind_it() {
        use tare_domain::reconciliation::StockFinding;
        let finding = StockFinding {
            cabinet: CabinetId::new("c1", "SN-1").unwrap(),
            door: tare_domain::DoorNo::of(1),
            lane: LaneNo::of(2),
            sku: "gum".into(),
            class: tare_domain::cabinet::StockClass::UnpaidTake,
            ledger_stock: 10,
            weighed_stock: Some(9),
            difference: -1,
            since: 500,
            window_from: 400,
            last_session: Some("order:o7".into()),
        };
        let e = AnyEvent::Reconciliation(ReconciliationEvent::StockAnomalyRaised {
            anomaly_id: finding.anomaly_id(),
            finding,
            at: 9,
        });
        let s = decide("stock:2026-12-01", &e, &crate::SagaConfig::default());
        assert_eq!(raised(&s), [("stock:c1.SN-1:1:2:500", "stock_unpaid_take", Some(2))]);
        let Effect::RaiseAnomaly { facts, .. } = &s[0].effect else {
            unreachable!()
        };
        assert_eq!(
            (facts.order_id.as_deref(), facts.cabinet.as_ref().map(|c| c.to_string())),
            (Some("o7"), Some("c1.SN-1".into()))
        );
    }
}
