//! The restock saga [O10, M2]: takes the door for the session (refusing it while anyone
//! else holds it), sends the door command, records the open and the close with their
//! stable readings, counts after the close the way a purchase settles, books the counts
//! on the cabinet and frees the door; a door that never opens or never weighs stable
//! ends the session as failed and frees the door with nothing booked.

use crate::effect::{Effect, EffectError, EffectOutcome, Scheduled};
use crate::ports::{CommandMeta, EffectPorts};
use crate::SagaConfig;
use tare_domain::cabinet::{CabinetCommand, CabinetError, CabinetEvent, Holder};
use tare_domain::command::{CommandSpec, CommandStep};
use tare_domain::restock::{Restock, RestockCommand, RestockEvent, RestockState};
use tare_domain::weight::StableReading;
use tare_domain::{AnyEvent, CabinetId, DoorNo, UnixMs};

type Outcome = Result<EffectOutcome, EffectError>;

/// The restock saga's decision for one event.
pub fn decide(aggregate_id: &str, event: &AnyEvent, cfg: &SagaConfig) -> Vec<Scheduled> {
    let id = aggregate_id.to_string();
    let k = |step: &str| format!("restock:{aggregate_id}:{step}");
    match event {
        AnyEvent::Restock(RestockEvent::RestockStarted { at, .. }) => vec![
            Scheduled::at(k("open"), *at, Effect::OpenRestockDoor { restock_id: id.clone() }),
            Scheduled::at(
                k("open-timeout"),
                at + cfg.command_ttl_ms + 2 * cfg.door_check_ms,
                Effect::ExpireRestockOpening { restock_id: id },
            ),
        ],
        AnyEvent::Restock(RestockEvent::RestockDoorClosed { at, .. }) => vec![Scheduled::at(
            k("count"),
            at + cfg.stable_wait_ms,
            Effect::CountRestock {
                restock_id: id,
                poll_ms: cfg.stable_poll_ms,
                give_up_at: at + cfg.stable_wait_ms + cfg.stable_extra_ms,
            },
        )],
        AnyEvent::Restock(RestockEvent::RestockCounted { at, .. } | RestockEvent::RestockFailed { at, .. }) => {
            vec![Scheduled::at(k("finish"), *at, Effect::FinishRestock { restock_id: id })]
        }
        AnyEvent::Cabinet(CabinetEvent::DoorOpened {
            door,
            holder: Some(Holder::Restock { session_id }),
            device_ts,
            stable_before,
            not_before,
            at,
            ..
        }) => door_step(
            aggregate_id,
            session_id,
            (*door, *device_ts, stable_before.clone(), *not_before),
            *at,
            false,
        ),
        AnyEvent::Cabinet(CabinetEvent::DoorClosed {
            door,
            holder: Some(Holder::Restock { session_id }),
            device_ts,
            stable_before,
            not_before,
            at,
            ..
        }) => door_step(
            aggregate_id,
            session_id,
            (*door, *device_ts, stable_before.clone(), *not_before),
            *at,
            true,
        ),
        _ => vec![],
    }
}

/// `report` is the door, the device's instant, the reading before it the event carried,
/// and the door's previous close (no baseline may be older).
fn door_step(
    cabinet: &str,
    restock_id: &str,
    report: (DoorNo, UnixMs, Option<StableReading>, Option<UnixMs>),
    at: UnixMs,
    closed: bool,
) -> Vec<Scheduled> {
    let (door, device_ts, before, not_before) = report;
    let Ok(cabinet) = CabinetId::parse(cabinet) else { return vec![] };
    let step = if closed { "door-closed" } else { "door-opened" };
    vec![Scheduled::at(
        format!("restock:{restock_id}:{step}"),
        at,
        Effect::RecordRestockDoor {
            restock_id: restock_id.to_string(),
            cabinet,
            door,
            device_ts,
            closed,
            before,
            not_before,
        },
    )]
}

struct Step<'a> {
    ports: &'a EffectPorts,
    key: &'a str,
    now: UnixMs,
    restock_id: &'a str,
}

