//! Operators as people [API.md "Auth"]: each member of staff has an account with a name,
//! a role, an optional scope of cabinets (a tenant: a franchisee sees and acts on its own
//! cabinets only) and the hash of an API token that can be revoked. Being an aggregate in
//! the log, who was given which powers by whom, and when they lost them, is itself
//! auditable.

use crate::{DomainError, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// What a member of staff may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including managing operators and writing off money.
    Admin,
    /// The fleet: products, cabinets, restocks, commands, anomalies, and refunds up to
    /// the platform's limit.
    Operator,
    /// Read-only: events, ledger, reconciliation, settlements, replay.
    Auditor,
}

impl Role {
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
        }
    }

    /// Parses a role's API name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }
}

/// The most cabinet patterns one operator's scope may hold.
pub const MAX_SCOPE_PATTERNS: usize = 1000;

/// Which cabinets an operator may see and act on: all of them, or those matching one of
/// its patterns, each a cabinet id `pk.dn` or every cabinet of a product key, `pk.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CabinetScope {
    /// `None`: the whole fleet.
    pub patterns: Option<Vec<String>>,
}

impl CabinetScope {
    /// The whole fleet.
    pub fn fleet() -> Self {
        Self { patterns: None }
    }

    /// A scope of `patterns`, checked: each `pk.dn` or `pk.*`, at most
    /// [`MAX_SCOPE_PATTERNS`], at least one.
    pub fn of(patterns: Vec<String>) -> Result<Self, OperatorError> {
        let invalid = |reason: String| OperatorError::Invalid { field: "cabinets", reason };
        if patterns.is_empty() {
            return Err(invalid("must name at least one cabinet (omit it for the whole fleet)".into()));
        }
        if patterns.len() > MAX_SCOPE_PATTERNS {
            return Err(invalid(format!("at most {MAX_SCOPE_PATTERNS} patterns")));
        }
        for p in &patterns {
            let ok = match p.strip_suffix(".*") {
                Some(pk) => crate::CabinetId::new(pk, "x").is_ok(),
                None => crate::CabinetId::parse(p).is_ok(),
            };
            if !ok {
                return Err(invalid(format!("`{p}` is neither a cabinet id `pk.dn` nor `pk.*`")));
            }
        }
        Ok(Self { patterns: Some(patterns) })
    }

    /// Whether the scope is the whole fleet.
    pub fn is_fleet(&self) -> bool {
        self.patterns.is_none()
    }

    /// Whether `cabinet` (`pk.dn`) is in the scope.
    pub fn contains(&self, cabinet: &str) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        let pk = cabinet.split_once('.').map(|(pk, _)| pk);
        patterns.iter().any(|p| match p.strip_suffix(".*") {
            Some(scope_pk) => pk == Some(scope_pk),
            None => p == cabinet,
        })
    }
}

/// Commands an operator account accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorCommand {
    /// Creates the account.
    Add {
        /// Its id (`op_…`).
        operator_id: String,
        /// The person's name as others will read it in the log.
        name: String,
        /// What they may do.
        role: Role,
        /// Which cabinets.
        scope: CabinetScope,
        /// SHA-256 (hex) of the token; the token itself is never stored.
        token_sha256: String,
        /// Who added them (an operator id, or `admin` for the environment's token).
        by: String,
        /// When.
        at: UnixMs,
    },
    /// Revokes the account's token for good (idempotent).
    Revoke {
        /// Who revoked it.
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

/// Facts about an operator account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorEvent {
    /// The account exists.
    OperatorAdded {
        /// Id.
        operator_id: String,
        /// Name.
        name: String,
        /// Role.
        role: Role,
        /// Scope.
        scope: CabinetScope,
        /// Token hash.
        token_sha256: String,
        /// Who added them.
        by: String,
        /// When.
        at: UnixMs,
    },
    /// The token no longer works.
    OperatorRevoked {
        /// Who revoked it.
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for OperatorEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OperatorAdded { .. } => "OperatorAdded",
            Self::OperatorRevoked { .. } => "OperatorRevoked",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why an operator command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// Already created.
    #[error("operator already exists")]
    AlreadyExists,
    /// Unknown operator.
    #[error("operator not found")]
    NotFound,
    /// A field was invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl DomainError for OperatorError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::AlreadyExists => RejectionKind::Conflict,
            Self::NotFound => RejectionKind::NotFound,
            Self::Invalid { .. } => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "operator_exists",
            Self::NotFound => "operator_not_found",
            Self::Invalid { .. } => "invalid_field",
        }
    }
    fn field(&self) -> Option<String> {
        match self {
            Self::Invalid { field, .. } => Some(field.to_string()),
            _ => None,
        }
    }
}

