//! Simulated devices for Tare: cabinets that speak the device contract (PROTOCOL.md) so
//! the platform can be run, demonstrated, tested and measured with no hardware.
//!
//! - [`cabinet`]: a virtual weight cabinet (doors, load cells with noise and settling,
//!   faults on demand);
//! - [`transport`]: how a simulated device reaches the platform (real MQTT, or in-process
//!   into the device hub for tests on a test clock).
//!
//! Architecture Invariant: a simulated device knows the platform only through the wire
//! contract; it never calls into the platform's internals except through
//! [`transport::HubTransport`], which carries the same bytes.

pub mod cabinet;
pub mod transport;
