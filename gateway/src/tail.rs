//! One readable line per saga step, from the global feed [E3]: what `serve --demo` logs
//! and what operators tail.

use tare_domain::anomaly::{AnomalyAction, AnomalyEvent};
use tare_domain::cabinet::{CabinetEvent, Holder};
use tare_domain::command::CommandEvent;
use tare_domain::order::{HandSettlement, OrderEvent};
use tare_domain::payment::PaymentEvent;
use tare_domain::restock::RestockEvent;
use tare_domain::AnyEvent;
use tare_platform::feed::FeedEvent;
use tare_platform::runner::decode;

fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}

/// The line for a feed event, if it is a step worth showing.
pub fn describe(ev: &FeedEvent) -> Option<String> {
    let id = ev.aggregate_id.as_str();
    match decode(ev)? {
        AnyEvent::Order(e) => Some(order_line(short(id), e)),
        AnyEvent::Command(e) => command_line(id, e),
        AnyEvent::Payment(e) => payment_line(short(id), e),
        AnyEvent::Cabinet(e) => cabinet_line(id, e),
        AnyEvent::Anomaly(e) => Some(anomaly_line(id, e)),
        AnyEvent::Restock(e) => Some(restock_line(short(id), e)),
        _ => None,
    }
}

/// A step of restock session `r` [O10].
fn restock_line(r: &str, e: RestockEvent) -> String {
    match e {
        RestockEvent::RestockStarted { cabinet, door, by, .. } => format!("restock {r}: {cabinet} door {} by {by}", door.get()),
        RestockEvent::RestockDoorOpened { .. } => format!("restock {r}: door open"),
        RestockEvent::RestockDoorClosed { .. } => format!("restock {r}: door closed, counting"),
        RestockEvent::RestockCounted { lines, .. } => {
            let added: Vec<String> = lines
                .iter()
                .filter(|l| l.counted != 0)
                .map(|l| {
                    let over = if l.excess > 0 {
                        format!(", {} over capacity", l.excess)
                    } else {
                        String::new()
                    };
                    format!("{:+}x{} (lane {}){over}", l.added, l.sku, l.lane.get())
                })
                .collect();
            let what = if added.is_empty() {
                "nothing".to_string()
            } else {
                added.join(", ")
            };
            format!("restock {r}: counted {what}")
        }
        RestockEvent::RestockFailed { reason, .. } => format!("restock {r}: failed ({reason})"),
    }
}

/// A step of anomaly `a` in the queue [M3].
fn anomaly_line(a: &str, e: AnomalyEvent) -> String {
    match e {
        AnomalyEvent::AnomalyOpened { facts } => format!("anomaly {a}: opened ({}): {}", facts.kind, facts.detail),
        AnomalyEvent::AnomalyClosed { action, by, note, .. } => match action {
            AnomalyAction::Refund { amount, .. } => format!("anomaly {a}: refunded {amount} by {by}: {note}"),
            other => format!("anomaly {a}: {} by {by}: {note}", other.as_str()),
        },
    }
}

/// A step of order `o` (its short id).
fn order_line(o: &str, e: OrderEvent) -> String {
    match e {
        OrderEvent::OrderCreated {
            cabinet,
            door,
            shopper_id,
            provider,
            ..
        } => {
            format!(
                "order {o}: scanned {cabinet} door {} by shopper {} ({})",
                door.get(),
                short(&shopper_id),
                provider.as_str()
            )
        }
        OrderEvent::OrderAuthorized { .. } => format!("order {o}: authorized"),
        OrderEvent::DoorOpenRequested { cmd_id, .. } => format!("order {o}: open_door sent ({cmd_id})"),
        OrderEvent::DoorQueryRequested { attempt, .. } => format!("order {o}: door not open yet, query_door #{attempt}"),
        OrderEvent::OrderDoorOpened { .. } => format!("order {o}: door open"),
        OrderEvent::OrderDoorLeftOpen { .. } => format!("order {o}: door left open past the limit (goes to an operator)"),
        OrderEvent::OrderDoorClosed { unexpected, .. } => {
            format!("order {o}: door closed{}", if unexpected { " (unexpected)" } else { "" })
        }
        OrderEvent::WeightsSettled {
            lines, total, anomalies, ..
        } => {
            let items: Vec<String> = lines.iter().map(|l| format!("{}x{}", l.qty, l.sku)).collect();
            let items = if items.is_empty() {
                "nothing".to_string()
            } else {
                items.join(", ")
            };
            let flags = if anomalies.is_empty() {
                String::new()
            } else {
                format!(" anomalies={}", serde_json::to_string(&anomalies).unwrap_or_default())
            };
            format!("order {o}: weighed {items}, total {total}{flags}")
        }
        OrderEvent::ChargeRequested { amount, attempt, .. } => format!("order {o}: charging {amount} (attempt {attempt})"),
        OrderEvent::ChargeFailed { reason, retry_at, .. } => {
            format!(
                "order {o}: charge failed ({reason}), {}",
                if retry_at.is_some() { "will retry" } else { "dead-lettered" }
            )
        }
        OrderEvent::OrderPaid { amount, .. } => format!("order {o}: PAID {amount}"),
        OrderEvent::OrderCancelled { reason, .. } => format!("order {o}: cancelled ({reason})"),
        OrderEvent::OrderMarkedAbnormal { anomalies, .. } => {
            format!("order {o}: ABNORMAL {}", serde_json::to_string(&anomalies).unwrap_or_default())
        }
        OrderEvent::OrderRefunded { refunded, .. } => format!("order {o}: refunded {refunded} in all"),
        OrderEvent::ChargeSettledByHand { resolution, by, .. } => match resolution {
            HandSettlement::PaidOutside { reference } => format!("order {o}: paid outside ({reference}), settled by {by}"),
            HandSettlement::WrittenOff => format!("order {o}: written off by {by}"),
        },
    }
}

