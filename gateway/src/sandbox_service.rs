//! The payment sandboxes as a service of their own (`tare sandbox`), shared by a
//! cluster's nodes: each sandbox's provider API and the shopper's confirm tap at
//! `/sandbox/{provider}/…`, exactly as the embedded default mounts them on its own
//! listener. The nodes' adapters call it over HTTP with the keys of a shared keys
//! directory; its notifications go to the `notify_url` of each request (the node that
//! asked), or to another node when that one does not answer.

use crate::api::payments::SandboxBehaviourDto;
use crate::api::ApiError;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::ProviderKind;
use tare_providers::sandbox::Sandbox;

/// The sandbox service's router. The providers' APIs are checked as the providers check
/// them (the merchant's signature); the shopper's confirm tap — which authorizes a door —
/// stands in for the provider's app, so it needs `Authorization: Bearer {secret}`
/// (`tare sandbox --secret`): anyone who can reach the service cannot open doors.
/// `PUT /sandbox/{provider}/behaviour` (the body of the node's own route of that name)
/// turns faults on and off — dropped, duplicated or late notifications, refusals — for
/// `tare soak` and tests of a cluster; it needs the secret too.
pub fn router(sandboxes: &HashMap<ProviderKind, Arc<dyn Sandbox>>, secret: &str) -> Router {
    let mut r = Router::new();
    for (kind, sandbox) in sandboxes {
        let target = sandbox.clone();
        r = r
            .route(
                &format!("/sandbox/{}/behaviour", kind.as_str()),
                axum::routing::put(move |axum::Json(b): axum::Json<SandboxBehaviourDto>| async move {
                    target.set_behaviour(b.behaviour()?);
                    Ok::<_, ApiError>(StatusCode::NO_CONTENT)
                }),
            )
            .nest(&format!("/sandbox/{}", kind.as_str()), sandbox.clone().router());
    }
    let secret = Arc::<str>::from(secret);
    r.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let secret = secret.clone();
        async move { taps_need_secret(&secret, req, next).await }
    }))
}

/// Lets a confirm tap or a behaviour change through only with the service's secret;
/// everything else as is.
async fn taps_need_secret(secret: &str, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.ends_with("/confirm") || path.ends_with("/behaviour") {
        let presented = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::api::auth::constant_time_eq(presented.as_bytes(), secret.as_bytes()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    next.run(req).await
}
