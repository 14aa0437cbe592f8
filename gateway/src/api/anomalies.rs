//! The anomaly queue [M3, R4]: what orders and bill reconciliations found, listed by
//! state and cabinet, and closed by an operator with one action — a refund of the order
//! concerned, a write-off or a resolution — kept with who, when and why.

use super::error::ErrorBody;
use super::extract::{ApiJson, Operator};
use super::money::not_blank;
use super::openapi::{Internal, MalformedJson, OperatorOnly, TooLarge, Unauthorized};
use super::{ApiError, ApiState};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tare_domain::{CabinetId, Cents};
use tare_platform::service::{AnomalyRequest, AnomalyState, ANOMALY_PAGE_MAX};
use tare_projections::AnomalyDoc;
use utoipa::{IntoParams, ToSchema};

/// Which anomalies (query of `GET /api/v1/anomalies`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AnomaliesQuery {
    /// `open` or `closed`; both when absent.
    #[param(pattern = "^(open|closed)$")]
    state: Option<String>,
    /// Only this cabinet's (`pk.dn`).
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$", example = "wc1.SN001")]
    cabinet: Option<String>,
    /// Anomalies after this anomaly id (the previous page's `next_after`).
    #[param(max_length = 200)]
    after: Option<String>,
    /// At most this many (default and most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// How an anomaly was closed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AnomalyClosingDto {
    /// `refund`, `write_off` or `resolve`.
    #[schema(pattern = "^(refund|write_off|resolve)$")]
    action: String,
    /// The money given back or written off, in cents, when there was a figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_cents: Option<i64>,
    /// The refund made (see the order's `refunds`), for a refund.
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_id: Option<String>,
    /// Who.
    by: String,
    /// Why, in their words.
    note: String,
    /// When, Unix ms.
    at: i64,
}

/// One anomaly.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AnomalyDto {
    /// Its id (stable: derived from what found it).
    #[schema(example = "order:01931c5e7a")]
    anomaly_id: String,
    /// What was found: an order's (`no_stable_weight`, `low_confidence`,
    /// `door_never_opened`, `unexpected_close`, `no_weight_before`, `lane_heavier`), a
    /// bill's (`bill_missing_at_provider`, `bill_missing_here`, `bill_amount_mismatch`,
    /// `bill_status_mismatch`) or a restock's (`restock_over_capacity`,
    /// `restock_uncertain_count`, `restock_not_counted`).
    #[schema(example = "no_stable_weight")]
    kind: String,
    /// The cabinet (`pk.dn`), when it happened at one of ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    cabinet: Option<String>,
    /// The door.
    #[serde(skip_serializing_if = "Option::is_none")]
    door: Option<u8>,
    /// The lane.
    #[serde(skip_serializing_if = "Option::is_none")]
    lane: Option<u8>,
    /// The order concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    /// The restock session concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    restock_id: Option<String>,
    /// When it was found, Unix ms.
    detected_at: i64,
    /// `open` or `closed`.
    #[schema(pattern = "^(open|closed)$")]
    state: String,
    /// A readable sentence.
    detail: String,
    /// How it was closed, once it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    closing: Option<AnomalyClosingDto>,
}

impl From<AnomalyDoc> for AnomalyDto {
    fn from(d: AnomalyDoc) -> Self {
        Self {
            anomaly_id: d.anomaly_id,
            kind: d.kind,
            cabinet: d.cabinet,
            door: d.door,
            lane: d.lane,
            order_id: d.order_id,
            restock_id: d.restock_id,
            detected_at: d.detected_at,
            state: d.state,
            detail: d.detail,
            closing: d.closing.map(|c| AnomalyClosingDto {
                action: c.action,
                amount_cents: c.amount_cents,
                refund_id: c.refund_id,
                by: c.by,
                note: c.note,
                at: c.at,
            }),
        }
    }
}

