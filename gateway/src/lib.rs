//! Tare's edges: the public HTTP API [API.md], provider callbacks, the payment sandbox
//! [P3] and the in-process virtual cabinet that stands in for hardware.
//!
//! Architecture Invariant: nothing in `domain`, `sagas`, `projections` or `platform`
//! depends on this crate; it reaches the core only through `tare_platform::Platform` and
//! implements the ports of `tare_sagas::ports`.

pub mod api;
pub mod sandbox;
pub mod virtual_cabinet;
