//! A cabinet's temperature guard, set and reset by operators [B8].

use super::ServiceError;
use crate::Platform;
use tare_domain::cabinet::{CabinetCommand, TemperatureGuard};
use tare_domain::CabinetId;

impl Platform {
    /// Sets (or clears, with `None`) cabinet `id`'s temperature limit: a heartbeat above
    /// it locks shoppers out until an operator resets it. 404 for an unknown cabinet,
    /// 422 `max_c` outside −40…80 °C.
    pub async fn set_temperature_limit(&self, id: &CabinetId, max_c: Option<f64>, by: &str) -> Result<TemperatureGuard, ServiceError> {
        self.cabinet(id).await?;
        let cmd = CabinetCommand::SetTemperatureLimit {
            max_c,
            by: by.to_string(),
            at: self.clock.now_ms(),
        };
        self.guard_command(id, cmd, by, "temperature-limit").await
    }

    /// Lifts cabinet `id`'s temperature lockout after an operator checked the goods:
    /// 409 `not_locked_out` when there is none, 422 `reason` when blank.
    pub async fn reset_temperature_lockout(&self, id: &CabinetId, reason: String, by: &str) -> Result<TemperatureGuard, ServiceError> {
        self.cabinet(id).await?;
        let cmd = CabinetCommand::ResetTemperatureLockout {
            by: by.to_string(),
            reason,
            at: self.clock.now_ms(),
        };
        self.guard_command(id, cmd, by, "temperature-reset").await
    }

    async fn guard_command(&self, id: &CabinetId, cmd: CabinetCommand, by: &str, what: &str) -> Result<TemperatureGuard, ServiceError> {
        let key = id.to_string();
        self.aggregates
            .cabinets
            .execute(&key, cmd, self.meta(&key, &format!("operator:{by}:{what}")))
            .await
            .map_err(ServiceError::from_command)?;
        // This node's hub sees the new limit at once; other nodes within their watch's TTL.
        self.hub.forget_watch(id);
        Ok(self.cabinet(id).await?.temperature)
    }
}
