//! [`AlipaySandbox`]: plays Alipay's open-platform gateway for the tests, `tare sim` and
//! the embedded default [PAYMENTS.md §2, §3]. One form-POST gateway (`/gateway.do`) that
//! checks every request's RSA2 signature and app id and answers signed JSON; the
//! shopper's confirm tap; the bill files. The business rules live in `ops`, the
//! notifications in `notify`.

use super::notify::Outgoing;
use super::ops::Store;
use super::sign::{lookup, parse_china_datetime, response_key, signed_response, verify_request, SIGN_TYPE};
use super::wire::{failure, CODE_INVALID, CODE_MISSING};
use crate::keys::AlipayKeys;
use crate::sandbox::{now_ms, Behaviour, Charge, ConfirmError, Refund, Sandbox};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tare_domain::ProviderKind;

/// Why a sandbox could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// The sandbox signs as Alipay, so it needs Alipay's private key.
    #[error("the Alipay sandbox needs alipay_private_key")]
    MissingAlipayKey,
}

/// The Alipay sandbox: a gateway that answers like Alipay, a ledger of what it
/// collected and refunded, and notifications sent like Alipay sends them.
pub struct AlipaySandbox {
    pub(super) keys: AlipayKeys,
    pub(super) alipay_key: crate::keys::PrivateKey,
    pub(super) state: Mutex<Store>,
    pub(super) http: reqwest::Client,
    /// Where notifications go when their `notify_url` does not answer.
    pub(super) failover: crate::sandbox::Failover,
    /// Itself, for the notification tasks `confirm(&self)` starts.
    me: Weak<Self>,
}

impl std::fmt::Debug for AlipaySandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipaySandbox")
            .field("app_id", &self.keys.app.app_id)
            .finish_non_exhaustive()
    }
}

impl AlipaySandbox {
    /// A sandbox for the app in `keys`, misbehaving as `behaviour` says. Needs
    /// `keys.alipay_private_key`: it signs its answers and notifications as Alipay.
    pub fn new(keys: AlipayKeys, behaviour: Behaviour) -> Result<Arc<Self>, SandboxError> {
        let alipay_key = keys.alipay_private_key.as_ref().ok_or(SandboxError::MissingAlipayKey)?.clone();
        let store = Store::new(behaviour, &keys.app.app_id, &keys.app.seller_id);
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            keys,
            alipay_key,
            state: Mutex::new(store),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            failover: crate::sandbox::Failover::default(),
        }))
    }

    /// The platform's base URL: notifications go to the request's `notify_url` when it
    /// had one, else to `{base}/callbacks/alipay`.
    pub fn set_notify_base(&self, base: &str) {
        self.lock().notify_base = Some(base.trim_end_matches('/').to_string());
    }

    /// Every gateway call so far as `(method, biz_content)` (for tests and the demo's
    /// inspector: what really went over the wire).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.lock().calls.clone()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the common parameters and the signature, then runs the method. Returns the
    /// response key and the answer object.
    fn answer(&self, params: &[(String, String)], bill_base: &str) -> (String, Map<String, Value>) {
        let Some(method) = lookup(params, "method").filter(|m| super::ops::known(m)) else {
            return (
                "error_response".into(),
                failure(CODE_INVALID, "isv.invalid-method", "不存在的方法名"),
            );
        };
        let key = response_key(method);
        for required in ["app_id", "sign", "sign_type", "timestamp", "charset", "version"] {
            if lookup(params, required).is_none_or(str::is_empty) {
                let sub = format!("isv.missing-{}", required.replace('_', "-"));
                return (key, failure(CODE_MISSING, &sub, "缺少必选参数"));
            }
        }
        if lookup(params, "timestamp").and_then(parse_china_datetime).is_none() {
            return (key, failure(CODE_INVALID, "isv.invalid-timestamp", "非法的时间戳参数"));
        }
        if lookup(params, "app_id") != Some(self.keys.app.app_id.as_str()) {
            return (key, failure(CODE_INVALID, "isv.invalid-app-id", "无效的AppID参数"));
        }
        if lookup(params, "sign_type") != Some(SIGN_TYPE) {
            return (key, failure(CODE_INVALID, "isv.invalid-signature-type", "无效的签名类型"));
        }
        if lookup(params, "charset").is_some_and(|c| !c.eq_ignore_ascii_case("utf-8")) {
            return (key, failure(CODE_INVALID, "isv.invalid-charset", "字符集错误"));
        }
        if !verify_request(&self.keys.app_public_key, params) {
            return (key, failure(CODE_INVALID, "isv.invalid-signature", "验签出错"));
        }
        let biz: Value = match serde_json::from_str(lookup(params, "biz_content").unwrap_or("{}")) {
            Ok(v @ Value::Object(_)) => v,
            _ => return (key, failure(CODE_INVALID, "isv.invalid-parameter", "biz_content 不是 JSON 对象")),
        };
        let notify_url = lookup(params, "notify_url").map(str::to_string);
        let (answer, outgoing) = {
            let mut st = self.lock();
            st.calls.push((method.to_string(), biz.clone()));
            st.run(method, &biz, notify_url, bill_base)
        };
        self.dispatch(outgoing);
        (key, answer)
    }

    /// Sends notifications in the background (after the lock is released).
    pub(super) fn dispatch(&self, outgoing: Vec<Outgoing>) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        if outgoing.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("alipay sandbox: no runtime, notifications not sent");
            return;
        };
        rt.spawn(me.deliver(outgoing));
    }
}

