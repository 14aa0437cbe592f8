//! Operators as people [API.md "Auth"]: an admin adds staff with a role (and optionally
//! a scope of cabinets), lists them, and revokes them. The token is made here, shown
//! once in the reply, and only its hash is kept.

use super::auth::{token_secret, token_sha256, Admin, OPERATOR_PREFIX};
use super::error::ErrorBody;
use super::extract::ApiJson;
use super::money::not_blank;
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::operator::{CabinetScope, Role};
use tare_projections::OperatorDoc;
use utoipa::ToSchema;

/// A role's name (the document's shape of `role`; read as text and checked, so a wrong
/// one is a 422 on `role`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only
pub(super) enum RoleName {
    /// Everything, including managing operators.
    Admin,
    /// The fleet, restocks, commands, anomalies, refunds up to the limit.
    Operator,
    /// Read-only.
    Auditor,
}

/// A cabinet pattern of an operator's scope: a cabinet id `pk.dn`, or `pk.*` for every
/// cabinet of a product key (the document's shape; read as text and checked).
pub(super) struct CabinetPattern;

impl utoipa::PartialSchema for CabinetPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[A-Za-z0-9_-]{1,64}\.([A-Za-z0-9_-]{1,64}|\*)$"))
            .description(Some("A cabinet id `pk.dn`, or `pk.*` for every cabinet of a product key."))
            .into()
    }
}

impl ToSchema for CabinetPattern {}

/// `POST /api/v1/operators`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewOperator {
    /// The person's name, as the log will show who did what: 1-64 characters without
    /// control characters, not blank (surrounding blanks are trimmed).
    #[schema(
        pattern = r"^[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F]([^\x00-\x1F\x7F-\x9F]{0,62}[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F])?[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "Li Wei"
    )]
    name: String,
    /// What they may do.
    #[schema(value_type = RoleName)]
    role: String,
    /// Their tenant: the cabinets they reach, each a cabinet id `pk.dn` or every cabinet
    /// of a product key `pk.*` (at most 1000). Omitted: the whole fleet.
    #[serde(default)]
    #[schema(value_type = Option<Vec<CabinetPattern>>, min_items = 1, max_items = 1000, example = json!(["acme.*", "north.c7"]))]
    cabinets: Option<Vec<String>>,
}

/// An added operator, with their token (shown only here).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OperatorCreated {
    /// The operator's id (`op_…`): what the log records as who did it.
    operator_id: String,
    /// `Authorization: Bearer <token>`; only its hash is stored, so it cannot be shown
    /// again.
    token: String,
}

/// An operator account as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OperatorDto {
    /// Id.
    operator_id: String,
    /// Name.
    name: String,
    /// Role.
    #[schema(value_type = RoleName)]
    role: String,
    /// The cabinets they reach (`null`: the whole fleet).
    cabinets: Option<Vec<String>>,
    /// Who added them.
    added_by: String,
    /// When (Unix ms).
    added_at: i64,
    /// When their token was revoked (Unix ms).
    revoked_at: Option<i64>,
    /// Who revoked it.
    revoked_by: Option<String>,
}

impl From<OperatorDoc> for OperatorDto {
    fn from(d: OperatorDoc) -> Self {
        Self {
            operator_id: d.operator_id,
            name: d.name,
            role: d.role.as_str().to_string(),
            cabinets: d.cabinets,
            added_by: d.added_by,
            added_at: d.added_at,
            revoked_at: d.revoked_at,
            revoked_by: d.revoked_by,
        }
    }
}

/// The staff list.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OperatorList {
    /// Every account, revoked ones included, by id.
    items: Vec<OperatorDto>,
}

/// Add an operator.
///
/// Admins only. Makes an account for a person with a role — `admin` (everything),
/// `operator` (the fleet, restocks, commands, anomalies, refunds up to the limit) or
/// `auditor` (read-only) — and optionally a scope of cabinets. The token is in this reply
/// only. Everything the operator does is recorded under their `operator_id`.
#[utoipa::path(
    post,
    path = "/api/v1/operators",
    tag = "operators",
    operation_id = "addOperator",
    security(("operatorBearer" = [])),
    request_body = NewOperator,
    responses(
        (status = 201, description = "Added; the token is shown only here.", body = OperatorCreated),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: the caller is not an admin.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `name`, `role` (not admin, operator or auditor), `cabinets` (empty, over 1000, or a pattern that is neither `pk.dn` nor `pk.*`) or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn add(
    Admin(by): Admin,
    State(s): State<Arc<ApiState>>,
    ApiJson(b): ApiJson<NewOperator>,
) -> Result<(StatusCode, Json<OperatorCreated>), ApiError> {
    let role = Role::parse(&b.role).ok_or_else(|| ApiError::invalid("role", "must be admin, operator or auditor"))?;
    let scope = match b.cabinets {
        None => CabinetScope::fleet(),
        Some(p) => CabinetScope::of(p).map_err(|e| ApiError::invalid("cabinets", e.to_string().trim_start_matches("cabinets: ")))?,
    };
    let operator_id = format!("{OPERATOR_PREFIX}{}", uuid::Uuid::now_v7().simple());
    let token = format!("{operator_id}.{}", token_secret());
    s.platform
        .add_operator(&operator_id, b.name, role, scope, token_sha256(&token), &by.operator_id)
        .await?;
    Ok((StatusCode::CREATED, Json(OperatorCreated { operator_id, token })))
}

/// List the operators.
///
/// Admins only. Every account with its role, scope, who added it and whether it was
/// revoked; never a token.
#[utoipa::path(
    get,
    path = "/api/v1/operators",
    tag = "operators",
    operation_id = "listOperators",
    security(("operatorBearer" = [])),
    responses(
        (status = 200, description = "The staff list.", body = OperatorList),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn list(_: Admin, State(s): State<Arc<ApiState>>) -> Result<Json<OperatorList>, ApiError> {
    let items = s.platform.operators().await?.into_iter().map(Into::into).collect();
    Ok(Json(OperatorList { items }))
}

/// The body of an admin's act on a person's account that needs only a reason
/// (`POST /api/v1/operators/{id}/revoke`, `POST /api/v1/shoppers/{id}/erase`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Reason {
    /// Why, kept with who and when: at most 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub(super) reason: String,
}

/// Revoke an operator.
///
/// Admins only. The operator's token stops working at once (401 `token revoked`), for
/// good; what they did stays in the log under their id. Revoking again changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/operators/{id}/revoke",
    tag = "operators",
    operation_id = "revokeOperator",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The operator's id (`op_…`).")),
    request_body = Reason,
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: the caller is not an admin.", body = ErrorBody),
        (status = 404, description = "`operator_not_found`.", body = ErrorBody),
        (status = 409, description = "`concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `reason` or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn revoke(
    Admin(by): Admin,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<Reason>,
) -> Result<StatusCode, ApiError> {
    let reason = not_blank("reason", &b.reason, 200)?;
    s.platform.revoke_operator(&id, reason, &by.operator_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
