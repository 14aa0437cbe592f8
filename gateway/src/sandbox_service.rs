//! The payment sandboxes as a service of their own (`tare sandbox`), shared by a
//! cluster's nodes: each sandbox's provider API and the shopper's confirm tap at
//! `/sandbox/{provider}/…`, exactly as the embedded default mounts them on its own
//! listener. The nodes' adapters call it over HTTP with the keys of a shared keys
//! directory; its notifications go to the `notify_url` of each request (the node that
//! asked), or to another node when that one does not answer.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::ProviderKind;
use tare_providers::sandbox::{ConfirmError, Sandbox};

/// The sandbox service's router. The providers' APIs are checked as the providers check
/// them (the merchant's signature); the shopper's confirm tap — which authorizes a door —
/// stands in for the provider's app, so it needs `Authorization: Bearer {secret}`
/// (`tare sandbox --secret`): anyone who can reach the service cannot open doors.
pub fn router(sandboxes: &HashMap<ProviderKind, Arc<dyn Sandbox>>, secret: &str) -> Router {
    let mut r = Router::new();
    for (kind, sandbox) in sandboxes {
        let me = sandbox.clone();
        let secret = Arc::<str>::from(secret);
        let confirm = axum::routing::post(move |headers: HeaderMap, Path(no): Path<String>| async move {
            let presented = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !crate::api::auth::constant_time_eq(presented.as_bytes(), secret.as_bytes()) {
                return StatusCode::UNAUTHORIZED;
            }
            match me.confirm(&no) {
                Ok(()) => StatusCode::NO_CONTENT,
                Err(ConfirmError::NotFound) => StatusCode::NOT_FOUND,
                Err(ConfirmError::NotAwaiting) => StatusCode::CONFLICT,
            }
        });
        let routes = sandbox
            .clone()
            .api_router()
            .route("/authorizations/{provider_order_ref}/confirm", confirm);
        r = r.nest(&format!("/sandbox/{}", kind.as_str()), routes);
    }
    r
}
