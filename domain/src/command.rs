//! The device command aggregate [D7]: one command to one cabinet, from issue to its final
//! state. Every command in PROTOCOL.md — the order saga's `open_door` and `query_door` and
//! the operator's `tare`, `calibrate`, `set_price_label`, lights, heating, ads, upgrades and
//! locker `pop` — has an id, an expiry, deliveries (the first and each resend of the same
//! id), the device's acknowledgement, and ends `done` (ack ok), `failed` (ack error,
//! including the device's own `expired`) or `unknown` (no ack before the expiry). An ack
//! that arrives after `unknown` still lands and settles the outcome: an operator would
//! rather know.

use crate::{CabinetId, DomainError, DoorNo, Grams, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A command and its arguments, exactly as PROTOCOL.md names them (`type` and `args`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "args", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandSpec {
    /// Unlock a door; the device then reports `door open`.
    OpenDoor {
        /// Door.
        door: u8,
    },
    /// Ask a door's state (`result.state`).
    QueryDoor {
        /// Door.
        door: u8,
    },
    /// Pop a locker compartment.
    Pop {
        /// Compartment.
        compartment: u32,
    },
    /// Zero a lane's scale (`result.grams`).
    Tare {
        /// Door.
        door: u8,
        /// Lane.
        lane: u8,
    },
    /// Check a lane with a standard weight (`result.measured_grams`).
    Calibrate {
        /// Door.
        door: u8,
        /// Lane.
        lane: u8,
        /// The standard weight placed on it.
        standard_grams: Grams,
    },
    /// Update a lane's price label.
    SetPriceLabel {
        /// Door.
        door: u8,
        /// Lane.
        lane: u8,
        /// Price in cents.
        price_cents: i64,
        /// Product name.
        name: String,
    },
    /// Lights on/off.
    Lights {
        /// On.
        on: bool,
    },
    /// Heating on/off.
    Heating {
        /// On.
        on: bool,
    },
    /// Add an ad to the screen's rotation.
    AdAdd {
        /// Ad id.
        ad_id: String,
        /// Where to fetch it.
        uri: String,
    },
    /// Remove an ad.
    AdRemove {
        /// Ad id.
        ad_id: String,
    },
    /// Push a firmware or app upgrade.
    Upgrade {
        /// `fw` or `app`.
        component: String,
        /// Version.
        version: String,
        /// Where to fetch it.
        uri: String,
        /// Hex SHA-256 of the image.
        sha256: String,
    },
}

impl CommandSpec {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::OpenDoor { .. } => "open_door",
            Self::QueryDoor { .. } => "query_door",
            Self::Pop { .. } => "pop",
            Self::Tare { .. } => "tare",
            Self::Calibrate { .. } => "calibrate",
            Self::SetPriceLabel { .. } => "set_price_label",
            Self::Lights { .. } => "lights",
            Self::Heating { .. } => "heating",
            Self::AdAdd { .. } => "ad_add",
            Self::AdRemove { .. } => "ad_remove",
            Self::Upgrade { .. } => "upgrade",
        }
    }

    /// The wire `args` object.
    pub fn args(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("args").cloned())
            .unwrap_or_default()
    }

    /// The door a command opens or weighs, which an operator's command takes like a
    /// purchase does [O2] (`query_door` only reads it).
    pub fn door_held(&self) -> Option<DoorNo> {
        match self {
            Self::OpenDoor { door } | Self::Tare { door, .. } | Self::Calibrate { door, .. } => {
                DoorNo::parse("door", i64::from(*door)).ok()
            }
            _ => None,
        }
    }

    /// Checks the arguments' ranges (the shapes are checked by parsing).
    pub fn validate(&self) -> Result<(), CommandError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(CommandError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        let text = |field: &'static str, s: &str, max: usize| {
            // Characters, as the message says and JSON Schema's `maxLength` counts them.
            if s.trim().is_empty() || s.chars().count() > max {
                Err(CommandError::Invalid {
                    field,
                    reason: format!("must be 1-{max} characters"),
                })
            } else {
                Ok(())
            }
        };
        match self {
            Self::OpenDoor { door } | Self::QueryDoor { door } if *door == 0 => invalid("args.door", "must be at least 1"),
            Self::Tare { door, lane } | Self::Calibrate { door, lane, .. } | Self::SetPriceLabel { door, lane, .. }
                if *door == 0 || *lane == 0 =>
            {
                invalid("args", "door and lane must be at least 1")
            }
            Self::Pop { compartment } if *compartment == 0 => invalid("args.compartment", "must be at least 1"),
            Self::Calibrate { standard_grams, .. } if !(*standard_grams > Grams::ZERO && *standard_grams <= Grams::of(50_000.0)) => {
                invalid("args.standard_grams", "must be above 0 and at most 50000")
            }
            Self::SetPriceLabel { price_cents, name, .. } => {
                if !(0..=10_000_000).contains(price_cents) {
                    return invalid("args.price_cents", "must be 0-10000000");
                }
                text("args.name", name, 64)
            }
            Self::AdAdd { ad_id, uri } => text("args.ad_id", ad_id, 64).and_then(|_| text("args.uri", uri, 2048)),
            Self::AdRemove { ad_id } => text("args.ad_id", ad_id, 64),
            Self::Upgrade {
                component,
                version,
                uri,
                sha256,
            } => {
                if component != "fw" && component != "app" {
                    return invalid("args.component", "must be `fw` or `app`");
                }
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return invalid("args.sha256", "must be 64 hex digits");
                }
                text("args.version", version, 64).and_then(|_| text("args.uri", uri, 2048))
            }
            _ => Ok(()),
        }
    }
}

