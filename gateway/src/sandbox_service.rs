//! The payment sandboxes as a service of their own, for a cluster: a real provider is
//! one external service every node talks to, so the sandbox that stands in for it must
//! be one too (`tare sandbox`). [`router`] serves the provider calls of
//! [`PaymentProvider`] as JSON over HTTP plus the shopper's confirm page and the ledger of
//! collections; [`RemoteProvider`] is the platform's client of it. Callback keys come
//! from a secret both sides are given ([`callback_key`]), never over the wire.

use crate::sandbox::{ConfirmError, SandboxCharge, SandboxProvider};
use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tare_domain::ProviderKind;
use tare_sagas::ports::{
    AuthorizationCreated, AuthorizationRequest, BillLine, CollectionOutcome, CollectionRequest, PaymentProvider, ProviderError,
    ProviderOrderStatus, RefundOutcome, RefundRequest,
};

/// The key a sandbox signs its callbacks with, derived from the deployment's sandbox
/// secret and the provider (HMAC-SHA256(secret, kind)).
pub fn callback_key(secret: &str, kind: ProviderKind) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(kind.as_str().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A provider call's result on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply<T> {
    Ok(T),
    Unavailable(String),
    Refused { code: String, message: String },
}

impl<T> From<Result<T, ProviderError>> for Reply<T> {
    fn from(r: Result<T, ProviderError>) -> Self {
        match r {
            Ok(v) => Self::Ok(v),
            Err(ProviderError::Unavailable(m)) => Self::Unavailable(m),
            Err(ProviderError::Refused { code, message }) => Self::Refused { code, message },
        }
    }
}

impl<T> From<Reply<T>> for Result<T, ProviderError> {
    fn from(r: Reply<T>) -> Self {
        match r {
            Reply::Ok(v) => Ok(v),
            Reply::Unavailable(m) => Err(ProviderError::Unavailable(m)),
            Reply::Refused { code, message } => Err(ProviderError::Refused { code, message }),
        }
    }
}

/// A cancel call.
#[derive(Debug, Serialize, Deserialize)]
struct CancelRequest {
    order_id: String,
    reason: String,
}

/// One collection in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRecord {
    /// Our order id.
    pub order_id: String,
    /// Amount (minor units).
    pub amount_cents: i64,
    /// Transaction id.
    pub transaction_id: String,
}

impl From<SandboxCharge> for ChargeRecord {
    fn from(c: SandboxCharge) -> Self {
        Self {
            order_id: c.order_id,
            amount_cents: c.amount.get(),
            transaction_id: c.transaction_id,
        }
    }
}

type Sandboxes = Arc<HashMap<ProviderKind, Arc<SandboxProvider>>>;

fn sandbox(s: &Sandboxes, name: &str) -> Result<Arc<SandboxProvider>, (StatusCode, String)> {
    ProviderKind::parse("provider", name)
        .ok()
        .and_then(|k| s.get(&k).cloned())
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no {name} sandbox")))
}

/// The sandbox service's routes: `POST /provider/{kind}/authorizations|collect|cancel`,
/// `GET /provider/{kind}/orders/{order_id}`, `GET /provider/{kind}/charges`, and the
/// shopper's `POST /sandbox/{kind}/authorizations/{ref}/confirm`.
pub fn router(sandboxes: HashMap<ProviderKind, Arc<SandboxProvider>>) -> Router {
    let state: Sandboxes = Arc::new(sandboxes);
    Router::new()
        .route("/provider/{kind}/authorizations", post(authorize))
        .route("/provider/{kind}/collect", post(collect))
        .route("/provider/{kind}/cancel", post(cancel))
        .route("/provider/{kind}/orders/{order_id}", get(query))
        .route("/provider/{kind}/charges", get(charges))
        .route("/sandbox/{kind}/authorizations/{reference}/confirm", post(confirm))
        .with_state(state)
}

async fn authorize(
    State(s): State<Sandboxes>,
    Path(kind): Path<String>,
    Json(req): Json<AuthorizationRequest>,
) -> Result<Json<Reply<AuthorizationCreated>>, (StatusCode, String)> {
    Ok(Json(sandbox(&s, &kind)?.create_authorization(req).await.into()))
}

async fn collect(
    State(s): State<Sandboxes>,
    Path(kind): Path<String>,
    Json(req): Json<CollectionRequest>,
) -> Result<Json<Reply<CollectionOutcome>>, (StatusCode, String)> {
    Ok(Json(sandbox(&s, &kind)?.collect(req).await.into()))
}

async fn cancel(
    State(s): State<Sandboxes>,
    Path(kind): Path<String>,
    Json(req): Json<CancelRequest>,
) -> Result<Json<Reply<()>>, (StatusCode, String)> {
    Ok(Json(sandbox(&s, &kind)?.cancel(&req.order_id, &req.reason).await.into()))
}

async fn query(
    State(s): State<Sandboxes>,
    Path((kind, order_id)): Path<(String, String)>,
) -> Result<Json<Reply<ProviderOrderStatus>>, (StatusCode, String)> {
    Ok(Json(sandbox(&s, &kind)?.query(&order_id).await.into()))
}

async fn charges(State(s): State<Sandboxes>, Path(kind): Path<String>) -> Result<Json<Reply<Vec<ChargeRecord>>>, (StatusCode, String)> {
    Ok(Json(Reply::Ok(
        sandbox(&s, &kind)?.charges().into_iter().map(ChargeRecord::from).collect(),
    )))
}

