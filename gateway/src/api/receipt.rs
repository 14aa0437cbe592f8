//! The order as a receipt that explains its charge [B2], and an order in a list [R4]: the
//! DTOs the order endpoints write.
//!
//! Fields stay in alphabetical order at every level: the JSON is byte for byte what the
//! order endpoints wrote before their bodies were typed (a `serde_json::Value` object
//! sorts its keys). The domain types do not know this shape; `ReceiptDto::new` makes it.

use super::money::RefundDto;
use super::orders::ProviderDto;
use serde::Serialize;
use tare_domain::order::rules::authorization_limit;
use tare_domain::order::{Anomaly, Order, OrderState};
use tare_domain::payment::{Payment, PaymentState};
use tare_domain::weight::{LaneInference, WeightSample};
use tare_domain::ProviderKind;
use utoipa::ToSchema;

/// An order's state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStateDto {
    /// Waiting for the provider's pre-authorization.
    Authorizing,
    /// Pre-authorized; the door is about to open.
    Authorized,
    /// The open command is out.
    Opening,
    /// The door is open.
    Open,
    /// Closed; weighing what was taken.
    Settling,
    /// Collecting the charge.
    Charging,
    /// Paid.
    Paid,
    /// Cancelled (nothing charged).
    Cancelled,
    /// Needs an operator.
    Abnormal,
    /// Refunded in full.
    Refunded,
    /// Refunded in part.
    PartiallyRefunded,
}

impl From<OrderState> for OrderStateDto {
    fn from(s: OrderState) -> Self {
        match s {
            OrderState::Authorizing => Self::Authorizing,
            OrderState::Authorized => Self::Authorized,
            OrderState::Opening => Self::Opening,
            OrderState::Open => Self::Open,
            OrderState::Settling => Self::Settling,
            OrderState::Charging => Self::Charging,
            OrderState::Paid => Self::Paid,
            OrderState::Cancelled => Self::Cancelled,
            OrderState::Abnormal => Self::Abnormal,
            OrderState::Refunded => Self::Refunded,
            OrderState::PartiallyRefunded => Self::PartiallyRefunded,
        }
    }
}

impl From<ProviderKind> for ProviderDto {
    fn from(p: ProviderKind) -> Self {
        match p {
            ProviderKind::Wechat => Self::Wechat,
            ProviderKind::Alipay => Self::Alipay,
        }
    }
}

/// Where the provider's side of the order stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum PaymentStateDto {
    /// The provider order is not created yet.
    Pending,
    /// Waiting for the shopper to confirm in the provider's app.
    AwaitingConfirmation,
    /// Pre-authorized.
    Authorized,
    /// Collection requested.
    Collecting,
    /// Collected.
    Collected,
    /// Cancelled at the provider.
    Cancelled,
}

impl From<PaymentState> for PaymentStateDto {
    fn from(s: PaymentState) -> Self {
        match s {
            PaymentState::New => Self::Pending,
            PaymentState::AwaitingConfirmation => Self::AwaitingConfirmation,
            PaymentState::Authorized => Self::Authorized,
            PaymentState::Collecting => Self::Collecting,
            PaymentState::Collected => Self::Collected,
            PaymentState::Cancelled => Self::Cancelled,
        }
    }
}

/// Something an operator should look at [M3].
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
enum AnomalyDto {
    /// The door closed without an open being seen first [D8].
    UnexpectedClose,
    /// A lane got heavier: an item put back in the wrong lane [O6].
    LaneHeavier {
        /// Items more than before.
        items: i64,
        /// The lane.
        lane: u8,
    },
    /// A lane's residual exceeded its tolerance: the count is uncertain [B3].
    LowConfidence {
        /// The confidence (0..1).
        confidence: f64,
        /// The lane.
        lane: u8,
    },
    /// The door never opened after the command and five queries [O4].
    DoorNeverOpened,
    /// No stable weight arrived after the close within the wait [O5].
    NoStableWeight,
    /// No stable weight was known from before the door opened.
    NoWeightBefore,
    /// The door stayed open past the limit: not charged without an operator [B8].
    DoorLeftOpen,
}

