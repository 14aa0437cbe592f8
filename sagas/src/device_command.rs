//! The device command saga [D7]: deliver a command at issue; after each delivery, resend
//! it (same id, which the device executes at most once and answers with its ack again)
//! until an ack or the expiry, when the delivery effect records the command `unknown`.

use crate::effect::{Effect, EffectError, EffectOutcome, Scheduled};
use crate::ports::{CommandMeta, EffectPorts};
use crate::SagaConfig;
use tare_domain::cabinet::CabinetCommand;
use tare_domain::command::{CommandEvent, CommandSpec, CommandState, CommandStep};
use tare_domain::{DoorNo, Grams, LaneNo, UnixMs};

/// Device commands [D7]: deliver at issue; after each delivery, resend (same id, which
/// the device executes at most once and answers with its ack again) until an ack or the
/// expiry, when the effect records the command `unknown`.
/// The deliveries `e` of command `cmd_id` calls for.
pub fn decide(cmd_id: &str, e: &CommandEvent, cfg: &SagaConfig) -> Vec<Scheduled> {
    let deliver = |attempt: u32, at: UnixMs| Scheduled {
        key: format!("command:{cmd_id}:deliver:{attempt}"),
        due_at: at,
        effect: Effect::DeliverCommand {
            cmd_id: cmd_id.to_string(),
            attempt,
        },
    };
    match e {
        CommandEvent::CommandIssued { at, .. } => vec![deliver(1, *at)],
        CommandEvent::CommandDelivered { attempt, at } => vec![deliver(attempt + 1, at + cfg.command_resend_ms)],
        // A command that held its door frees it when it ends [O2].
        CommandEvent::CommandAcknowledged {
            frees_door: Some(door),
            at,
            ..
        }
        | CommandEvent::CommandExpired {
            frees_door: Some(door),
            at,
            ..
        } => vec![Scheduled {
            key: format!("command:{cmd_id}:free-door"),
            due_at: *at,
            effect: Effect::FreeCommandDoor {
                cmd_id: cmd_id.to_string(),
                door: *door,
            },
        }],
        CommandEvent::CommandAcknowledged { .. } | CommandEvent::CommandExpired { .. } => vec![],
    }
}

/// Delivers attempt `attempt` of command `cmd_id` to its device, or records it expired:
/// never after its expiry, never to an absent device (looked for again shortly) [B7].
pub async fn deliver(ports: &EffectPorts, cmd_id: &str, attempt: u32, key: &str) -> Result<EffectOutcome, EffectError> {
    let now = ports.clock.now_ms();
    let command = ports.commands.load(cmd_id).await?;
    let (Some(spec), Some(cabinet)) = (&command.spec, &command.cabinet) else {
        return Err(EffectError::Permanent("no such command".into()));
    };
    if !command.needs_delivery(attempt) {
        return Ok(EffectOutcome::Done);
    }
    let meta = CommandMeta::new(now, command.issued_by.as_str(), format!("job:{key}"));
    if command.is_expired(now) {
        ports.commands.execute(cmd_id, CommandStep::Expire { at: now }, meta).await?;
        return Ok(EffectOutcome::Done);
    }
    match ports
        .devices
        .send_command(cabinet, cmd_id, spec.type_name(), spec.args(), command.expires_at)
        .await
    {
        Ok(()) => {
            let step = CommandStep::RecordDelivery { attempt, at: now };
            ports.commands.execute(cmd_id, step, meta).await?;
            Ok(EffectOutcome::Done)
        }
        // Not connected: look again shortly, until the expiry.
        Err(_) => Ok(EffectOutcome::Defer((now + 1_000).min(command.expires_at))),
    }
}

/// Frees `door` of the command's cabinet, which command `cmd_id` held [O2]; a door
/// someone else holds by now is left alone.
pub async fn free_door(ports: &EffectPorts, cmd_id: &str, door: DoorNo, key: &str) -> Result<EffectOutcome, EffectError> {
    let now = ports.clock.now_ms();
    let command = ports.commands.load(cmd_id).await?;
    let Some(cabinet) = &command.cabinet else {
        return Err(EffectError::Permanent("no such command".into()));
    };
    let meta = CommandMeta::new(now, command.issued_by.as_str(), format!("job:{key}"));
    // A calibration that came back is recorded on its lane before the door is free [M1].
    if let (Some(CommandSpec::Calibrate { lane, standard_grams, .. }), CommandState::Done) = (&command.spec, command.state) {
        let measured = command
            .result
            .as_ref()
            .and_then(|r| r.get("measured_grams"))
            .and_then(serde_json::Value::as_f64);
        if let (Some(measured), Ok(lane)) = (
            measured.and_then(|m| Grams::new("measured_grams", m).ok()),
            LaneNo::parse("lane", i64::from(*lane)),
        ) {
            let record = CabinetCommand::RecordCalibration {
                door,
                lane,
                standard_grams: *standard_grams,
                measured_grams: measured,
                cmd_id: cmd_id.to_string(),
                at: now,
            };
            ports.cabinets.execute(&cabinet.to_string(), record, meta.clone()).await?;
        }
    }
    // A tare that came back zeroed its (empty) lane [M1].
    if let (Some(CommandSpec::Tare { lane, .. }), CommandState::Done) = (&command.spec, command.state) {
        if let Ok(lane) = LaneNo::parse("lane", i64::from(*lane)) {
            let record = CabinetCommand::RecordTare {
                door,
                lane,
                cmd_id: cmd_id.to_string(),
                at: now,
            };
            ports.cabinets.execute(&cabinet.to_string(), record, meta.clone()).await?;
        }
    }
    let release = CabinetCommand::ReleaseDoor {
        door,
        session_id: cmd_id.to_string(),
        reason: "command_ended".into(),
        at: now,
    };
    ports.cabinets.execute(&cabinet.to_string(), release, meta).await?;
    Ok(EffectOutcome::Done)
}