async fn confirm(
    State(s): State<Sandboxes>,
    Path((kind, reference)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    match sandbox(&s, &kind)?.confirm(&reference) {
        Ok(()) => Ok(Json(serde_json::json!({ "confirmed": true }))),
        Err(ConfirmError::NotFound) => Err((StatusCode::NOT_FOUND, "authorization not found".into())),
        Err(ConfirmError::NotAwaiting) => Err((StatusCode::CONFLICT, "authorization is not awaiting confirmation".into())),
    }
}

/// The platform's client of a sandbox service: one provider kind at `base`.
pub struct RemoteProvider {
    kind: ProviderKind,
    base: String,
    http: reqwest::Client,
}

impl RemoteProvider {
    /// `kind` served at `base` (`http://host:port`).
    pub fn new(kind: ProviderKind, base: &str) -> Arc<Self> {
        Arc::new(Self {
            kind,
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        })
    }

    async fn call<B: Serialize, T: for<'de> Deserialize<'de>>(&self, path: &str, body: Option<&B>) -> Result<T, ProviderError> {
        let url = format!("{}/provider/{}/{path}", self.base, self.kind.as_str());
        let req = match body {
            Some(b) => self.http.post(&url).json(b),
            None => self.http.get(&url),
        };
        // A transport failure leaves the outcome unknown: the saga queries later [P3].
        let resp = req.send().await.map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Unavailable(format!("sandbox answered {}", resp.status())));
        }
        let reply: Reply<T> = resp.json().await.map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        reply.into()
    }

    /// Every collection the sandbox made (for reconciliation in tests and demos).
    pub async fn charges(&self) -> Result<Vec<ChargeRecord>, ProviderError> {
        self.call::<(), _>("charges", None).await
    }
}

#[async_trait]
impl PaymentProvider for RemoteProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    async fn create_authorization(&self, req: AuthorizationRequest) -> Result<AuthorizationCreated, ProviderError> {
        self.call("authorizations", Some(&req)).await
    }

    async fn cancel(&self, order_id: &str, reason: &str) -> Result<(), ProviderError> {
        let body = CancelRequest {
            order_id: order_id.to_string(),
            reason: reason.to_string(),
        };
        self.call("cancel", Some(&body)).await
    }

    async fn collect(&self, req: CollectionRequest) -> Result<CollectionOutcome, ProviderError> {
        self.call("collect", Some(&req)).await
    }

    async fn refund(&self, _req: RefundRequest) -> Result<RefundOutcome, ProviderError> {
        Err(ProviderError::Unavailable(
            "refunds are not offered by the shared sandbox service".into(),
        ))
    }

    async fn refund_status(&self, _order_id: &str, _refund_id: &str) -> Result<RefundOutcome, ProviderError> {
        Err(ProviderError::Unavailable(
            "refunds are not offered by the shared sandbox service".into(),
        ))
    }

    async fn bill(&self, _date: &str) -> Result<Vec<BillLine>, ProviderError> {
        Err(ProviderError::Unavailable(
            "bills are not offered by the shared sandbox service".into(),
        ))
    }

    async fn query(&self, order_id: &str) -> Result<ProviderOrderStatus, ProviderError> {
        self.call::<(), _>(&format!("orders/{order_id}"), None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxBehaviour;
    use tare_domain::{Cents, ConfirmMode};

    #[tokio::test]
    async fn a_remote_provider_behaves_as_the_sandbox_it_calls() {
        let sbx = SandboxProvider::new(ProviderKind::Wechat, b"k", SandboxBehaviour::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        sbx.set_addresses(&base, &[]);
        let app = router(HashMap::from([(ProviderKind::Wechat, sbx.clone())]));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let remote = RemoteProvider::new(ProviderKind::Wechat, &base);
        let created = remote
            .create_authorization(AuthorizationRequest {
                order_id: "o1".into(),
                shopper_id: "s1".into(),
                confirm_mode: ConfirmMode::Once,
                limit: Cents::new(5000),
            })
            .await
            .unwrap();
        assert!(created.authorized);
        let out = remote
            .collect(CollectionRequest {
                order_id: "o1".into(),
                provider_order_ref: created.provider_order_ref,
                amount: Cents::new(1234),
                lines: vec![],
                discount: Cents::new(0),
            })
            .await
            .unwrap();
        assert!(
            matches!(out, CollectionOutcome::Collected { amount, .. } if amount == Cents::new(1234)) || out == CollectionOutcome::Pending
        );
        let charges = remote.charges().await.unwrap();
        assert_eq!(charges.len(), sbx.charges().len());
        assert!(matches!(remote.query("nope").await.unwrap(), ProviderOrderStatus::NotFound));
        // A provider that is down is "unavailable" (the outcome is unknown), not a refusal.
        let down = RemoteProvider::new(ProviderKind::Wechat, "http://127.0.0.1:9");
        assert!(matches!(down.query("o1").await, Err(ProviderError::Unavailable(_))));
        assert_eq!(callback_key("s", ProviderKind::Wechat), callback_key("s", ProviderKind::Wechat));
        assert_ne!(callback_key("s", ProviderKind::Wechat), callback_key("s", ProviderKind::Alipay));
    }
}
