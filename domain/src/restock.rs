//! A restock session [O10, M2]: an operator has a door opened (no charge, holding the
//! door like a purchase does), puts items on its lanes, and closes it; what was added to
//! each lane is counted from the stable weights before the open and after the close, the
//! way a purchase counts what was taken. A lane never holds more than its capacity: what
//! the weights show beyond it is reported as excess (an anomaly), not booked.
//!
//! States: `opening` (door command sent) → `open` → `counting` (closed, waiting for a
//! stable weight) → `done`; or `failed` (the door never opened, or no stable weight).

use crate::cabinet::LanePlan;
use crate::weight::{infer_door, LaneScale, StableReading};
use crate::{CabinetId, DomainError, DoorNo, LaneNo, RejectionKind, Sku, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A lane as the session found it: its plan and its stock by the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestockLane {
    /// The plan (product, unit weight, capacity, tolerance).
    pub plan: LanePlan,
    /// Items on it by the ledger when the session began.
    pub stock: i64,
}

/// What the weights say was done to one lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestockLine {
    /// The lane.
    pub lane: LaneNo,
    /// Its product.
    pub sku: Sku,
    /// Items the weights show added (negative: taken out).
    pub counted: i64,
    /// Items booked: `counted`, bounded by the capacity (and by the stock when taken out).
    pub added: i64,
    /// Items beyond the capacity, not booked.
    pub excess: i64,
    /// How sure the count is (1.0 exact, 0.0 half a unit off).
    pub confidence: f64,
    /// Whether the count is within the lane's tolerance.
    pub within_tolerance: bool,
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestockState {
    /// Not started.
    #[default]
    New,
    /// The door command was sent.
    Opening,
    /// The operator is at the open door.
    Open,
    /// Closed; waiting for a stable weight.
    Counting,
    /// Counted and booked.
    Done,
    /// Ended without a count.
    Failed,
}

impl RestockState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Opening => "opening",
            Self::Open => "open",
            Self::Counting => "counting",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// Commands a restock session accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RestockCommand {
    /// Begin: the door is to be opened for `by`.
    Start {
        /// The cabinet.
        cabinet: CabinetId,
        /// The door.
        door: DoorNo,
        /// Its lanes now.
        lanes: Vec<RestockLane>,
        /// The operator.
        by: String,
        /// The id of the door command to send.
        open_cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// The door opened, with the last stable reading before.
    MarkDoorOpened {
        /// Device clock of the open.
        device_ts: UnixMs,
        /// The stable reading before the open.
        before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The door closed.
    MarkDoorClosed {
        /// Device clock of the close.
        device_ts: UnixMs,
        /// The last stable reading before the close (the baseline if the open was not
        /// seen).
        fallback_before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// A stable reading after the close: count.
    Count {
        /// The reading.
        after: StableReading,
        /// When.
        at: UnixMs,
    },
    /// End without a count.
    Fail {
        /// Why (`door_never_opened`, `no_stable_weight`, `door_busy`, …).
        reason: String,
        /// When.
        at: UnixMs,
    },
}

/// Facts about a restock session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RestockEvent {
    /// Begun; the door command is to be sent.
    RestockStarted {
        /// The cabinet.
        cabinet: CabinetId,
        /// The door.
        door: DoorNo,
        /// The lanes as found.
        lanes: Vec<RestockLane>,
        /// The operator.
        by: String,
        /// The door command's id.
        open_cmd_id: String,
        /// When.
        at: UnixMs,
    },
    /// The door opened.
    RestockDoorOpened {
        /// Device clock.
        device_ts: UnixMs,
        /// The baseline.
        before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// The door closed.
    RestockDoorClosed {
        /// Device clock.
        device_ts: UnixMs,
        /// The baseline, if the open gave none.
        before: Option<StableReading>,
        /// When.
        at: UnixMs,
    },
    /// Counted: what each lane gained (or lost).
    RestockCounted {
        /// The reading after.
        after: StableReading,
        /// Per lane.
        lines: Vec<RestockLine>,
        /// When.
        at: UnixMs,
    },
    /// Ended without a count.
    RestockFailed {
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for RestockEvent {
    fn event_type(&self) -> String {
        match self {
            Self::RestockStarted { .. } => "RestockStarted",
            Self::RestockDoorOpened { .. } => "RestockDoorOpened",
            Self::RestockDoorClosed { .. } => "RestockDoorClosed",
            Self::RestockCounted { .. } => "RestockCounted",
            Self::RestockFailed { .. } => "RestockFailed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a restock command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestockError {
    /// Started already.
    #[error("restock already started")]
    AlreadyExists,
    /// No such session.
    #[error("restock not found")]
    NotFound,
    /// A door without lanes has nothing to restock.
    #[error("door {0} has no lanes to restock")]
    NoLanes(DoorNo),
}

impl DomainError for RestockError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::AlreadyExists => RejectionKind::Conflict,
            Self::NotFound => RejectionKind::NotFound,
            Self::NoLanes(_) => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "restock_exists",
            Self::NotFound => "restock_not_found",
            Self::NoLanes(_) => "invalid_field",
        }
    }
    fn field(&self) -> Option<String> {
        matches!(self, Self::NoLanes(_)).then(|| "door".to_string())
    }
}

/// One restock session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Restock {
    /// The cabinet.
    pub cabinet: Option<CabinetId>,
    /// The door.
    pub door: Option<DoorNo>,
    /// The lanes as found.
    pub lanes: Vec<RestockLane>,
    /// The operator.
    pub by: String,
    /// The door command's id.
    pub open_cmd_id: String,
    /// Where it stands.
    pub state: RestockState,
    /// The baseline.
    pub before: Option<StableReading>,
    /// Device clock of the close.
    pub closed_device_ts: Option<UnixMs>,
    /// What was counted.
    pub lines: Vec<RestockLine>,
    /// Why it failed.
    pub failure: Option<String>,
    /// When it began.
    pub started_at: UnixMs,
}

/// Counts each lane from the two readings, bounded by its capacity.
pub fn count_restock(lanes: &[RestockLane], before: &StableReading, after: &StableReading) -> Vec<RestockLine> {
    let scales: Vec<LaneScale> = lanes.iter().map(|l| l.plan.scale()).collect();
    let Ok(inferred) = infer_door(&scales, before, after) else {
        return vec![];
    };
    lanes
        .iter()
        .zip(inferred)
        .map(|(l, i)| {
            let counted = -i.count; // the inference counts what left
            let room = i64::from(l.plan.capacity) - l.stock;
            let added = counted.min(room.max(0)).max(-l.stock.max(0));
            RestockLine {
                lane: l.plan.lane,
                sku: l.plan.sku.clone(),
                counted,
                added,
                excess: (counted - added).max(0),
                confidence: i.confidence,
                within_tolerance: i.within_tolerance,
            }
        })
        .collect()
}

impl Restock {
    /// What `command` makes happen. A step that no longer applies (a late timer, a
    /// repeated report) decides nothing.
    pub fn decide(&self, command: RestockCommand) -> Result<Vec<RestockEvent>, RestockError> {
        use RestockState as S;
        if self.state == S::New && !matches!(command, RestockCommand::Start { .. }) {
            return Err(RestockError::NotFound);
        }
        Ok(match command {
            RestockCommand::Start {
                cabinet,
                door,
                lanes,
                by,
                open_cmd_id,
                at,
            } => {
                if self.state != S::New {
                    return Err(RestockError::AlreadyExists);
                }
                if lanes.is_empty() {
                    return Err(RestockError::NoLanes(door));
                }
                vec![RestockEvent::RestockStarted {
                    cabinet,
                    door,
                    lanes,
                    by,
                    open_cmd_id,
                    at,
                }]
            }
            RestockCommand::MarkDoorOpened { device_ts, before, at } => when(self.state == S::Opening, || {
                RestockEvent::RestockDoorOpened { device_ts, before, at }
            }),
            RestockCommand::MarkDoorClosed {
                device_ts,
                fallback_before,
                at,
            } => when(matches!(self.state, S::Opening | S::Open), || RestockEvent::RestockDoorClosed {
                device_ts,
                before: if self.before.is_some() { None } else { fallback_before },
                at,
            }),
            RestockCommand::Count { after, at } => {
                if self.state != S::Counting {
                    return Ok(vec![]);
                }
                match &self.before {
                    Some(before) => vec![RestockEvent::RestockCounted {
                        lines: count_restock(&self.lanes, before, &after),
                        after,
                        at,
                    }],
                    None => vec![RestockEvent::RestockFailed {
                        reason: "no_weight_before".into(),
                        at,
                    }],
                }
            }
            RestockCommand::Fail { reason, at } => when(!matches!(self.state, S::Done | S::Failed), || RestockEvent::RestockFailed {
                reason,
                at,
            }),
        })
    }
}

fn when(cond: bool, event: impl FnOnce() -> RestockEvent) -> Vec<RestockEvent> {
    if cond {
        vec![event()]
    } else {
        vec![]
    }
}

impl Aggregate for Restock {
    const TYPE: &'static str = "restock";
    type Command = RestockCommand;
    type Event = RestockEvent;
    type Error = RestockError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            RestockEvent::RestockStarted {
                cabinet,
                door,
                lanes,
                by,
                open_cmd_id,
                at,
            } => {
                self.cabinet = Some(cabinet);
                self.door = Some(door);
                self.lanes = lanes;
                self.by = by;
                self.open_cmd_id = open_cmd_id;
                self.started_at = at;
                self.state = RestockState::Opening;
            }
            RestockEvent::RestockDoorOpened { before, .. } => {
                self.before = before;
                self.state = RestockState::Open;
            }
            RestockEvent::RestockDoorClosed { device_ts, before, .. } => {
                if before.is_some() {
                    self.before = before;
                }
                self.closed_device_ts = Some(device_ts);
                self.state = RestockState::Counting;
            }
            RestockEvent::RestockCounted { lines, .. } => {
                self.lines = lines;
                self.state = RestockState::Done;
            }
            RestockEvent::RestockFailed { reason, .. } => {
                self.failure = Some(reason);
                self.state = RestockState::Failed;
            }
        }
    }
}

#[cfg(test)]
#[path = "restock_tests.rs"]
mod tests;
