//! WeChat Pay's notification as the platform's callback verifies and reads it
//! (PAYMENTS.md §1.8): fuzzed headers and body as they come (the signature check must
//! refuse them); a fuzzed body signed with the platform key (verification passes, so the
//! envelope is parsed and its resource decrypted); and a fuzzed resource encrypted with
//! the APIv3 key inside a genuine, signed envelope (the decrypted JSON is parsed).
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tare_providers::keys::ProviderKeys;
use tare_providers::wechat::sign::{sign_response, H_NONCE, H_SERIAL, H_SIGNATURE, H_TIMESTAMP};
use tare_providers::wechat::wire::{encrypt_resource, Envelope};

fn keys() -> &'static ProviderKeys {
    static KEYS: OnceLock<ProviderKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tare-fuzz-keys-{}", std::process::id()));
        ProviderKeys::load_or_generate(&dir).expect("keys")
    })
}

const NOW_SECS: i64 = 1_765_000_000;

fn signed(body: &[u8]) -> HeaderMap {
    let w = &keys().wechat;
    let mut headers = HeaderMap::new();
    let key = w.platform_private_key.as_ref().expect("the sandbox's platform key");
    sign_response(key, &w.platform.serial_no, body, NOW_SECS, &mut headers);
    headers
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let w = &keys().wechat;
    let now_ms = NOW_SECS * 1000;
    match mode % 3 {
        0 => {
            // As sent by anyone: headers and body all fuzzed; never accepted.
            let text = String::from_utf8_lossy(rest);
            let mut parts = text.splitn(5, '\n');
            let mut headers = HeaderMap::new();
            for name in [H_TIMESTAMP, H_NONCE, H_SIGNATURE, H_SERIAL] {
                if let Some(v) = parts.next().and_then(|v| HeaderValue::from_str(v).ok()) {
                    headers.insert(name, v);
                }
            }
            let body = parts.next().unwrap_or_default().as_bytes();
            assert!(tare_providers::wechat::verify_notification(w, &headers, body, now_ms).is_err());
        }
        1 => {
            let headers = signed(rest);
            let _ = tare_providers::wechat::verify_notification(w, &headers, rest, now_ms);
        }
        _ => {
            let resource = encrypt_resource(&w.apiv3_key, "transaction", rest);
            let envelope = Envelope {
                id: "EV-fuzz".into(),
                create_time: "2026-12-02T12:00:00+08:00".into(),
                event_type: "PAYSCORE.USER_PAID".into(),
                resource_type: "encrypt-resource".into(),
                summary: "fuzz".into(),
                resource,
            };
            let body = serde_json::to_vec(&envelope).expect("envelope");
            let headers = signed(&body);
            let _ = tare_providers::wechat::verify_notification(w, &headers, &body, now_ms);
        }
    }
});
