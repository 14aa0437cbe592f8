//! Device commands for operators [D7]: issue any command of PROTOCOL.md to a cabinet and
//! follow it to its final state (`done`, `failed`, `unknown`).
//!
//! The body is parsed into the domain's `CommandSpec` (the one authority on the wire
//! shape); the document describes it with one schema per command type, each with the
//! `args` that type takes (`CommandArgs`), so a client cannot be told that any `args` go.

use super::cabinets::CabinetPath;
use super::error::ErrorBody;
use super::extract::{parse_json, Operator};
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tare_domain::command::{CommandSpec, CommandState, DeviceCommand};
use tare_domain::CabinetId;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Default validity of an operator's command.
const DEFAULT_TTL_S: i64 = 60;
/// Longest validity (an upgrade may wait for a device to come back within a day).
const MAX_TTL_S: i64 = 86_400;

/// `{door}`: `open_door`, `query_door`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only: `CommandSpec` parses it.
struct DoorArgs {
    /// Door.
    #[schema(minimum = 1, maximum = 255)]
    door: u8,
}

/// `{compartment}`: `pop`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct PopArgs {
    /// Locker compartment.
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    compartment: u32,
}

/// `{door, lane}`: `tare` (zero the lane's scale; `result.grams`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct LaneArgs {
    /// Door.
    #[schema(minimum = 1, maximum = 255)]
    door: u8,
    /// Lane.
    #[schema(minimum = 1, maximum = 255)]
    lane: u8,
}

/// `{door, lane, standard_grams}`: `calibrate` (`result.measured_grams`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct CalibrateArgs {
    /// Door.
    #[schema(minimum = 1, maximum = 255)]
    door: u8,
    /// Lane.
    #[schema(minimum = 1, maximum = 255)]
    lane: u8,
    /// The standard weight placed on the lane, in grams.
    #[schema(exclusive_minimum = 0, maximum = 50000)]
    standard_grams: f64,
}

/// `{door, lane, price_cents, name}`: `set_price_label`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct PriceLabelArgs {
    /// Door.
    #[schema(minimum = 1, maximum = 255)]
    door: u8,
    /// Lane.
    #[schema(minimum = 1, maximum = 255)]
    lane: u8,
    /// Price in cents.
    #[schema(minimum = 0, maximum = 10_000_000)]
    price_cents: i64,
    /// Product name: at most 64 characters, not blank.
    #[schema(
        max_length = 64,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    name: String,
}

/// `{on}`: `lights`, `heating`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct SwitchArgs {
    /// On or off.
    on: bool,
}

/// `{ad_id, uri}`: `ad_add`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct AdAddArgs {
    /// Ad id: at most 64 characters, not blank.
    #[schema(
        max_length = 64,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    ad_id: String,
    /// Where the device fetches it: at most 2048 characters, not blank.
    #[schema(
        max_length = 2048,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    uri: String,
}

/// `{ad_id}`: `ad_remove`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct AdRemoveArgs {
    /// Ad id: at most 64 characters, not blank.
    #[schema(
        max_length = 64,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    ad_id: String,
}

/// Which part of the device an upgrade replaces.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Schema only.
enum Component {
    /// Firmware.
    Fw,
    /// Application.
    App,
}

/// `{component, version, uri, sha256}`: `upgrade`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Schema only.
struct UpgradeArgs {
    /// `fw` or `app`.
    component: Component,
    /// Version: at most 64 characters, not blank.
    #[schema(
        max_length = 64,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    version: String,
    /// Where the device fetches the image: at most 2048 characters, not blank.
    #[schema(
        max_length = 2048,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    uri: String,
    /// Hex SHA-256 of the image.
    #[schema(pattern = "^[0-9A-Fa-f]{64}$")]
    sha256: String,
}