/// A page of anomalies.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AnomaliesDto {
    /// By anomaly id (the ids of one kind follow the order they were found in).
    items: Vec<AnomalyDto>,
    /// Pass as `after` for the next page; null when there is none.
    next_after: Option<String>,
}

/// What to do with an anomaly: one action, with why in the operator's words (kept with
/// who and when; a refund's first 80 characters go to the provider as its reason).
///
/// The document's shape of the body; it is read as [`AnomalyActionFields`] (a flat
/// struct names the failing field exactly, where serde's tagged enums lose it) and
/// checked against this shape by [`AnomalyActionFields::request`].
#[derive(Debug, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
#[allow(dead_code)] // documentation only
pub(super) enum AnomalyActionBody {
    /// Give money back on the anomaly's order.
    Refund {
        /// Cents: above 0, at most what is still refundable.
        #[schema(minimum = 1, maximum = 100_000_000)]
        amount_cents: i64,
        /// Why: at most 200 characters, not blank.
        #[schema(
            min_length = 1,
            max_length = 200,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        note: String,
    },
    /// Accept the loss.
    WriteOff {
        /// The money lost in cents, when known: above 0.
        #[schema(minimum = 1, maximum = 100_000_000)]
        amount_cents: Option<i64>,
        /// Why: at most 200 characters, not blank.
        #[schema(
            min_length = 1,
            max_length = 200,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        note: String,
    },
    /// Nothing to give back or write off.
    Resolve {
        /// Why: at most 200 characters, not blank.
        #[schema(
            min_length = 1,
            max_length = 200,
            pattern = r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        note: String,
    },
}

/// The body as read: every field any action takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnomalyActionFields {
    action: String,
    amount_cents: Option<i64>,
    note: String,
}

impl AnomalyActionFields {
    /// The request and its note, checked: each action takes only its own fields.
    fn request(self) -> Result<(AnomalyRequest, String), ApiError> {
        let amount = match self.amount_cents {
            Some(v) => {
                let a = Cents::parse("amount_cents", v)?;
                if a == Cents::ZERO {
                    return Err(ApiError::invalid("amount_cents", "must be above 0"));
                }
                Some(a)
            }
            None => None,
        };
        let request = match self.action.as_str() {
            "refund" => AnomalyRequest::Refund {
                amount: amount.ok_or_else(|| ApiError::invalid("amount_cents", "a refund needs an amount"))?,
            },
            "write_off" => AnomalyRequest::WriteOff { amount },
            "resolve" if amount.is_some() => return Err(ApiError::invalid("amount_cents", "a resolution moves no money")),
            "resolve" => AnomalyRequest::Resolve,
            _ => return Err(ApiError::invalid("action", "must be refund, write_off or resolve")),
        };
        Ok((request, not_blank("note", &self.note, 200)?))
    }
}

