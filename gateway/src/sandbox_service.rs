//! The payment sandboxes as a service of their own (`tare sandbox`), shared by a
//! cluster's nodes: each sandbox's provider API and the shopper's confirm tap at
//! `/sandbox/{provider}/…`, exactly as the embedded default mounts them on its own
//! listener. The nodes' adapters call it over HTTP with the keys of a shared keys
//! directory; its notifications go to the `notify_url` of each request (the node that
//! asked), or to another node when that one does not answer.

use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::ProviderKind;
use tare_providers::sandbox::Sandbox;

/// The sandbox service's router.
pub fn router(sandboxes: &HashMap<ProviderKind, Arc<dyn Sandbox>>) -> Router {
    let mut r = Router::new();
    for (kind, sandbox) in sandboxes {
        r = r.nest(&format!("/sandbox/{}", kind.as_str()), sandbox.clone().router());
    }
    r
}