impl Step<'_> {
    fn meta(&self) -> CommandMeta {
        CommandMeta::new(self.now, self.restock_id, format!("job:{}", self.key))
    }

    async fn load(&self) -> Result<Restock, EffectError> {
        Ok(self.ports.restocks.load(self.restock_id).await?)
    }

    async fn command(&self, cmd: RestockCommand) -> Outcome {
        self.ports.restocks.execute(self.restock_id, cmd, self.meta()).await?;
        Ok(EffectOutcome::Done)
    }
}

/// Runs one of the restock saga's effects.
pub async fn run(ports: &EffectPorts, cfg: &SagaConfig, effect: &Effect, key: &str) -> Outcome {
    let now = ports.clock.now_ms();
    match effect {
        Effect::OpenRestockDoor { restock_id } => {
            let s = Step {
                ports,
                key,
                now,
                restock_id,
            };
            open_door(&s, cfg).await
        }
        Effect::ExpireRestockOpening { restock_id } => {
            let s = Step {
                ports,
                key,
                now,
                restock_id,
            };
            if s.load().await?.state != RestockState::Opening {
                return Ok(EffectOutcome::Done);
            }
            s.command(RestockCommand::Fail {
                reason: "door_never_opened".into(),
                at: now,
            })
            .await
        }
        Effect::RecordRestockDoor {
            restock_id,
            cabinet,
            door,
            device_ts,
            closed,
            before: carried,
            not_before,
        } => {
            let s = Step {
                ports,
                key,
                now,
                restock_id,
            };
            let local = ports.telemetry.stable_at_or_before(cabinet, *door, device_ts - 1);
            let before = crate::effect::newest_reading(carried.clone(), local, *not_before);
            let cmd = if *closed {
                RestockCommand::MarkDoorClosed {
                    device_ts: *device_ts,
                    fallback_before: before,
                    at: now,
                }
            } else {
                RestockCommand::MarkDoorOpened {
                    device_ts: *device_ts,
                    before,
                    at: now,
                }
            };
            s.command(cmd).await
        }
        Effect::CountRestock {
            restock_id,
            poll_ms,
            give_up_at,
        } => {
            let s = Step {
                ports,
                key,
                now,
                restock_id,
            };
            count(&s, *poll_ms, *give_up_at).await
        }
        Effect::FinishRestock { restock_id } => {
            let s = Step {
                ports,
                key,
                now,
                restock_id,
            };
            finish(&s).await
        }
        _ => Err(EffectError::Permanent("not a restock effect".into())),
    }
}

/// Takes the door for the session and sends the door command; a door someone else holds
/// (or a cabinet that is not online) fails the session.
async fn open_door(s: &Step<'_>, cfg: &SagaConfig) -> Outcome {
    let r = s.load().await?;
    let (Some(cabinet), Some(door)) = (r.cabinet.clone(), r.door) else {
        return Err(EffectError::Permanent("restock has no cabinet".into()));
    };
    if r.state != RestockState::Opening {
        return Ok(EffectOutcome::Done);
    }
    let take = CabinetCommand::AcquireDoor {
        door,
        holder: Holder::Restock {
            session_id: s.restock_id.to_string(),
        },
        at: s.now,
    };
    match s.ports.cabinets.execute(&cabinet.to_string(), take, s.meta()).await {
        Ok(()) => {}
        Err(crate::ports::CommandError::Rejected(e)) => {
            let reason = match e {
                CabinetError::DoorBusy => "door_busy".to_string(),
                other => other.to_string(),
            };
            return s.command(RestockCommand::Fail { reason, at: s.now }).await;
        }
        Err(e) => return Err(e.into()),
    }
    let step = CommandStep::Issue {
        cabinet,
        spec: CommandSpec::OpenDoor { door: door.get() },
        expires_at: s.now + cfg.command_ttl_ms,
        issued_by: format!("restock:{}", s.restock_id),
        holds_door: false, // the session holds it
        at: s.now,
    };
    s.ports.commands.execute(&r.open_cmd_id, step, s.meta()).await?;
    Ok(EffectOutcome::Done)
}

