//! Device commands an operator issues and follows to their end [D7].

use super::ServiceError;
use crate::store::Meta;
use crate::Platform;
use tare_domain::command::{CommandSpec, CommandStep, DeviceCommand};
use tare_domain::CabinetId;

impl Platform {
    /// Issues a command to a cabinet [D7]: recorded, then delivered and resent until the
    /// device acknowledges it or it expires (`ttl_ms` from now). Returns its id.
    pub async fn issue_command(
        &self,
        cabinet: &CabinetId,
        spec: CommandSpec,
        ttl_ms: i64,
        issued_by: &str,
    ) -> Result<String, ServiceError> {
        self.cabinet(cabinet).await?;
        let at = self.clock.now_ms();
        let cmd_id = format!("cmd-{}", uuid::Uuid::now_v7().simple());
        let step = CommandStep::Issue {
            cabinet: cabinet.clone(),
            spec,
            expires_at: at + ttl_ms,
            issued_by: issued_by.to_string(),
            at,
        };
        self.aggregates
            .commands
            .execute(&cmd_id, step, Meta::new(at, cmd_id.as_str(), issued_by))
            .await
            .map_err(ServiceError::from_command)?;
        Ok(cmd_id)
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
