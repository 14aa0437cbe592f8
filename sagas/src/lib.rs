//! Tare's process managers. Each saga is a pure function from one committed event (read
//! from the global feed) to the effects it calls for, each with a deterministic key and a
//! due time; the platform's runner stores those effects in the same transaction as the
//! saga's feed checkpoint and executes them (at least once, so every effect is
//! idempotent: aggregates ignore commands that no longer apply, providers dedupe by the
//! order id, devices by the command id).
//!
//! Architecture Invariant: no I/O here. The traits the effects need (payment provider,
//! device link, telemetry, clock) are declared in [`ports`] and implemented at the edges.

pub mod order_saga;
pub mod ports;

pub use order_saga::{decide, Effect, SagaConfig, Scheduled};