/// Every command type of PROTOCOL.md with the schema of its `args`, in the order
/// `CommandSpec` declares them.
fn command_types() -> [(&'static str, String, RefOr<Schema>); 11] {
    fn of<T: ToSchema>(name: &'static str) -> (&'static str, String, RefOr<Schema>) {
        (name, T::name().into(), T::schema())
    }
    [
        of::<DoorArgs>("open_door"),
        of::<DoorArgs>("query_door"),
        of::<PopArgs>("pop"),
        of::<LaneArgs>("tare"),
        of::<CalibrateArgs>("calibrate"),
        of::<PriceLabelArgs>("set_price_label"),
        of::<SwitchArgs>("lights"),
        of::<SwitchArgs>("heating"),
        of::<AdAddArgs>("ad_add"),
        of::<AdRemoveArgs>("ad_remove"),
        of::<UpgradeArgs>("upgrade"),
    ]
}

/// `POST /api/v1/cabinets/{id}/commands` `{type, args, ttl_s?}`: its schema is one
/// object per command type, whose `args` are exactly that type's (`CommandSpec`).
pub struct NewCommand;

impl PartialSchema for NewCommand {
    fn schema() -> RefOr<Schema> {
        let variants = command_types().into_iter().map(|(type_name, args, _)| {
            ObjectBuilder::new()
                .title(Some(type_name))
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .enum_values(Some([type_name])),
                )
                .required("type")
                .property("args", Ref::from_schema_name(args))
                .required("args")
                .property(
                    "ttl_s",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Integer))
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Int64,
                        )))
                        .minimum(Some(1))
                        .maximum(Some(MAX_TTL_S))
                        .default(Some(json!(DEFAULT_TTL_S)))
                        .description(Some("How long the command stays valid, in seconds; the device refuses it after.")),
                )
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .build()
        });
        variants
            .fold(OneOfBuilder::new(), |b, v| b.item(v))
            .description(Some(
                "A device command: `type` and exactly that type's `args` (PROTOCOL.md), and how long it stays valid.",
            ))
            .examples([json!({"type": "calibrate", "args": {"door": 1, "lane": 1, "standard_grams": 500}, "ttl_s": 60})])
            .into()
    }
}

impl ToSchema for NewCommand {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let mut seen = std::collections::BTreeSet::new();
        for (_, name, schema) in command_types() {
            if seen.insert(name.clone()) {
                schemas.push((name, schema));
            }
        }
        <Component as ToSchema>::schemas(schemas);
        schemas.push((Component::name().into(), Component::schema()));
    }
}

/// A command as issued.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandIssued {
    /// The command's id (follow it at `GET /api/v1/commands/{cmd_id}`).
    cmd_id: String,
    /// Always `issued`.
    #[schema(value_type = String, example = "issued")]
    state: &'static str,
}

