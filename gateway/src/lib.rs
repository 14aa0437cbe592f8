//! Tare's edges: the public HTTP API [API.md], provider callbacks, the payment sandbox
//! [P3], and the device edge: the MQTT endpoint cabinets connect to [D2, D3].
//!
//! Architecture Invariant: nothing in `domain`, `sagas`, `projections` or `platform`
//! depends on this crate; it reaches the core only through `tare_platform::Platform` and
//! implements the ports of `tare_sagas::ports`.

pub mod api;
pub mod counts;
pub mod mqtt;
pub mod rate;
pub mod sandbox_service;
pub mod tail;
pub mod tls;
