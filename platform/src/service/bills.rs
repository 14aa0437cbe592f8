//! Bill reconciliation [R3 (b), B6]: one provider day's bill, downloaded through the
//! provider port, compared with our money movements of that day (the `money_movements`
//! view) by `tare_domain::reconciliation::compare`, and recorded on the day's
//! reconciliation aggregate — which raises an anomaly per new discrepancy. Also the
//! nightly run (stock, then bills): a durable timer in the job table, re-armed each night.

use super::ServiceError;
use crate::store::CommandError;
use crate::Platform;
use tare_domain::reconciliation::dates::{next_nightly, nightly_due};
use tare_domain::reconciliation::{bills_id, compare, BillItem, BillReconciliation, MoneyKind, MovementState, ReconciliationCommand};
use tare_domain::ProviderKind;
use tare_projections::{MoneyMovement, MoneyMovements};
use tare_sagas::ports::{BillLine, BillLineKind};
use tare_sagas::{Effect, EffectOutcome, Scheduled};

/// The most movements one provider day is read with.
const DAY_LIMIT: i64 = 1_000_000;

/// A bill line as the comparison reads it (a bill lists what the provider accepted).
fn bill_item(l: BillLine) -> BillItem {
    let (kind, refund_id) = match l.kind {
        BillLineKind::Charge => (MoneyKind::Charge, None),
        BillLineKind::Refund { refund_id } => (MoneyKind::Refund, Some(refund_id)),
    };
    BillItem {
        order_id: l.order_id,
        transaction_id: l.transaction_id,
        kind,
        refund_id,
        amount_cents: l.amount,
        state: MovementState::Succeeded,
        at: l.at,
    }
}

fn nightly_key(date: &str) -> String {
    format!("bills:nightly:{date}")
}

impl Platform {
    /// The providers this node can reconcile.
    pub fn bill_providers(&self) -> Vec<ProviderKind> {
        let mut kinds: Vec<ProviderKind> = self.effects.ports.providers.keys().copied().collect();
        kinds.sort_by_key(|k| k.as_str());
        kinds
    }

    /// Reconciles `provider`'s bill of local `date` (`YYYY-MM-DD`, checked by the
    /// caller) with our movements of that day, and records the run: 422 `provider` when
    /// this node has no such provider, 409 `provider_unavailable` when its bill cannot be
    /// read now.
    pub async fn reconcile_bills(&self, provider: ProviderKind, date: &str) -> Result<BillReconciliation, ServiceError> {
        let port = self.effects.ports.provider(provider).ok_or_else(|| ServiceError::Invalid {
            field: "provider".into(),
            message: format!("{} is not configured on this node", provider.as_str()),
        })?;
        let theirs: Vec<BillItem> = port
            .bill(date)
            .await
            .map_err(|e| ServiceError::Conflict {
                code: "provider_unavailable",
                message: format!("the {} bill of {date} cannot be read now: {e}", provider.as_str()),
            })?
            .into_iter()
            .map(bill_item)
            .collect();
        self.await_views().await?;
        let docs = self
            .views
            .by_owner(MoneyMovements::VIEW, &MoneyMovements::owner(provider, date), DAY_LIMIT)
            .await?;
        let ours: Vec<BillItem> = docs
            .into_iter()
            .filter_map(|d| serde_json::from_value::<MoneyMovement>(d).ok())
            .map(|m| m.item())
            .collect();
        let result = compare(provider, date, &ours, &theirs);
        let id = bills_id(provider, date);
        let cmd = ReconciliationCommand::RecordBillRun {
            result: result.clone(),
            at: self.clock.now_ms(),
        };
        self.record_reconciliation(&id, cmd, "reconcile:bills").await?;
        Ok(result)
    }

