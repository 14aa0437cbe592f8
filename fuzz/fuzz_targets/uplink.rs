//! A device's uplink as the platform parses it (PROTOCOL.md): any bytes, under every kind
//! the contract names and under kinds it does not.
#![no_main]

use libfuzzer_sys::fuzz_target;

const KINDS: [&str; 11] = [
    "boot", "heartbeat", "weight", "door", "ack", "time", "status", "compartment", "ad_play", "unknown", "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&k, payload)) = data.split_first() else { return };
    let kind = KINDS[usize::from(k) % KINDS.len()];
    if let Ok(up) = tare_protocol::parse_uplink(kind, payload) {
        // What parses must be what the kind says.
        assert_eq!(up.kind.as_str(), kind);
    }
});
