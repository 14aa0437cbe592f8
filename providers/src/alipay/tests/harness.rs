//! Shared test setup: keys made once per test binary, and a loopback HTTP server with
//! the sandbox nested under `/sandbox/alipay` and a `/callbacks/alipay` that verifies
//! what arrives, records it and answers `success` (or `fail` while told to).

use crate::alipay::{verify_notification, AlipayAdapter, AlipaySandbox, ACK, NACK};
use crate::keys::{AlipayKeys, ProviderKeys};
use crate::notification::Notification;
use crate::sandbox::{Behaviour, Sandbox};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The key directory and the keys in it (RSA key generation is slow: once per binary).
pub fn key_dir() -> &'static (PathBuf, ProviderKeys) {
    static KEYS: OnceLock<(PathBuf, ProviderKeys)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let keys = ProviderKeys::load_or_generate(&dir).expect("keys");
        (dir, keys)
    })
}

/// The Alipay keys of the tests.
pub fn keys() -> AlipayKeys {
    key_dir().1.alipay.clone()
}

/// What the test's `/callbacks/alipay` saw.
#[derive(Default)]
pub struct Callbacks {
    /// Every verified notification, each arrival (resends and duplicates included).
    pub arrivals: Mutex<Vec<Notification>>,
    /// Verified notifications to answer `fail` before answering `success` again.
    pub fail_next: AtomicUsize,
    /// Arrivals that did not verify.
    pub refused: AtomicUsize,
}

impl Callbacks {
    /// The arrivals so far.
    pub fn all(&self) -> Vec<Notification> {
        self.arrivals.lock().unwrap().clone()
    }
}

/// A running loopback server with the sandbox, and an adapter pointed at it.
pub struct Env {
    pub keys: AlipayKeys,
    pub sandbox: Arc<AlipaySandbox>,
    pub adapter: AlipayAdapter,
    pub base: String,
    pub callbacks: Arc<Callbacks>,
}

struct CallbackState {
    keys: AlipayKeys,
    callbacks: Arc<Callbacks>,
}

async fn callback(State(st): State<Arc<CallbackState>>, body: Bytes) -> (StatusCode, &'static str) {
    match verify_notification(&st.keys, &body) {
        Ok(n) => {
            st.callbacks.arrivals.lock().unwrap().push(n);
            let failing = st
                .callbacks
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if failing.is_ok() {
                (StatusCode::OK, NACK)
            } else {
                (StatusCode::OK, ACK)
            }
        }
        Err(_) => {
            st.callbacks.refused.fetch_add(1, Ordering::SeqCst);
            (StatusCode::UNAUTHORIZED, NACK)
        }
    }
}

impl Env {
    /// A sandbox behaving as `behaviour` (with a quick resend schedule unless set).
    pub async fn start(behaviour: Behaviour) -> Self {
        let keys = keys();
        let sandbox = AlipaySandbox::new(keys.clone(), behaviour).expect("sandbox");
        let callbacks = Arc::new(Callbacks::default());
        let state = Arc::new(CallbackState {
            keys: keys.clone(),
            callbacks: Arc::clone(&callbacks),
        });
        let app = Router::new()
            .nest("/sandbox/alipay", Arc::clone(&sandbox).router())
            .route("/callbacks/alipay", post(callback).with_state(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        sandbox.set_notify_base(&base);
        let adapter = Self::adapter_with(&base, keys.clone(), Duration::from_secs(5));
        Self {
            keys,
            sandbox,
            adapter,
            base,
            callbacks,
        }
    }

    /// A quick-resending default behaviour.
    pub fn quick() -> Behaviour {
        Behaviour {
            resend_schedule: vec![Duration::from_millis(50); 3],
            ..Behaviour::default()
        }
    }

    /// Another adapter against the same server.
    pub fn adapter_with(base: &str, keys: AlipayKeys, timeout: Duration) -> AlipayAdapter {
        AlipayAdapter::new(
            &format!("{base}/sandbox/alipay/gateway.do"),
            keys,
            &format!("{base}/callbacks/alipay"),
            timeout,
        )
    }

    /// The gateway URL.
    pub fn gateway(&self) -> String {
        format!("{}/sandbox/alipay/gateway.do", self.base)
    }

    /// Waits (up to 5 s) until `check` holds on the arrivals.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[Notification]) -> bool) -> Vec<Notification> {
        for _ in 0..250 {
            let all = self.callbacks.all();
            if check(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}; got {:#?}", self.callbacks.all());
    }
}

/// A fresh order id (a UUID, as the platform's).
pub fn order_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