/// Where a command stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Not issued.
    #[default]
    None,
    /// Issued, not delivered yet.
    Issued,
    /// Delivered at least once, no ack yet.
    Sent,
    /// Acked ok (final).
    Done,
    /// Acked error (final).
    Failed,
    /// Expired without an ack (final unless a late ack settles it).
    Unknown,
}

impl CommandState {
    /// Whether the outcome is settled.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Unknown)
    }
}

/// Commands the command aggregate accepts (named `Step` to avoid "command command").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandStep {
    /// Issue the command (its id is the aggregate id).
    Issue {
        /// Target.
        cabinet: CabinetId,
        /// What.
        spec: CommandSpec,
        /// The device refuses it after this.
        expires_at: UnixMs,
        /// Who asked (`order:{id}`, `operator`, …).
        issued_by: String,
        /// Whether the command holds its door (an operator's `open_door`, `tare` or
        /// `calibrate` took it like a purchase does [O2]); it frees it when it ends.
        #[serde(default)]
        holds_door: bool,
        /// When.
        at: UnixMs,
    },
    /// It was handed to the device's connection (attempt 1, then each resend).
    RecordDelivery {
        /// Attempt number.
        attempt: u32,
        /// When.
        at: UnixMs,
    },
    /// The device acknowledged it.
    RecordAck {
        /// `ok` or not.
        ok: bool,
        /// The device's detail.
        detail: Option<String>,
        /// The device's result object.
        result: Option<serde_json::Value>,
        /// When.
        at: UnixMs,
    },
    /// The expiry passed without an ack.
    Expire {
        /// When.
        at: UnixMs,
    },
}

