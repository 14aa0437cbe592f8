//! The loopback harness of the WeChat tests: one set of generated keys per test run, the
//! sandbox nested under `/sandbox/wechat` on a real listener, the adapter calling it, and
//! a `/callbacks/wechat` route that verifies and records what arrives.

use super::{callback_ack_fail, callback_ack_ok, verify_notification, WechatAdapter, WechatSandbox};
use crate::keys::{ProviderKeys, WechatKeys};
use crate::notification::Notification;
use crate::sandbox::{now_ms, Behaviour};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Keys generated once per test binary (RSA generation is slow), and where they are.
pub fn keys() -> &'static (PathBuf, ProviderKeys) {
    static KEYS: OnceLock<(PathBuf, ProviderKeys)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let keys = ProviderKeys::load_or_generate(&dir).expect("keys");
        (dir, keys)
    })
}

/// The WeChat keys of this run.
pub fn wechat_keys() -> WechatKeys {
    keys().1.wechat.clone()
}

/// A behaviour with short schedules (tests wait milliseconds, not minutes).
pub fn fast() -> Behaviour {
    Behaviour {
        resend_schedule: vec![Duration::from_millis(50), Duration::from_millis(50), Duration::from_millis(100)],
        deduction_schedule: vec![Duration::from_millis(30)],
        ..Behaviour::default()
    }
}

/// What the test's callback route saw.
#[derive(Default)]
pub struct Recorder {
    /// Verified notifications, in arrival order.
    pub got: Mutex<Vec<Notification>>,
    /// The `id` of every delivery attempt (refused ones included).
    pub deliveries: Mutex<Vec<String>>,
    /// Every verified notification's headers and exact body (for the oracle test).
    pub raw: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
    /// Deliveries still to answer 500.
    pub fail_next: AtomicU32,
}

/// A running sandbox, adapter and callback route.
pub struct Harness {
    pub sandbox: Arc<WechatSandbox>,
    pub adapter: WechatAdapter,
    pub keys: WechatKeys,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub recorder: Arc<Recorder>,
}

/// Starts a harness with `behaviour`.
pub async fn harness(behaviour: Behaviour) -> Harness {
    let keys = wechat_keys();
    let sandbox = WechatSandbox::new(keys.clone(), behaviour).expect("sandbox");
    let recorder = Arc::new(Recorder::default());
    let (rec, k) = (recorder.clone(), keys.clone());
    let callback = post(move |headers: HeaderMap, body: Bytes| {
        let (rec, k) = (rec.clone(), k.clone());
        async move {
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(String::from))
                .unwrap_or_default();
            rec.deliveries.lock().unwrap().push(id);
            if rec.fail_next.load(Ordering::SeqCst) > 0 {
                rec.fail_next.fetch_sub(1, Ordering::SeqCst);
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            match verify_notification(&k, &headers, &body, now_ms()) {
                Ok(n) => {
                    rec.raw.lock().unwrap().push((headers.clone(), body.to_vec()));
                    rec.got.lock().unwrap().push(n);
                    callback_ack_ok()
                }
                Err(e) => callback_ack_fail(&e.to_string()),
            }
        }
    });
    let app = Router::new()
        .nest("/sandbox/wechat", crate::sandbox::Sandbox::router(sandbox.clone()))
        .route("/callbacks/wechat", callback);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    sandbox.set_notify_base(&base);
    let adapter = WechatAdapter::new(
        &format!("{base}/sandbox/wechat"),
        keys.clone(),
        &format!("{base}/callbacks/wechat"),
        Duration::from_secs(2),
    );
    Harness {
        sandbox,
        adapter,
        keys,
        base,
        recorder,
    }
}

impl Harness {
    /// Waits (up to 5 s) until the recorded notifications satisfy `done`.
    pub async fn wait_for(&self, done: impl Fn(&[Notification]) -> bool) -> Vec<Notification> {
        for _ in 0..250 {
            let got = self.recorder.got.lock().unwrap().clone();
            if done(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting; got {:?}", self.recorder.got.lock().unwrap());
    }
}

/// A new order id (a UUID, as the platform's are).
pub fn order_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
