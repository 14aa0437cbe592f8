//! APIv3 signatures [PAYMENTS.md §1.8], both directions, shared by the adapter, the
//! sandbox and the callback so that one reading of the format is tested from both sides:
//!
//! - requests: `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",
//!   signature="…",timestamp="…",serial_no="…"` over
//!   `METHOD\nPATH_WITH_QUERY\nTIMESTAMP\nNONCE\nBODY\n` (merchant key);
//! - responses and notifications: `Wechatpay-Timestamp`, `Wechatpay-Nonce`,
//!   `Wechatpay-Signature`, `Wechatpay-Serial` over `TIMESTAMP\nNONCE\nBODY\n` (platform
//!   key).

use crate::crypto::{random_alphanumeric, rsa_sign, rsa_verify};
use crate::keys::{PrivateKey, WechatKeys};
use axum::http::{HeaderMap, HeaderValue};
use rsa::RsaPublicKey;
use tare_domain::UnixMs;

/// The only signature scheme APIv3 has.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
/// How far a signed timestamp may be from now, seconds (replays are refused beyond it).
pub const MAX_SKEW_SECS: i64 = 300;
/// Response/notification header: the signing time, Unix seconds.
pub const H_TIMESTAMP: &str = "Wechatpay-Timestamp";
/// Response/notification header: the nonce.
pub const H_NONCE: &str = "Wechatpay-Nonce";
/// Response/notification header: the base64 signature.
pub const H_SIGNATURE: &str = "Wechatpay-Signature";
/// Response/notification header: which platform key signed.
pub const H_SERIAL: &str = "Wechatpay-Serial";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// A header is missing or not readable.
    #[error("missing or malformed {0}")]
    Malformed(String),
    /// Signed by another merchant or platform key.
    #[error("unknown signer: {0}")]
    Signer(String),
    /// The timestamp is more than five minutes away from now.
    #[error("timestamp out of range")]
    Stale,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// `METHOD\nPATH\nTS\nNONCE\nBODY\n`: what a request signature covers.
pub fn request_message(method: &str, path_with_query: &str, timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{method}\n{path_with_query}\n{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// `TS\nNONCE\nBODY\n`: what a response or notification signature covers.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The `Authorization` header of a request the merchant sends at `now_secs`.
pub fn authorization(keys: &WechatKeys, method: &str, path_with_query: &str, body: &[u8], now_secs: i64) -> String {
    let nonce = random_alphanumeric(32);
    let ts = now_secs.to_string();
    let signature = rsa_sign(
        &keys.merchant_private_key,
        &request_message(method, path_with_query, &ts, &nonce, body),
    );
    format!(
        "{SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{ts}\",serial_no=\"{}\"",
        keys.merchant.mchid, keys.merchant.serial_no
    )
}

/// The five attributes of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthHeader {
    /// Merchant id.
    pub mchid: String,
    /// Nonce.
    pub nonce_str: String,
    /// Base64 signature.
    pub signature: String,
    /// Unix seconds, as sent.
    pub timestamp: String,
    /// The merchant certificate's serial.
    pub serial_no: String,
}

/// Reads an `Authorization` header (attributes in any order, §1.8).
pub fn parse_authorization(header: &str) -> Result<AuthHeader, SignError> {
    let bad = || SignError::Malformed("Authorization".into());
    let rest = header.strip_prefix(SCHEME).ok_or_else(bad)?;
    let rest = rest.strip_prefix(' ').ok_or_else(bad)?;
    let mut a = AuthHeader::default();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(bad)?;
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(bad)?;
        let slot = match k {
            "mchid" => &mut a.mchid,
            "nonce_str" => &mut a.nonce_str,
            "signature" => &mut a.signature,
            "timestamp" => &mut a.timestamp,
            "serial_no" => &mut a.serial_no,
            _ => continue,
        };
        *slot = v.to_string();
    }
    if a.mchid.is_empty() || a.nonce_str.is_empty() || a.signature.is_empty() || a.timestamp.is_empty() || a.serial_no.is_empty() {
        return Err(bad());
    }
    Ok(a)
}

