//! Simulated devices for Tare: cabinets that speak the device contract (PROTOCOL.md) so
//! the platform can be run, demonstrated, tested and measured with no hardware.
//!
//! - [`cabinet`]: a virtual weight cabinet (doors, load cells with noise and settling,
//!   faults on demand);
//! - [`transport`]: how a simulated device reaches the platform (real MQTT, the HTTP
//!   device API, or any other [`transport::DeviceTransport`]);
//! - [`clock`]: the device's clock (the wall clock, or a test's).
//!
//! Architecture Invariant: a simulated device knows the platform only through the wire
//! contract (`tare_protocol`): this crate does not depend on the platform. The in-process
//! transport tests use carries the same bytes and lives with the platform's wiring.

pub mod cabinet;
pub mod clock;
pub mod transport;
