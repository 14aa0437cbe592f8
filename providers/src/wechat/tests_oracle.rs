//! The wire format checked by an independent implementation: Python's `cryptography`
//! and `wechatpayv3` (CI installs both; a missing interpreter or module FAILS this test,
//! it never skips). Rust's request signature and a real sandbox notification go to
//! Python; Python's request and notification come back to Rust.

use super::sign::{authorization, verify_request};
use super::test_support::{fast, harness, keys, order_id};
use super::tests_flow::{auth, collection};
use super::verify_notification;
use crate::notification::NotificationEvent;
use crate::sandbox::now_ms;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::io::Write;
use std::process::{Command, Stdio};
use tare_domain::{Cents, ConfirmMode};
use tare_sagas::ports::PaymentProvider;

const ORACLE: &str = include_str!("oracle.py");

fn run_python(input: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args(["-c", ORACLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the oracle needs python3 with `cryptography` and `wechatpayv3` (CI installs them): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "the Python oracle failed ({}); it needs `pip install cryptography wechatpayv3`:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the oracle prints JSON")
}

#[tokio::test]
async fn python_wechatpayv3_agrees_with_our_wire_format() {
    let h = harness(fast()).await;
    let (dir, _) = keys();
    // A real notification from the sandbox (USER_PAID, with Chinese text in it).
    let id = order_id();
    h.adapter
        .create_authorization(auth(&id, "oracle", ConfirmMode::Once, 900))
        .await
        .unwrap();
    h.adapter.collect(collection(&id, 321)).await.unwrap();
    h.wait_for(|g| g.iter().any(|n| matches!(n.event, NotificationEvent::Collected { .. })))
        .await;
    let (headers, body) = h.recorder.raw.lock().unwrap().last().cloned().expect("a raw notification");
    let header_json: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("wechatpay-"))
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().into()))
        .collect();
    // A request as the adapter signs it.
    let path = "/sandbox/wechat/v3/payscore/serviceorder?out_order_no=abc&appid=wx1";
    let request_body = r#"{"reason":"门没开","total_amount":1}"#;
    let authz = authorization(&h.keys, "POST", path, request_body.as_bytes(), now_ms() / 1000);
    let m = &h.keys.merchant;
    let py_resource = serde_json::json!({
        "appid": m.appid, "mchid": m.mchid, "service_id": m.service_id, "out_order_no": crate::refs::out_order_no(&id),
        "service_introduction": "无人货柜购物", "state": "DONE", "order_id": "1000PY",
        "collection": {"state": "USER_PAID", "total_amount": 77, "paying_amount": 0, "paid_amount": 77,
            "details": [{"seq": 1, "amount": 77, "paid_type": "NEWTON", "paid_time": "20261202003000", "transaction_id": "4200PY"}]}
    });
    let out = run_python(&serde_json::json!({
        "dir": dir.to_string_lossy(),
        "request": {"method": "POST", "path": path, "body": request_body, "authorization": authz},
        "notification": {"headers": header_json, "body": String::from_utf8(body.clone()).unwrap()},
        "py_resource": py_resource,
    }));

    assert_eq!(out["request_ok"], true, "Python verifies our request signature");
    assert_eq!(
        out["notification_sig_ok"], true,
        "wechatpayv3 verifies the sandbox's notification signature"
    );
    let plain: super::wire::ServiceOrder =
        serde_json::from_str(out["plaintext"].as_str().expect("wechatpayv3 decrypts the resource")).unwrap();
    assert_eq!((plain.state.as_str(), plain.collection.map(|c| c.paid_amount)), ("DONE", Some(321)));

    // Python's request verifies here (the sandbox's check).
    let r = &out["py_request"];
    let mut hm = HeaderMap::new();
    hm.insert(
        "authorization",
        HeaderValue::from_str(r["authorization"].as_str().unwrap()).unwrap(),
    );
    let py_body = r["body"].as_str().unwrap().as_bytes();
    verify_request(&h.keys, "POST", r["path"].as_str().unwrap(), &hm, py_body, now_ms()).expect("wechatpayv3's request verifies");
    assert!(verify_request(&h.keys, "GET", r["path"].as_str().unwrap(), &hm, py_body, now_ms()).is_err());

    // Python's notification verifies and decrypts here (the platform's callback).
    let n = &out["py_notification"];
    let mut hm = HeaderMap::new();
    for (k, v) in n["headers"].as_object().unwrap() {
        hm.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
        );
    }
    let got = verify_notification(&h.keys, &hm, n["body"].as_str().unwrap().as_bytes(), now_ms()).expect("Python's notification verifies");
    assert_eq!(
        got.event,
        NotificationEvent::Collected {
            order_id: id,
            transaction_id: "4200PY".into(),
            amount: Cents::new(77)
        }
    );
}
