//! Tare's end-to-end tests, in one test binary (one link of the whole platform instead of
//! one per file). Each module is one capability, black-box through the assembled app
//! (`tare::app::App`), the `tare` binary or real servers; `common` holds the fixtures:
//! a fresh store per test on SQLite and on the machine's PostgreSQL, the harness that
//! starts an app with a provisioned fleet, polling with a deadline, and the cluster
//! helpers.
//!
//! Tests run two at a time (cargo's default on two cores); the ones that start many
//! processes or connections take [`common::exclusive`] so they never overlap each other.

#[macro_use]
mod common;

mod alerts;
mod anomalies;
mod backups;
mod bad_input;
mod bills;
mod campaigns;
mod cluster;
mod code_size;
mod coupons;
mod device_commands;
mod emergency;
mod field_safety;
mod fleet_scale;
mod global_feed;
mod http_device;
mod http_guards;
mod liveness;
mod lockers;
mod mqtt_conformance;
mod nearby;
mod openapi;
mod operators;
mod personal_data;
mod planogram_changes;
mod provider_behaviours;
mod purchase_e2e;
mod recovery;
mod refunds;
mod registration;
mod replay;
mod restocks;
mod roles;
mod saga_clock;
mod scan_recovery;
mod shutdown;
mod sim_process;
mod soak;
mod sse_tail;
mod stock_reconciliation;
mod stream_binding;
mod tls;
mod weights;
