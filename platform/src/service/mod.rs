//! The operations the public API calls, one module per resource: [`catalogue`]
//! (products, coupon rule), [`refunds`], [`dead_letters`], [`anomalies`] (the queue and its actions), [`stock`] (stock reconciliation), [`settlements`] (the daily settlements), [`restocks`] (tasks and sessions), [`campaigns`] (ads and upgrades), [`cabinets`] (registration, state, presence, device access,
//! ledger), [`commands`] (device commands), [`shoppers`], [`orders`] (the scan, the
//! receipt), [`payments`] (provider notifications) and [`audit`] (the feed, metrics).
//! Each is an `impl Platform` block over the platform's private subsystems, and every one
//! fails with the one [`ServiceError`].
//!
//! Architecture Invariant: business rules are not decided here. An operation parses
//! nothing (the API hands it domain values), loads, asks an aggregate to decide, and
//! commits; a rule that needs more than one aggregate's state is a pure function in
//! `tare_domain` that this layer calls.

pub mod anomalies;
pub mod audit;
pub mod bills;
pub mod cabinets;
pub mod campaigns;
pub mod catalogue;
pub mod commands;
pub mod dead_letters;
pub mod emergency;
mod error;
pub mod nearby;
pub mod operators;
pub mod orders;
pub mod payments;
pub mod refunds;
pub mod restocks;
pub mod safety;
pub mod settlements;
pub mod shoppers;
pub mod stock;

pub use anomalies::{AnomalyPage, AnomalyRequest, AnomalyState, ANOMALY_PAGE_MAX};
pub use audit::{ClusterMetrics, DeviceMetrics, LivenessMetrics, MetricsSnapshot};
pub use cabinets::{DevicePresence, DoorSpec, LaneSpec, LedgerFilter};
pub use campaigns::{CampaignTarget, CampaignView};
pub use dead_letters::DeadLetterList;
pub use error::ServiceError;
pub use nearby::NearbyCabinet;
pub use refunds::RefundView;
pub use restocks::{LaneProduct, LaneSwap, TASK_PAGE_MAX};
pub use settlements::DaySettlement;
pub use shoppers::OrderFilter;
