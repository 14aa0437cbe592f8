//! Tare's platform core: everything between the pure domain and the edges.
//!
//! - [`platform`]: assembly ([`Platform::start`], [`Platform::stop`]) and the background
//!   loops; [`config`]: what a node is built from; [`service`]: the operations the HTTP
//!   API calls, one module per resource;
//! - [`db`]: the two stores (embedded SQLite file, PostgreSQL) and their migrations;
//!   [`store`]: cqrs-es frameworks per aggregate over either store, with metadata (and the
//!   sagas' aggregate port), commands served from [`cached_store`] (aggregates kept in
//!   memory between commands); [`feed`]: the gap-free global feed every consumer reads;
//! - [`jobs`]: durable effects and timers; [`runner`]: the saga runner and effect executor
//!   (plumbing around `tare_sagas`); [`views`]: the projections runner; [`replay`]: the
//!   log folded again into the read models (rebuild, verify);
//! - [`devices`]: the device edge (the hub every transport talks through, uplinks by kind,
//!   first-boot initialization, telemetry, liveness);
//! - [`cluster`]: the scaled-out mode's NATS side (relay, partition consumers, routed
//!   commands, telemetry across nodes); [`clock`]: system and test clocks.
//!
//! Architecture Invariant: this crate never depends on `tare-gateway`; edges plug in
//! through the traits of `tare_sagas::ports` and speak the device contract of
//! `tare_protocol`.

pub mod actor;
pub mod alerts;
pub mod cached_store;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod db;
pub mod devices;
pub mod effect_lanes;
pub mod feed;
pub mod group_commit;
pub mod jobs;
pub mod personal_data;
pub mod platform;
pub mod replay;
pub mod runner;
pub mod service;
pub mod store;
pub mod views;
pub mod weight_history;

pub use config::{PlatformConfig, Roles, StoreConfig};
pub use platform::Platform;
pub use service::ServiceError;
