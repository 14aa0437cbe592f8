//! The staff list [API.md "Auth"]: one document per operator account — name, role,
//! scope, who added it and when, and whether (and by whom) it was revoked. The token
//! hash stays in the aggregate: the list is what an admin reviews, not a credential store.

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::operator::{OperatorEvent, Role};
use tare_domain::{AnyEvent, UnixMs};

/// One operator account as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorDoc {
    /// Id (`op_…`).
    pub operator_id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Cabinet patterns (`None`: the whole fleet).
    pub cabinets: Option<Vec<String>>,
    /// Who added the account.
    pub added_by: String,
    /// When.
    pub added_at: UnixMs,
    /// When the token was revoked.
    pub revoked_at: Option<UnixMs>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

/// Operator accounts by id.
pub struct Operators;

impl Operators {
    /// The view's name.
    pub const VIEW: &'static str = "operators";
}

impl Projection for Operators {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Operator(_) => vec![aggregate_id.to_string()],
            _ => vec![],
        }
    }

    fn apply(
        &self,
        docs: &[(String, Option<Value>)],
        aggregate_id: &str,
        event: &AnyEvent,
        _position: i64,
        _time: UnixMs,
    ) -> Vec<DocWrite> {
        let AnyEvent::Operator(e) = event else { return vec![] };
        let current: Option<OperatorDoc> = docs
            .iter()
            .find(|(id, _)| id == aggregate_id)
            .and_then(|(_, d)| d.clone())
            .and_then(|d| serde_json::from_value(d).ok());
        let doc = match (e, current) {
            (
                OperatorEvent::OperatorAdded {
                    operator_id,
                    name,
                    role,
                    scope,
                    by,
                    at,
                    ..
                },
                _,
            ) => OperatorDoc {
                operator_id: operator_id.clone(),
                name: name.clone(),
                role: *role,
                cabinets: scope.patterns.clone(),
                added_by: by.clone(),
                added_at: *at,
                revoked_at: None,
                revoked_by: None,
            },
            (OperatorEvent::OperatorRevoked { by, at, .. }, Some(mut d)) => {
                d.revoked_at = Some(*at);
                d.revoked_by = Some(by.clone());
                d
            }
            (OperatorEvent::OperatorRevoked { .. }, None) => return vec![],
        };
        vec![DocWrite {
            id: aggregate_id.to_string(),
            owner: None,
            doc: serde_json::to_value(&doc).unwrap_or(Value::Null),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::operator::CabinetScope;

    #[test]
    fn an_account_is_listed_without_its_token_and_shows_its_revocation() {
        let added = AnyEvent::Operator(OperatorEvent::OperatorAdded {
            operator_id: "op_1".into(),
            name: "Li Wei".into(),
            role: Role::Auditor,
            scope: CabinetScope::of(vec!["acme.*".into()]).unwrap(),
            token_sha256: "secret-hash".into(),
            by: "admin".into(),
            at: 5,
        });
        let w = Operators.apply(&[("op_1".into(), None)], "op_1", &added, 1, 5);
        assert_eq!(w.len(), 1);
        assert!(!w[0].doc.to_string().contains("secret-hash"), "{}", w[0].doc);
        assert_eq!(w[0].doc["cabinets"], serde_json::json!(["acme.*"]));
        let revoked = AnyEvent::Operator(OperatorEvent::OperatorRevoked {
            by: "op_2".into(),
            reason: "left".into(),
            at: 9,
        });
        let w = Operators.apply(&[("op_1".into(), Some(w[0].doc.clone()))], "op_1", &revoked, 2, 9);
        let d: OperatorDoc = serde_json::from_value(w[0].doc.clone()).unwrap();
        assert_eq!(
            (d.revoked_at, d.revoked_by.as_deref(), d.role),
            (Some(9), Some("op_2"), Role::Auditor)
        );
    }
}