/// Send a command to a cabinet.
///
/// Issues any command of PROTOCOL.md to a cabinet; it is delivered (and resent with the
/// same id) until the device acknowledges it or it expires [D7]. A command that opens or
/// weighs a door (`open_door`, `tare`, `calibrate`) takes the door like a purchase does
/// [O2]: refused while a shopper (or a restock, or another such command) holds it; it
/// gives the door back when it ends — an `open_door` done, when the door closes.
#[utoipa::path(
    post,
    path = "/api/v1/cabinets/{id}/commands",
    tag = "cabinets",
    operation_id = "issueCommand",
    security(("operatorBearer" = [])),
    params(CabinetPath),
    request_body = NewCommand,
    responses(
        (status = 202, description = "Issued.", body = CommandIssued),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`, or `door_not_found` for a door command to a door the cabinet lacks.", body = ErrorBody),
        (status = 409, description = "`cabinet_busy` (the door of an `open_door`, `tare` or `calibrate` is held by a purchase, a restock or another such command), `command_id_taken` or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `cabinet` (the id is not `pk.dn`), `body` (not an object), `type` (not a command type), `ttl_s`, `args` (missing, wrong or unknown field), or one argument, e.g. `args.door`, `args.sha256`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn issue(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CommandIssued>), ApiError> {
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
    Ok((StatusCode::ACCEPTED, Json(CommandIssued { cmd_id, state: "issued" })))
}

/// Where a command stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum CommandStateDto {
    /// Issued, not delivered yet.
    Issued,
    /// Delivered at least once, no ack yet.
    Sent,
    /// Acked ok.
    Done,
    /// Acked with an error (including the device's own `expired`).
    Failed,
    /// No ack before the expiry (a later ack still settles it).
    Unknown,
}

impl From<CommandState> for CommandStateDto {
    fn from(s: CommandState) -> Self {
        match s {
            // A command that was never issued is not found, so never shown.
            CommandState::None | CommandState::Issued => Self::Issued,
            CommandState::Sent => Self::Sent,
            CommandState::Done => Self::Done,
            CommandState::Failed => Self::Failed,
            CommandState::Unknown => Self::Unknown,
        }
    }
}

/// A command and how it ended (or where it stands). Fields in alphabetical order: the
/// bytes are those of the untyped body this replaced.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandDto {
    /// Its arguments, as sent (the schema of its type's `args`).
    #[schema(value_type = Option<Object>)]
    args: Option<Value>,
    /// Deliveries made (the first and each resend of the same id).
    attempts: u32,
    /// The cabinet it is for.
    cabinet: Option<String>,
    /// Its id.
    cmd_id: String,
    /// The device's detail from its ack.
    detail: Option<String>,
    /// The device refuses it after this (Unix ms).
    expires_at: i64,
    /// When it reached its final state (Unix ms).
    finished_at: Option<i64>,
    /// Unix ms.
    issued_at: i64,
    /// `operator` or `order:{id}`.
    issued_by: String,
    /// The device's result object (query_door `{state}`, tare `{grams}`, calibrate
    /// `{measured_grams}`).
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    /// Where it stands.
    state: CommandStateDto,
    /// Its command type (`open_door`, `calibrate`, …).
    #[serde(rename = "type")]
    kind: Option<&'static str>,
}

impl CommandDto {
    fn new(id: &str, c: &DeviceCommand) -> Self {
        Self {
            args: c.spec.as_ref().map(|s| s.args()),
            attempts: c.attempts,
            cabinet: c.cabinet.as_ref().map(|c| c.to_string()),
            cmd_id: id.to_string(),
            detail: c.detail.clone(),
            expires_at: c.expires_at,
            finished_at: c.finished_at,
            issued_at: c.issued_at,
            issued_by: c.issued_by.clone(),
            result: c.result.clone(),
            state: c.state.into(),
            kind: c.spec.as_ref().map(|s| s.type_name()),
        }
    }
}

/// Follow a command.
///
/// A device command's record: its state, deliveries and the device's answer [D7].
#[utoipa::path(
    get,
    path = "/api/v1/commands/{id}",
    tag = "cabinets",
    operation_id = "getCommand",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The command's id (`cmd-…`).")),
    responses(
        (status = 200, description = "The command.", body = CommandDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`command_not_found`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get(_: Operator, State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<CommandDto>, ApiError> {
    let c = s.platform.command(&id).await?;
    Ok(Json(CommandDto::new(&id, &c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each type's schema example is a command `CommandSpec` parses and accepts: the
    /// document's types and args are the domain's.
    #[test]
    fn every_documented_command_type_is_the_domains() {
        let examples = [
            json!({"type": "open_door", "args": {"door": 1}}),
            json!({"type": "query_door", "args": {"door": 255}}),
            json!({"type": "pop", "args": {"compartment": 4_294_967_295_u32}}),
            json!({"type": "tare", "args": {"door": 1, "lane": 2}}),
            json!({"type": "calibrate", "args": {"door": 1, "lane": 2, "standard_grams": 50000}}),
            json!({"type": "set_price_label", "args": {"door": 1, "lane": 2, "price_cents": 0, "name": "\u{e9}".repeat(64)}}),
            json!({"type": "lights", "args": {"on": true}}),
            json!({"type": "heating", "args": {"on": false}}),
            json!({"type": "ad_add", "args": {"ad_id": " a", "uri": "u".repeat(2048)}}),
            json!({"type": "ad_remove", "args": {"ad_id": "a"}}),
            json!({"type": "upgrade", "args": {"component": "app", "version": "2", "uri": "https://x", "sha256": "aB".repeat(32)}}),
        ];
        let documented: Vec<&str> = command_types().iter().map(|(t, _, _)| *t).collect();
        for (example, documented) in examples.iter().zip(&documented) {
            let spec: CommandSpec = serde_json::from_value(example.clone()).unwrap();
            assert_eq!(spec.type_name(), *documented);
            spec.validate().unwrap();
        }
        assert_eq!(examples.len(), documented.len());
    }
}
