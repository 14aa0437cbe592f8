//! The bill comparison [R3 (b), B6]: our money movements of one provider day against the
//! provider's bill of that day. Pure: the platform reads both sides and records the
//! result.

use crate::{Cents, ProviderKind, UnixMs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Money in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoneyKind {
    /// Collected from the shopper.
    Charge,
    /// Given back.
    Refund,
}

/// Where a movement stands (a bill line is always `succeeded`: the provider's bill lists
/// what it accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementState {
    /// Asked of the provider, outcome not known yet (refunds).
    Pending,
    /// Done.
    Succeeded,
    /// Refused for good (refunds).
    Failed,
}

/// One movement of money, ours or a line of the provider's bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillItem {
    /// Our order id.
    pub order_id: String,
    /// The provider's transaction.
    pub transaction_id: String,
    /// Charge or refund.
    pub kind: MoneyKind,
    /// Our refund id (refunds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Amount (positive for both kinds).
    pub amount_cents: Cents,
    /// Where it stands.
    pub state: MovementState,
    /// When (Unix ms).
    pub at: UnixMs,
}

impl BillItem {
    /// What the two sides are matched on: charges by (order, transaction), refunds by
    /// our refund id.
    pub fn key(&self) -> String {
        match (self.kind, &self.refund_id) {
            (MoneyKind::Refund, Some(r)) => format!("refund:{r}"),
            (MoneyKind::Refund, None) => format!("refund:{}:{}", self.order_id, self.transaction_id),
            (MoneyKind::Charge, _) => format!("charge:{}:{}", self.order_id, self.transaction_id),
        }
    }
}

/// Why a matched pair disagrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchWhy {
    /// Different amounts.
    Amount,
    /// Different states (ours pending or failed, the provider shows it done).
    Status,
}

impl MismatchWhy {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amount => "amount",
            Self::Status => "status",
        }
    }
}

/// A movement both sides know, recorded differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Ours.
    pub ours: BillItem,
    /// The provider's.
    pub theirs: BillItem,
    /// What differs (the amount first, when both do).
    pub why: MismatchWhy,
}

/// One day of one provider, reconciled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillReconciliation {
    /// The provider.
    pub provider: ProviderKind,
    /// The provider's local date, `YYYY-MM-DD`.
    pub date: String,
    /// Movements both sides agree on.
    pub matched: u32,
    /// Ours, not on the provider's bill.
    pub missing_at_provider: Vec<BillItem>,
    /// On the provider's bill, not ours (or listed twice there).
    pub missing_here: Vec<BillItem>,
    /// Both know them, differently.
    pub mismatched: Vec<Mismatch>,
}

impl BillReconciliation {
    /// Whether both sides agree on everything.
    pub fn is_clean(&self) -> bool {
        self.missing_at_provider.is_empty() && self.missing_here.is_empty() && self.mismatched.is_empty()
    }

    /// Every discrepancy, each with a stable finding (the same discrepancy found again
    /// on a re-run has the same id).
    pub fn findings(&self) -> Vec<Finding> {
        let prefix = format!("bills:{}:{}", self.provider.as_str(), self.date);
        let mut out = Vec::new();
        for i in &self.missing_at_provider {
            out.push(Finding {
                anomaly_id: format!("{prefix}:missing_at_provider:{}", i.key()),
                kind: AnomalyKind::BillMissingAtProvider,
                order_id: i.order_id.clone(),
                detail: format!(
                    "our {} of {} ({}) is not on the {} bill of {}",
                    kind_name(i),
                    i.amount_cents,
                    i.transaction_id,
                    self.provider.as_str(),
                    self.date
                ),
                ours: Some(i.clone()),
                theirs: None,
            });
        }
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for i in &self.missing_here {
            // A line listed twice is found twice: number the repeats.
            let n = seen.entry(i.key()).or_default();
            *n += 1;
            let suffix = if *n > 1 { format!("#{n}") } else { String::new() };
            out.push(Finding {
                anomaly_id: format!("{prefix}:missing_here:{}{suffix}", i.key()),
                kind: AnomalyKind::BillMissingHere,
                order_id: i.order_id.clone(),
                detail: format!(
                    "the {} bill of {} has a {} of {} ({}) we have no record of",
                    self.provider.as_str(),
                    self.date,
                    kind_name(i),
                    i.amount_cents,
                    i.transaction_id
                ),
                ours: None,
                theirs: Some(i.clone()),
            });
        }
        for m in &self.mismatched {
            let (kind, detail) = match m.why {
                MismatchWhy::Amount => (
                    AnomalyKind::BillAmountMismatch,
                    format!(
                        "{}: ours {}, the provider's {}",
                        kind_name(&m.ours),
                        m.ours.amount_cents,
                        m.theirs.amount_cents
                    ),
                ),
                MismatchWhy::Status => (
                    AnomalyKind::BillStatusMismatch,
                    format!(
                        "{}: ours {}, the provider's bill lists it",
                        kind_name(&m.ours),
                        state_name(m.ours.state)
                    ),
                ),
            };
            out.push(Finding {
                anomaly_id: format!("{prefix}:{}:{}", kind.as_str(), m.ours.key()),
                kind,
                order_id: m.ours.order_id.clone(),
                detail,
                ours: Some(m.ours.clone()),
                theirs: Some(m.theirs.clone()),
            });
        }
        out
    }
}