/// List anomalies.
///
/// What orders and bill reconciliations found for an operator [M3, R4]: orders sent to
/// review, items put back in the wrong lane, bill lines that disagree with ours. Open
/// ones wait for an action; closed ones show who closed them, how and why. Paged by
/// anomaly id: a full page has a `next_after`, to pass as `after` for the next.
#[utoipa::path(
    get,
    path = "/api/v1/anomalies",
    tag = "reconciliation",
    operation_id = "listAnomalies",
    security(("operatorBearer" = [])),
    params(AnomaliesQuery),
    responses(
        (status = 200, description = "The anomalies.", body = AnomaliesDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 422, description = "`invalid_field`: `state`, `cabinet`, `after` (over 200 characters), `limit` (out of range) or `query` (an unknown parameter).", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn list(
    _: Operator,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<AnomaliesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AnomaliesDto>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let state = match q.state.as_deref() {
        None => None,
        Some("open") => Some(AnomalyState::Open),
        Some("closed") => Some(AnomalyState::Closed),
        Some(_) => return Err(ApiError::invalid("state", "must be open or closed")),
    };
    let cabinet = q.cabinet.as_deref().map(CabinetId::parse).transpose()?;
    let (after, limit) = super::extract::page_params(q.after, q.limit, ANOMALY_PAGE_MAX)?;
    let page = s.platform.anomalies(state, cabinet.as_ref(), &after, limit).await?;
    Ok(Json(AnomaliesDto {
        items: page.items.into_iter().map(AnomalyDto::from).collect(),
        next_after: page.next_after,
    }))
}

/// Act on an anomaly.
///
/// Closes an anomaly with one action, recorded with who, when and why [M3]: `refund`
/// gives money back on its order (under a refund id derived from the anomaly, so a
/// retried request never refunds twice; the anomaly stays open if the refund is
/// refused), `write_off` accepts the loss, `resolve` closes it with nothing to move.
/// The same action again answers as the first did; another action on a closed anomaly
/// is refused.
#[utoipa::path(
    post,
    path = "/api/v1/anomalies/{id}/actions",
    tag = "reconciliation",
    operation_id = "actOnAnomaly",
    security(("operatorBearer" = [])),
    params(("id" = String, Path, description = "The anomaly's id.")),
    request_body = AnomalyActionBody,
    responses(
        (status = 200, description = "The anomaly, closed.", body = AnomalyDto),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = OperatorOnly),
        (status = 404, description = "`anomaly_not_found`, or `order_not_found` for a refund of an order this platform never had.", body = ErrorBody),
        (status = 409, description = "`anomaly_closed` (closed another way), `anomaly_without_order` (a refund of an anomaly about no order), `refund_exceeds_charge`, `order_not_refundable`, `refund_id_taken` (its refund was asked before with another amount) or `concurrent_update`.", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 422, description = "`invalid_field`: `action` (not refund, write_off or resolve), `amount_cents` (missing for a refund, or out of range), `note`, or a field the action does not take.", body = ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn act(
    op: Operator,
    State(s): State<Arc<ApiState>>,
    Path(anomaly_id): Path<String>,
    ApiJson(b): ApiJson<AnomalyActionFields>,
) -> Result<Json<AnomalyDto>, ApiError> {
    let (request, note) = b.request()?;
    if let AnomalyRequest::Refund { amount } = &request {
        op.may_refund(*amount, &s)?;
    }
    let doc = s.platform.act_on_anomaly(&anomaly_id, request, note, op.who()).await?;
    Ok(Json(doc.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::extract::parse_json;

    fn field(body: &str) -> String {
        match parse_json::<AnomalyActionFields>(body.as_bytes()).map(AnomalyActionFields::request) {
            Ok(Ok(r)) => format!("ok {r:?}"),
            Ok(Err(ApiError::Invalid { field, .. })) | Err(ApiError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn each_action_takes_its_fields_and_bad_ones_are_named() {
        assert_eq!(
            field(r#"{"action":"refund","amount_cents":5,"note":" n "}"#),
            r#"ok (Refund { amount: Cents(5) }, "n")"#
        );
        assert_eq!(
            field(r#"{"action":"write_off","note":"n"}"#),
            r#"ok (WriteOff { amount: None }, "n")"#
        );
        for (body, want) in [
            (r#"{"action":"refund","note":"n"}"#, "amount_cents"),
            (r#"{"action":"refund","amount_cents":null,"note":"n"}"#, "amount_cents"),
            (r#"{"action":"refund","amount_cents":0,"note":"n"}"#, "amount_cents"),
            (r#"{"action":"write_off","amount_cents":-1,"note":"n"}"#, "amount_cents"),
            (r#"{"action":"resolve","amount_cents":5,"note":"n"}"#, "amount_cents"),
            (r#"{"action":"undo","note":"n"}"#, "action"),
            (r#"{"note":"n"}"#, "action"),
            (r#"{"action":"resolve","note":"  "}"#, "note"),
            (r#"{"action":"resolve"}"#, "note"),
            (r#"{"action":"resolve","note":"n","by":"me"}"#, "by"),
        ] {
            assert_eq!(field(body), want, "{body}");
        }
    }
}