impl Sandbox for AlipaySandbox {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Alipay
    }

    fn api_router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/gateway.do", post(gateway))
            .route("/downloadBillFile.resource", get(bill_file))
            .with_state(self)
    }

    fn confirm(&self, provider_order_ref: &str) -> Result<(), ConfirmError> {
        let outgoing = self.lock().confirm(provider_order_ref)?;
        self.dispatch(outgoing);
        Ok(())
    }

    fn charges(&self) -> Vec<Charge> {
        self.lock().charges.clone()
    }

    fn refunds(&self) -> Vec<Refund> {
        self.lock().refunds.clone()
    }

    fn behaviour(&self) -> Behaviour {
        self.lock().behaviour.clone()
    }

    fn set_behaviour(&self, b: Behaviour) {
        self.lock().behaviour = b;
    }

    fn set_failover(&self, bases: &[String]) {
        self.failover.set(bases);
    }
}

/// `POST /gateway.do`: parameters from the query string and the form body together (the
/// SDKs put the common ones in either).
async fn gateway(
    State(sb): State<Arc<AlipaySandbox>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let slow = sb.lock().behaviour.slow_answers;
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let bill_base = format!("http://{host}{}", uri.path().trim_end_matches("/gateway.do"));
    let mut params: Vec<(String, String)> = Vec::new();
    let parsed_query = serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""));
    let parsed_body = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body);
    let (key, answer) = match (parsed_query, parsed_body) {
        (Ok(q), Ok(b)) => {
            params.extend(q);
            params.extend(b);
            sb.answer(&params, &bill_base)
        }
        _ => ("error_response".into(), failure(CODE_INVALID, "isv.invalid-parameter", "参数无效")),
    };
    let inner = Value::Object(answer).to_string();
    let body = signed_response(&sb.alipay_key, &key, &inner);
    ([(header::CONTENT_TYPE, "application/json;charset=utf-8")], body).into_response()
}

/// `GET /downloadBillFile.resource?token=…`: the zip the bill URL points at (valid 30 s).
async fn bill_file(State(sb): State<Arc<AlipaySandbox>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let token = q.get("token").map(String::as_str).unwrap_or("");
    let file = sb.lock().bill_file(token, now_ms());
    match file {
        Some(Ok(bytes)) => ([(header::CONTENT_TYPE, "application/zip")], bytes).into_response(),
        Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        None => (StatusCode::NOT_FOUND, "bill url expired or unknown").into_response(),
    }
}
