//! Ad and upgrade campaigns [M5]: an operator pushes an ad set or a firmware/app upgrade
//! to a set of cabinets as one campaign. The campaign fixes what each cabinet gets (its
//! device commands, with ids derived from the campaign, so issuing twice sends nothing
//! twice) and records each command's final state as the device acknowledges it — or as
//! it expires unanswered — so an operator sees, per cabinet, what reached the screen or
//! the flash. Versions the devices report after an upgrade, and ad plays, are facts of
//! the cabinets, read beside the campaign.

use crate::command::CommandSpec;
use crate::{CabinetId, DomainError, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most cabinets one campaign may address (a larger fleet is several campaigns, each a
/// reviewable change).
pub const MAX_CAMPAIGN_CABINETS: usize = 5_000;

/// Most ads one campaign may add, and most it may remove.
pub const MAX_CAMPAIGN_ADS: usize = 20;

/// The prefix of every campaign command id (the campaign saga recognises its acks by it).
pub const CAMPAIGN_CMD_PREFIX: &str = "camp-";

/// The id of the `n`th command of campaign `campaign_id` to `cabinet`.
pub fn campaign_cmd_id(campaign_id: &str, cabinet: &str, n: usize) -> String {
    format!("{CAMPAIGN_CMD_PREFIX}{campaign_id}-{cabinet}-{n}")
}

/// The campaign whose command `cmd_id` is (campaign ids hold no `-`; see
/// [`valid_campaign_id`]).
pub fn campaign_of_cmd(cmd_id: &str) -> Option<&str> {
    cmd_id.strip_prefix(CAMPAIGN_CMD_PREFIX)?.split_once('-').map(|(c, _)| c)
}

/// Whether `id` may name a campaign: 1-64 ASCII letters and digits (no `-`, so a
/// command id names its campaign unambiguously).
pub fn valid_campaign_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The campaign a command was issued for (its `issued_by` is `campaign:{id}`).
pub fn issuing_campaign(issued_by: &str) -> Option<&str> {
    issued_by.strip_prefix("campaign:")
}

/// An ad to put in the screens' rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdSpec {
    /// The ad's id (what `ad_play` reports).
    pub ad_id: String,
    /// Where the device fetches it.
    pub uri: String,
}

/// What a campaign does on every cabinet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignAction {
    /// Add ads to the rotation and take others out.
    Ads {
        /// Ads added.
        add: Vec<AdSpec>,
        /// Ad ids removed.
        remove: Vec<String>,
    },
    /// Replace the firmware or the app.
    Upgrade {
        /// `fw` or `app`.
        component: String,
        /// The version installed.
        version: String,
        /// Where the image is.
        uri: String,
        /// The image's SHA-256 (hex).
        sha256: String,
    },
}

impl CampaignAction {
    /// The device commands one cabinet gets, in order.
    pub fn commands(&self) -> Vec<CommandSpec> {
        match self {
            Self::Ads { add, remove } => add
                .iter()
                .map(|a| CommandSpec::AdAdd {
                    ad_id: a.ad_id.clone(),
                    uri: a.uri.clone(),
                })
                .chain(remove.iter().map(|ad_id| CommandSpec::AdRemove { ad_id: ad_id.clone() }))
                .collect(),
            Self::Upgrade {
                component,
                version,
                uri,
                sha256,
            } => vec![CommandSpec::Upgrade {
                component: component.clone(),
                version: version.clone(),
                uri: uri.clone(),
                sha256: sha256.clone(),
            }],
        }
    }

    /// `ads` or `upgrade`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ads { .. } => "ads",
            Self::Upgrade { .. } => "upgrade",
        }
    }

    /// Checks the action: at least one command, each valid, no ad twice.
    pub fn validate(&self) -> Result<(), CampaignError> {
        if let Self::Ads { add, remove } = self {
            if add.is_empty() && remove.is_empty() {
                return Err(CampaignError::invalid("action", "add or remove at least one ad"));
            }
            if add.len() > MAX_CAMPAIGN_ADS || remove.len() > MAX_CAMPAIGN_ADS {
                return Err(CampaignError::invalid(
                    "action",
                    &format!("at most {MAX_CAMPAIGN_ADS} ads added and {MAX_CAMPAIGN_ADS} removed"),
                ));
            }
            let mut seen = BTreeSet::new();
            if !add.iter().map(|a| &a.ad_id).chain(remove.iter()).all(|id| seen.insert(id)) {
                return Err(CampaignError::invalid("action", "an ad id appears twice"));
            }
        }
        for spec in self.commands() {
            spec.validate().map_err(|e| match e {
                crate::command::CommandError::Invalid { field, reason } => CampaignError::Invalid {
                    field: match field {
                        "args.component" => "action.component",
                        "args.version" => "action.version",
                        "args.sha256" => "action.sha256",
                        "args.uri" => "action.uri",
                        "args.ad_id" => "action.ad_id",
                        _ => "action",
                    },
                    reason,
                },
                other => CampaignError::invalid("action", &other.to_string()),
            })?;
        }
        Ok(())
    }
}

/// The final state of one campaign command on one cabinet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignCommandOutcome {
    /// The device acknowledged it `ok`.
    Done,
    /// The device acknowledged it `error` (or refused it as expired).
    Failed,
    /// It expired with no answer (the device was away too long).
    Unknown,
}

