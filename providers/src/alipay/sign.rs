//! Alipay's RSA2 rules [PAYMENTS.md §2.1], shared by the adapter, the sandbox and the
//! callback so that both ends of the wire compute exactly the same strings:
//!
//! - a **request** is signed over every non-empty parameter except `sign`, sorted by key,
//!   joined `k=v&…` with raw (not URL-encoded) values — `sign_type` **included**;
//! - a **notification** is signed the same way but **without** `sign` **and** `sign_type`
//!   (and with empty values kept, as the verifying SDKs do);
//! - a **synchronous response** is signed over the exact bytes of its `xxx_response`
//!   JSON value as it appears in the body (never re-serialised).
//!
//! Also the gateway's clock format (`yyyy-MM-dd HH:mm:ss`, China time).

use crate::crypto::{rsa_sign, rsa_verify, PrivateKey};
use crate::sandbox::china_date;
use rsa::RsaPublicKey;
use tare_domain::UnixMs;

/// The only signature type spoken (SHA256withRSA).
pub const SIGN_TYPE: &str = "RSA2";

/// The sorted `k=v&…` string of `params` without the keys in `drop` (and without empty
/// values when `skip_empty`).
fn sign_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, drop: &[&str], skip_empty: bool) -> String {
    let mut kept: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, v)| !(drop.contains(k) || (skip_empty && v.is_empty())))
        .collect();
    kept.sort_unstable();
    kept.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// What a request's `sign` covers: every non-empty parameter but `sign` (`sign_type`
/// included; the official SDKs skip empty values).
pub fn request_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    sign_content(params, &["sign"], true)
}

/// What a notification's `sign` covers: every parameter but `sign` and `sign_type`,
/// empty ones included (as the Java SDK's `getSignCheckContentV1` and python-alipay-sdk's
/// `verify` do; Alipay's notifications carry no empty values in practice).
pub fn notification_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    sign_content(params, &["sign", "sign_type"], false)
}

/// Appends `sign` to request parameters (signed with the app's private key).
pub fn sign_request(key: &PrivateKey, params: &mut Vec<(String, String)>) {
    let content = request_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    params.push(("sign".into(), rsa_sign(key, content.as_bytes())));
}

/// Appends `sign_type` and `sign` to notification parameters (signed with Alipay's key).
pub fn sign_notification(key: &PrivateKey, params: &mut Vec<(String, String)>) {
    let content = notification_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    params.push(("sign_type".into(), SIGN_TYPE.into()));
    params.push(("sign".into(), rsa_sign(key, content.as_bytes())));
}

/// Checks a request's `sign` with the app's public key.
pub fn verify_request(key: &RsaPublicKey, params: &[(String, String)]) -> bool {
    let Some(sign) = lookup(params, "sign") else {
        return false;
    };
    let content = request_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    rsa_verify(key, content.as_bytes(), sign)
}

/// The value of `key` in form parameters.
pub fn lookup<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The response key of a method: `alipay.trade.pay` → `alipay_trade_pay_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// A signed synchronous response body: `{"<key>":<inner>,"sign":"…"}`, the sign covering
/// `inner` byte for byte.
pub fn signed_response(key: &PrivateKey, response_key: &str, inner: &str) -> String {
    let sign = rsa_sign(key, inner.as_bytes());
    format!("{{\"{response_key}\":{inner},\"sign\":\"{sign}\"}}")
}

/// The raw JSON text of the top-level member `key` of the object `body` (what the sign of
/// a synchronous response covers), found by scanning the text itself: serde would
/// re-serialise and change the bytes.
pub fn raw_member<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let bytes = body.as_bytes();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(bytes, i);
        if bytes.get(i) == Some(&b'}') {
            return None;
        }
        let name_end = value_end(bytes, i)?;
        let name = body.get(i + 1..name_end - 1)?;
        i = skip_ws(bytes, name_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        let end = value_end(bytes, i)?;
        if name == key {
            return body.get(i..end);
        }
        i = skip_ws(bytes, end);
        match bytes.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The index just past the JSON value starting at `start` (strings, objects, arrays and
/// scalars; well-formedness beyond nesting is serde's job afterwards).
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    let mut in_string = false;
    while let Some(&b) = bytes.get(i) {
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return Some(i);
                    }
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                b',' if depth == 0 => return Some(i),
                _ => {}
            }
        }
        i += 1;
    }
    (depth == 0 && !in_string && i > start).then_some(i)
}

/// `yyyy-MM-dd HH:mm:ss` in China time (UTC+8): the gateway's `timestamp`, notifications'
/// `notify_time`, `gmt_payment`, and the bill's times.
pub fn china_datetime(at: UnixMs) -> String {
    let secs = (at + 8 * 3_600_000).rem_euclid(86_400_000) / 1000;
    format!("{} {:02}:{:02}:{:02}", china_date(at), secs / 3600, secs / 60 % 60, secs % 60)
}

/// The inverse of [`china_datetime`] (to the second), for reading bills.
pub fn parse_china_datetime(s: &str) -> Option<UnixMs> {
    let s = s.trim();
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = tare_domain::reconciliation::dates::days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(day).ok()?);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - 8 * 3600) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_notification_strings_differ_only_by_sign_type() {
        let p = [("b", "2"), ("a", "1"), ("sign_type", "RSA2"), ("sign", "x"), ("empty", "")];
        assert_eq!(request_content(p), "a=1&b=2&sign_type=RSA2");
        assert_eq!(notification_content(p), "a=1&b=2&empty=");
        assert_eq!(response_key("alipay.trade.pay"), "alipay_trade_pay_response");
    }

    #[test]
    fn the_raw_response_member_is_found_byte_for_byte() {
        let body = r#" { "alipay_trade_pay_response" : {"code":"10000","msg":"a}\"{,","n":[1,{"x":2}]} , "sign":"abc=="}"#;
        assert_eq!(
            raw_member(body, "alipay_trade_pay_response"),
            Some(r#"{"code":"10000","msg":"a}\"{,","n":[1,{"x":2}]}"#)
        );
        assert_eq!(raw_member(body, "sign"), Some(r#""abc==""#));
        assert_eq!(raw_member(body, "other"), None);
        assert_eq!(raw_member("{\"a\":{", "a"), None);
        assert_eq!(raw_member("[]", "a"), None);
    }

    #[test]
    fn china_times_round_trip() {
        // 2026-12-01 16:30:05 UTC is 2026-12-02 00:30:05 in Beijing.
        let at = 1_796_142_605_000;
        assert_eq!(china_datetime(at), "2026-12-02 00:30:05");
        assert_eq!(parse_china_datetime("2026-12-02 00:30:05"), Some(at));
        assert_eq!(parse_china_datetime("2026-13-02 00:30:05"), None);
        assert_eq!(parse_china_datetime("yesterday"), None);
    }
}
