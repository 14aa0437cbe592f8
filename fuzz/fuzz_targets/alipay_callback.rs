//! Alipay's notification as the platform's callback verifies and reads it (PAYMENTS.md
//! §2): a fuzzed form body as it comes (the RSA2 check must refuse it), and fuzzed
//! parameters signed with Alipay's key (verification passes, so every field is read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tare_providers::keys::ProviderKeys;

fn keys() -> &'static ProviderKeys {
    static KEYS: OnceLock<ProviderKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tare-fuzz-keys-{}", std::process::id()));
        ProviderKeys::load_or_generate(&dir).expect("keys")
    })
}

fn form(params: &[(String, String)]) -> Vec<u8> {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let a = &keys().alipay;
    if mode % 2 == 0 {
        assert!(tare_providers::alipay::verify_notification(a, rest).is_err(), "an unsigned body is refused");
        return;
    }
    // `key=value` lines become the parameters, signed as Alipay signs them.
    let text = String::from_utf8_lossy(rest);
    let mut params: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .collect();
    params.push(("app_id".into(), a.app.app_id.clone()));
    let key = a.alipay_private_key.as_ref().expect("the sandbox's Alipay key");
    tare_providers::alipay::sign::sign_notification(key, &mut params);
    let _ = tare_providers::alipay::verify_notification(a, &form(&params));
});
