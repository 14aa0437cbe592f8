//! Bad input: provider notifications. Forged, stale, truncated, wrongly encrypted or
//! foreign notifications in each provider's own format are refused (WeChat 401
//! `{"code":"FAIL"}`, Alipay never `success`) and change nothing; a genuine duplicate is
//! acknowledged and changes nothing; a notification crafted outside the project (Python,
//! with the keys in `{data}/keys`) is accepted.

use super::*;
use reqwest::header::{HeaderMap, HeaderValue};
use tare_providers::alipay::sign::sign_notification;
use tare_providers::keys::ProviderKeys;
use tare_providers::wechat::sign::sign_response;
use tare_providers::wechat::wire::{encrypt_resource, Envelope};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// A form body of `params` (already signed or not).
fn form(params: &[(String, String)]) -> Vec<u8> {
    let mut u = reqwest::Url::parse("http://x/").unwrap();
    u.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    u.query().unwrap_or("").as_bytes().to_vec()
}

/// Alipay's `fund_auth_freeze` SUCCESS for `out_order_no`, signed with `key` (unsigned
/// when `None`).
fn freeze(keys: &ProviderKeys, out_order_no: &str, app_id: &str, amount: &str, key: Option<&ProviderKeys>) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("notify_id", format!("forged-{out_order_no}")),
        ("notify_type", "fund_auth_freeze".into()),
        ("notify_time", "2026-12-02 12:00:00".into()),
        ("app_id", app_id.into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("out_order_no", out_order_no.into()),
        ("out_request_no", out_order_no.into()),
        ("auth_no", "2026120210002001".into()),
        ("operation_id", "20261202000001".into()),
        ("amount", amount.into()),
        ("status", "SUCCESS".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let _ = keys;
    if let Some(signer) = key {
        sign_notification(signer.alipay.alipay_private_key.as_ref().expect("sandbox key"), &mut p);
        p.push(("sign_type".into(), "RSA2".into()));
    }
    p
}

/// WeChat's `PAYSCORE.USER_CONFIRM` for `out_order_no`: (headers, body), signed with
/// `signer`'s platform key at `ts` (Unix s), encrypted under `crypt`'s APIv3 key.
fn user_confirm(
    keys: &ProviderKeys,
    out_order_no: &str,
    mchid: &str,
    signer: &ProviderKeys,
    crypt: &ProviderKeys,
    ts: i64,
) -> (HeaderMap, Vec<u8>) {
    let w = &keys.wechat.merchant;
    let resource = json!({"appid": w.appid, "mchid": mchid, "service_id": w.service_id, "out_order_no": out_order_no,
        "state": "DOING", "state_description": "USER_CONFIRM", "order_id": "1000"});
    let envelope = Envelope {
        id: format!("EV-forged-{out_order_no}"),
        create_time: "2026-12-02T12:00:00+08:00".into(),
        event_type: "PAYSCORE.USER_CONFIRM".into(),
        resource_type: "encrypt-resource".into(),
        summary: "confirmed".into(),
        resource: encrypt_resource(&crypt.wechat.apiv3_key, "payscore", &serde_json::to_vec(&resource).unwrap()),
    };
    let body = serde_json::to_vec(&envelope).unwrap();
    let mut headers = HeaderMap::new();
    sign_response(
        signer.wechat.platform_private_key.as_ref().expect("sandbox key"),
        &keys.wechat.platform.serial_no,
        &body,
        ts,
        &mut headers,
    );
    (headers, body)
}

async fn forged_and_duplicate_callbacks_change_nothing(kind: Store) {
    let h = Harness::start(
        kind,
        FleetSpec {
            cabinets: 1,
            doors: 2,
            lanes: 2,
            pk: "bi-cb".into(),
            ..FleetSpec::default()
        },
    )
    .await;
    let (app, fleet) = (&h.app, &h.fleet);
    let c = &fleet.client;
    let admin = c.admin.clone();
    let alipay = app.sandboxes[&ProviderKind::Alipay].clone();
    let keys = app.provider_keys.clone();
    let other_dir = std::env::temp_dir().join(format!("tare-other-keys-{}", uuid::Uuid::new_v4().simple()));
    let other = ProviderKeys::load_or_generate(&other_dir).expect("other keys");
    let http = reqwest::Client::new();

    // Alice has a paid order.
    let alice = fleet.new_shopper("13600000001", "alipay", "once").await.unwrap();
    let paid = fleet
        .purchase(&alice, 0, DoorNo::of(1), &[(LaneNo::of(1), 2)])
        .await
        .expect("alice's purchase");
    assert_eq!(paid.order["state"], "paid", "{}", paid.order);
    let paid_id = paid.order_id.clone();

    // Bob's order waits for his confirmation.
    let bob = fleet.new_shopper("13600000002", "alipay", "each_time").await.unwrap();
    let (st, created) = c
        .post(
            "/api/v1/orders",
            &bob.token,
            &json!({"cabinet": fleet.cabinets[0].id().to_string(), "door": 2}),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let waiting_id = created["order_id"].as_str().unwrap().to_string();
    eventually(10, "bob's payment to await confirmation", || async {
        let (_, o) = c.get(&format!("/api/v1/orders/{waiting_id}"), &admin).await.unwrap();
        (o["payment"]["state"] == "awaiting_confirmation").then_some(())
    })
    .await;
    let (_, o) = c.get(&format!("/api/v1/orders/{waiting_id}"), &admin).await.unwrap();
    let bob_ref = o["payment"]["provider_order_ref"].as_str().expect("provider_order_ref").to_string();

    let head = settle(app).await;
    let waiting_order = app.platform.order(&waiting_id).await.unwrap();
    let waiting_payment = app.platform.payment(&waiting_id).await.unwrap();
    let paid_order = app.platform.order(&paid_id).await.unwrap();
    let paid_payment = app.platform.payment(&paid_id).await.unwrap();
    let charges_before = alipay.charges();

    // Alipay: forms that would authorize Bob's order if they were believed.
    let app_id = keys.alipay.app.app_id.clone();
    let genuine = freeze(&keys, &bob_ref, &app_id, "10.00", Some(&keys));
    let mut tampered = genuine.clone();
    for (k, v) in &mut tampered {
        if k == "amount" {
            *v = "0.01".into();
        }
    }
    let with_sign_type_signed = {
        // The request rule (sign_type inside the signed string) is not the notification's.
        let mut p = freeze(&keys, &bob_ref, &app_id, "10.00", None);
        p.push(("sign_type".into(), "RSA2".into()));
        sign_notification(keys.alipay.alipay_private_key.as_ref().unwrap(), &mut p);
        let signed = tare_providers::crypto::rsa_sign(
            keys.alipay.alipay_private_key.as_ref().unwrap(),
            tare_providers::alipay::sign::request_content(p.iter().filter(|(k, _)| k != "sign").map(|(k, v)| (k.as_str(), v.as_str())))
                .as_bytes(),
        );
        for (k, v) in &mut p {
            if k == "sign" {
                *v = signed.clone();
            }
        }
        p
    };
    let genuine_body = form(&genuine);
    let alipay_cases: Vec<(&str, Vec<u8>)> = vec![
        ("unsigned", form(&freeze(&keys, &bob_ref, &app_id, "10.00", None))),
        (
            "signed with another key",
            form(&freeze(&keys, &bob_ref, &app_id, "10.00", Some(&other))),
        ),
        ("changed after signing", form(&tampered)),
        ("signed with sign_type inside", form(&with_sign_type_signed)),
        (
            "another app, correctly signed",
            form(&freeze(&keys, &bob_ref, "2021000000000000", "10.00", Some(&keys))),
        ),
        (
            "a float-like amount, correctly signed",
            form(&freeze(&keys, &bob_ref, &app_id, "10.0", Some(&keys))),
        ),
        ("truncated", genuine_body[..genuine_body.len() - 20].to_vec()),
        ("empty", Vec::new()),
        ("JSON at the Alipay path", b"{\"notify_type\":\"fund_auth_freeze\"}".to_vec()),
    ];
    for (what, body) in alipay_cases {
        let (st, text) = post_callback(&http, &c.base, "alipay", FORM, &body, &HeaderMap::new()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "alipay {what}: {text}");
        assert_ne!(text, "success", "alipay {what}");
        assert_feed_unchanged(app, head, what).await;
    }

    // WeChat: the same, in WeChat's format (Bob's order is Alipay's, and none of these
    // verifies anyway).
    let now_s = now_ms() / 1000;
    let mchid = keys.wechat.merchant.mchid.clone();
    let (good_headers, good_body) = user_confirm(&keys, &bob_ref, &mchid, &keys, &keys, now_s);
    let mut wrong_serial = good_headers.clone();
    wrong_serial.insert("Wechatpay-Serial", HeaderValue::from_static("5157F09EFDC096DE15EBE81A47057A72"));
    let mut ancient = good_headers.clone();
    ancient.insert("Wechatpay-Timestamp", HeaderValue::from_static("-9223372036854775808"));
    let mut truncated = good_body.clone();
    truncated.truncate(good_body.len() - 40);
    let wechat_cases: Vec<(&str, HeaderMap, Vec<u8>)> = vec![
        ("no signature headers", HeaderMap::new(), good_body.clone()),
        (
            "signed with another platform key",
            user_confirm(&keys, &bob_ref, &mchid, &other, &keys, now_s).0,
            good_body.clone(),
        ),
        {
            let (h, b) = user_confirm(&keys, &bob_ref, &mchid, &other, &keys, now_s);
            ("signed with another platform key (own body)", h, b)
        },
        {
            let (h, b) = user_confirm(&keys, &bob_ref, &mchid, &keys, &keys, now_s - 600);
            ("stale, correctly signed", h, b)
        },
        ("timestamp i64::MIN", ancient, good_body.clone()),
        ("wrong serial", wrong_serial, good_body.clone()),
        {
            let (h, b) = user_confirm(&keys, &bob_ref, &mchid, &keys, &other, now_s);
            ("encrypted under another APIv3 key", h, b)
        },
        {
            let (h, b) = user_confirm(&keys, &bob_ref, "1900000000", &keys, &keys, now_s);
            ("another merchant, correctly signed and encrypted", h, b)
        },
        ("truncated body", good_headers.clone(), truncated),
    ];
    for (what, headers, body) in wechat_cases {
        let (st, text) = post_callback(&http, &c.base, "wechat", JSON, &body, &headers).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "wechat {what}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(v["code"], "FAIL", "wechat {what}: {text}");
        assert_feed_unchanged(app, head, what).await;
    }
    // A genuine WeChat notification naming Bob's order, which is paid through Alipay:
    // acknowledged (it verifies), and it changes nothing.
    let (st, text) = post_callback(&http, &c.base, "wechat", JSON, &good_body, &good_headers).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "another provider's genuine notification: {text}");
    assert_feed_unchanged(app, head, "another provider's genuine notification").await;
    let (st, text) = post_callback(&http, &c.base, "paypal", JSON, &good_body, &good_headers).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "unknown provider: {text}");
    assert_eq!(
        app.platform.payment(&waiting_id).await.unwrap(),
        waiting_payment,
        "forged callbacks changed the payment"
    );
    assert_eq!(
        app.platform.order(&waiting_id).await.unwrap(),
        waiting_order,
        "forged callbacks changed the order"
    );
    assert!(!fleet.cabinets[0].is_open(DoorNo::of(2)), "a forged callback opened the door");

    // A genuine duplicate of Alice's collection, crafted outside the project (Python's
    // `cryptography` with the sandbox's key from the keys directory): acknowledged with
    // `success`, nothing changes.
    let txn = paid.order["payment"]["transaction_id"]
        .as_str()
        .expect("transaction id")
        .to_string();
    let total = paid.order["total_cents"].as_i64().expect("total");
    assert!(total > 0);
    let keys_dir = app_keys_dir(app);
    let out_trade_no = tare_providers::refs::out_order_no(&paid_id);
    let params = json!({
        "notify_id": format!("py-{paid_id}"), "notify_type": "trade_status_sync", "notify_time": "2026-12-02 12:00:00",
        "app_id": app_id, "charset": "utf-8", "version": "1.0", "out_trade_no": out_trade_no, "trade_no": txn,
        "total_amount": format!("{}.{:02}", total / 100, total % 100), "trade_status": "TRADE_SUCCESS",
    });
    for (signer, expect) in [
        ("alipay_private_key.pem", StatusCode::OK),
        ("app_private_key.pem", StatusCode::UNAUTHORIZED),
    ] {
        let body = python_signed_form(&keys_dir.join("alipay").join(signer), &params);
        let (st, text) = post_callback(&http, &c.base, "alipay", FORM, body.as_bytes(), &HeaderMap::new()).await;
        assert_eq!(st, expect, "python-signed ({signer}): {text}");
        assert_eq!(text == "success", expect == StatusCode::OK, "python-signed ({signer}): {text}");
        assert_feed_unchanged(app, head, "a duplicate collection").await;
    }
    assert_eq!(app.platform.order(&paid_id).await.unwrap(), paid_order);
    assert_eq!(app.platform.payment(&paid_id).await.unwrap(), paid_payment);
    assert_eq!(alipay.charges(), charges_before, "the sandbox ledger changed");
    assert_eq!(alipay.charges().iter().filter(|ch| ch.order_id == paid_id).count(), 1);

    // The control: Bob's genuine confirmation (the sandbox's real signed notification)
    // works, and his order goes on to be paid once.
    let url = created["confirm_url"].as_str().expect("confirm url").to_string();
    let path = url.strip_prefix(&c.base).unwrap_or(&url).to_string();
    let (st, b) = c.post(&path, &bob.token, &json!({})).await.unwrap();
    assert_eq!(st, StatusCode::OK, "confirm: {b}");
    let vc = &fleet.cabinets[0];
    assert!(
        vc.wait_open(DoorNo::of(2), Duration::from_secs(15)).await,
        "bob's door never opened"
    );
    assert_eq!(vc.take(DoorNo::of(2), LaneNo::of(1), 1).await.unwrap(), 1);
    vc.close(DoorNo::of(2)).await.unwrap();
    let done = fleet
        .wait_terminal(&waiting_id, &bob.token, Duration::from_secs(30))
        .await
        .expect("bob's order ends");
    assert_eq!(done["state"], "paid", "{done}");
    assert_eq!(alipay.charges().iter().filter(|ch| ch.order_id == waiting_id).count(), 1);
    assert_eq!(alipay.charges().iter().filter(|ch| ch.order_id == paid_id).count(), 1);

    let _ = std::fs::remove_dir_all(&other_dir);
    h.stop().await;
}

/// The keys directory of the harness's app (`{data}/keys` on SQLite; the app's own
/// temporary directory on PostgreSQL).
fn app_keys_dir(app: &App) -> std::path::PathBuf {
    app.keys_dir.clone()
}

/// An Alipay notification form of `params`, signed by Python's `cryptography` with the
/// PEM key at `key` (RSA2 over the sorted `k=v&…` without `sign` and `sign_type`).
fn python_signed_form(key: &std::path::Path, params: &Value) -> String {
    let script = r#"
import base64, json, sys, urllib.parse
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
key = serialization.load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)
params = json.loads(sys.argv[2])
content = '&'.join(f'{k}={params[k]}' for k in sorted(params))
params['sign'] = base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
params['sign_type'] = 'RSA2'
print(urllib.parse.urlencode(params), end='')
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &key.display().to_string(), &params.to_string()])
        .output()
        .expect("python3 runs (CI installs it with `cryptography`)");
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

on_both_stores!(callbacks, forged_and_duplicate_callbacks_change_nothing);
