//! The independent oracle [PAYMENTS.md §4]: python-alipay-sdk 3.4.0 (module `alipay`)
//! checks our wire format, and we check its.
//!
//! - a notification the sandbox signs verifies with `AliPay.verify` (which drops `sign`
//!   and `sign_type`);
//! - a request the adapter signs has the very signature the SDK computes over the same
//!   parameters (`_ordered_data` + `_sign`, `sign_type` included; PKCS#1 v1.5 is
//!   deterministic, so equal bytes prove the same string and key);
//! - a real gateway answer passes `_verify_and_return_sync_response` (the raw
//!   `xxx_response` substring);
//! - a notification the SDK signs (as Alipay would, an empty value included) passes our
//!   `verify_notification`.
//!
//! python3 and the module are required: CI installs them; a missing one fails the test.

use super::harness::{key_dir, keys, Env};
use crate::alipay::sign::{response_key, sign_notification};
use crate::alipay::{build_request, verify_notification, wire};
use crate::notification::NotificationEvent;
use crate::sandbox::now_ms;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use tare_domain::Cents;

const SCRIPT: &str = r#"
import json, sys, urllib.parse
try:
    from alipay import AliPay
except ImportError as e:
    print("python-alipay-sdk is not installed (pip install python-alipay-sdk==3.4.0): %s" % e, file=sys.stderr)
    sys.exit(3)

d = sys.argv[1]
cmd = json.loads(sys.stdin.read())
def read(name):
    with open("%s/alipay/%s" % (d, name)) as f:
        return f.read()

app = AliPay(appid=cmd["app_id"], app_notify_url=None,
             app_private_key_string=read("app_private_key.pem"),
             alipay_public_key_string=read("alipay_public_key.pem"), sign_type="RSA2")

note = dict(urllib.parse.parse_qsl(cmd["notification"], keep_blank_values=True))
note_sign = note.pop("sign")
notification_ok = app.verify(note, note_sign)

req = dict(urllib.parse.parse_qsl(cmd["request"], keep_blank_values=True))
rust_sign = req.pop("sign")
ordered = app._ordered_data(dict(req))
sdk_sign = app._sign("&".join("{}={}".format(k, v) for k, v in ordered))

response = app._verify_and_return_sync_response(cmd["response"], cmd["response_key"])

alipay_side = AliPay(appid=cmd["app_id"], app_notify_url=None,
                     app_private_key_string=read("alipay_private_key.pem"),
                     alipay_public_key_string=read("app_public_key.pem"), sign_type="RSA2")
py_note = {
    "notify_id": "py-notify-1", "notify_type": "trade_status_sync", "notify_time": "2026-12-02 10:00:00",
    "app_id": cmd["app_id"], "seller_id": cmd["seller_id"], "charset": "utf-8", "version": "1.0",
    "out_trade_no": "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "trade_no": "2026120222001000000000000009",
    "trade_status": "TRADE_SUCCESS", "total_amount": "12.05", "subject": "大乐透2.1 & co",
    "passback_params": "",
}
unsigned = "&".join("{}={}".format(k, v) for k, v in sorted(py_note.items()))
py_note["sign_type"] = "RSA2"
py_note["sign"] = alipay_side._sign(unsigned)

print(json.dumps({
    "notification_ok": notification_ok,
    "request_sign_equal": sdk_sign == rust_sign,
    "response": response,
    "python_notification": urllib.parse.urlencode(py_note),
}))
"#;

fn run_python(input: &Value) -> Value {
    let dir = &key_dir().0;
    let child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| panic!("python3 is required for the Alipay oracle test (CI installs it): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "the python-alipay-sdk oracle failed (python3 with python-alipay-sdk 3.4.0 is required): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle output is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_alipay_sdk_agrees_with_our_wire_format() {
    let k = keys();
    let env = Env::start(Env::quick()).await;
    // A notification as the sandbox signs it.
    let mut note: Vec<(String, String)> = [
        ("notify_id", "rust-notify-1"),
        ("notify_type", "fund_auth_freeze"),
        ("notify_time", "2026-12-02 00:30:05"),
        ("app_id", k.app.app_id.as_str()),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("out_order_no", "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"),
        ("auth_no", "2026120210000000000000001"),
        ("status", "SUCCESS"),
        ("amount", "0.10"),
        ("order_title", "无人柜 & 饮料=1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    sign_notification(k.alipay_private_key.as_ref().unwrap(), &mut note);
    let notification = serde_urlencoded::to_string(&note).unwrap();
    assert!(verify_notification(&k, notification.as_bytes()).is_ok());
    // A request as the adapter signs it, and the gateway's real answer to it.
    let biz = json!({"out_trade_no": "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "note": "中文 & = +"});
    let request = build_request(&k, wire::TRADE_QUERY, &biz, Some("http://127.0.0.1/callbacks/alipay"), now_ms());
    let form = serde_urlencoded::to_string(&request).unwrap();
    let response = reqwest::Client::new()
        .post(env.gateway())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let out = run_python(&json!({
        "app_id": k.app.app_id,
        "seller_id": k.app.seller_id,
        "notification": notification,
        "request": form,
        "response": response,
        "response_key": response_key(wire::TRADE_QUERY),
    }));
    assert_eq!(out["notification_ok"], true, "the SDK rejects our notification signature");
    assert_eq!(out["request_sign_equal"], true, "the SDK signs our request differently");
    assert_eq!(
        out["response"]["sub_code"], "ACQ.TRADE_NOT_EXIST",
        "the SDK did not verify our answer: {out}"
    );

    let theirs = out["python_notification"].as_str().expect("python notification");
    let n = verify_notification(&k, theirs.as_bytes()).expect("we accept the SDK's notification");
    assert_eq!(n.id, "py-notify-1");
    assert_eq!(
        n.event,
        NotificationEvent::Collected {
            order_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            transaction_id: "2026120222001000000000000009".into(),
            amount: Cents::new(1205)
        }
    );
    // And a one-byte change to it is refused.
    let tampered = theirs.replace("12.05", "12.06");
    assert!(verify_notification(&k, tampered.as_bytes()).is_err());
}
