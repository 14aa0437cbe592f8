//! The public HTTP API [API.md]: routes, shared state, and the server's start-up.
//!
//! Handlers parse the outside world into domain values (`Sku`, `Cents`, `CabinetId`, …)
//! at the door and talk to the platform only through `tare_platform::Platform`.

mod anomalies;
mod audit;
pub mod auth;
mod cabinet_safety;
mod cabinet_view;
mod cabinets;
mod campaigns;
mod catalogue;
mod commands;
pub mod device;
mod device_schema;
mod emergency;
mod error;
mod extract;
pub mod guard;
mod ledger;
mod money;
mod nearby;
pub mod openapi;
mod operators;
mod order_list;
mod orders;
pub(crate) mod payments;
mod receipt;
mod reconciliation;
mod restocks;
mod sagas_tail;
mod settlements;
mod shoppers;
mod stock_reconciliation;
mod weights;

pub use error::{ApiError, ErrorBody};

use axum::{Extension, Router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tare_domain::ProviderKind;
use tare_platform::{Platform, Roles};
use tare_providers::keys::ProviderKeys;
use tare_providers::sandbox::Sandbox;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Counters of the HTTP edge (exported at `/metrics`).
#[derive(Default)]
pub struct ApiCounters {
    /// Requests refused with a 4xx.
    pub rejected: AtomicU64,
    /// Callbacks refused (bad signature, malformed).
    pub callbacks_refused: AtomicU64,
    /// Callbacks applied.
    pub callbacks_applied: AtomicU64,
    /// Verified callbacks that changed nothing (an unknown order, a state that makes them
    /// moot): acknowledged all the same.
    pub callbacks_moot: AtomicU64,
    /// TLS handshakes on the HTTPS listener that failed or timed out.
    pub https_handshakes_failed: Arc<AtomicU64>,
}

/// What handlers share.
pub struct ApiState {
    /// The platform.
    pub platform: Arc<Platform>,
    /// The environment's admin token (`TARE_ADMIN_TOKEN`).
    pub admin_token: String,
    /// The largest refund an `operator` may make; above it an `admin` must.
    pub refund_limit: tare_domain::Cents,
    /// The edge's limits (requests in flight, per-client rate, timeouts).
    pub http_limits: guard::HttpLimits,
    /// Sandboxes by provider mounted on this listener (the embedded default and tests;
    /// none when the node talks to providers elsewhere).
    pub sandboxes: HashMap<ProviderKind, Arc<dyn Sandbox>>,
    /// The provider keys: notifications are verified with the providers' public keys
    /// (and WeChat's decrypted with the APIv3 key).
    pub provider_keys: Arc<ProviderKeys>,
    /// Counters.
    pub counters: ApiCounters,
    /// The HTTP device API's state.
    pub device_http: device::DeviceHttp,
    /// The MQTT device endpoint, if this node runs one (its counters go to `/metrics`).
    pub mqtt: Option<Arc<crate::mqtt::MqttEndpoint>>,
}

/// The API's router. What a node serves follows its roles: the public API, provider
/// callbacks and the sandbox confirm page on `api` nodes, the HTTP device API on
/// `gateway` nodes, metrics and the OpenAPI document everywhere. The document served at
/// `/api/v1/openapi.json` is generated from the very routes registered here. The
/// in-process sandboxes' provider APIs are mounted beside it at `/sandbox/{provider}/…`
/// (the providers' own APIs, not part of Tare's document).
pub fn router(state: Arc<ApiState>) -> Router {
    let roles = state.platform.roles();
    let mut sandboxes = Router::new();
    for (kind, sandbox) in &state.sandboxes {
        sandboxes = sandboxes.nest(&format!("/sandbox/{}", kind.as_str()), sandbox.clone().api_router());
    }
    let (router, mut doc) = routes(roles).split_for_parts();
    utoipa::Modify::modify(&openapi::ClosedVariants, &mut doc);
    utoipa::Modify::modify(&openapi::EdgeResponses, &mut doc);
    let json = doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be rendered");
        r#"{"error": {"code": "internal", "message": "internal error"}}"#.to_string()
    });
    let limits = state.http_limits;
    let guard = guard::Guard::new(limits);
    router
        .layer(Extension(openapi::OpenApiJson(json.into())))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::act_as_staff))
        .fallback(move || async move {
            ApiError::NotFound {
                code: "route_not_found",
                message: format!("no such endpoint on this node (roles: {roles})"),
            }
        })
        // Axum's own 405 has no body; every error of the API has the one shape (the `Allow`
        // header is still set).
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
        .merge(sandboxes)
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
}

/// A handler's panic as the API's 500 (logged by the layer; the node goes on).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::Internal("a handler panicked".into()).into_response()
}