/// A step of device command `id`.
fn command_line(id: &str, e: CommandEvent) -> Option<String> {
    Some(match e {
        CommandEvent::CommandIssued {
            cabinet, spec, issued_by, ..
        } => {
            format!("command {id}: {} to {cabinet} (by {issued_by})", spec.type_name())
        }
        CommandEvent::CommandDelivered { attempt, .. } if attempt > 1 => format!("command {id}: no ack yet, resent (#{attempt})"),
        CommandEvent::CommandAcknowledged { ok, detail, late, .. } => format!(
            "command {id}: {}{}{}",
            if ok { "done" } else { "failed" },
            detail.map(|d| format!(" ({d})")).unwrap_or_default(),
            if late { " — late ack after unknown" } else { "" }
        ),
        CommandEvent::CommandExpired { attempts, .. } => format!("command {id}: unknown (no ack after {attempts} deliveries)"),
        _ => return None,
    })
}

/// A step of order `o`'s payment.
fn payment_line(o: &str, e: PaymentEvent) -> Option<String> {
    Some(match e {
        PaymentEvent::PaymentOpened { provider, confirm_url, .. } => {
            format!(
                "order {o}: {} authorization created{}",
                provider.as_str(),
                if confirm_url.is_some() {
                    ", waiting for the shopper to confirm"
                } else {
                    " (pre-authorized)"
                }
            )
        }
        PaymentEvent::PaymentCollected {
            amount, transaction_id, ..
        } => format!("order {o}: provider collected {amount} ({transaction_id})"),
        PaymentEvent::CollectionFailed { reason, .. } => format!("order {o}: provider declined ({reason})"),
        PaymentEvent::LateAuthorizationReceived { .. } => format!("order {o}: late authorization, cancelling at the provider"),
        PaymentEvent::RefundRequested {
            refund_id, amount, reason, ..
        } => format!("order {o}: refund {refund_id} of {amount} requested ({reason})"),
        PaymentEvent::RefundSucceeded { refund_id, amount, .. } => format!("order {o}: refund {refund_id} of {amount} paid back"),
        PaymentEvent::RefundFailed { refund_id, reason, .. } => format!("order {o}: refund {refund_id} FAILED ({reason})"),
        PaymentEvent::PaymentAbandoned { reason, .. } => format!("order {o}: payment abandoned ({reason})"),
        _ => return None,
    })
}

/// A fact of cabinet `id` worth an operator's eye.
fn cabinet_line(id: &str, e: CabinetEvent) -> Option<String> {
    Some(match e {
        CabinetEvent::DeviceConnected { status, node, .. } => format!("cabinet {id}: connected via {node}, {status:?}"),
        CabinetEvent::CabinetInitialized { .. } => format!("cabinet {id}: initialized, online"),
        CabinetEvent::DeviceDisconnected { .. } => format!("cabinet {id}: disconnected"),
        CabinetEvent::DeviceWentSilent { last_seen, at } => {
            format!("cabinet {id}: ALERT silent for {} s, marked offline", (at - last_seen) / 1000)
        }
        CabinetEvent::DeviceResumed { .. } => format!("cabinet {id}: heartbeating again"),
        CabinetEvent::CompartmentChanged { compartment, change, .. } => {
            format!("locker {id}: compartment {} {change:?}", compartment.get())
        }
        CabinetEvent::RestockNeeded {
            door, lane, sku, stock, ..
        } => format!(
            "cabinet {id}: door {} lane {} ({sku}) needs restock, {stock} left",
            door.get(),
            lane.get()
        ),
        CabinetEvent::LateDoorEventRecorded {
            door, seq, applied_seq, ..
        } => format!(
            "cabinet {id}: late door event on door {} (seq {seq} after {applied_seq})",
            door.get()
        ),
        CabinetEvent::DoorClosed {
            door,
            holder: None,
            unexpected: true,
            ..
        } => format!("cabinet {id}: door {} closed with nobody holding it", door.get()),
        CabinetEvent::DoorOpened { door, holder: None, .. } => {
            format!("cabinet {id}: door {} opened with nobody holding it", door.get())
        }
        CabinetEvent::DoorOpened {
            holder: Some(Holder::Restock { .. }),
            door,
            ..
        } => format!("cabinet {id}: door {} opened for restock", door.get()),
        _ => return None,
    })
}