/// Facts about a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandEvent {
    /// Issued.
    CommandIssued {
        /// Target.
        cabinet: CabinetId,
        /// What.
        spec: CommandSpec,
        /// Expiry.
        expires_at: UnixMs,
        /// Who asked.
        issued_by: String,
        /// Whether it holds its door [O2].
        #[serde(default)]
        holds_door: bool,
        /// When.
        at: UnixMs,
    },
    /// Handed to the device's connection.
    CommandDelivered {
        /// Attempt number.
        attempt: u32,
        /// When.
        at: UnixMs,
    },
    /// Acknowledged: `done` if ok, `failed` otherwise.
    CommandAcknowledged {
        /// Ok.
        ok: bool,
        /// Detail.
        detail: Option<String>,
        /// Result.
        result: Option<serde_json::Value>,
        /// Whether it came after the command was given up as `unknown`.
        late: bool,
        /// The door the command held and frees now (an `open_door` done frees its door
        /// when it closes instead) [O2].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frees_door: Option<DoorNo>,
        /// When.
        at: UnixMs,
    },
    /// Expired with no ack: `unknown`.
    CommandExpired {
        /// Deliveries made.
        attempts: u32,
        /// The door the command held and frees now [O2].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frees_door: Option<DoorNo>,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for CommandEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CommandIssued { .. } => "CommandIssued",
            Self::CommandDelivered { .. } => "CommandDelivered",
            Self::CommandAcknowledged { .. } => "CommandAcknowledged",
            Self::CommandExpired { .. } => "CommandExpired",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a command step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The id is taken by a different command.
    #[error("command id already used for another command")]
    IdTaken,
    /// No such command.
    #[error("command not found")]
    NotFound,
    /// An argument is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// Field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl DomainError for CommandError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::IdTaken => RejectionKind::Conflict,
            Self::NotFound => RejectionKind::NotFound,
            Self::Invalid { .. } => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::IdTaken => "command_id_taken",
            Self::NotFound => "command_not_found",
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

/// A command's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceCommand {
    /// Target.
    pub cabinet: Option<CabinetId>,
    /// What.
    pub spec: Option<CommandSpec>,
    /// Expiry.
    pub expires_at: UnixMs,
    /// Who asked.
    pub issued_by: String,
    /// Issued at.
    pub issued_at: UnixMs,
    /// Where it stands.
    pub state: CommandState,
    /// Deliveries made.
    pub attempts: u32,
    /// The device's detail.
    pub detail: Option<String>,
    /// The device's result.
    pub result: Option<serde_json::Value>,
    /// When it reached its final state.
    pub finished_at: Option<UnixMs>,
    /// Whether it holds its door [O2].
    #[serde(default)]
    pub holds_door: bool,
}

impl DeviceCommand {
    /// Whether delivery attempt `attempt` still has to go out: not once the command has
    /// ended, and not again for an attempt already made (a redelivered effect).
    pub fn needs_delivery(&self, attempt: u32) -> bool {
        !self.state.is_final() && self.attempts < attempt
    }

    /// The door this command holds, if it took one [O2].
    pub fn held_door(&self) -> Option<DoorNo> {
        if !self.holds_door {
            return None;
        }
        self.spec.as_ref().and_then(CommandSpec::door_held)
    }

    /// Whether the door this command held may be taken by someone else now: the command
    /// ended (an `open_door` done holds the door until it closes, which frees it on the
    /// cabinet), or it never existed (its issue failed after the door was taken).
    pub fn door_is_free(&self) -> bool {
        match self.state {
            CommandState::None | CommandState::Failed | CommandState::Unknown => true,
            CommandState::Done => !matches!(self.spec, Some(CommandSpec::OpenDoor { .. })),
            CommandState::Issued | CommandState::Sent => false,
        }
    }

    /// Whether the command's expiry has passed at `now`: it must never reach the device
    /// after that [B7].
    pub fn is_expired(&self, now: UnixMs) -> bool {
        now >= self.expires_at
    }
}

