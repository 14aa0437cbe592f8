//! The sandbox's routes (relative to where the platform nests them, `/sandbox/wechat`).
//! Every API call goes through [`guard`]: the behaviour's slow answer, the
//! `WECHATPAY2-SHA256-RSA2048` check against the URI the merchant actually requested
//! (`OriginalUri`, so the mount prefix is part of the signed path) and the platform's
//! signature on the answer. The shopper's confirm tap is not an API call and is neither.

use super::sandbox::{Fault, WechatSandbox};
use super::sign::{sign_response, verify_request};
use super::wire::{CancelOrder, CompleteOrder, CreateOrder, CreateRefund, ModifyOrder, PayOrder};
use crate::sandbox::{now_ms, Sandbox};
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;

type Sb = State<Arc<WechatSandbox>>;

/// The largest request body the sandbox reads.
const MAX_BODY: usize = 1 << 20;

/// The sandbox's router (see the module doc).
pub(super) fn router(sb: Arc<WechatSandbox>) -> Router {
    let api = Router::new()
        .route("/v3/payscore/serviceorder", post(create).get(query))
        .route("/v3/payscore/serviceorder/{no}/cancel", post(cancel))
        .route("/v3/payscore/serviceorder/{no}/modify", post(modify))
        .route("/v3/payscore/serviceorder/{no}/complete", post(complete))
        .route("/v3/payscore/serviceorder/{no}/pay", post(pay))
        .route("/v3/refund/domestic/refunds", post(refund))
        .route("/v3/refund/domestic/refunds/{no}", get(refund_query))
        .route("/v3/bill/tradebill", get(trade_bill))
        .route("/v3/billdownload/file", get(bill_file))
        .layer(from_fn_with_state(sb.clone(), guard));
    api.with_state(sb)
}

/// Slow answers, request verification (401 `SIGN_ERROR`) and response signing.
async fn guard(State(sb): Sb, req: Request, next: Next) -> Response {
    let slow = sb.behaviour().slow_answers;
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return sign(&sb, Fault::param("body too large or unreadable").into_response()).await;
    };
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map(|o| o.0.clone())
        .unwrap_or_else(|| parts.uri.clone());
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    if let Err(e) = verify_request(&sb.keys, parts.method.as_str(), &path, &parts.headers, &bytes, now_ms()) {
        let fault = Fault::new(StatusCode::UNAUTHORIZED, "SIGN_ERROR", format!("签名错误: {e}"));
        return sign(&sb, fault.into_response()).await;
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    sign(&sb, response).await
}

/// Adds the `Wechatpay-*` headers over the exact answer body.
async fn sign(sb: &WechatSandbox, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    sign_response(
        &sb.platform_key,
        &sb.keys.platform.serial_no,
        &bytes,
        now_ms() / 1000,
        &mut parts.headers,
    );
    Response::from_parts(parts, Body::from(bytes))
}

fn answer<T: serde::Serialize>(r: Result<T, Fault>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Fault> {
    serde_json::from_slice(body).map_err(|e| Fault::param(format!("body: {e}")))
}

async fn create(State(sb): Sb, body: Bytes) -> Response {
    answer(parse::<CreateOrder>(&body).and_then(|r| sb.create_order(r)))
}

#[derive(Deserialize)]
struct OrderQuery {
    out_order_no: Option<String>,
    #[serde(default)]
    appid: String,
    #[serde(default)]
    service_id: String,
}

async fn query(State(sb): Sb, Query(q): Query<OrderQuery>) -> Response {
    let Some(no) = q.out_order_no else {
        return Fault::param("out_order_no is required (query_id is not supported here)").into_response();
    };
    answer(sb.query_order(&no, &q.appid, &q.service_id))
}

async fn cancel(State(sb): Sb, Path(no): Path<String>, body: Bytes) -> Response {
    answer(parse::<CancelOrder>(&body).and_then(|r| sb.cancel_order(&no, r)))
}

async fn modify(State(sb): Sb, Path(no): Path<String>, body: Bytes) -> Response {
    answer(parse::<ModifyOrder>(&body).and_then(|r| sb.modify_order(&no, r)))
}

async fn complete(State(sb): Sb, Path(no): Path<String>, body: Bytes) -> Response {
    answer(parse::<CompleteOrder>(&body).and_then(|r| sb.complete_order(&no, r)))
}

async fn pay(State(sb): Sb, Path(no): Path<String>, body: Bytes) -> Response {
    answer(parse::<PayOrder>(&body).and_then(|r| sb.pay_order(&no, &r.appid, &r.service_id)))
}

async fn refund(State(sb): Sb, body: Bytes) -> Response {
    answer(parse::<CreateRefund>(&body).and_then(|r| sb.create_refund(r)))
}

async fn refund_query(State(sb): Sb, Path(no): Path<String>) -> Response {
    answer(sb.query_refund(&no))
}

#[derive(Deserialize)]
struct BillQuery {
    #[serde(default)]
    bill_date: String,
}

/// The sandbox's own base URL as the merchant reached it (host + mount prefix).
fn download_base(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let prefix = uri.path().strip_suffix("/v3/bill/tradebill").unwrap_or("");
    format!("http://{host}{prefix}")
}

async fn trade_bill(State(sb): Sb, OriginalUri(uri): OriginalUri, headers: HeaderMap, Query(q): Query<BillQuery>) -> Response {
    answer(sb.trade_bill(&q.bill_date, &download_base(&headers, &uri)))
}

#[derive(Deserialize)]
struct FileQuery {
    #[serde(default)]
    token: String,
}

async fn bill_file(State(sb): Sb, Query(q): Query<FileQuery>) -> Response {
    match sb.bill_file(&q.token) {
        Some(gz) => ([(header::CONTENT_TYPE, "application/octet-stream")], gz).into_response(),
        None => Fault::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "账单文件不存在").into_response(),
    }
}