/// Counts from the first stable reading after the close; without one by `give_up_at`,
/// the session fails.
async fn count(s: &Step<'_>, poll_ms: i64, give_up_at: UnixMs) -> Outcome {
    let r = s.load().await?;
    if r.state != RestockState::Counting {
        return Ok(EffectOutcome::Done);
    }
    let (Some(cabinet), Some(door), Some(closed)) = (r.cabinet.clone(), r.door, r.closed_device_ts) else {
        return Err(EffectError::Permanent("restock lacks cabinet/door/close".into()));
    };
    match s.ports.telemetry.newest_stable_since(&cabinet, door, closed) {
        Some(after) => s.command(RestockCommand::Count { after, at: s.now }).await,
        None if s.now >= give_up_at => {
            s.command(RestockCommand::Fail {
                reason: "no_stable_weight".into(),
                at: s.now,
            })
            .await
        }
        None => Ok(EffectOutcome::Defer((s.now + poll_ms).min(give_up_at))),
    }
}

/// Books the counts on the cabinet and frees the door (or only frees it, failed).
async fn finish(s: &Step<'_>) -> Outcome {
    let r = s.load().await?;
    let (Some(cabinet), Some(door)) = (r.cabinet.clone(), r.door) else {
        return Err(EffectError::Permanent("restock has no cabinet".into()));
    };
    let cmd = match r.state {
        RestockState::Done => CabinetCommand::FinishRestock {
            door,
            restock_id: s.restock_id.to_string(),
            added: r.lines.iter().map(|l| (l.lane, l.added)).collect(),
            at: s.now,
        },
        RestockState::Failed => CabinetCommand::ReleaseDoor {
            door,
            session_id: s.restock_id.to_string(),
            reason: format!("restock_failed: {}", r.failure.as_deref().unwrap_or("")),
            at: s.now,
        },
        _ => return Ok(EffectOutcome::Done),
    };
    s.ports.cabinets.execute(&cabinet.to_string(), cmd, s.meta()).await?;
    Ok(EffectOutcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_of_a_session_is_keyed_by_it() {
        let cfg = SagaConfig::default();
        let started = AnyEvent::Restock(RestockEvent::RestockStarted {
            cabinet: CabinetId::parse("pk.c1").unwrap(),
            door: DoorNo::of(1),
            lanes: vec![],
            by: "ann".into(),
            open_cmd_id: "c".into(),
            at: 100,
        });
        let s = decide("rs1", &started, &cfg);
        let keys: Vec<(&str, UnixMs)> = s.iter().map(|s| (s.key.as_str(), s.due_at)).collect();
        assert_eq!(
            keys,
            [("restock:rs1:open", 100), ("restock:rs1:open-timeout", 100 + 10_000 + 6_000)]
        );
        let opened = AnyEvent::Cabinet(CabinetEvent::DoorOpened {
            stable_before: None,
            not_before: Some(40),
            door: DoorNo::of(2),
            holder: Some(Holder::Restock { session_id: "rs1".into() }),
            msg_id: "m".into(),
            seq: 1,
            device_ts: 90,
            cmd_id: None,
            at: 110,
        });
        let s = decide("pk.c1", &opened, &cfg);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].key, "restock:rs1:door-opened");
        assert!(matches!(
            &s[0].effect,
            Effect::RecordRestockDoor {
                closed: false,
                device_ts: 90,
                not_before: Some(40),
                ..
            }
        ));
        let shopper = AnyEvent::Cabinet(CabinetEvent::DoorOpened {
            stable_before: None,
            not_before: None,
            door: DoorNo::of(2),
            holder: Some(Holder::Order {
                order_id: "o".into(),
                shopper_id: "s".into(),
            }),
            msg_id: "m".into(),
            seq: 1,
            device_ts: 90,
            cmd_id: None,
            at: 110,
        });
        assert!(decide("pk.c1", &shopper, &cfg).is_empty(), "a purchase's door is the order saga's");
        let closed = AnyEvent::Restock(RestockEvent::RestockDoorClosed {
            device_ts: 1,
            before: None,
            at: 200,
        });
        let s = decide("rs1", &closed, &cfg);
        assert_eq!((s[0].key.as_str(), s[0].due_at), ("restock:rs1:count", 200 + cfg.stable_wait_ms));
        let failed = AnyEvent::Restock(RestockEvent::RestockFailed {
            reason: "x".into(),
            at: 300,
        });
        assert!(matches!(decide("rs1", &failed, &cfg)[0].effect, Effect::FinishRestock { .. }));
    }
}