    /// Records a reconciliation run (bills or stock) on aggregate `id`: a refusal is the
    /// platform's fault (a run of another day sent to this one), not the caller's.
    pub(super) async fn record_reconciliation(&self, id: &str, cmd: ReconciliationCommand, causation: &str) -> Result<(), ServiceError> {
        match self.aggregates.reconciliations.execute(id, cmd, self.meta(id, causation)).await {
            Ok(()) => Ok(()),
            Err(CommandError::Rejected(e)) => Err(ServiceError::Internal(e.to_string())),
            Err(e) => Err(ServiceError::from_command(e)),
        }
    }

    /// Waits (a bounded while) until the views have applied every event committed
    /// before now, so a run sees the movements just made. Scaled out, the partition
    /// consumers keep their own checkpoints, and the run reads the views as they are.
    pub(super) async fn await_views(&self) -> Result<(), ServiceError> {
        if self.nats.is_some() || !self.roles.projections {
            return Ok(());
        }
        let head = self.feed.head().await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.jobs.checkpoint(crate::views::PROJECTIONS).await? < head {
            if std::time::Instant::now() > deadline {
                tracing::warn!(head, "bill reconciliation reads views still catching up");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The recorded result of `provider`'s day `date`, if it was ever reconciled.
    pub async fn recorded_bill_reconciliation(
        &self,
        provider: ProviderKind,
        date: &str,
    ) -> Result<Option<BillReconciliation>, ServiceError> {
        let r = self
            .aggregates
            .reconciliations
            .load(&bills_id(provider, date))
            .await
            .map_err(ServiceError::from_command)?;
        Ok(r.last)
    }

    /// The result of `provider`'s day `date`: the latest recorded run, or one computed
    /// (and recorded) now when the day was never reconciled.
    pub async fn bill_reconciliation(&self, provider: ProviderKind, date: &str) -> Result<BillReconciliation, ServiceError> {
        match self.recorded_bill_reconciliation(provider, date).await? {
            Some(r) => Ok(r),
            None => self.reconcile_bills(provider, date).await,
        }
    }

    /// Arms the next nightly reconciliation (idempotent: its key is its day, so every
    /// node and every restart arms the same timer once; a missed night's timer is still
    /// in the table and runs at start).
    pub(crate) async fn arm_nightly_bills(&self) -> Result<(), crate::db::DbError> {
        let now = self.clock.now_ms();
        let (date, due_at) = next_nightly(now, self.saga.bills_at_minute);
        let job = Scheduled {
            key: nightly_key(&date),
            due_at,
            effect: Effect::ReconcileBills { date },
        };
        self.jobs.schedule(&[job], now).await
    }

    /// The nightly timer for local `date`: records the stock run closing that day [R3
    /// (a)], reconciles every provider's bill of that day, then arms the next night's. A
    /// provider that cannot be read is tried again later (the stock run again with it:
    /// it raises nothing twice).
    pub(crate) async fn run_nightly_bills(&self, date: &str) -> EffectOutcome {
        if let Err(e) = self.reconcile_stock(date).await {
            return EffectOutcome::Retry(format!("reconciling stock {date}: {e}"));
        }
        for provider in self.bill_providers() {
            if let Err(e) = self.reconcile_bills(provider, date).await {
                return EffectOutcome::Retry(format!("reconciling {} {date}: {e}", provider.as_str()));
            }
        }
        let Some(next) = tare_domain::reconciliation::dates::add_days(date, 1) else {
            return EffectOutcome::Bury(format!("not a date: {date}"));
        };
        let Some(due_at) = nightly_due(&next, self.saga.bills_at_minute) else {
            return EffectOutcome::Bury(format!("not a date: {next}"));
        };
        let job = Scheduled {
            key: nightly_key(&next),
            due_at,
            effect: Effect::ReconcileBills { date: next },
        };
        match self.jobs.schedule(&[job], self.clock.now_ms()).await {
            Ok(()) => EffectOutcome::Done,
            Err(e) => EffectOutcome::Retry(e.to_string()),
        }
    }
}
