//! Tare's domain: the aggregates (product, cabinet, shopper with account, order, payment,
//! device command), their commands and events, and the pure rules they apply: weight →
//! items ([`weight`]), what a shopper pays ([`settlement`]), coupon choice ([`coupon`]) and
//! the rules around an order ([`order::rules`]).
//!
//! Architecture Invariant: nothing here performs I/O, spawns tasks or reads a clock. Time
//! (`at`, Unix ms) and ids arrive inside commands, so every decision can be replayed.

pub mod anomaly;
pub mod cabinet;
pub mod campaign;
pub mod command;
pub mod coupon;
pub mod emergency;
pub mod operator;
pub mod order;
pub mod payment;
pub mod product;
pub mod reconciliation;
pub mod restock;
pub mod settlement;
pub mod shopper;
pub mod values;
pub mod weight;

pub use values::*;

/// Unix time in milliseconds, UTC. Always supplied by the caller (never read here).
pub type UnixMs = i64;

/// The schema version stamped on every event this crate defines; bumped per event type
/// when its shape changes (with an upcaster beside it).
pub const EVENT_VERSION: &str = "1";

/// Any event of any aggregate, as read back from the global feed.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    /// A product event.
    Product(product::ProductEvent),
    /// A cabinet event.
    Cabinet(cabinet::CabinetEvent),
    /// A shopper event.
    Shopper(shopper::ShopperEvent),
    /// An order event.
    Order(order::OrderEvent),
    /// A payment event.
    Payment(payment::PaymentEvent),
    /// A device command event.
    Command(command::CommandEvent),
    /// A reconciliation event [R3].
    Reconciliation(reconciliation::ReconciliationEvent),
    /// An anomaly-queue event [M3, R4].
    Anomaly(anomaly::AnomalyEvent),
    /// A restock session's event [O10].
    Restock(restock::RestockEvent),
    /// The emergency switch's event [B8].
    Emergency(emergency::EmergencyEvent),
    /// An ad or upgrade campaign's event [M5].
    Campaign(campaign::CampaignEvent),
    /// An operator account's event (who may do what) [API.md "Auth"].
    Operator(operator::OperatorEvent),
}

/// Every aggregate of the log with its `AnyEvent` variant, once: both decoders below
/// (from a JSON value, from JSON text) are written from it.
macro_rules! by_aggregate_type {
    ($aggregate_type:expr, $de:path, $payload:expr) => {{
        use cqrs_es::Aggregate;
        Some(match $aggregate_type {
            t if t == product::Product::TYPE => $de($payload).map(AnyEvent::Product),
            t if t == cabinet::Cabinet::TYPE => $de($payload).map(AnyEvent::Cabinet),
            t if t == shopper::Shopper::TYPE => $de($payload).map(AnyEvent::Shopper),
            t if t == order::Order::TYPE => $de($payload).map(AnyEvent::Order),
            t if t == payment::Payment::TYPE => $de($payload).map(AnyEvent::Payment),
            t if t == command::DeviceCommand::TYPE => $de($payload).map(AnyEvent::Command),
            t if t == reconciliation::Reconciliation::TYPE => $de($payload).map(AnyEvent::Reconciliation),
            t if t == anomaly::AnomalyCase::TYPE => $de($payload).map(AnyEvent::Anomaly),
            t if t == restock::Restock::TYPE => $de($payload).map(AnyEvent::Restock),
            t if t == emergency::EmergencyStop::TYPE => $de($payload).map(AnyEvent::Emergency),
            t if t == campaign::Campaign::TYPE => $de($payload).map(AnyEvent::Campaign),
            t if t == operator::OperatorAccount::TYPE => $de($payload).map(AnyEvent::Operator),
            _ => return None,
        })
    }};
}

/// The aggregate types of the log, as streams are named (`order:ID`, …).
pub fn aggregate_types() -> [&'static str; 12] {
    use cqrs_es::Aggregate;
    [
        product::Product::TYPE,
        cabinet::Cabinet::TYPE,
        shopper::Shopper::TYPE,
        order::Order::TYPE,
        payment::Payment::TYPE,
        command::DeviceCommand::TYPE,
        reconciliation::Reconciliation::TYPE,
        anomaly::AnomalyCase::TYPE,
        restock::Restock::TYPE,
        emergency::EmergencyStop::TYPE,
        campaign::Campaign::TYPE,
        operator::OperatorAccount::TYPE,
    ]
}

impl AnyEvent {
    /// [`AnyEvent::decode`] straight from the stored JSON text (no intermediate value:
    /// what a replay of millions of events wants).
    pub fn decode_str(aggregate_type: &str, payload: &str) -> Option<Result<Self, serde_json::Error>> {
        by_aggregate_type!(aggregate_type, serde_json::from_str, payload)
    }

    /// Decodes a stored payload of `aggregate_type`; `None` for a type this build does
    /// not know (a newer writer), which readers skip rather than fail on.
    pub fn decode(aggregate_type: &str, payload: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        by_aggregate_type!(aggregate_type, serde_json::from_value, payload)
    }
}