impl Aggregate for DeviceCommand {
    const TYPE: &'static str = "device_command";
    type Command = CommandStep;
    type Event = CommandEvent;
    type Error = CommandError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            CommandStep::Issue {
                cabinet,
                spec,
                expires_at,
                issued_by,
                holds_door,
                at,
            } => {
                if let Some(existing) = &self.spec {
                    // Issuing the same command again is a no-op (an effect that ran twice).
                    return if *existing == spec && self.cabinet.as_ref() == Some(&cabinet) {
                        Ok(())
                    } else {
                        Err(CommandError::IdTaken)
                    };
                }
                spec.validate()?;
                let holds_door = holds_door && spec.door_held().is_some();
                if expires_at <= at {
                    return Err(CommandError::Invalid {
                        field: "expires_at",
                        reason: "must be after the issue time".into(),
                    });
                }
                sink.write(
                    CommandEvent::CommandIssued {
                        cabinet,
                        spec,
                        expires_at,
                        issued_by,
                        holds_door,
                        at,
                    },
                    self,
                )
                .await;
            }
            CommandStep::RecordDelivery { attempt, at } => {
                if self.spec.is_none() {
                    return Err(CommandError::NotFound);
                }
                // Only new deliveries count: of a live command, or of one its device
                // acknowledged before the delivery was recorded (the device answers as
                // soon as the message reaches it, and the two are recorded by different
                // hands); an expired command was never delivered this time.
                let acked_first = matches!(self.state, CommandState::Done | CommandState::Failed);
                if (!self.state.is_final() || acked_first) && attempt > self.attempts {
                    sink.write(CommandEvent::CommandDelivered { attempt, at }, self).await;
                }
            }
            CommandStep::RecordAck { ok, detail, result, at } => {
                if self.spec.is_none() {
                    return Err(CommandError::NotFound);
                }
                // A repeated ack (the device repeats it for a resent id) changes nothing.
                if matches!(self.state, CommandState::Done | CommandState::Failed) {
                    return Ok(());
                }
                let late = self.state == CommandState::Unknown;
                // A door opened stays held until it closes; anything else ends here. A
                // late ack after the expiry freed it already.
                let opened = ok && matches!(self.spec, Some(CommandSpec::OpenDoor { .. }));
                let frees_door = self.held_door().filter(|_| !opened && !late);
                sink.write(
                    CommandEvent::CommandAcknowledged {
                        ok,
                        detail,
                        result,
                        late,
                        frees_door,
                        at,
                    },
                    self,
                )
                .await;
            }
            CommandStep::Expire { at } => {
                if self.spec.is_none() {
                    return Err(CommandError::NotFound);
                }
                if !self.state.is_final() && at >= self.expires_at {
                    sink.write(
                        CommandEvent::CommandExpired {
                            attempts: self.attempts,
                            frees_door: self.held_door(),
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CommandEvent::CommandIssued {
                cabinet,
                spec,
                expires_at,
                issued_by,
                holds_door,
                at,
            } => {
                self.holds_door = holds_door;
                self.cabinet = Some(cabinet);
                self.spec = Some(spec);
                self.expires_at = expires_at;
                self.issued_by = issued_by;
                self.issued_at = at;
                self.state = CommandState::Issued;
            }
            CommandEvent::CommandDelivered { attempt, .. } => {
                self.attempts = self.attempts.max(attempt);
                if !self.state.is_final() {
                    self.state = CommandState::Sent;
                }
            }
            CommandEvent::CommandAcknowledged {
                ok, detail, result, at, ..
            } => {
                self.state = if ok { CommandState::Done } else { CommandState::Failed };
                self.detail = detail;
                self.result = result;
                self.finished_at = Some(at);
            }
            CommandEvent::CommandExpired { at, .. } => {
                self.state = CommandState::Unknown;
                self.finished_at = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type T = TestFramework<DeviceCommand>;

    fn cab() -> CabinetId {
        CabinetId::parse("pk.dn").unwrap()
    }

    fn issued() -> CommandEvent {
        CommandEvent::CommandIssued {
            cabinet: cab(),
            spec: CommandSpec::Tare { door: 1, lane: 2 },
            expires_at: 10_000,
            issued_by: "operator".into(),
            holds_door: false,
            at: 1_000,
        }
    }

    fn issue(spec: CommandSpec) -> CommandStep {
        CommandStep::Issue {
            cabinet: cab(),
            spec,
            expires_at: 10_000,
            issued_by: "operator".into(),
            holds_door: false,
            at: 1_000,
        }
    }

    #[test]
    fn the_wire_shape_is_the_contracts() {
        let spec: CommandSpec =
            serde_json::from_value(serde_json::json!({"type": "calibrate", "args": {"door": 1, "lane": 2, "standard_grams": 500.0}}))
                .unwrap();
        assert_eq!(spec.type_name(), "calibrate");
        assert_eq!(spec.args(), serde_json::json!({"door": 1, "lane": 2, "standard_grams": 500.0}));
        assert!(serde_json::from_value::<CommandSpec>(serde_json::json!({"type": "self_destruct", "args": {}})).is_err());
        assert!(serde_json::from_value::<CommandSpec>(serde_json::json!({"type": "lights", "args": {"on": true, "x": 1}})).is_err());
    }

    #[test]
    fn issue_validates_and_is_idempotent() {
        T::with(())
            .given_no_previous_events()
            .when(issue(CommandSpec::Tare { door: 1, lane: 2 }))
            .then_expect_events(vec![issued()]);
        T::with(())
            .given(vec![issued()])
            .when(issue(CommandSpec::Tare { door: 1, lane: 2 }))
            .then_expect_events(vec![]);
        T::with(())
            .given(vec![issued()])
            .when(issue(CommandSpec::Lights { on: true }))
            .then_expect_error(CommandError::IdTaken);
        T::with(())
            .given_no_previous_events()
            .when(issue(CommandSpec::OpenDoor { door: 0 }))
            .then_expect_error(CommandError::Invalid {
                field: "args.door",
                reason: "must be at least 1".into(),
            });
        T::with(())
            .given_no_previous_events()
            .when(issue(CommandSpec::Upgrade {
                component: "fw".into(),
                version: "2".into(),
                uri: "https://x".into(),
                sha256: "nothex".into(),
            }))
            .then_expect_error(CommandError::Invalid {
                field: "args.sha256",
                reason: "must be 64 hex digits".into(),
            });
    }

    #[test]
    fn delivered_then_acked_is_done_and_a_repeated_ack_changes_nothing() {
        let delivered = CommandEvent::CommandDelivered { attempt: 1, at: 1_001 };
        T::with(())
            .given(vec![issued()])
            .when(CommandStep::RecordDelivery { attempt: 1, at: 1_001 })
            .then_expect_events(vec![delivered.clone()]);
        T::with(())
            .given(vec![issued(), delivered.clone()])
            .when(CommandStep::RecordDelivery { attempt: 1, at: 1_002 })
            .then_expect_events(vec![]);
        let acked = CommandEvent::CommandAcknowledged {
            ok: true,
            detail: None,
            result: Some(serde_json::json!({"grams": 0.0})),
            late: false,
            frees_door: None,
            at: 1_500,
        };
        T::with(())
            .given(vec![issued(), delivered.clone()])
            .when(CommandStep::RecordAck {
                ok: true,
                detail: None,
                result: Some(serde_json::json!({"grams": 0.0})),
                at: 1_500,
            })
            .then_expect_events(vec![acked.clone()]);
        T::with(())
            .given(vec![issued(), delivered, acked])
            .when(CommandStep::RecordAck {
                ok: true,
                detail: None,
                result: None,
                at: 1_600,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_delivery_recorded_after_its_ack_counts_and_leaves_the_command_done() {
        let acked = CommandEvent::CommandAcknowledged {
            ok: true,
            detail: None,
            result: None,
            late: false,
            frees_door: None,
            at: 1_001,
        };
        let delivered = CommandEvent::CommandDelivered { attempt: 1, at: 1_002 };
        T::with(())
            .given(vec![issued(), acked.clone()])
            .when(CommandStep::RecordDelivery { attempt: 1, at: 1_002 })
            .then_expect_events(vec![delivered.clone()]);
        T::with(())
            .given(vec![issued(), acked.clone(), delivered.clone()])
            .when(CommandStep::RecordDelivery { attempt: 1, at: 1_003 })
            .then_expect_events(vec![]);
        let mut c = DeviceCommand::default();
        for e in [issued(), acked, delivered] {
            c.apply(e);
        }
        assert_eq!((c.state, c.attempts), (CommandState::Done, 1));
        assert!(!c.needs_delivery(2), "an acknowledged command is not resent");
        // An expired command's late delivery record is not a delivery.
        let expired = CommandEvent::CommandExpired {
            attempts: 0,
            frees_door: None,
            at: 70_000,
        };
        T::with(())
            .given(vec![issued(), expired])
            .when(CommandStep::RecordDelivery { attempt: 1, at: 70_001 })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_command_that_holds_its_door_frees_it_when_it_ends_except_an_open_door_done() {
        let held = |spec: CommandSpec| CommandEvent::CommandIssued {
            cabinet: cab(),
            spec,
            expires_at: 10_000,
            issued_by: "operator".into(),
            holds_door: true,
            at: 1_000,
        };
        let ack = |ok| CommandStep::RecordAck {
            ok,
            detail: None,
            result: None,
            at: 1_500,
        };
        let acked = |ok, frees: Option<u8>| CommandEvent::CommandAcknowledged {
            ok,
            detail: None,
            result: None,
            late: false,
            frees_door: frees.map(DoorNo::of),
            at: 1_500,
        };
        let tare = CommandSpec::Tare { door: 2, lane: 1 };
        T::with(())
            .given(vec![held(tare.clone())])
            .when(ack(true))
            .then_expect_events(vec![acked(true, Some(2))]);
        let open = CommandSpec::OpenDoor { door: 3 };
        T::with(())
            .given(vec![held(open.clone())])
            .when(ack(true))
            .then_expect_events(vec![acked(true, None)]);
        T::with(())
            .given(vec![held(open.clone())])
            .when(ack(false))
            .then_expect_events(vec![acked(false, Some(3))]);
        T::with(())
            .given(vec![held(open.clone())])
            .when(CommandStep::Expire { at: 10_000 })
            .then_expect_events(vec![CommandEvent::CommandExpired {
                attempts: 0,
                frees_door: Some(DoorNo::of(3)),
                at: 10_000,
            }]);
        // Only door commands hold a door.
        T::with(())
            .given_no_previous_events()
            .when(CommandStep::Issue {
                cabinet: cab(),
                spec: CommandSpec::Lights { on: true },
                expires_at: 10_000,
                issued_by: "operator".into(),
                holds_door: true,
                at: 1_000,
            })
            .then_expect_events(vec![CommandEvent::CommandIssued {
                cabinet: cab(),
                spec: CommandSpec::Lights { on: true },
                expires_at: 10_000,
                issued_by: "operator".into(),
                holds_door: false,
                at: 1_000,
            }]);
        let mut c = DeviceCommand::default();
        assert!(c.door_is_free(), "a command that was never issued holds nothing");
        c.apply(held(open));
        assert!(!c.door_is_free());
        c.apply(acked(true, None));
        assert!(!c.door_is_free(), "an open door stays held until it closes");
        let mut t = DeviceCommand::default();
        t.apply(held(tare));
        t.apply(acked(true, Some(2)));
        assert!(t.door_is_free());
        assert_eq!(t.held_door(), Some(DoorNo::of(2)));
    }

    #[test]
    fn no_ack_by_the_expiry_is_unknown_and_a_late_ack_still_settles_it() {
        let delivered = CommandEvent::CommandDelivered { attempt: 3, at: 5_000 };
        T::with(())
            .given(vec![issued(), delivered.clone()])
            .when(CommandStep::Expire { at: 9_999 })
            .then_expect_events(vec![]);
        let expired = CommandEvent::CommandExpired {
            attempts: 3,
            frees_door: None,
            at: 10_000,
        };
        T::with(())
            .given(vec![issued(), delivered.clone()])
            .when(CommandStep::Expire { at: 10_000 })
            .then_expect_events(vec![expired.clone()]);
        T::with(())
            .given(vec![issued(), delivered.clone(), expired.clone()])
            .when(CommandStep::RecordDelivery { attempt: 4, at: 10_001 })
            .then_expect_events(vec![]);
        T::with(())
            .given(vec![issued(), delivered, expired])
            .when(CommandStep::RecordAck {
                ok: false,
                detail: Some("expired".into()),
                result: None,
                at: 12_000,
            })
            .then_expect_events(vec![CommandEvent::CommandAcknowledged {
                ok: false,
                detail: Some("expired".into()),
                result: None,
                late: true,
                frees_door: None,
                at: 12_000,
            }]);
        T::with(())
            .given_no_previous_events()
            .when(CommandStep::Expire { at: 1 })
            .then_expect_error(CommandError::NotFound);
    }
}