/// An operator account's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorAccount {
    /// Id, once added.
    pub id: Option<String>,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Option<Role>,
    /// Scope.
    pub scope: CabinetScope,
    /// Token hash.
    pub token_sha256: String,
    /// When the token was revoked.
    pub revoked_at: Option<UnixMs>,
}

/// Longest name accepted.
pub const MAX_NAME_CHARS: usize = 64;

impl Aggregate for OperatorAccount {
    const TYPE: &'static str = "operator";
    type Command = OperatorCommand;
    type Event = OperatorEvent;
    type Error = OperatorError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            OperatorCommand::Add {
                operator_id,
                name,
                role,
                scope,
                token_sha256,
                by,
                at,
            } => {
                if self.id.is_some() {
                    return Err(OperatorError::AlreadyExists);
                }
                let name = name.trim().to_string();
                if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
                    return Err(OperatorError::Invalid {
                        field: "name",
                        reason: format!("must be 1-{MAX_NAME_CHARS} characters without control characters"),
                    });
                }
                let event = OperatorEvent::OperatorAdded {
                    operator_id,
                    name,
                    role,
                    scope,
                    token_sha256,
                    by,
                    at,
                };
                sink.write(event, self).await;
            }
            OperatorCommand::Revoke { by, reason, at } => {
                if self.id.is_none() {
                    return Err(OperatorError::NotFound);
                }
                if self.revoked_at.is_none() {
                    sink.write(OperatorEvent::OperatorRevoked { by, reason, at }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OperatorEvent::OperatorAdded {
                operator_id,
                name,
                role,
                scope,
                token_sha256,
                ..
            } => {
                self.id = Some(operator_id);
                self.name = name;
                self.role = Some(role);
                self.scope = scope;
                self.token_sha256 = token_sha256;
            }
            OperatorEvent::OperatorRevoked { at, .. } => self.revoked_at = Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn add(name: &str) -> OperatorCommand {
        OperatorCommand::Add {
            operator_id: "op_1".into(),
            name: name.into(),
            role: Role::Operator,
            scope: CabinetScope::fleet(),
            token_sha256: "h".into(),
            by: "admin".into(),
            at: 5,
        }
    }

    fn added() -> OperatorEvent {
        OperatorEvent::OperatorAdded {
            operator_id: "op_1".into(),
            name: "Li Wei".into(),
            role: Role::Operator,
            scope: CabinetScope::fleet(),
            token_sha256: "h".into(),
            by: "admin".into(),
            at: 5,
        }
    }

    #[test]
    fn an_operator_is_added_once_and_revoked_once() {
        TestFramework::<OperatorAccount>::with(())
            .given_no_previous_events()
            .when(add(" Li Wei "))
            .then_expect_events(vec![added()]);
        TestFramework::<OperatorAccount>::with(())
            .given(vec![added()])
            .when(add("Li Wei"))
            .then_expect_error(OperatorError::AlreadyExists);
        let revoked = OperatorEvent::OperatorRevoked {
            by: "admin".into(),
            reason: "left".into(),
            at: 9,
        };
        let revoke = || OperatorCommand::Revoke {
            by: "admin".into(),
            reason: "left".into(),
            at: 9,
        };
        TestFramework::<OperatorAccount>::with(())
            .given(vec![added()])
            .when(revoke())
            .then_expect_events(vec![revoked.clone()]);
        TestFramework::<OperatorAccount>::with(())
            .given(vec![added(), revoked])
            .when(revoke())
            .then_expect_events(vec![]);
        TestFramework::<OperatorAccount>::with(())
            .given_no_previous_events()
            .when(revoke())
            .then_expect_error(OperatorError::NotFound);
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "   ", "a\u{7}b", &"x".repeat(65)] {
            TestFramework::<OperatorAccount>::with(())
                .given_no_previous_events()
                .when(add(bad))
                .then_expect_error(OperatorError::Invalid {
                    field: "name",
                    reason: "must be 1-64 characters without control characters".into(),
                });
        }
    }

    #[test]
    fn a_scope_holds_its_cabinets_and_product_keys_only() {
        let s = CabinetScope::of(vec!["acme.*".into(), "north.c7".into()]).unwrap();
        assert!(s.contains("acme.c1"));
        assert!(s.contains("north.c7"));
        assert!(!s.contains("north.c8"));
        assert!(!s.contains("acmex.c1"), "a product key is matched whole");
        assert!(!s.contains("acme"), "not a cabinet id");
        assert!(CabinetScope::fleet().contains("any.one"));
        for bad in [vec![], vec!["acme".to_string()], vec!["a/b.*".to_string()], vec!["*".to_string()]] {
            assert!(matches!(
                CabinetScope::of(bad),
                Err(OperatorError::Invalid { field: "cabinets", .. })
            ));
        }
        assert!(CabinetScope::of(vec!["a.b".to_string(); MAX_SCOPE_PATTERNS + 1]).is_err());
    }
}
