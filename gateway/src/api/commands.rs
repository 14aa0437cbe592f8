//! Device commands for operators [D7]: issue any command of PROTOCOL.md to a cabinet and
//! follow it to its final state (`done`, `failed`, `unknown`).

use super::extract::{parse_json, Operator};
use super::{ApiError, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use tare_domain::command::{CommandSpec, DeviceCommand};
use tare_domain::CabinetId;

/// Default validity of an operator's command.
const DEFAULT_TTL_S: i64 = 60;
/// Longest validity (an upgrade may wait for a device to come back within a day).
const MAX_TTL_S: i64 = 86_400;

fn command_json(id: &str, c: &DeviceCommand) -> Value {
    json!({
        "cmd_id": id,
        "cabinet": c.cabinet.as_ref().map(|c| c.to_string()),
        "type": c.spec.as_ref().map(|s| s.type_name()),
        "args": c.spec.as_ref().map(|s| s.args()),
        "state": c.state,
        "attempts": c.attempts,
        "issued_by": c.issued_by,
        "issued_at": c.issued_at,
        "expires_at": c.expires_at,
        "finished_at": c.finished_at,
        "detail": c.detail,
        "result": c.result,
    })
}

/// `POST /api/v1/cabinets/{id}/commands` `{type, args, ttl_s?}` → 202 `{cmd_id, state}`.
pub(super) async fn issue(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = CabinetId::parse(&id)?;
    let mut v: Value = parse_json(&body)?;
    let obj = v.as_object_mut().ok_or_else(|| ApiError::invalid("body", "must be an object"))?;
    let ttl_s = match obj.remove("ttl_s") {
        None => DEFAULT_TTL_S,
        Some(t) => t
            .as_i64()
            .filter(|t| (1..=MAX_TTL_S).contains(t))
            .ok_or_else(|| ApiError::invalid("ttl_s", format!("must be an integer from 1 to {MAX_TTL_S}")))?,
    };
    if !obj.contains_key("args") {
        obj.insert("args".into(), json!({}));
    }
    let spec: CommandSpec = serde_json::from_value(v).map_err(|e| {
        let msg = e.to_string();
        let field = if msg.contains("variant") { "type" } else { "args" };
        ApiError::invalid(field, msg)
    })?;
    spec.validate().map_err(|e| match e {
        tare_domain::command::CommandError::Invalid { field, reason } => ApiError::invalid(field, reason),
        other => ApiError::invalid("body", other.to_string()),
    })?;
    let cmd_id = s.platform.issue_command(&id, spec, ttl_s * 1000, "operator").await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"cmd_id": cmd_id, "state": "issued"}))))
}

/// `GET /api/v1/commands/{cmd_id}`.
pub(super) async fn get(_: Operator, State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let c = s.platform.command(&id).await?;
    Ok(Json(command_json(&id, &c)))
}