impl From<&Anomaly> for AnomalyDto {
    fn from(a: &Anomaly) -> Self {
        match a {
            Anomaly::UnexpectedClose => Self::UnexpectedClose,
            Anomaly::LaneHeavier { lane, items } => Self::LaneHeavier {
                items: *items,
                lane: lane.get(),
            },
            Anomaly::LowConfidence { lane, confidence } => Self::LowConfidence {
                confidence: *confidence,
                lane: lane.get(),
            },
            Anomaly::DoorNeverOpened => Self::DoorNeverOpened,
            Anomaly::NoStableWeight => Self::NoStableWeight,
            Anomaly::NoWeightBefore => Self::NoWeightBefore,
            Anomaly::DoorLeftOpen => Self::DoorLeftOpen,
        }
    }
}

/// A charged line.
#[derive(Debug, Serialize, ToSchema)]
struct LineDto {
    /// `qty × unit_price_cents`.
    amount_cents: i64,
    /// The lane it came from.
    lane: u8,
    /// Product name.
    name: String,
    /// Units.
    qty: u32,
    /// Product.
    sku: String,
    /// Unit price (the lane's label price at the scan).
    unit_price_cents: i64,
}

/// The coupon applied automatically [O7].
#[derive(Debug, Serialize, ToSchema)]
struct CouponUsedDto {
    /// The coupon.
    coupon_id: String,
    /// What it took off.
    discount_cents: i64,
}

/// The provider's side of the order.
#[derive(Debug, Serialize, ToSchema)]
struct PaymentDto {
    /// What the provider pre-authorized, in cents: every lane of the door emptied at
    /// full capacity [O3]; null until the shopper authorized.
    authorized_cents: Option<i64>,
    /// Set only while awaiting the shopper's confirmation.
    confirm_url: Option<String>,
    /// The shopper's provider.
    provider: Option<ProviderDto>,
    /// The merchant order number sent to the provider; null until the provider order
    /// exists.
    provider_order_ref: Option<String>,
    /// Its state.
    state: PaymentStateDto,
    /// The provider's transaction id once collected.
    transaction_id: Option<String>,
}

/// A lane scale's tolerance: error allowed = `abs_grams + rel × load`.
#[derive(Debug, Serialize, ToSchema)]
struct ToleranceDto {
    /// Fixed part in grams.
    abs_grams: f64,
    /// Proportional part.
    rel: f64,
}

/// A lane as frozen at the scan.
#[derive(Debug, Serialize, ToSchema)]
struct EvidenceLaneDto {
    /// The lane.
    lane: u8,
    /// Unit price.
    price_cents: i64,
    /// The version of the price label the lane charged by (1 as registered, one up per
    /// acknowledged change) [C2].
    price_version: u32,
    /// The lane's calibration version it was weighed with (0: never calibrated here)
    /// [M1].
    calibration_version: u32,
    /// Product.
    sku: String,
    /// Its scale's tolerance.
    tolerance: ToleranceDto,
    /// Unit weight in grams.
    unit_grams: f64,
}

/// One lane's reading inside a sample.
#[derive(Debug, Serialize, ToSchema)]
struct LaneGramsDto {
    /// Grams on the lane, net of the tray.
    grams: f64,
    /// The lane.
    lane: u8,
}

/// A stable load-cell sample of the door.
#[derive(Debug, Serialize, ToSchema)]
struct SampleDto {
    /// Device clock, Unix ms.
    device_ts: i64,
    /// Readings per lane.
    lanes: Vec<LaneGramsDto>,
    /// Device message id.
    msg_id: String,
    /// Platform receive time, Unix ms.
    received_at: i64,
    /// The device's stability flag (always true here).
    stable: bool,
}

impl From<&WeightSample> for SampleDto {
    fn from(s: &WeightSample) -> Self {
        Self {
            device_ts: s.device_ts,
            lanes: s
                .lanes
                .iter()
                .map(|l| LaneGramsDto {
                    grams: l.grams.get(),
                    lane: l.lane.get(),
                })
                .collect(),
            msg_id: s.msg_id.clone(),
            received_at: s.received_at,
            stable: s.stable,
        }
    }
}

