//! The emergency switch [B8]: stops new credit-pay orders for every provider or for some,
//! while the orders already open settle; each change recorded with who and why.

use super::ServiceError;
use crate::Platform;
use std::collections::BTreeSet;
use tare_domain::emergency::{EmergencyCommand, EmergencyStop, EMERGENCY_STOP_ID};
use tare_domain::ProviderKind;

impl Platform {
    /// The switch's position now.
    pub async fn emergency_stop(&self) -> Result<EmergencyStop, ServiceError> {
        self.aggregates
            .emergency
            .load(EMERGENCY_STOP_ID)
            .await
            .map_err(ServiceError::from_command)
    }

    /// Sets the switch: `all` stops every provider, `providers` those named; both empty
    /// lets orders through again.
    pub async fn set_emergency_stop(
        &self,
        all: bool,
        providers: BTreeSet<ProviderKind>,
        reason: String,
        by: &str,
    ) -> Result<EmergencyStop, ServiceError> {
        let cmd = EmergencyCommand::Set {
            all,
            providers,
            by: by.to_string(),
            reason,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .emergency
            .execute(
                EMERGENCY_STOP_ID,
                cmd,
                self.meta(EMERGENCY_STOP_ID, &format!("operator:{by}:emergency")),
            )
            .await
            .map_err(ServiceError::from_command)?;
        self.emergency_stop().await
    }

    /// 409 `payments_stopped` while the switch stops new orders through `provider`.
    pub(crate) async fn check_payments_open(&self, provider: ProviderKind) -> Result<(), ServiceError> {
        let stop = self.emergency_stop().await?;
        if stop.stops(provider) {
            return Err(ServiceError::Conflict {
                code: "payments_stopped",
                message: format!(
                    "new orders through {} are stopped by the emergency switch ({})",
                    provider.as_str(),
                    stop.reason.as_deref().unwrap_or("no reason given")
                ),
            });
        }
        Ok(())
    }
}
