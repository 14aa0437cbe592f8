//! Ad and upgrade campaigns [M5]: one request pushes an ad set or a firmware/app upgrade
//! to many cabinets; the campaign shows, per cabinet, each command's final state, the
//! firmware version the device reported since, and the ads' plays.

use super::error::ErrorBody;
use super::extract::{Operator, TaggedJson};
use super::money::not_blank;
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tare_domain::campaign::{AdSpec, CampaignAction};
use tare_domain::CabinetId;
use tare_platform::service::CampaignView;
use utoipa::ToSchema;

/// An ad to add to the screens' rotation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAd {
    /// Ad id (what the device reports in `ad_play`): at most 64 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    ad_id: String,
    /// Where the device fetches it: at most 2048 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    uri: String,
}

/// Which part of the device an upgrade replaces.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum UpgradeComponent {
    /// Firmware (the device reports its version at boot: the campaign sees it take).
    Fw,
    /// The screen's application.
    App,
}

/// What every cabinet of the campaign gets.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum CampaignActionBody {
    /// Ads added to the rotation and removed from it (`ad_add` / `ad_remove`): at least
    /// one, no ad id twice (neither rule is one JSON Schema can state).
    Ads {
        /// Ads to add.
        #[serde(default)]
        #[schema(max_items = 20)]
        add: Vec<NewAd>,
        /// Ad ids to remove.
        #[serde(default)]
        #[schema(schema_with = ad_ids)]
        remove: Vec<String>,
    },
    /// A firmware or app upgrade (`upgrade`).
    Upgrade {
        /// `fw` or `app`.
        component: UpgradeComponent,
        /// The version installed: at most 64 characters, not blank.
        #[schema(
            min_length = 1,
            max_length = 64,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        version: String,
        /// Where the image is: at most 2048 characters, not blank.
        #[schema(
            min_length = 1,
            max_length = 2048,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        uri: String,
        /// Hex SHA-256 of the image.
        #[schema(pattern = "^[0-9A-Fa-f]{64}$")]
        sha256: String,
    },
}

/// A new campaign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCampaign {
    /// A name for people: at most 80 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 80,
        pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "spring firmware 2.1"
    )]
    name: String,
    /// The cabinets (`pk.dn`), each once: 1 to 5000.
    #[schema(schema_with = cabinet_ids)]
    cabinets: Vec<String>,
    /// What each gets.
    action: CampaignActionBody,
}

impl super::extract::Tagged for NewCampaign {
    const TAG: &'static str = "/action/kind";
}

/// Not blank, as `trim()` judges it.
const NOT_BLANK: &str = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// An array of distinct strings matching `pattern`, `min`..=`max` long, each at most
/// `max_length` characters (utoipa's attributes state neither `uniqueItems` nor a pattern
/// of the items).
fn distinct_strings(
    pattern: &str,
    max_length: usize,
    min: usize,
    max: usize,
    example: serde_json::Value,
) -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let item = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_length))
        .pattern(Some(pattern));
    ArrayBuilder::new()
        .items(item)
        .min_items(Some(min))
        .max_items(Some(max))
        .unique_items(true)
        .examples([example])
        .build()
}

/// The cabinets of a campaign.
fn cabinet_ids() -> utoipa::openapi::schema::Array {
    distinct_strings(
        r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$",
        129,
        1,
        5000,
        serde_json::json!(["wc1.SN001"]),
    )
}

/// Ad ids to remove.
fn ad_ids() -> utoipa::openapi::schema::Array {
    distinct_strings(NOT_BLANK, 64, 0, 20, serde_json::json!(["spring-2026"]))
}

/// One command of a campaign on one cabinet.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CampaignCommandDto {
    /// The command's id (also `GET /api/v1/commands/{id}`).
    cmd_id: String,
    /// `ad_add`, `ad_remove` or `upgrade`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `pending` until the device answers or the command expires, then `done`,
    /// `failed` or `unknown`.
    #[schema(example = "done")]
    state: &'static str,
    /// The device's detail (why it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// One cabinet of a campaign.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CampaignTargetDto {
    /// The cabinet.
    cabinet: String,
    /// Its commands.
    commands: Vec<CampaignCommandDto>,
    /// The firmware version the device reported at its last boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_fw: Option<String>,
    /// For a firmware upgrade: whether the device now reports the campaign's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    upgraded: Option<bool>,
}

/// One ad's plays on one cabinet.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AdPlaysDto {
    /// The ad.
    ad_id: String,
    /// The cabinet.
    cabinet: String,
    /// Plays reported.
    plays: u64,
    /// Time on screen in all, ms.
    played_ms: u64,
    /// The last play (Unix ms).
    last_at: i64,
}

