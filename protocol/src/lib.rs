//! The device contract, PROTOCOL.md v1, as code: what a cabinet and the platform say to
//! each other, and nothing of either side's internals. The platform's device edge, the
//! gateway's transports and the simulated devices all depend on this crate, so there is
//! one definition of every message and of "signed".
//!
//! - [`uplink`]: device → platform messages, parsed into typed values (door and lane
//!   numbers, grams, states as enums) or refused with the field and the reason;
//! - [`downlink`]: platform → device commands and time replies;
//! - [`topics`]: a device's MQTT topic tree;
//! - [`signing`]: the signatures of the MQTT CONNECT and of the HTTP device API.
//!
//! Architecture Invariant: no I/O, no async runtime; depends on `tare-domain` only, for
//! the values messages carry.

pub mod downlink;
pub mod signing;
pub mod topics;
pub mod uplink;

pub use downlink::{CommandMsg, Downlink, DownlinkKind, TimeReply};
pub use topics::DeviceTopics;
pub use uplink::{parse_uplink, ProtocolError, Uplink, UplinkBody, UplinkKind, MAX_PAYLOAD};
