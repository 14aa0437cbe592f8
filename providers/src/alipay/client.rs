//! The adapter's side of the gateway [PAYMENTS.md §2, §2.1]: builds and signs each
//! request (RSA2 with the app's private key, common parameters, `biz_content` as JSON),
//! POSTs it as a form, and accepts an answer only if its `sign` verifies with Alipay's
//! public key over the raw `xxx_response` text. Anything it cannot trust — a timeout, a
//! non-2xx status, an unsigned or badly signed body — is `ProviderError::Unavailable`:
//! the outcome is unknown and the caller resolves it by a query.

use super::sign::{china_datetime, raw_member, response_key, sign_request, SIGN_TYPE};
use super::wire::Reply;
use crate::crypto::rsa_verify;
use crate::keys::AlipayKeys;
use crate::sandbox::now_ms;
use rsa::RsaPublicKey;
use serde_json::{Map, Value};
use std::time::Duration;
use tare_sagas::ports::ProviderError;

/// Signs and sends gateway calls, verifies their answers.
pub(super) struct Client {
    pub http: reqwest::Client,
    pub gateway: String,
    pub keys: AlipayKeys,
    pub notify_url: String,
}

/// The signed form parameters of a call: the common parameters, `notify_url` when given,
/// `biz_content`, then `sign` over all of them (`sign_type` included).
pub fn build_request(keys: &AlipayKeys, method: &str, biz: &Value, notify_url: Option<&str>, at: i64) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = vec![
        ("app_id".into(), keys.app.app_id.clone()),
        ("method".into(), method.into()),
        ("format".into(), "JSON".into()),
        ("charset".into(), "utf-8".into()),
        ("sign_type".into(), SIGN_TYPE.into()),
        ("timestamp".into(), china_datetime(at)),
        ("version".into(), "1.0".into()),
        ("biz_content".into(), biz.to_string()),
    ];
    if let Some(url) = notify_url.filter(|u| !u.is_empty()) {
        params.push(("notify_url".into(), url.into()));
    }
    sign_request(&keys.app_private_key, &mut params);
    params
}

/// Reads a synchronous answer: finds the raw `xxx_response` (or `error_response`) text,
/// verifies `sign` over exactly those bytes, then decodes it.
pub fn parse_response(alipay_key: &RsaPublicKey, method: &str, body: &str) -> Result<Reply, ProviderError> {
    let unavailable = |why: &str| ProviderError::Unavailable(format!("alipay {method}: {why}"));
    let raw = raw_member(body, &response_key(method))
        .or_else(|| raw_member(body, "error_response"))
        .ok_or_else(|| unavailable("no response object"))?;
    let sign: String = raw_member(body, "sign")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| unavailable("unsigned response"))?;
    if !rsa_verify(alipay_key, raw.as_bytes(), &sign) {
        return Err(unavailable("response signature does not verify"));
    }
    let fields: Map<String, Value> = serde_json::from_str(raw).map_err(|_| unavailable("response is not a JSON object"))?;
    Ok(Reply::from_fields(fields))
}

impl Client {
    /// A client for `gateway` whose calls give up after `timeout`.
    pub fn new(gateway: &str, keys: AlipayKeys, notify_url: &str, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder().timeout(timeout).build().unwrap_or_default(),
            gateway: gateway.to_string(),
            keys,
            notify_url: notify_url.to_string(),
        }
    }

    /// One call. `notify` adds the platform's `notify_url`.
    pub async fn call(&self, method: &str, biz: Value, notify: bool) -> Result<Reply, ProviderError> {
        let unavailable = |why: String| ProviderError::Unavailable(format!("alipay {method}: {why}"));
        let params = build_request(&self.keys, method, &biz, notify.then_some(self.notify_url.as_str()), now_ms());
        let form = serde_urlencoded::to_string(&params).map_err(|e| unavailable(e.to_string()))?;
        let response = self
            .http
            .post(&self.gateway)
            .header("content-type", "application/x-www-form-urlencoded;charset=utf-8")
            .body(form)
            .send()
            .await
            .map_err(|e| unavailable(if e.is_timeout() { "timeout".into() } else { "unreachable".into() }))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status().as_u16())));
        }
        let body = response.text().await.map_err(|_| unavailable("body unreadable".into()))?;
        let reply = parse_response(&self.keys.alipay_public_key, method, &body)?;
        tracing::debug!(method, code = %reply.code, sub_code = ?reply.sub_code, "alipay call");
        Ok(reply)
    }

    /// Fetches a file (the bill) from a URL the gateway gave.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        let unavailable = |why: String| ProviderError::Unavailable(format!("alipay bill download: {why}"));
        let response = self.http.get(url).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status().as_u16())));
        }
        Ok(response.bytes().await.map_err(|e| unavailable(e.to_string()))?.to_vec())
    }
}
