//! The public HTTP API [API.md]: routes, shared state, and the server's start-up.
//!
//! Handlers parse the outside world into domain values (`Sku`, `Cents`, `CabinetId`, …)
//! at the door and talk to the platform only through `tare_platform::Platform`.

mod audit;
mod catalogue;
mod commands;
pub mod device;
mod error;
mod extract;
mod orders;
mod payments;

pub use error::ApiError;

use crate::sandbox::SandboxProvider;
use axum::routing::{get, post, put};
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tare_domain::ProviderKind;
use tare_platform::Platform;

/// Counters of the HTTP edge (exported at `/metrics`).
#[derive(Default)]
pub struct ApiCounters {
    /// Requests refused with a 4xx.
    pub rejected: AtomicU64,
    /// Callbacks refused (bad signature, malformed).
    pub callbacks_refused: AtomicU64,
    /// Callbacks applied.
    pub callbacks_applied: AtomicU64,
}

/// What handlers share.
pub struct ApiState {
    /// The platform.
    pub platform: Arc<Platform>,
    /// The operator token (`TARE_ADMIN_TOKEN`).
    pub admin_token: String,
    /// Sandboxes by provider (the embedded default and tests).
    pub sandboxes: HashMap<ProviderKind, Arc<SandboxProvider>>,
    /// Callback verification keys by provider.
    pub callback_keys: HashMap<ProviderKind, Vec<u8>>,
    /// Counters.
    pub counters: ApiCounters,
    /// The HTTP device API's state.
    pub device_http: device::DeviceHttp,
    /// The MQTT device endpoint, if this node runs one (its counters go to `/metrics`).
    pub mqtt: Option<Arc<crate::mqtt::MqttEndpoint>>,
}

/// The API's router. What a node serves follows its roles: the public API, provider
/// callbacks and the sandbox confirm page on `api` nodes, the HTTP device API on
/// `gateway` nodes, metrics and the OpenAPI document everywhere.
pub fn router(state: Arc<ApiState>) -> Router {
    let roles = state.platform.roles();
    let mut r = Router::new()
        .route("/api/v1/openapi.json", get(audit::openapi))
        .route("/metrics", get(audit::metrics));
    if roles.api {
        r = r
            .route("/api/v1/products", post(catalogue::create_product))
            .route("/api/v1/products/{sku}", get(catalogue::get_product))
            .route("/api/v1/cabinets", post(catalogue::create_cabinet))
            .route("/api/v1/cabinets/{id}", get(catalogue::get_cabinet))
            .route("/api/v1/cabinets/{id}/ledger", get(catalogue::get_ledger))
            .route("/api/v1/cabinets/{id}/commands", post(commands::issue))
            .route("/api/v1/cabinets/{id}/device", put(catalogue::put_device_access))
            .route("/api/v1/commands/{id}", get(commands::get))
            .route(
                "/api/v1/coupon-policy",
                put(catalogue::put_coupon_policy).get(catalogue::get_coupon_policy),
            )
            .route("/api/v1/shoppers", post(orders::create_shopper))
            .route("/api/v1/shoppers/me/orders", get(orders::my_orders))
            .route("/api/v1/shoppers/{id}/coupons", post(orders::grant_coupon))
            .route("/api/v1/orders", post(orders::create_order))
            .route("/api/v1/orders/{id}", get(orders::get_order))
            .route("/api/v1/events", get(audit::events))
            .route(
                "/sandbox/{provider}/authorizations/{reference}/confirm",
                post(payments::sandbox_confirm),
            )
            .route("/callbacks/{provider}", post(payments::callback));
    }
    if roles.gateway {
        r = r
            .route("/device/v1/up/{kind}", post(device::uplink))
            .route("/device/v1/down/cmd", get(device::poll));
    }
    r.fallback(move || async move {
        ApiError::NotFound {
            code: "route_not_found",
            message: format!("no such endpoint on this node (roles: {roles})"),
        }
    })
    .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
    .with_state(state)
}

/// A bound, running HTTP server.
pub struct HttpServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    handle: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
    state: Arc<ApiState>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves `state`.
    pub async fn start(addr: &str, state: Arc<ApiState>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let app = router(state.clone());
        let mut reaper_stop = rx.clone();
        let reaper_state = state.clone();
        tokio::spawn(async move {
            let state = reaper_state;
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => device::reap_absent(&state).await,
                    _ = reaper_stop.changed() => return,
                }
            }
        });
        let handle = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
        Ok(Self {
            addr,
            handle,
            shutdown: tx,
            state,
        })
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn stop(self) {
        // Long polls would hold the graceful shutdown for their whole wait.
        self.state.device_http.close();
        self.shutdown.send_replace(true);
        let _ = self.handle.await;
    }
}
