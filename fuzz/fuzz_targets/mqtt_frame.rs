//! The MQTT device endpoint's reading of bytes from a socket, as its session does: frame
//! headers peeked from a buffer, an oversized publish's head read without the rest, the
//! CONNECT's protocol version, and every whole frame decoded as 3.1.1 and as 5.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tare_gateway::mqtt::codec::{connect_version, decode, peek_header, peek_publish_head, Version};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some(h)) = peek_header(buf) {
        if h.packet_type() == 3 {
            let _ = peek_publish_head(&h, buf);
        }
        let len = h.frame_len();
        if len == 0 || buf.len() < len {
            break;
        }
        let (frame, rest) = buf.split_at(len);
        if h.packet_type() == 1 {
            let _ = connect_version(frame, &h);
        }
        for v in [Version::V311, Version::V5] {
            let _ = decode(v, frame);
        }
        buf = rest;
    }
});