/// Commands a campaign accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CampaignCommand {
    /// Starts the campaign (idempotent for the same content).
    Create {
        /// A name for people.
        name: String,
        /// What every cabinet gets.
        action: CampaignAction,
        /// The cabinets.
        cabinets: Vec<CabinetId>,
        /// How long each command stays valid (a device away longer gets `unknown`).
        ttl_ms: i64,
        /// Who.
        by: String,
        /// When.
        at: UnixMs,
    },
    /// One of the campaign's commands reached its final state (a repeat changes nothing;
    /// a late ack after `unknown` settles it).
    RecordOutcome {
        /// The cabinet.
        cabinet: CabinetId,
        /// The command.
        cmd_id: String,
        /// How it ended.
        outcome: CampaignCommandOutcome,
        /// The device's detail, if any.
        detail: Option<String>,
        /// When.
        at: UnixMs,
    },
}

/// Facts about a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CampaignEvent {
    /// The campaign exists; its commands go out.
    CampaignCreated {
        /// Name.
        name: String,
        /// What every cabinet gets.
        action: CampaignAction,
        /// The cabinets.
        cabinets: Vec<CabinetId>,
        /// Validity of each command.
        ttl_ms: i64,
        /// Who.
        by: String,
        /// When.
        at: UnixMs,
    },
    /// A command of the campaign ended on one cabinet.
    CampaignCommandSettled {
        /// The cabinet.
        cabinet: CabinetId,
        /// The command.
        cmd_id: String,
        /// How it ended.
        outcome: CampaignCommandOutcome,
        /// The device's detail.
        detail: Option<String>,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for CampaignEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CampaignCreated { .. } => "CampaignCreated",
            Self::CampaignCommandSettled { .. } => "CampaignCommandSettled",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a campaign command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    /// Unknown campaign.
    #[error("campaign not found")]
    NotFound,
    /// The id is taken by a different campaign.
    #[error("campaign id already used for another campaign")]
    AlreadyExists,
    /// A field was invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl CampaignError {
    fn invalid(field: &'static str, reason: &str) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl DomainError for CampaignError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound => RejectionKind::NotFound,
            Self::AlreadyExists => RejectionKind::Conflict,
            Self::Invalid { .. } => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "campaign_not_found",
            Self::AlreadyExists => "campaign_exists",
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

/// A campaign's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// Name, once created.
    pub name: Option<String>,
    /// What every cabinet gets.
    pub action: Option<CampaignAction>,
    /// The cabinets, in the order given.
    pub cabinets: Vec<CabinetId>,
    /// Validity of each command.
    pub ttl_ms: i64,
    /// Who started it.
    pub by: String,
    /// When.
    pub created_at: UnixMs,
    /// The final state of each command that has one, by command id.
    pub outcomes: BTreeMap<String, (CampaignCommandOutcome, Option<String>)>,
}

impl Campaign {
    /// Whether the campaign exists.
    pub fn exists(&self) -> bool {
        self.action.is_some()
    }
}

impl Aggregate for Campaign {
    const TYPE: &'static str = "campaign";
    type Command = CampaignCommand;
    type Event = CampaignEvent;
    type Error = CampaignError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            CampaignCommand::Create {
                name,
                action,
                cabinets,
                ttl_ms,
                by,
                at,
            } => {
                if self.exists() {
                    return if self.action.as_ref() == Some(&action) && self.cabinets == cabinets {
                        Ok(())
                    } else {
                        Err(CampaignError::AlreadyExists)
                    };
                }
                if name.trim().is_empty() || name.chars().count() > 80 {
                    return Err(CampaignError::invalid("name", "must be 1-80 characters"));
                }
                if cabinets.is_empty() || cabinets.len() > MAX_CAMPAIGN_CABINETS {
                    return Err(CampaignError::invalid("cabinets", &format!("1-{MAX_CAMPAIGN_CABINETS} cabinets")));
                }
                let mut seen = BTreeSet::new();
                if !cabinets.iter().all(|c| seen.insert(c)) {
                    return Err(CampaignError::invalid("cabinets", "a cabinet appears twice"));
                }
                action.validate()?;
                let event = CampaignEvent::CampaignCreated {
                    name,
                    action,
                    cabinets,
                    ttl_ms,
                    by,
                    at,
                };
                sink.write(event, self).await;
            }
            CampaignCommand::RecordOutcome {
                cabinet,
                cmd_id,
                outcome,
                detail,
                at,
            } => {
                if !self.exists() {
                    return Err(CampaignError::NotFound);
                }
                let settled = self.outcomes.get(&cmd_id).map(|(o, _)| *o);
                // A final answer stands; only `unknown` may still be settled by a late ack.
                if settled.is_none() || (settled == Some(CampaignCommandOutcome::Unknown) && outcome != CampaignCommandOutcome::Unknown) {
                    let event = CampaignEvent::CampaignCommandSettled {
                        cabinet,
                        cmd_id,
                        outcome,
                        detail,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CampaignEvent::CampaignCreated {
                name,
                action,
                cabinets,
                ttl_ms,
                by,
                at,
            } => {
                self.name = Some(name);
                self.action = Some(action);
                self.cabinets = cabinets;
                self.ttl_ms = ttl_ms;
                self.by = by;
                self.created_at = at;
            }
            CampaignEvent::CampaignCommandSettled {
                cmd_id, outcome, detail, ..
            } => {
                self.outcomes.insert(cmd_id, (outcome, detail));
            }
        }
    }
}

#[cfg(test)]
#[path = "campaign_tests.rs"]
mod tests;
