//! A first boot [D1]: a pending cabinet gets a price label pushed to every lane, and goes
//! online (its opening stock counted) once every label is acknowledged and every door has
//! reported a stable weight.

use super::{lock, DeviceHub, IngestError};
use crate::store::Meta;
use std::collections::{BTreeMap, BTreeSet};
use tare_domain::cabinet::{Cabinet, CabinetCommand};
use tare_domain::command::{CommandSpec, CommandStep};
use tare_domain::weight::{StableReading, WeightSample};
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_protocol::Uplink;

/// How long an initialization price label stays valid.
const LABEL_TTL_MS: i64 = 60_000;

/// What a pending cabinet still needs before it is counted and online.
#[derive(Default)]
pub(super) struct PendingInit {
    /// The stable reading of each door so far.
    readings: BTreeMap<DoorNo, StableReading>,
    /// Price-label commands not yet acknowledged ok.
    labels: BTreeSet<String>,
}

impl DeviceHub {
    /// Issues a price label for every lane of pending cabinet `state` and starts waiting
    /// for their acks and the doors' stable readings.
    pub(super) async fn begin_initialization(
        &self,
        cabinet: &CabinetId,
        state: &Cabinet,
        up: &Uplink,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let labels: Vec<(String, CommandSpec)> = state
            .doors
            .values()
            .flat_map(|d| {
                d.lanes.values().map(|l| {
                    let cmd_id = format!("label-{}-{}-{}-{}", cabinet, up.envelope.id, d.door, l.plan.lane);
                    let spec = CommandSpec::SetPriceLabel {
                        door: d.door.get(),
                        lane: l.plan.lane.get(),
                        price_cents: l.plan.price.get(),
                        name: l.plan.name.clone(),
                    };
                    (cmd_id, spec)
                })
            })
            .collect();
        // Waiting starts before the first label is issued: a label is delivered as soon
        // as it is committed, and its ack may come back before the last one is issued.
        lock(&self.pending_init).insert(
            cabinet.clone(),
            PendingInit {
                readings: BTreeMap::new(),
                labels: labels.iter().map(|(id, _)| id.clone()).collect(),
            },
        );
        for (cmd_id, spec) in labels {
            let step = CommandStep::Issue {
                cabinet: cabinet.clone(),
                spec,
                expires_at: at + LABEL_TTL_MS,
                issued_by: format!("init:{cabinet}"),
                holds_door: false,
                at,
            };
            let meta = Meta::new(at, cabinet.to_string(), format!("device:{}", up.envelope.id));
            self.aggregates
                .commands
                .execute(&cmd_id, step, meta)
                .await
                .map_err(|e| IngestError::Store(e.to_string()))?;
        }
        Ok(())
    }

    /// A weight sample of a pending cabinet: a stable one counts for its door.
    pub(super) async fn maybe_initialize(
        &self,
        cabinet: &CabinetId,
        door: DoorNo,
        sample: WeightSample,
        up: &Uplink,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        {
            let mut pending = lock(&self.pending_init);
            let Some(p) = pending.get_mut(cabinet) else {
                return Ok(());
            };
            let Some(reading) = StableReading::from_sample(sample) else {
                return Ok(());
            };
            p.readings.insert(door, reading);
        }
        self.try_initialize(cabinet, up, at).await
    }

    /// An ack arrived for `cmd_id`: if it was an initialization label, tick it off.
    pub(super) async fn label_acked(
        &self,
        cabinet: &CabinetId,
        cmd_id: &str,
        ok: bool,
        up: &Uplink,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let done = match lock(&self.pending_init).get_mut(cabinet) {
            Some(p) if ok => p.labels.remove(cmd_id),
            _ => false,
        };
        if done {
            self.try_initialize(cabinet, up, at).await?;
        }
        Ok(())
    }

    /// Initializes a pending cabinet once every door has a stable reading and every
    /// price label is acknowledged.
    async fn try_initialize(&self, cabinet: &CabinetId, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        let readings = {
            let pending = lock(&self.pending_init);
            let Some(p) = pending.get(cabinet) else {
                return Ok(());
            };
            if !p.labels.is_empty() {
                return Ok(()); // labels still unacknowledged
            }
            p.readings.clone()
        };
        let state = self.load_cabinet(cabinet).await?;
        if !state.doors.keys().all(|d| readings.contains_key(d)) {
            return Ok(()); // wait for a stable reading of every door
        }
        let cmd = CabinetCommand::Initialize {
            readings: readings.into_iter().collect(),
            at,
        };
        self.cabinet_cmd(cabinet, cmd, up, at).await?;
        lock(&self.pending_init).remove(cabinet);
        Ok(())
    }
}
