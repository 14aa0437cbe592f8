//! Alerts that reach someone: what an operator must hear about — a device gone offline,
//! a lane down to its restock threshold, a new anomaly (orders sent to review, bill
//! findings, restock excess, calibrations off), a charge given up for an operator — is
//! sent through the alert sink (a webhook with retries, or the recording sandbox), once:
//! each alert's key names its kind and subject, and alerts of one kind about one cabinet
//! within [`ALERT_WINDOW_MS`] are one alert. The sink limits the rate; an alert over the
//! limit waits, it is never dropped.

use crate::effect::{Effect, EffectError, EffectOutcome, Scheduled};
use crate::ports::{AlertError, EffectPorts};
use serde::{Deserialize, Serialize};
use tare_domain::anomaly::AnomalyEvent;
use tare_domain::cabinet::CabinetEvent;
use tare_domain::order::OrderEvent;
use tare_domain::{AnyEvent, UnixMs};

/// Alerts of one kind about one cabinet within this window are one alert (10 min).
pub const ALERT_WINDOW_MS: i64 = 600_000;

/// One alert as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Its id (also its idempotency key at the receiver).
    pub alert_id: String,
    /// `device_offline`, `restock_needed`, `anomaly`, `charge_dead_lettered`.
    pub kind: String,
    /// The cabinet, when it is about one.
    pub cabinet: Option<String>,
    /// What it is about (a cabinet, an anomaly, an order).
    pub subject: String,
    /// A sentence for a person.
    pub text: String,
    /// When it happened (Unix ms).
    pub at: UnixMs,
}

fn alert(kind: &str, subject: &str, cabinet: Option<String>, text: String, at: UnixMs, windowed: bool) -> Scheduled {
    let alert_id = if windowed {
        format!("{kind}:{subject}:{}", at.div_euclid(ALERT_WINDOW_MS))
    } else {
        format!("{kind}:{subject}")
    };
    Scheduled::at(
        format!("alert:{alert_id}"),
        at,
        Effect::SendAlert {
            alert: Alert {
                alert_id,
                kind: kind.to_string(),
                cabinet,
                subject: subject.to_string(),
                text,
                at,
            },
        },
    )
}

/// The alerts one event calls for.
pub fn decide(aggregate_id: &str, event: &AnyEvent) -> Vec<Scheduled> {
    let cabinet = || Some(aggregate_id.to_string());
    match event {
        AnyEvent::Cabinet(CabinetEvent::DeviceWentSilent { at, .. } | CabinetEvent::DeviceDisconnected { at }) => vec![alert(
            "device_offline",
            aggregate_id,
            cabinet(),
            format!("cabinet {aggregate_id} went offline"),
            *at,
            true,
        )],
        AnyEvent::Cabinet(CabinetEvent::RestockNeeded {
            door,
            lane,
            sku,
            stock,
            at,
            ..
        }) => vec![alert(
            "restock_needed",
            aggregate_id,
            cabinet(),
            format!(
                "cabinet {aggregate_id} needs restocking: door {} lane {} ({sku}) is down to {stock} (see its restock task)",
                door.get(),
                lane.get()
            ),
            *at,
            true,
        )],
        AnyEvent::Anomaly(AnomalyEvent::AnomalyOpened { facts }) => vec![alert(
            "anomaly",
            aggregate_id,
            facts.cabinet.as_ref().map(ToString::to_string),
            format!("anomaly {aggregate_id} ({}): {}", facts.kind, facts.detail),
            facts.detected_at,
            false,
        )],
        AnyEvent::Order(OrderEvent::ChargeFailed {
            retry_at: None,
            reason,
            at,
            ..
        }) => vec![alert(
            "charge_dead_lettered",
            aggregate_id,
            None,
            format!("order {aggregate_id}: the charge still fails after every retry ({reason}); it waits in the dead letters"),
            *at,
            false,
        )],
        _ => vec![],
    }
}

/// Sends one alert: over the sink's rate it waits; a failed delivery is retried with
/// backoff (and, if it never goes through, lands in the dead letters).
pub async fn send(ports: &EffectPorts, alert: &Alert) -> Result<EffectOutcome, EffectError> {
    match ports.alerts.send(alert, ports.clock.now_ms()).await {
        Ok(()) => Ok(EffectOutcome::Done),
        Err(AlertError::RateLimited(until)) => Ok(EffectOutcome::Defer(until)),
        Err(AlertError::Failed(e)) => Err(EffectError::Transient(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::{DoorNo, LaneNo, Sku};

    fn ids(s: &[Scheduled]) -> Vec<&str> {
        s.iter().map(|s| s.key.as_str()).collect()
    }

    #[test]
    fn restock_alerts_of_one_cabinet_within_a_window_are_one() {
        let need = |lane: u8, at: UnixMs| {
            AnyEvent::Cabinet(CabinetEvent::RestockNeeded {
                door: DoorNo::of(1),
                lane: LaneNo::of(lane),
                sku: Sku::of("cola"),
                stock: 2,
                threshold: 2,
                at,
            })
        };
        let a = decide("pk.c1", &need(1, 1_000));
        let b = decide("pk.c1", &need(2, 1_000 + ALERT_WINDOW_MS - 1_001));
        let c = decide("pk.c1", &need(2, ALERT_WINDOW_MS + 5));
        assert_eq!(ids(&a), ids(&b), "same cabinet, same window: one alert");
        assert_ne!(ids(&a), ids(&c), "the next window alerts again");
        assert_eq!(ids(&a), ["alert:restock_needed:pk.c1:0"]);
        let Effect::SendAlert { alert } = &a[0].effect else {
            unreachable!()
        };
        assert_eq!((alert.cabinet.as_deref(), alert.kind.as_str()), (Some("pk.c1"), "restock_needed"));
        assert!(alert.text.contains("door 1 lane 1 (cola) is down to 2"), "{}", alert.text);
        let offline = decide("pk.c1", &AnyEvent::Cabinet(CabinetEvent::DeviceDisconnected { at: 3 }));
        assert_eq!(ids(&offline), ["alert:device_offline:pk.c1:0"]);
        let dead = AnyEvent::Order(OrderEvent::ChargeFailed {
            attempt: 24,
            reason: "NOT_ENOUGH".into(),
            retry_at: None,
            at: 9,
        });
        assert_eq!(ids(&decide("o1", &dead)), ["alert:charge_dead_lettered:o1"]);
        let retrying = AnyEvent::Order(OrderEvent::ChargeFailed {
            attempt: 1,
            reason: "NOT_ENOUGH".into(),
            retry_at: Some(99),
            at: 9,
        });
        assert!(decide("o1", &retrying).is_empty(), "a failure with a retry ahead is no alert");
    }
}
