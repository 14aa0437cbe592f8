//! Tare's process managers. Each saga is a pure `decide` from one committed event (read
//! from the global feed) to the effects it calls for, each with a deterministic key and a
//! due time, plus the effects themselves, written against [`ports`]. The platform's runner
//! is plumbing: it stores the decided effects with the saga's feed checkpoint in one
//! transaction, claims the due ones, calls [`run_effect`] and records the outcome. Effects
//! run at least once, so every effect is idempotent: aggregates ignore commands that no
//! longer apply, providers dedupe by the order id, devices by the command id.
//!
//! - [`order`]: the purchase saga [O3–O8];
//! - [`device_command`]: delivery and resend of device commands [D7];
//! - [`anomaly`]: filling the anomaly queue from what orders and bills find [M3];
//! - [`restock`]: an operator's restock session, from the door to the booked counts [O10];
//! - [`pricing`]: a price or name change sent to every label that shows it [C2];
//! - [`campaign`]: ad sets and upgrades pushed to many cabinets, their acks recorded [M5];
//! - [`alerts`]: what an operator must hear about, sent once through the alert sink;
//! - [`effect`]: the unit of work ([`Effect`], [`Scheduled`], [`EffectOutcome`]);
//! - [`ports`]: what effects act on; [`SagaConfig`]: their timings.
//!
//! A new saga follows the same shape: a module with `decide` (pure, tested on events) and
//! its effects (tested against in-memory ports), its variants added to [`Effect`].
//!
//! Architecture Invariant: no I/O here but through the ports; business rules are the
//! domain's (`tare_domain::order::rules`, the aggregates), an effect only loads, calls
//! and commits.

pub mod alerts;
pub mod anomaly;
pub mod campaign;
mod config;
pub mod device_command;
pub mod effect;
pub mod order;
pub mod ports;
pub mod pricing;
pub mod restock;

pub use config::SagaConfig;
pub use effect::{Effect, EffectError, EffectOutcome, Scheduled};

use ports::EffectPorts;
use tare_domain::AnyEvent;

/// Every saga's decision for one event of aggregate `aggregate_id`.
pub fn decide(aggregate_id: &str, event: &AnyEvent, cfg: &SagaConfig) -> Vec<Scheduled> {
    match event {
        AnyEvent::Command(e) => {
            let mut out = device_command::decide(aggregate_id, e, cfg);
            out.extend(campaign::decide(aggregate_id, event));
            out
        }
        other => {
            let mut out = order::decide(aggregate_id, other, cfg);
            out.extend(restock::decide(aggregate_id, other, cfg));
            out.extend(pricing::decide(aggregate_id, other));
            out.extend(alerts::decide(aggregate_id, other));
            out.extend(anomaly::decide(aggregate_id, other, cfg));
            out.extend(campaign::decide(aggregate_id, other));
            out
        }
    }
}

/// Runs one effect (scheduled under `key`) against the ports.
pub async fn run_effect(ports: &EffectPorts, cfg: &SagaConfig, effect: &Effect, key: &str) -> EffectOutcome {
    let outcome = match effect {
        Effect::DeliverCommand { cmd_id, attempt } => device_command::deliver(ports, cmd_id, *attempt, key).await,
        Effect::FreeCommandDoor { cmd_id, door } => device_command::free_door(ports, cmd_id, *door, key).await,
        Effect::PushPriceLabels { sku, version } => pricing::push_labels(ports, sku, *version, key).await,
        Effect::SendAlert { alert } => alerts::send(ports, alert).await,
        Effect::IssueCampaignCommands { campaign_id, cabinet } => campaign::issue(ports, campaign_id, cabinet, key).await,
        Effect::RecordCampaignOutcome { cmd_id, .. } => campaign::record_outcome(ports, cmd_id, key).await,
        Effect::CheckDoorLeftOpen { order_id } => anomaly::door_left_open(ports, order_id, key).await,
        Effect::RaiseAnomaly { anomaly_id, facts } => anomaly::raise(ports, anomaly_id, facts, key).await,
        Effect::OpenRestockDoor { .. }
        | Effect::ExpireRestockOpening { .. }
        | Effect::RecordRestockDoor { .. }
        | Effect::CountRestock { .. }
        | Effect::FinishRestock { .. } => restock::run(ports, cfg, effect, key).await,
        other => order::run(ports, cfg, other, key).await,
    };
    outcome.into()
}
