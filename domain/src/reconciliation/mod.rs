//! Reconciliation of the providers' bills [R3 (b), B6]: the pure comparison
//! ([`compare`]), the provider's local date arithmetic ([`dates`]), and the aggregate
//! that records each run — one per provider day, id `bills:{provider}:{date}` — with an
//! `AnomalyRaised` per discrepancy it had not raised before, so a re-run of the same day
//! raises no duplicates.

mod compare;
pub mod daily;
pub mod dates;
mod stock;

pub use compare::{compare, AnomalyKind, BillItem, BillReconciliation, Finding, Mismatch, MismatchWhy, MoneyKind, MovementState};
pub use stock::{parse_stock_anomaly_id, stock_id, StockFinding};

use crate::{DomainError, ProviderKind, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The aggregate id of one provider day.
pub fn bills_id(provider: ProviderKind, date: &str) -> String {
    format!("bills:{}:{date}", provider.as_str())
}

/// Commands a reconciliation accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReconciliationCommand {
    /// Record a run of the bill comparison.
    RecordBillRun {
        /// What the comparison found.
        result: BillReconciliation,
        /// When.
        at: UnixMs,
    },
    /// Record a night's stock run [R3 (a)]: the lanes that disagree at the run.
    RecordStockRun {
        /// The local date the run closes.
        date: String,
        /// What it found.
        findings: Vec<StockFinding>,
        /// When.
        at: UnixMs,
    },
}

/// Facts about a reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReconciliationEvent {
    /// One provider day was compared with our movements (every run is kept).
    BillsReconciled {
        /// The provider.
        provider: ProviderKind,
        /// The provider's local date.
        date: String,
        /// Which run of that day (1-based).
        run: u32,
        /// Movements both sides agree on.
        matched: u32,
        /// Ours, not on the provider's bill.
        missing_at_provider: Vec<BillItem>,
        /// On the provider's bill, not ours.
        missing_here: Vec<BillItem>,
        /// Both know them, differently.
        mismatched: Vec<Mismatch>,
        /// When.
        at: UnixMs,
    },
    /// A discrepancy for an operator or finance (raised once per finding).
    AnomalyRaised {
        /// Stable id: `bills:{provider}:{date}:{class}:{key}`.
        anomaly_id: String,
        /// `bill_missing_at_provider`, `bill_missing_here`, `bill_amount_mismatch`,
        /// `bill_status_mismatch`.
        kind: AnomalyKind,
        /// The order concerned.
        order_id: String,
        /// The provider.
        provider: ProviderKind,
        /// The provider's local date.
        date: String,
        /// A readable sentence.
        detail: String,
        /// Our movement, if we have one.
        ours: Option<BillItem>,
        /// The provider's line, if it has one.
        theirs: Option<BillItem>,
        /// When.
        at: UnixMs,
    },
    /// A night's stock run [R3 (a)] (every run is kept).
    StockReconciled {
        /// The local date the run closes.
        date: String,
        /// Which run of that night (1-based).
        run: u32,
        /// Lanes that disagreed.
        findings: Vec<StockFinding>,
        /// When.
        at: UnixMs,
    },
    /// A lane's divergence for an operator (raised once per divergence).
    StockAnomalyRaised {
        /// Stable id: `stock:{cabinet}:{door}:{lane}:{since}`.
        anomaly_id: String,
        /// The finding.
        finding: StockFinding,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for ReconciliationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::BillsReconciled { .. } => "BillsReconciled",
            Self::AnomalyRaised { .. } => "AnomalyRaised",
            Self::StockReconciled { .. } => "StockReconciled",
            Self::StockAnomalyRaised { .. } => "StockAnomalyRaised",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a reconciliation command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconciliationError {
    /// A run of another day was sent to this one.
    #[error("this reconciliation is of {0}")]
    WrongDay(String),
}

impl DomainError for ReconciliationError {
    fn kind(&self) -> RejectionKind {
        RejectionKind::Conflict
    }
    fn code(&self) -> &'static str {
        "reconciliation_day"
    }
}

/// One provider day's reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Runs so far.
    pub runs: u32,
    /// The latest result.
    pub last: Option<BillReconciliation>,
    /// When it last ran.
    pub last_at: Option<UnixMs>,
    /// Anomalies raised so far.
    pub raised: BTreeSet<String>,
}

impl Reconciliation {
    /// What recording `command` makes happen: the run, and an anomaly per finding not
    /// raised before.
    pub fn decide(&self, command: ReconciliationCommand) -> Result<Vec<ReconciliationEvent>, ReconciliationError> {
        let (result, at) = match command {
            ReconciliationCommand::RecordBillRun { result, at } => (result, at),
            ReconciliationCommand::RecordStockRun { date, findings, at } => return Ok(self.decide_stock(date, findings, at)),
        };
        if let Some(last) = &self.last {
            if (last.provider, &last.date) != (result.provider, &result.date) {
                return Err(ReconciliationError::WrongDay(format!("{} {}", last.provider.as_str(), last.date)));
            }
        }
        let anomalies = result
            .findings()
            .into_iter()
            .filter(|f| !self.raised.contains(&f.anomaly_id))
            .map(|f| ReconciliationEvent::AnomalyRaised {
                anomaly_id: f.anomaly_id,
                kind: f.kind,
                order_id: f.order_id,
                provider: result.provider,
                date: result.date.clone(),
                detail: f.detail,
                ours: f.ours,
                theirs: f.theirs,
                at,
            });
        let run = ReconciliationEvent::BillsReconciled {
            provider: result.provider,
            date: result.date.clone(),
            run: self.runs + 1,
            matched: result.matched,
            missing_at_provider: result.missing_at_provider.clone(),
            missing_here: result.missing_here.clone(),
            mismatched: result.mismatched.clone(),
            at,
        };
        Ok(std::iter::once(run).chain(anomalies).collect())
    }

    /// A stock run: recorded, and an anomaly per divergence not raised before.
    fn decide_stock(&self, date: String, findings: Vec<StockFinding>, at: UnixMs) -> Vec<ReconciliationEvent> {
        let anomalies: Vec<ReconciliationEvent> = findings
            .iter()
            .filter(|f| !self.raised.contains(&f.anomaly_id()))
            .map(|f| ReconciliationEvent::StockAnomalyRaised {
                anomaly_id: f.anomaly_id(),
                finding: f.clone(),
                at,
            })
            .collect();
        let run = ReconciliationEvent::StockReconciled {
            date,
            run: self.runs + 1,
            findings,
            at,
        };
        std::iter::once(run).chain(anomalies).collect()
    }
}

impl Aggregate for Reconciliation {
    const TYPE: &'static str = "reconciliation";
    type Command = ReconciliationCommand;
    type Event = ReconciliationEvent;
    type Error = ReconciliationError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReconciliationEvent::BillsReconciled {
                provider,
                date,
                run,
                matched,
                missing_at_provider,
                missing_here,
                mismatched,
                at,
            } => {
                self.runs = run;
                self.last_at = Some(at);
                self.last = Some(BillReconciliation {
                    provider,
                    date,
                    matched,
                    missing_at_provider,
                    missing_here,
                    mismatched,
                });
            }
            ReconciliationEvent::StockReconciled { run, at, .. } => {
                self.runs = run;
                self.last_at = Some(at);
            }
            ReconciliationEvent::AnomalyRaised { anomaly_id, .. } | ReconciliationEvent::StockAnomalyRaised { anomaly_id, .. } => {
                self.raised.insert(anomaly_id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
