//! Ad and upgrade campaigns [M5]: an operator starts one over a set of cabinets, and
//! follows it per cabinet — each command's final state, the firmware version the device
//! reported since, and the campaign's ads' plays.

use super::ServiceError;
use crate::Platform;
use std::collections::BTreeMap;
use tare_domain::campaign::{campaign_cmd_id, Campaign, CampaignAction, CampaignCommand, CampaignCommandOutcome, CampaignError};
use tare_domain::CabinetId;
use tare_projections::{AdPlays, AdPlaysDoc};

/// How long a campaign's commands stay valid: a device away longer is `unknown`, and
/// gets the campaign again only if an operator starts another.
pub const CAMPAIGN_TTL_MS: i64 = 86_400_000;

/// Where one cabinet of a campaign stands.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignTarget {
    /// The cabinet.
    pub cabinet: CabinetId,
    /// Each command: its id, type and state (`pending` until final, then `done`,
    /// `failed` or `unknown`), with the device's detail.
    pub commands: Vec<(String, &'static str, &'static str, Option<String>)>,
    /// The firmware version the device reported at its last boot.
    pub reported_fw: Option<String>,
    /// For a firmware upgrade: whether the device now reports the campaign's version.
    pub upgraded: Option<bool>,
}

/// A campaign and its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignView {
    /// Its id.
    pub campaign_id: String,
    /// Its state.
    pub campaign: Campaign,
    /// Each cabinet, in the order given.
    pub targets: Vec<CampaignTarget>,
    /// Cabinets by state: `done` (every command done), `failed` (any failed),
    /// `unknown` (any expired unanswered, none failed), `pending` (the rest), and for a
    /// firmware upgrade `upgraded`.
    pub progress: BTreeMap<&'static str, usize>,
    /// The campaign's added ads' plays on its cabinets.
    pub plays: Vec<AdPlaysDoc>,
}

impl Platform {
    /// Starts a campaign of `action` over `cabinets` on `by`'s word: 404
    /// `cabinet_not_found` naming the first unknown cabinet, 422 for a bad action.
    pub async fn create_campaign(
        &self,
        name: String,
        action: CampaignAction,
        cabinets: Vec<CabinetId>,
        by: &str,
    ) -> Result<CampaignView, ServiceError> {
        action.validate().map_err(ServiceError::refused)?;
        for c in &cabinets {
            self.cabinet(c).await?;
        }
        let campaign_id = format!("cp{}", uuid::Uuid::now_v7().simple());
        let cmd = CampaignCommand::Create {
            name,
            action,
            cabinets,
            ttl_ms: CAMPAIGN_TTL_MS,
            by: by.to_string(),
            at: self.clock.now_ms(),
        };
        self.aggregates
            .campaigns
            .execute(&campaign_id, cmd, self.meta(&campaign_id, &format!("operator:{by}:campaign")))
            .await
            .map_err(ServiceError::from_command)?;
        self.campaign(&campaign_id).await
    }

    /// Campaign `id` with its progress; 404 `campaign_not_found`.
    pub async fn campaign(&self, id: &str) -> Result<CampaignView, ServiceError> {
        let campaign = self.aggregates.campaigns.load(id).await.map_err(ServiceError::from_command)?;
        let Some(action) = campaign.action.clone() else {
            return Err(ServiceError::refused(CampaignError::NotFound));
        };
        let specs = action.commands();
        let fw_version = match &action {
            CampaignAction::Upgrade { component, version, .. } if component == "fw" => Some(version.clone()),
            _ => None,
        };
        let mut targets = Vec::with_capacity(campaign.cabinets.len());
        let mut progress: BTreeMap<&'static str, usize> = ["done", "failed", "unknown", "pending"].into_iter().map(|k| (k, 0)).collect();
        for cabinet in &campaign.cabinets {
            let commands: Vec<_> = specs
                .iter()
                .enumerate()
                .map(|(n, spec)| {
                    let cmd_id = campaign_cmd_id(id, &cabinet.to_string(), n);
                    let (state, detail) = match campaign.outcomes.get(&cmd_id) {
                        Some((o, d)) => (outcome_name(*o), d.clone()),
                        None => ("pending", None),
                    };
                    (cmd_id, spec.type_name(), state, detail)
                })
                .collect();
            *progress.entry(cabinet_state(&commands)).or_default() += 1;
            let reported_fw = self.cabinet(cabinet).await.ok().and_then(|c| c.fw);
            let upgraded = fw_version.as_ref().map(|v| reported_fw.as_ref() == Some(v));
            if upgraded == Some(true) {
                *progress.entry("upgraded").or_default() += 1;
            } else if upgraded.is_some() {
                progress.entry("upgraded").or_default();
            }
            targets.push(CampaignTarget {
                cabinet: cabinet.clone(),
                commands,
                reported_fw,
                upgraded,
            });
        }
        let plays = self.campaign_plays(&campaign, &action).await?;
        Ok(CampaignView {
            campaign_id: id.to_string(),
            campaign,
            targets,
            progress,
            plays,
        })
    }

    /// The plays of the ads `action` adds, on the campaign's cabinets.
    async fn campaign_plays(&self, campaign: &Campaign, action: &CampaignAction) -> Result<Vec<AdPlaysDoc>, ServiceError> {
        let CampaignAction::Ads { add, .. } = action else {
            return Ok(vec![]);
        };
        let targets: std::collections::BTreeSet<String> = campaign.cabinets.iter().map(ToString::to_string).collect();
        let mut plays = Vec::new();
        for ad in add {
            let docs = self.views.by_owner(AdPlays::VIEW, &ad.ad_id, 10_000).await?;
            plays.extend(
                docs.into_iter()
                    .filter_map(|d| serde_json::from_value::<AdPlaysDoc>(d).ok())
                    .filter(|d| targets.contains(&d.cabinet)),
            );
        }
        plays.sort_by(|a, b| (&a.ad_id, &a.cabinet).cmp(&(&b.ad_id, &b.cabinet)));
        Ok(plays)
    }
}

/// A command outcome's name in the API.
fn outcome_name(o: CampaignCommandOutcome) -> &'static str {
    match o {
        CampaignCommandOutcome::Done => "done",
        CampaignCommandOutcome::Failed => "failed",
        CampaignCommandOutcome::Unknown => "unknown",
    }
}

/// One cabinet's state from its commands' states.
fn cabinet_state(commands: &[(String, &'static str, &'static str, Option<String>)]) -> &'static str {
    let any = |s: &str| commands.iter().any(|c| c.2 == s);
    if any("failed") {
        "failed"
    } else if any("unknown") {
        "unknown"
    } else if any("pending") {
        "pending"
    } else {
        "done"
    }
}
