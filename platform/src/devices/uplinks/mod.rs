//! One handler per uplink kind, each an `impl DeviceHub` block: what a device's message
//! becomes — a cabinet or device-command command, telemetry, or a downlink reply.

mod ack;
mod boot;
mod door;
mod heartbeat;
mod locker;
mod time;
mod weight;
