//! `up/ack` [D7]: settles the device command; an initialization label ticks off [D1]; a
//! price-change label acknowledged makes its lane charge the new price from now [C2];
//! and a `query_door` answered "open" is as good as the door's own open event, which may
//! have been lost [O4].

use crate::devices::{DeviceHub, IngestError};
use crate::store::{CommandError, Meta};
use tare_domain::cabinet::{CabinetCommand, DoorPosition};
use tare_domain::command::{CommandError as DeviceCommandError, CommandSpec, CommandStep};
use tare_domain::{CabinetId, DoorNo, UnixMs};
use tare_protocol::uplink::AckStatus;
use tare_protocol::Uplink;

impl DeviceHub {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::devices) async fn on_ack(
        &self,
        cabinet: &CabinetId,
        up: &Uplink,
        cmd_id: &str,
        status: AckStatus,
        detail: Option<String>,
        result: Option<serde_json::Value>,
        at: UnixMs,
    ) -> Result<(), IngestError> {
        let ok = status == AckStatus::Ok;
        let open = result.as_ref().and_then(|r| r.get("state")).and_then(|s| s.as_str()) == Some("open");
        let step = CommandStep::RecordAck { ok, detail, result, at };
        let meta = Meta::new(at, cmd_id, format!("device:{}", up.envelope.id));
        match self.aggregates.commands.execute(cmd_id, step, meta).await {
            Ok(()) => {}
            Err(CommandError::Rejected(DeviceCommandError::NotFound)) => {
                // Not one of ours (or from before a store was wiped): counted, kept out of
                // the log.
                self.counters.reject("unknown_command_ack");
                tracing::warn!(%cabinet, cmd_id, "ack for an unknown command");
                return Ok(());
            }
            Err(e) => return Err(IngestError::Store(e.to_string())),
        }
        self.label_acked(cabinet, cmd_id, ok, up, at).await?;
        if ok && cmd_id.starts_with(tare_sagas::pricing::PRICE_LABEL_PREFIX) {
            self.price_label_acked(cabinet, cmd_id, up, at).await?;
        }
        if ok && open {
            self.queried_door_is_open(cabinet, cmd_id, up, at).await?;
        }
        Ok(())
    }

    /// A price-change label was acknowledged: its lane charges what it shows now.
    async fn price_label_acked(&self, cabinet: &CabinetId, cmd_id: &str, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        let command = self
            .aggregates
            .commands
            .load(cmd_id)
            .await
            .map_err(|e| IngestError::Store(e.to_string()))?;
        let (
            Some(CommandSpec::SetPriceLabel {
                door,
                lane,
                price_cents,
                name,
            }),
            Some(sku),
        ) = (&command.spec, tare_sagas::pricing::label_sku(&command.issued_by))
        else {
            return Ok(());
        };
        let (Ok(door), Ok(lane), Ok(sku), Ok(price)) = (
            DoorNo::parse("door", i64::from(*door)),
            tare_domain::LaneNo::parse("lane", i64::from(*lane)),
            tare_domain::Sku::parse("sku", sku),
            tare_domain::Cents::parse("price_cents", *price_cents),
        ) else {
            return Ok(());
        };
        let apply = CabinetCommand::ApplyPriceLabel {
            door,
            lane,
            sku,
            price,
            name: name.clone(),
            issued_at: command.issued_at,
            at,
        };
        let meta = Meta::new(at, cmd_id, format!("device:{}", up.envelope.id));
        match self.aggregates.cabinets.execute(&cabinet.to_string(), apply, meta).await {
            Ok(()) | Err(CommandError::Rejected(_)) => Ok(()),
            Err(e) => Err(IngestError::Store(e.to_string())),
        }
    }

    /// The device said the door `cmd_id` queried is open: record the open.
    async fn queried_door_is_open(&self, cabinet: &CabinetId, cmd_id: &str, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        let command = self
            .aggregates
            .commands
            .load(cmd_id)
            .await
            .map_err(|e| IngestError::Store(e.to_string()))?;
        let queried = match &command.spec {
            Some(CommandSpec::QueryDoor { door }) => DoorNo::try_from(*door).ok(),
            _ => None,
        };
        let (Some(door), Some(target)) = (queried, &command.cabinet) else {
            return Ok(());
        };
        if target != cabinet {
            return Ok(());
        }
        let cmd = CabinetCommand::RecordDoorEvent {
            door,
            position: DoorPosition::Open,
            msg_id: up.envelope.id.clone(),
            seq: up.envelope.seq,
            device_ts: up.envelope.ts,
            cmd_id: Some(cmd_id.to_string()),
            stable_before: tare_sagas::ports::TelemetryView::stable_at_or_before(&*self.telemetry, cabinet, door, up.envelope.ts),
            at,
        };
        self.cabinet_cmd(cabinet, cmd, up, at).await
    }
}
