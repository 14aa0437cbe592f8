//! Tare's domain: the aggregates (product, cabinet, shopper with account, order, payment),
//! their commands and events, and the pure rules they apply (weight → items, coupon choice).
//!
//! Architecture Invariant: nothing here performs I/O, spawns tasks or reads a clock. Time
//! (`at`, Unix ms) and ids arrive inside commands, so every decision can be replayed.

pub mod cabinet;
pub mod coupon;
pub mod order;
pub mod payment;
pub mod product;
pub mod shopper;
pub mod values;
pub mod weight;

pub use values::*;

/// Unix time in milliseconds, UTC. Always supplied by the caller (never read here).
pub type UnixMs = i64;

/// The schema version stamped on every event this crate defines; bumped per event type
/// when its shape changes (with an upcaster beside it).
pub const EVENT_VERSION: &str = "1";