fn kind_name(i: &BillItem) -> String {
    match (&i.kind, &i.refund_id) {
        (MoneyKind::Charge, _) => format!("charge of order {}", i.order_id),
        (MoneyKind::Refund, Some(r)) => format!("refund {r} of order {}", i.order_id),
        (MoneyKind::Refund, None) => format!("refund of order {}", i.order_id),
    }
}

fn state_name(s: MovementState) -> &'static str {
    match s {
        MovementState::Pending => "pending",
        MovementState::Succeeded => "succeeded",
        MovementState::Failed => "failed",
    }
}

/// A class of anomaly the bill reconciliation raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Ours, not on the provider's bill.
    BillMissingAtProvider,
    /// On the provider's bill, not ours.
    BillMissingHere,
    /// Amounts differ.
    BillAmountMismatch,
    /// States differ.
    BillStatusMismatch,
}

impl AnomalyKind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BillMissingAtProvider => "bill_missing_at_provider",
            Self::BillMissingHere => "bill_missing_here",
            Self::BillAmountMismatch => "bill_amount_mismatch",
            Self::BillStatusMismatch => "bill_status_mismatch",
        }
    }
}

/// One discrepancy, as an anomaly would record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id: provider, date, class and the movement's key.
    pub anomaly_id: String,
    /// The class.
    pub kind: AnomalyKind,
    /// The order concerned.
    pub order_id: String,
    /// A readable sentence.
    pub detail: String,
    /// Our movement, if we have one.
    pub ours: Option<BillItem>,
    /// The provider's line, if it has one.
    pub theirs: Option<BillItem>,
}

/// Compares our movements of `date` with the provider's bill of `date` [R3 (b)]: charges
/// matched by (order, transaction), refunds by our refund id. Our refunds that failed and
/// are not on the bill agree with it; one the bill lists while ours is pending or failed
/// is a status mismatch; differing amounts are an amount mismatch. A line the bill lists
/// twice is matched once and the repeat is missing here. Lists come out in key order.
pub fn compare(provider: ProviderKind, date: &str, ours: &[BillItem], theirs: &[BillItem]) -> BillReconciliation {
    let mut bill: BTreeMap<String, Vec<&BillItem>> = BTreeMap::new();
    for t in theirs {
        bill.entry(t.key()).or_default().push(t);
    }
    let mut ours_sorted: Vec<&BillItem> = ours.iter().collect();
    ours_sorted.sort_by_key(|i| i.key());
    let mut r = BillReconciliation {
        provider,
        date: date.to_string(),
        matched: 0,
        missing_at_provider: vec![],
        missing_here: vec![],
        mismatched: vec![],
    };
    for o in ours_sorted {
        let line = bill.get_mut(&o.key()).and_then(|v| (!v.is_empty()).then(|| v.remove(0)));
        match line {
            None if o.state == MovementState::Failed => {}
            None => r.missing_at_provider.push(o.clone()),
            Some(t) if t.amount_cents != o.amount_cents => r.mismatched.push(Mismatch {
                ours: o.clone(),
                theirs: t.clone(),
                why: MismatchWhy::Amount,
            }),
            Some(t) if o.state != MovementState::Succeeded => r.mismatched.push(Mismatch {
                ours: o.clone(),
                theirs: t.clone(),
                why: MismatchWhy::Status,
            }),
            Some(_) => r.matched += 1,
        }
    }
    r.missing_here = bill.into_values().flatten().cloned().collect();
    r
}