/// One saga step as the live tail shows it [E3]: the event that recorded it, where it
/// belongs (order, cabinet, shopper) and a line for people.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TailStep {
    /// The event's feed position (the SSE `id`).
    pub position: i64,
    /// When it was recorded (Unix ms).
    pub at: i64,
    /// The order it belongs to.
    pub order_id: Option<String>,
    /// The cabinet it concerns.
    pub cabinet: Option<String>,
    /// The shopper it concerns.
    pub shopper_id: Option<String>,
    /// The step: the event's type.
    pub step: String,
    /// What happened, in a line.
    pub detail: String,
    /// The correlation id (the order, session or request it runs under).
    pub correlation_id: String,
}

/// What the tail knows of orders and commands to place a step: each order's cabinet
/// and shopper, each command's cabinet, learned from the events as they pass (and, for
/// an order older than the tail, asked of `lookup`).
#[derive(Default)]
pub struct TailContext {
    orders: std::collections::HashMap<String, (String, String)>,
    commands: std::collections::HashMap<String, String>,
}

/// At most this many orders and commands are remembered (then forgotten at once; an
/// old one is looked up again).
const CONTEXT_LIMIT: usize = 100_000;

impl TailContext {
    /// The step event `ev` is, if it is one: every event of an order, payment, device
    /// command, restock, anomaly or campaign, and the cabinet facts worth a line.
    /// `lookup` finds an order's cabinet and shopper the context has not seen.
    pub async fn step<F, Fut>(&mut self, ev: &FeedEvent, lookup: F) -> Option<TailStep>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Option<(String, String)>>,
    {
        if self.orders.len() > CONTEXT_LIMIT || self.commands.len() > CONTEXT_LIMIT {
            self.orders.clear();
            self.commands.clear();
        }
        let event = decode(ev)?;
        let id = ev.aggregate_id.clone();
        let correlation_id = ev
            .metadata
            .get("correlation_id")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string();
        let line = describe(ev);
        let (order_id, cabinet) = match &event {
            AnyEvent::Order(OrderEvent::OrderCreated { cabinet, shopper_id, .. }) => {
                self.orders.insert(id.clone(), (cabinet.to_string(), shopper_id.clone()));
                (Some(id.clone()), None)
            }
            AnyEvent::Order(_) | AnyEvent::Payment(_) => (Some(id.clone()), None),
            AnyEvent::Command(e) => {
                if let CommandEvent::CommandIssued { cabinet, .. } = e {
                    self.commands.insert(id.clone(), cabinet.to_string());
                }
                let order = self.orders.contains_key(&correlation_id).then(|| correlation_id.clone());
                (order, self.commands.get(&id).cloned())
            }
            AnyEvent::Cabinet(_) => {
                line.as_ref()?;
                (None, Some(id.clone()))
            }
            AnyEvent::Restock(_) | AnyEvent::Anomaly(_) | AnyEvent::Campaign(_) => (None, None),
            _ => return None,
        };
        let mut step = TailStep {
            position: ev.position,
            at: ev.time(),
            order_id,
            cabinet,
            shopper_id: None,
            step: ev.event_type.clone(),
            detail: line.unwrap_or_else(|| format!("{} {}: {}", ev.aggregate_type, short(&id), ev.event_type)),
            correlation_id,
        };
        if let Some(order) = step.order_id.clone() {
            if !self.orders.contains_key(&order) {
                if let Some(known) = lookup(order.clone()).await {
                    self.orders.insert(order.clone(), known);
                }
            }
            if let Some((cabinet, shopper)) = self.orders.get(&order) {
                step.cabinet = Some(cabinet.clone());
                step.shopper_id = Some(shopper.clone());
            }
        }
        Some(step)
    }
}
