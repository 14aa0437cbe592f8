//! Ad and upgrade campaigns reaching the devices [M5]: a created campaign issues its
//! commands to each cabinet (one effect per cabinet, so a slow or missing cabinet holds
//! up no other), under ids derived from the campaign and the cabinet, so a re-run issues
//! nothing twice; and each of those commands' final state — acked, refused or expired —
//! is written back to the campaign, where an operator follows its progress.

use crate::effect::{Effect, EffectError, EffectOutcome, Scheduled};
use crate::ports::{CommandMeta, EffectPorts};
use tare_domain::campaign::{campaign_cmd_id, campaign_of_cmd, issuing_campaign, CampaignCommand, CampaignCommandOutcome, CampaignEvent};
use tare_domain::command::{CommandEvent, CommandState, CommandStep};
use tare_domain::{AnyEvent, CabinetId};

/// The campaign saga's decision for one event.
pub fn decide(aggregate_id: &str, event: &AnyEvent) -> Vec<Scheduled> {
    match event {
        AnyEvent::Campaign(CampaignEvent::CampaignCreated { cabinets, at, .. }) => cabinets
            .iter()
            .map(|cabinet| {
                Scheduled::at(
                    format!("campaign:{aggregate_id}:issue:{cabinet}"),
                    *at,
                    Effect::IssueCampaignCommands {
                        campaign_id: aggregate_id.to_string(),
                        cabinet: cabinet.clone(),
                    },
                )
            })
            .collect(),
        AnyEvent::Command(CommandEvent::CommandAcknowledged { at, .. } | CommandEvent::CommandExpired { at, .. }) => {
            // Effects on one campaign run one at a time (no contention on its aggregate).
            let Some(campaign_id) = campaign_of_cmd(aggregate_id) else {
                return vec![];
            };
            // A late ack after `unknown` is a second final state: its own key.
            let which = match event {
                AnyEvent::Command(CommandEvent::CommandExpired { .. }) => "expired",
                _ => "acked",
            };
            vec![Scheduled::at(
                format!("command:{aggregate_id}:campaign:{which}"),
                *at,
                Effect::RecordCampaignOutcome {
                    campaign_id: campaign_id.to_string(),
                    cmd_id: aggregate_id.to_string(),
                },
            )]
        }
        _ => vec![],
    }
}

/// Issues campaign `campaign_id`'s commands to `cabinet` (each once: the command
/// aggregate ignores an id issued again).
pub async fn issue(ports: &EffectPorts, campaign_id: &str, cabinet: &CabinetId, key: &str) -> Result<EffectOutcome, EffectError> {
    let now = ports.clock.now_ms();
    let campaign = ports.campaigns.load(campaign_id).await?;
    let Some(action) = &campaign.action else {
        return Err(EffectError::Permanent(format!("no campaign {campaign_id}")));
    };
    let meta = CommandMeta::new(now, format!("campaign:{campaign_id}"), format!("job:{key}"));
    for (n, spec) in action.commands().into_iter().enumerate() {
        let step = CommandStep::Issue {
            cabinet: cabinet.clone(),
            spec,
            expires_at: campaign.created_at + campaign.ttl_ms,
            issued_by: format!("campaign:{campaign_id}"),
            holds_door: false,
            at: now,
        };
        let cmd_id = campaign_cmd_id(campaign_id, &cabinet.to_string(), n);
        ports.commands.execute(&cmd_id, step, meta.clone()).await?;
    }
    Ok(EffectOutcome::Done)
}

/// Writes command `cmd_id`'s final state back to the campaign that issued it.
pub async fn record_outcome(ports: &EffectPorts, cmd_id: &str, key: &str) -> Result<EffectOutcome, EffectError> {
    let now = ports.clock.now_ms();
    let command = ports.commands.load(cmd_id).await?;
    let (Some(campaign_id), Some(cabinet)) = (issuing_campaign(&command.issued_by), command.cabinet.clone()) else {
        return Err(EffectError::Permanent(format!("command {cmd_id} was not issued by a campaign")));
    };
    let outcome = match command.state {
        CommandState::Done => CampaignCommandOutcome::Done,
        CommandState::Failed => CampaignCommandOutcome::Failed,
        CommandState::Unknown => CampaignCommandOutcome::Unknown,
        _ => return Ok(EffectOutcome::Done), // not final: nothing to record yet
    };
    let cmd = CampaignCommand::RecordOutcome {
        cabinet,
        cmd_id: cmd_id.to_string(),
        outcome,
        detail: command.detail.clone(),
        at: now,
    };
    let meta = CommandMeta::new(now, format!("campaign:{campaign_id}"), format!("job:{key}"));
    ports.campaigns.execute(campaign_id, cmd, meta).await?;
    Ok(EffectOutcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tare_domain::campaign::CampaignAction;

    fn cab() -> CabinetId {
        CabinetId::parse("wc.c1").unwrap()
    }

    #[test]
    fn a_campaign_issues_per_cabinet_and_its_commands_outcomes_come_back() {
        let created = AnyEvent::Campaign(CampaignEvent::CampaignCreated {
            name: "fw".into(),
            action: CampaignAction::Ads {
                add: vec![],
                remove: vec!["a".into()],
            },
            cabinets: vec![cab(), CabinetId::parse("wc.c2").unwrap()],
            ttl_ms: 1_000,
            by: "op".into(),
            at: 7,
        });
        let out = decide("cp1", &created);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].key, "campaign:cp1:issue:wc.c1");
        assert_eq!(
            out[1].effect,
            Effect::IssueCampaignCommands {
                campaign_id: "cp1".into(),
                cabinet: CabinetId::parse("wc.c2").unwrap()
            }
        );
        let acked = AnyEvent::Command(CommandEvent::CommandAcknowledged {
            ok: true,
            detail: None,
            result: None,
            late: false,
            frees_door: None,
            at: 9,
        });
        let cmd = campaign_cmd_id("cp1", "wc.c1", 0);
        assert_eq!(
            decide(&cmd, &acked),
            vec![Scheduled::at(
                format!("command:{cmd}:campaign:acked"),
                9,
                Effect::RecordCampaignOutcome {
                    campaign_id: "cp1".into(),
                    cmd_id: cmd.clone()
                }
            )]
        );
        // Another command's ack is none of the campaign's business.
        assert!(decide("cmd-123", &acked).is_empty());
    }
}
