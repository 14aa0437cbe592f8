//! Price changes reaching the shelves [C2]: when a product's price or name changes, a
//! `set_price_label` goes to every lane that holds it (found through the planogram
//! index, not a scan of the fleet), as a device command with a deterministic id per
//! lane and price version, so a re-run sends nothing twice. A lane charges the new price
//! from the moment its label is acknowledged (the platform applies it to the lane on the
//! ack), so a shopper always pays what the label showed.

use crate::effect::{Effect, EffectError, EffectOutcome, Scheduled};
use crate::ports::{CommandMeta, EffectPorts};
use tare_domain::command::{CommandSpec, CommandStep};
use tare_domain::product::ProductEvent;
use tare_domain::{AnyEvent, Sku, UnixMs};

/// How long a price label command stays valid: a device away longer gets the price with
/// its next boot's labels instead.
pub const PRICE_LABEL_TTL_MS: i64 = 3_600_000;

/// The prefix of price-change label commands (their acks update the lane's price).
pub const PRICE_LABEL_PREFIX: &str = "price-";

/// The id of the label command for `sku`'s price version `version` on one lane.
pub fn label_cmd_id(sku: &str, version: u32, cabinet: &str, door: u8, lane: u8) -> String {
    format!("{PRICE_LABEL_PREFIX}{sku}-v{version}-{cabinet}-{door}-{lane}")
}

/// The product a price-change label command was issued for (its `issued_by` is
/// `price:{sku}:v{version}`).
pub fn label_sku(issued_by: &str) -> Option<&str> {
    issued_by.strip_prefix("price:")?.rsplit_once(":v").map(|(sku, _)| sku)
}

/// The pricing saga's decision for one event.
pub fn decide(aggregate_id: &str, event: &AnyEvent) -> Vec<Scheduled> {
    match event {
        AnyEvent::Product(ProductEvent::ProductPriceChanged { version, at, .. } | ProductEvent::ProductRenamed { version, at, .. }) => {
            vec![Scheduled::at(
                format!("product:{aggregate_id}:labels:v{version}"),
                *at,
                Effect::PushPriceLabels {
                    sku: aggregate_id.to_string(),
                    version: *version,
                },
            )]
        }
        _ => vec![],
    }
}

/// Sends the label of `sku` at version `version` to every lane holding it; a newer
/// version's push supersedes this one.
pub async fn push_labels(ports: &EffectPorts, sku: &str, version: u32, key: &str) -> Result<EffectOutcome, EffectError> {
    let now: UnixMs = ports.clock.now_ms();
    let product = ports.products.load(sku).await?;
    if product.label_version > version {
        return Ok(EffectOutcome::Done);
    }
    let sku_value = Sku::parse("sku", sku).map_err(|e| EffectError::Permanent(e.to_string()))?;
    let lanes = ports.planograms.lanes_holding(&sku_value).await.map_err(EffectError::Transient)?;
    for (cabinet, door, lane) in lanes {
        let cmd_id = label_cmd_id(sku, version, &cabinet.to_string(), door.get(), lane.get());
        let step = CommandStep::Issue {
            cabinet,
            spec: CommandSpec::SetPriceLabel {
                door: door.get(),
                lane: lane.get(),
                price_cents: product.price.get(),
                name: product.name.clone(),
            },
            expires_at: now + PRICE_LABEL_TTL_MS,
            issued_by: format!("price:{sku}:v{version}"),
            holds_door: false,
            at: now,
        };
        let meta = CommandMeta::new(now, format!("product:{sku}"), format!("job:{key}"));
        ports.commands.execute(&cmd_id, step, meta).await?;
    }
    Ok(EffectOutcome::Done)
}
