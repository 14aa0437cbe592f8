//! The HTTP device API's checks before anything is stored (PROTOCOL.md): the three signed
//! headers read from text, the device id parsed, the timestamp's skew, the string to sign
//! built from method, path and body, the signature verified (against a known secret and
//! against the fuzzed one), and the body parsed as the path's uplink kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tare_protocol::signing::{check_skew, http_string_to_sign, sign, verify};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(6, '\n');
    let (Some(device), Some(ts), Some(sig), Some(method), Some(path)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let body = parts.next().unwrap_or_default().as_bytes();
    let Ok(id) = tare_domain::CabinetId::parse(device) else { return };
    let Ok(ts) = ts.parse::<i64>() else { return };
    let _ = check_skew(ts, 1_765_000_000_000);
    let message = http_string_to_sign(ts, method, path, body);
    let secret = "0123456789abcdef0123456789abcdef";
    let _ = verify(secret, &message, sig);
    // A genuine signature verifies; the fuzzed one only if it is that signature.
    assert!(verify(secret, &message, &sign(secret, &message)));
    let kind = path.rsplit('/').next().unwrap_or_default();
    let _ = tare_protocol::parse_uplink(kind, body);
    let _ = id.to_string();
});