/// What the platform concluded about one lane [O6, B3].
#[derive(Debug, Serialize, ToSchema)]
struct InferenceDto {
    /// Stable weight after the door closed.
    after_grams: f64,
    /// Stable weight before the door opened.
    before_grams: f64,
    /// 1.0 when the residual is zero, falling to 0.0 at half a unit.
    confidence: f64,
    /// Items that left the lane (negative: the lane got heavier).
    count: i64,
    /// The lane.
    lane: u8,
    /// `(before − after) / unit_grams`, unrounded.
    raw_count: f64,
    /// `(before − after) − count × unit_grams`.
    residual_grams: f64,
    /// The product the planogram put there.
    sku: String,
    /// The tolerance that applied at this load.
    tolerance_grams: f64,
    /// The unit weight used.
    unit_grams: f64,
    /// Whether the residual is within tolerance (otherwise: review, do not charge).
    within_tolerance: bool,
}

impl From<&LaneInference> for InferenceDto {
    fn from(i: &LaneInference) -> Self {
        Self {
            after_grams: i.after_grams.get(),
            before_grams: i.before_grams.get(),
            confidence: i.confidence,
            count: i.count,
            lane: i.lane.get(),
            raw_count: i.raw_count,
            residual_grams: i.residual_grams.get(),
            sku: i.sku.to_string(),
            tolerance_grams: i.tolerance_grams.get(),
            unit_grams: i.unit_grams.get(),
            within_tolerance: i.within_tolerance,
        }
    }
}

/// Why the charge is what it is.
#[derive(Debug, Serialize, ToSchema)]
struct EvidenceDto {
    /// One sentence per lane explaining its count.
    explanation: Vec<String>,
    /// The per-lane inference.
    inference: Vec<InferenceDto>,
    /// The door's lanes as frozen at the scan.
    lanes: Vec<EvidenceLaneDto>,
    /// The planogram version frozen at the scan.
    planogram_version: u32,
    /// Stable reading after the close (null until known).
    weight_after: Option<SampleDto>,
    /// Stable reading before the open (null until known).
    weight_before: Option<SampleDto>,
}

/// The order as a receipt, with the evidence behind the charge [B2].
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptDto {
    /// What an operator should look at.
    anomalies: Vec<AnomalyDto>,
    /// The cabinet `pk.dn`.
    cabinet: Option<String>,
    /// Why it was cancelled.
    cancel_reason: Option<String>,
    /// Collection attempts so far.
    charge_attempts: u32,
    /// The coupon applied automatically, or null.
    coupon: Option<CouponUsedDto>,
    /// Unix ms.
    created_at: i64,
    /// Deductions gave up [O8].
    dead_lettered: bool,
    /// `subtotal_cents − total_cents`.
    discount_cents: i64,
    /// The door.
    door: Option<u8>,
    /// The evidence.
    evidence: EvidenceDto,
    /// Charged lines (lanes where items were taken).
    lines: Vec<LineDto>,
    /// The order's id.
    order_id: Option<String>,
    /// The provider's side.
    payment: PaymentDto,
    /// Refunded so far, in cents [O9].
    refunded_cents: i64,
    /// Its refunds, oldest first.
    refunds: Vec<RefundDto>,
    /// The shopper.
    shopper_id: String,
    /// Its state.
    state: OrderStateDto,
    /// Before the coupon.
    subtotal_cents: i64,
    /// What is (to be) charged.
    total_cents: i64,
    /// Unix ms of the last change.
    updated_at: i64,
}

/// One sentence explaining a lane's count.
fn explain(o: &Order, i: &LaneInference) -> String {
    let name = o
        .lanes
        .iter()
        .find(|l| l.lane == i.lane)
        .map_or(i.sku.as_str(), |l| l.name.as_str());
    let what = match i.count {
        0 => "nothing taken".to_string(),
        n if n > 0 => format!("{n} taken"),
        n => format!("{} more than before (put back in the wrong lane?)", -n),
    };
    format!(
        "lane {} ({}): {:.1} g before, {:.1} g after, {:+.1} g / {} g per item = {:.2} -> {} (residual {:.1} g within ±{:.1} g: {}; confidence {:.0}%)",
        i.lane.get(),
        name,
        i.before_grams,
        i.after_grams,
        i.after_grams - i.before_grams,
        i.unit_grams,
        i.raw_count,
        what,
        i.residual_grams,
        i.tolerance_grams,
        if i.within_tolerance { "yes" } else { "NO, sent to review" },
        i.confidence * 100.0
    )
}

