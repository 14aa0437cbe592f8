//! Device commands an operator issues and follows to their end [D7].

use super::ServiceError;
use crate::store::Meta;
use crate::Platform;
use tare_domain::cabinet::{Cabinet, CabinetCommand, Holder};
use tare_domain::command::{CommandSpec, CommandStep, DeviceCommand};
use tare_domain::{CabinetId, DoorNo, UnixMs};

impl Platform {
    /// Issues a command to a cabinet [D7]: recorded, then delivered and resent until the
    /// device acknowledges it or it expires (`ttl_ms` from now). Returns its id. A
    /// command that opens or weighs a door (`open_door`, `tare`, `calibrate`) takes the
    /// door first, like a purchase [O2]: 409 `cabinet_busy` while anyone holds it, 404
    /// `door_not_found` for a door the cabinet lacks. A `tare` of a lane holding stock
    /// is 409 `lane_not_empty`, a `calibrate` not preceded by a tare 409 `tare_first`
    /// [M1].
    pub async fn issue_command(
        &self,
        cabinet: &CabinetId,
        spec: CommandSpec,
        ttl_ms: i64,
        issued_by: &str,
    ) -> Result<String, ServiceError> {
        let c = self.cabinet(cabinet).await?;
        let at = self.clock.now_ms();
        let cmd_id = format!("cmd-{}", uuid::Uuid::now_v7().simple());
        // A command that opens or weighs a door takes it like a purchase does [O2].
        let door = spec.door_held();
        if let Some(door) = door {
            self.take_door_for_command(&c, cabinet, door, &cmd_id, at).await?;
        }
        // A tare only of an empty lane, a standard weight only after a tare [M1] (a
        // held door answers `cabinet_busy` first).
        if let Err(refused) = c.check_scale_command(&spec) {
            if let Some(door) = door {
                self.release_command_door(cabinet, door, &cmd_id, "command_refused").await?;
            }
            return Err(ServiceError::refused(refused));
        }
        let step = CommandStep::Issue {
            cabinet: cabinet.clone(),
            spec,
            expires_at: at + ttl_ms,
            issued_by: issued_by.to_string(),
            holds_door: door.is_some(),
            at,
        };
        let issued = self
            .aggregates
            .commands
            .execute(&cmd_id, step, Meta::new(at, cmd_id.as_str(), issued_by))
            .await
            .map_err(ServiceError::from_command);
        if let (Err(_), Some(door)) = (&issued, door) {
            // Not issued: the door goes back (a later taker would free it anyway).
            let _ = self.release_command_door(cabinet, door, &cmd_id, "command_not_issued").await;
        }
        issued.map(|()| cmd_id)
    }

    /// Takes `door` for command `cmd_id`: 409 `cabinet_busy` while a shopper's purchase,
    /// a session or another live command holds it; a hold left by a command that has
    /// ended (or never existed) is freed first.
    async fn take_door_for_command(
        &self,
        c: &Cabinet,
        cabinet: &CabinetId,
        door: DoorNo,
        cmd_id: &str,
        at: UnixMs,
    ) -> Result<(), ServiceError> {
        let d = c.door(door).map_err(|e| ServiceError::NotFound {
            code: "door_not_found",
            message: e.to_string(),
        })?;
        if let Some(Holder::Command { cmd_id: previous }) = &d.holder {
            if self.command_door_is_free(previous).await? {
                self.release_command_door(cabinet, door, previous, "command_ended").await?;
            }
        }
        let take = CabinetCommand::AcquireDoor {
            door,
            holder: Holder::Command {
                cmd_id: cmd_id.to_string(),
            },
            at,
        };
        self.aggregates
            .cabinets
            .execute(&cabinet.to_string(), take, Meta::new(at, cmd_id, "operator:command"))
            .await
            .map_err(ServiceError::from_command)
    }

    /// Whether the door held by command `cmd_id` may be taken (the command ended, or was
    /// never issued).
    pub(crate) async fn command_door_is_free(&self, cmd_id: &str) -> Result<bool, ServiceError> {
        let c = self.aggregates.commands.load(cmd_id).await.map_err(ServiceError::from_command)?;
        Ok(c.door_is_free())
    }

    /// Frees `door` if command `cmd_id` holds it.
    pub(crate) async fn release_command_door(
        &self,
        cabinet: &CabinetId,
        door: DoorNo,
        cmd_id: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let at = self.clock.now_ms();
        let release = CabinetCommand::ReleaseDoor {
            door,
            session_id: cmd_id.to_string(),
            reason: reason.to_string(),
            at,
        };
        self.aggregates
            .cabinets
            .execute(&cabinet.to_string(), release, Meta::new(at, cmd_id, "operator:command"))
            .await
            .map_err(ServiceError::from_command)
    }

    /// A device command's record.
    pub async fn command(&self, cmd_id: &str) -> Result<DeviceCommand, ServiceError> {
        let c = self.aggregates.commands.load(cmd_id).await.map_err(ServiceError::from_command)?;
        if c.spec.is_none() {
            return Err(ServiceError::NotFound {
                code: "command_not_found",
                message: format!("command {cmd_id} not found"),
            });
        }
        Ok(c)
    }
}