/// The routes of a node with `roles`, each registered with its OpenAPI path item.
pub fn routes(roles: Roles) -> OpenApiRouter<Arc<ApiState>> {
    let mut r = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(openapi::serve))
        .routes(routes!(audit::metrics));
    if roles.api {
        r = r
            .routes(routes!(catalogue::create_product))
            .routes(routes!(catalogue::get_product, catalogue::update_product))
            .routes(routes!(catalogue::put_coupon_policy, catalogue::get_coupon_policy))
            .routes(routes!(cabinets::create_cabinet))
            .routes(routes!(nearby::nearby))
            .routes(routes!(sagas_tail::tail))
            .routes(routes!(cabinet_view::get_cabinet))
            .routes(routes!(ledger::get_ledger))
            .routes(routes!(weights::get_weights))
            .routes(routes!(cabinets::put_device_access))
            .routes(routes!(cabinet_safety::put_temperature_limit))
            .routes(routes!(cabinet_safety::reset_temperature_lockout))
            .merge(campaigns::routes())
            .routes(routes!(restocks::start))
            .routes(routes!(restocks::get))
            .routes(routes!(restocks::tasks))
            .routes(routes!(restocks::swap_lane))
            .routes(routes!(commands::issue))
            .routes(routes!(commands::get))
            .routes(routes!(orders::create_shopper))
            .routes(routes!(orders::my_orders))
            .routes(routes!(orders::grant_coupon))
            .routes(routes!(shoppers::get))
            .routes(routes!(shoppers::erase))
            .routes(routes!(orders::create_order, order_list::list_orders))
            .routes(routes!(orders::get_order))
            .routes(routes!(money::refund_order))
            .routes(routes!(emergency::get, emergency::set))
            .routes(routes!(operators::add, operators::list))
            .routes(routes!(operators::revoke))
            .routes(routes!(money::dead_letters))
            .routes(routes!(money::retry_dead_charge))
            .routes(routes!(money::settle_dead_charge))
            .routes(routes!(money::retry_dead_effect))
            .routes(routes!(reconciliation::get_bills, reconciliation::run_bills))
            .routes(routes!(stock_reconciliation::get_stock))
            .routes(routes!(settlements::get))
            .routes(routes!(anomalies::list))
            .routes(routes!(anomalies::act))
            .routes(routes!(audit::events))
            .routes(routes!(payments::sandbox_confirm))
            .routes(routes!(payments::set_sandbox_behaviour))
            .routes(routes!(payments::sandbox_alerts))
            .routes(routes!(payments::wechat_callback))
            .routes(routes!(payments::alipay_callback));
    }
    if roles.gateway {
        r = r.routes(routes!(device::uplink)).routes(routes!(device::poll));
    }
    r
}

/// The OpenAPI document of a node with `roles` (what `/api/v1/openapi.json` serves there).
pub fn openapi_document(roles: Roles) -> utoipa::openapi::OpenApi {
    let mut doc = routes(roles).into_openapi();
    utoipa::Modify::modify(&openapi::ClosedVariants, &mut doc);
    utoipa::Modify::modify(&openapi::EdgeResponses, &mut doc);
    doc
}

/// A listener that serves only `/metrics`, without a token (`serve --metrics ADDR`):
/// for a Prometheus that should not hold a staff token, on an address only it reaches.
pub struct MetricsServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    handle: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl MetricsServer {
    /// Binds `addr` and serves the metrics of `state`'s node.
    pub async fn start(addr: &str, state: Arc<ApiState>) -> std::io::Result<Self> {
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(
                "/metrics",
                axum::routing::get(|axum::extract::State(s): axum::extract::State<Arc<ApiState>>| async move {
                    audit::exposition(&s).await.into_response()
                }),
            )
            .fallback(|| async {
                ApiError::NotFound {
                    code: "route_not_found",
                    message: "this listener serves /metrics only".into(),
                }
            })
            .with_state(state);
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move {
                let _ = rx.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        });
        Ok(Self {
            addr,
            handle,
            shutdown: tx,
        })
    }

    /// Stops it.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        let _ = self.handle.await;
    }
}

/// A bound, running HTTP server: the plain listener, and the HTTPS one when asked for
/// ([`HttpServer::serve_tls`]), both serving one router (one set of limits).
pub struct HttpServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The HTTPS listener's address, when there is one.
    pub tls_addr: Option<SocketAddr>,
    handle: tokio::task::JoinHandle<()>,
    tls_handle: Option<tokio::task::JoinHandle<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    state: Arc<ApiState>,
    app: Router,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves `state`.
    pub async fn start(addr: &str, state: Arc<ApiState>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(listener, state)
    }

    /// Serves `state` on a bound listener (whose address others needed to know first).
    pub fn serve(listener: tokio::net::TcpListener, state: Arc<ApiState>) -> std::io::Result<Self> {
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
        // The peer's address reaches the handlers: the per-client rate limit keys an
        // unauthenticated client by it.
        let service = app.clone().into_make_service_with_connect_info::<SocketAddr>();
        let handle = tokio::spawn(async move {
            let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
                let _ = rx.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
        Ok(Self {
            addr,
            tls_addr: None,
            handle,
            tls_handle: None,
            shutdown: tx,
            state,
            app,
        })
    }

    /// Also serves the API over TLS on `addr` (`serve --https`), until [`Self::stop`].
    pub async fn serve_tls(&mut self, addr: &str, acceptor: crate::tls::TlsAcceptor) -> std::io::Result<SocketAddr> {
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        let listener = crate::tls::TlsListener::new(tcp, acceptor, self.state.counters.https_handshakes_failed.clone())?;
        let bound = axum::serve::Listener::local_addr(&listener)?;
        let service = self.app.clone().into_make_service_with_connect_info::<crate::tls::TlsPeer>();
        let mut rx = self.shutdown.subscribe();
        self.tls_handle = Some(tokio::spawn(async move {
            let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
                let _ = rx.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "https server stopped");
            }
        }));
        self.tls_addr = Some(bound);
        Ok(bound)
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn stop(self) {
        // Long polls would hold the graceful shutdown for their whole wait.
        self.state.device_http.close();
        self.shutdown.send_replace(true);
        let _ = self.handle.await;
        if let Some(h) = self.tls_handle {
            let _ = h.await;
        }
    }
}