impl ReceiptDto {
    /// The receipt of order `o` with its payment `p`.
    pub fn new(o: &Order, p: &Payment) -> Self {
        let awaiting = p.state == PaymentState::AwaitingConfirmation;
        Self {
            anomalies: o.anomalies.iter().map(Into::into).collect(),
            cabinet: o.cabinet.as_ref().map(|c| c.to_string()),
            cancel_reason: o.cancel_reason.clone(),
            charge_attempts: o.charge_attempts,
            coupon: o.coupon.as_ref().map(|c| CouponUsedDto {
                coupon_id: c.coupon_id.clone(),
                discount_cents: c.discount.get(),
            }),
            created_at: o.created_at,
            dead_lettered: o.dead_lettered,
            discount_cents: o.subtotal.get() - o.total.get(),
            door: o.door.map(|d| d.get()),
            evidence: EvidenceDto {
                explanation: o.inference.iter().map(|i| explain(o, i)).collect(),
                inference: o.inference.iter().map(Into::into).collect(),
                lanes: o
                    .lanes
                    .iter()
                    .map(|l| EvidenceLaneDto {
                        lane: l.lane.get(),
                        price_cents: l.price.get(),
                        price_version: l.price_version,
                        calibration_version: l.calibration_version,
                        sku: l.sku.to_string(),
                        tolerance: ToleranceDto {
                            abs_grams: l.tolerance.abs_grams.get(),
                            rel: l.tolerance.rel,
                        },
                        unit_grams: l.unit_grams.get(),
                    })
                    .collect(),
                planogram_version: o.planogram_version,
                weight_after: o.after.as_ref().map(|r| r.sample().into()),
                weight_before: o.before.as_ref().map(|r| r.sample().into()),
            },
            lines: o
                .lines
                .iter()
                .map(|l| LineDto {
                    amount_cents: l.unit_price.get() * i64::from(l.qty),
                    lane: l.lane.get(),
                    name: l.name.clone(),
                    qty: l.qty,
                    sku: l.sku.to_string(),
                    unit_price_cents: l.unit_price.get(),
                })
                .collect(),
            order_id: o.id.clone(),
            payment: PaymentDto {
                authorized_cents: matches!(
                    p.state,
                    PaymentState::Authorized | PaymentState::Collecting | PaymentState::Collected
                )
                .then(|| authorization_limit(&o.lanes).get()),
                confirm_url: p.confirm_url.clone().filter(|_| awaiting),
                provider: o.provider.map(Into::into),
                provider_order_ref: (!p.provider_order_ref.is_empty()).then(|| p.provider_order_ref.clone()),
                state: p.state.into(),
                transaction_id: p.transaction_id.clone(),
            },
            refunded_cents: p.refunded.get(),
            refunds: {
                let mut rs: Vec<_> = p.refunds.iter().collect();
                rs.sort_by(|a, b| a.1.requested_at.cmp(&b.1.requested_at).then(a.0.cmp(b.0)));
                rs.into_iter()
                    .map(|(id, r)| RefundDto {
                        amount_cents: r.amount.get(),
                        refund_id: id.clone(),
                        state: r.state.into(),
                    })
                    .collect()
            },
            shopper_id: o.shopper_id.clone(),
            state: o.state.into(),
            subtotal_cents: o.subtotal.get(),
            total_cents: o.total.get(),
            updated_at: o.updated_at,
        }
    }
}

/// One order in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummaryDto {
    /// The cabinet `pk.dn`.
    cabinet: String,
    /// Unix ms.
    created_at: i64,
    /// The door.
    door: u8,
    /// The order's id.
    order_id: String,
    /// The shopper.
    shopper_id: String,
    /// Its state.
    #[schema(value_type = OrderStateDto)]
    state: String,
    /// Total charged (or to charge).
    total_cents: i64,
    /// Unix ms of the last change.
    updated_at: i64,
}

impl From<tare_projections::OrderSummary> for OrderSummaryDto {
    fn from(s: tare_projections::OrderSummary) -> Self {
        Self {
            cabinet: s.cabinet,
            created_at: s.created_at,
            door: s.door,
            order_id: s.order_id,
            shopper_id: s.shopper_id,
            state: s.state,
            total_cents: s.total_cents,
            updated_at: s.updated_at,
        }
    }
}
