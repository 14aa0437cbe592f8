//! Operator accounts [API.md "Auth"]: adding staff with a role and a scope, revoking
//! them, and the account a presented token belongs to. The API makes the token and
//! hands over only its hash, as for shoppers.

use super::ServiceError;
use crate::Platform;
use tare_domain::operator::{CabinetScope, OperatorAccount, OperatorCommand, Role};
use tare_projections::{OperatorDoc, Operators};

impl Platform {
    /// Adds operator `operator_id` (`op_…`) with the hash of its token; `by` is who
    /// added them.
    pub async fn add_operator(
        &self,
        operator_id: &str,
        name: String,
        role: Role,
        scope: CabinetScope,
        token_sha256: String,
        by: &str,
    ) -> Result<OperatorAccount, ServiceError> {
        let cmd = OperatorCommand::Add {
            operator_id: operator_id.to_string(),
            name,
            role,
            scope,
            token_sha256,
            by: by.to_string(),
            at: self.clock.now_ms(),
        };
        self.aggregates
            .operators
            .execute(operator_id, cmd, self.meta(operator_id, "api"))
            .await
            .map_err(ServiceError::from_command)?;
        self.operator_account(operator_id).await
    }

    /// Revokes operator `operator_id`'s token for good (again: nothing changes).
    pub async fn revoke_operator(&self, operator_id: &str, reason: String, by: &str) -> Result<OperatorAccount, ServiceError> {
        let cmd = OperatorCommand::Revoke {
            by: by.to_string(),
            reason,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .operators
            .execute(operator_id, cmd, self.meta(operator_id, "api"))
            .await
            .map_err(ServiceError::from_command)?;
        self.operator_account(operator_id).await
    }

    /// Operator `operator_id`'s account (404 if unknown), read from the log: what a
    /// token is checked against, so a revocation takes effect at once.
    pub async fn operator_account(&self, operator_id: &str) -> Result<OperatorAccount, ServiceError> {
        let a = self
            .aggregates
            .operators
            .load(operator_id)
            .await
            .map_err(ServiceError::from_command)?;
        if a.id.is_none() {
            return Err(ServiceError::NotFound {
                code: "operator_not_found",
                message: format!("no operator {operator_id}"),
            });
        }
        Ok(a)
    }

    /// Every operator account, revoked ones included, by id (the `operators` view).
    pub async fn operators(&self) -> Result<Vec<OperatorDoc>, ServiceError> {
        let docs = self.views.all(Operators::VIEW).await?;
        Ok(docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect())
    }
}