/// Whether Unix seconds `ts` is within five minutes of `now_ms` (no overflow for any
/// input: an unrepresentable distance is stale).
pub fn fresh(ts: i64, now_ms: UnixMs) -> bool {
    ts.checked_mul(1000)
        .and_then(|t| now_ms.checked_sub(t))
        .and_then(i64::checked_abs)
        .is_some_and(|d| d <= MAX_SKEW_SECS * 1000)
}

/// The sandbox's check of a merchant request (the key WeChat holds for the merchant).
pub fn verify_request(
    keys: &WechatKeys,
    method: &str,
    path_with_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: UnixMs,
) -> Result<(), SignError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SignError::Malformed("Authorization".into()))?;
    let a = parse_authorization(value)?;
    if a.mchid != keys.merchant.mchid {
        return Err(SignError::Signer(format!("mchid {}", a.mchid)));
    }
    if a.serial_no != keys.merchant.serial_no {
        return Err(SignError::Signer(format!("serial_no {}", a.serial_no)));
    }
    let ts: i64 = a.timestamp.parse().map_err(|_| SignError::Malformed("timestamp".into()))?;
    if !fresh(ts, now_ms) {
        return Err(SignError::Stale);
    }
    let message = request_message(method, path_with_query, &a.timestamp, &a.nonce_str, body);
    if !rsa_verify(&keys.merchant_public_key, &message, &a.signature) {
        return Err(SignError::BadSignature);
    }
    Ok(())
}

/// Signs `body` as the platform does on a response or notification and sets the four
/// `Wechatpay-*` headers.
pub fn sign_response(key: &PrivateKey, serial: &str, body: &[u8], now_secs: i64, headers: &mut HeaderMap) {
    let nonce = random_alphanumeric(32);
    let ts = now_secs.to_string();
    let signature = rsa_sign(key, &response_message(&ts, &nonce, body));
    for (name, value) in [
        (H_TIMESTAMP, ts),
        (H_NONCE, nonce),
        (H_SIGNATURE, signature),
        (H_SERIAL, serial.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SignError::Malformed(name.to_string()))
}

/// The merchant's check of a response or notification: the serial names the platform
/// key, the timestamp is fresh, the signature verifies over the exact body.
pub fn verify_response(public: &RsaPublicKey, serial: &str, headers: &HeaderMap, body: &[u8], now_ms: UnixMs) -> Result<(), SignError> {
    let got_serial = header(headers, H_SERIAL)?;
    if got_serial != serial {
        return Err(SignError::Signer(got_serial.to_string()));
    }
    let ts_text = header(headers, H_TIMESTAMP)?;
    let ts: i64 = ts_text.parse().map_err(|_| SignError::Malformed(H_TIMESTAMP.into()))?;
    if !fresh(ts, now_ms) {
        return Err(SignError::Stale);
    }
    let nonce = header(headers, H_NONCE)?;
    let signature = header(headers, H_SIGNATURE)?;
    if !rsa_verify(public, &response_message(ts_text, nonce, body), signature) {
        return Err(SignError::BadSignature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_message_layout() {
        assert_eq!(
            request_message("GET", "/v3/certificates", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", b""),
            b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n".to_vec()
        );
        assert_eq!(response_message("1", "n", b"{}"), b"1\nn\n{}\n".to_vec());
    }

    #[test]
    fn authorization_attributes_in_any_order() {
        let a = parse_authorization(&format!(
            "{SCHEME} serial_no=\"S\",timestamp=\"1\",signature=\"x==\",nonce_str=\"N\",mchid=\"19\""
        ))
        .unwrap();
        assert_eq!((a.mchid.as_str(), a.serial_no.as_str(), a.signature.as_str()), ("19", "S", "x=="));
        assert!(parse_authorization("Bearer x").is_err());
        assert!(parse_authorization(&format!("{SCHEME} mchid=\"19\"")).is_err());
    }

    #[test]
    fn freshness_never_overflows() {
        let now = 1_700_000_000_000;
        assert!(fresh(1_700_000_000, now));
        assert!(fresh(1_700_000_300, now));
        assert!(!fresh(1_700_000_301, now));
        assert!(!fresh(1_699_999_699, now));
        assert!(!fresh(i64::MIN, now));
        assert!(!fresh(i64::MAX, now));
        assert!(!fresh(0, i64::MIN));
    }
}