/// A campaign and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CampaignDto {
    /// Its id.
    campaign_id: String,
    /// Its name.
    name: String,
    /// `ads` or `upgrade`.
    kind: &'static str,
    /// Who started it.
    created_by: String,
    /// When (Unix ms).
    created_at: i64,
    /// When its commands expire (Unix ms): a device away until then is `unknown`.
    expires_at: i64,
    /// Cabinets by state: `done`, `failed`, `unknown`, `pending`, and for a firmware
    /// upgrade `upgraded` (the device reports the new version).
    #[schema(example = json!({"done": 1, "failed": 0, "unknown": 0, "pending": 0, "upgraded": 1}))]
    progress: BTreeMap<&'static str, usize>,
    /// Each cabinet.
    targets: Vec<CampaignTargetDto>,
    /// The added ads' plays on the campaign's cabinets.
    plays: Vec<AdPlaysDto>,
}

impl From<CampaignView> for CampaignDto {
    fn from(v: CampaignView) -> Self {
        let c = v.campaign;
        Self {
            campaign_id: v.campaign_id,
            name: c.name.unwrap_or_default(),
            kind: c.action.as_ref().map_or("", CampaignAction::kind),
            created_by: c.by,
            created_at: c.created_at,
            expires_at: c.created_at + c.ttl_ms,
            progress: v.progress,
            targets: v
                .targets
                .into_iter()
                .map(|t| CampaignTargetDto {
                    cabinet: t.cabinet.to_string(),
                    commands: t
                        .commands
                        .into_iter()
                        .map(|(cmd_id, kind, state, detail)| CampaignCommandDto {
                            cmd_id,
                            kind,
                            state,
                            detail,
                        })
                        .collect(),
                    reported_fw: t.reported_fw,
                    upgraded: t.upgraded,
                })
                .collect(),
            plays: v
                .plays
                .into_iter()
                .map(|p| AdPlaysDto {
                    ad_id: p.ad_id,
                    cabinet: p.cabinet,
                    plays: p.plays,
                    played_ms: p.played_ms,
                    last_at: p.last_at,
                })
                .collect(),
        }
    }
}

/// The largest campaign body: 5000 cabinet ids of up to 129 characters (every other body
/// stays within the API's 64 KiB).
pub(super) const CAMPAIGN_BODY_LIMIT: usize = 1024 * 1024;

/// The campaign routes, with their own body limit.
pub(super) fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<ApiState>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(create_campaign))
        .layer(axum::extract::DefaultBodyLimit::max(CAMPAIGN_BODY_LIMIT))
        .routes(utoipa_axum::routes!(get_campaign))
}

/// Start a campaign.
///
/// Pushes an ad set or an upgrade to every cabinet named, as device commands with ids
/// derived from the campaign (`GET /api/v1/commands/{id}` shows each); a device away
/// gets them when it comes back, until they expire a day later. The campaign records each
/// command's final state as it comes.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns",
    tag = "campaigns",
    operation_id = "createCampaign",
    security(("operatorBearer" = [])),
    request_body = NewCampaign,
    responses(
        (status = 201, description = "The campaign, its commands pending.", body = CampaignDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`cabinet_not_found`: a cabinet named is not registered.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `name`, `cabinets[i]` (not `pk.dn`), `cabinets` (none, too many, or one twice), `action` (an ads action adding and removing nothing, or naming an ad id twice), `action.version`, `action.uri`, `action.sha256`, `action.ad_id`, or an unknown field.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn create_campaign(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    TaggedJson(b): TaggedJson<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignDto>), ApiError> {
    let name = not_blank("name", &b.name, 80)?;
    let cabinets = b
        .cabinets
        .iter()
        .enumerate()
        .map(|(i, c)| CabinetId::parse(c).map_err(|e| ApiError::invalid(format!("cabinets[{i}]"), e.reason)))
        .collect::<Result<Vec<_>, _>>()?;
    let action = match b.action {
        CampaignActionBody::Ads { add, remove } => CampaignAction::Ads {
            add: add
                .into_iter()
                .map(|a| AdSpec {
                    ad_id: a.ad_id,
                    uri: a.uri,
                })
                .collect(),
            remove,
        },
        CampaignActionBody::Upgrade {
            component,
            version,
            uri,
            sha256,
        } => CampaignAction::Upgrade {
            component: match component {
                UpgradeComponent::Fw => "fw".into(),
                UpgradeComponent::App => "app".into(),
            },
            version,
            uri,
            sha256,
        },
    };
    let view = s.platform.create_campaign(name, action, cabinets, op.who()).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// The `{id}` of a campaign's path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Parameter docs only.
pub(super) struct CampaignPath {
    /// The campaign id.
    #[param(example = "cp0193a5b2c3d4e5f60718293a4b5c6d7e")]
    id: String,
}

/// A campaign's progress.
///
/// Per cabinet: each command's state, the firmware version its device reported since
/// (for a firmware upgrade, whether it took), and the campaign's ads' plays.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}",
    tag = "campaigns",
    operation_id = "getCampaign",
    security(("operatorBearer" = [])),
    params(CampaignPath),
    responses(
        (status = 200, description = "The campaign.", body = CampaignDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`campaign_not_found`.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_campaign(
    _op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<CampaignDto>, ApiError> {
    Ok(Json(s.platform.campaign(&id).await?.into()))
}
