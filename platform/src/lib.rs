//! Tare's shared plumbing: everything between the pure domain and the edges.
//!
//! - [`db`]: the two stores (embedded SQLite file, PostgreSQL) and their migrations;
//! - [`store`]: cqrs-es frameworks per aggregate over either store, with metadata;
//! - [`feed`]: the gap-free global feed every consumer reads;
//! - [`jobs`]: durable effects and timers;
//! - [`runner`]: the saga runner and effect executor; [`views`]: projections runner;
//! - [`telemetry`], [`devices`], [`protocol`]: the device side (telemetry buffer, the
//!   device hub that both in-process and MQTT devices talk through, the wire types);
//! - [`bus`]: the telemetry bus (weights, heartbeats) the scaled-out mode backs with JetStream;
//! - [`device_auth`]: the signatures of PROTOCOL.md (MQTT CONNECT, HTTP headers);
//! - [`clock`]: system and test clocks; [`platform`]: assembly and the service API the
//!   HTTP layer calls.
//!
//! Architecture Invariant: this crate never depends on `tare-gateway`; edges plug in
//! through the traits of `tare_sagas::ports`.

pub mod bus;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod db;
pub mod device_auth;
pub mod devices;
pub mod feed;
pub mod jobs;
pub mod liveness;
mod liveness_judge;
pub mod platform;
pub mod protocol;
pub mod runner;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod views;

pub use config::{PlatformConfig, Roles, StoreConfig};
pub use platform::Platform;
pub use service::ServiceError;
