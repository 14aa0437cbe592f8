//! The HTTP edge's guards [issue 14, item 3]: what keeps a burst of requests, a slow
//! client or a panicking handler from taking the node (and the embedded store's one
//! writer) with it.
//!
//! - **Requests in flight** are bounded per node: past the bound a request is answered
//!   503 `overloaded` at once, with `Retry-After`, instead of queueing until everything
//!   times out.
//! - **Each client** has a token bucket — by bearer token when it sends one (a shopper,
//!   an operator), else by address — and past it gets 429 `rate_limited` with
//!   `Retry-After`. Provider callbacks (verified signatures, bursts by nature) and the
//!   HTTP device API (its own per-device buckets) are not held to it.
//! - **A request runs at most** [`HttpLimits::request_timeout`], then is answered 503
//!   `timeout`; its body must arrive within [`HttpLimits::body_timeout`].
//! - Around all of it (in [`super::router`]): tower-http's request ids (`x-request-id`,
//!   made when absent and echoed back), a tracing span per request carrying the id, and a
//!   panic caught into the API's 500.
//!
//! The device long poll holds its request for up to a minute by design and has its own
//! bounds (one per device, its wait capped), so it is exempt from the in-flight bound and
//! the timeout.

use super::ApiError;
use crate::rate::{Bucket, RateLimit};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The edge's limits (`serve --http-max-in-flight`, `--http-rate-per-client`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Requests a node serves at once (the device long poll aside).
    pub max_in_flight: usize,
    /// Each client's allowance (`None`: unlimited).
    pub per_client: Option<RateLimit>,
    /// How long a request may run.
    pub request_timeout: Duration,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            // A shopper's app polls an order a few times a second at most; an operator's
            // script pages through the feed. 100/s sustained with a burst of 1,000 leaves
            // both ample room and stops a loop gone wild.
            per_client: Some(RateLimit {
                per_second: 100.0,
                burst: 1000.0,
            }),
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// A per-client allowance of `per_second` sustained, with a burst of ten seconds' worth.
pub fn rate_of(per_second: u32) -> RateLimit {
    RateLimit {
        per_second: f64::from(per_second),
        burst: f64::from(per_second) * 10.0,
    }
}

/// Clients whose buckets are remembered; the least recently seen go first (a forgotten
/// client starts again with a full bucket, which is generous, not unsafe).
const CLIENTS: usize = 65_536;

/// The guards' state, one per listener.
pub struct Guard {
    limits: HttpLimits,
    in_flight: Arc<tokio::sync::Semaphore>,
    buckets: Mutex<hashlink::LruCache<String, Bucket>>,
}

impl Guard {
    /// Guards with `limits`.
    pub fn new(limits: HttpLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1))),
            buckets: Mutex::new(hashlink::LruCache::new(CLIENTS)),
        })
    }

    /// Takes a token of `client`'s bucket, or says in how many seconds one is due.
    fn take(&self, client: &str) -> Result<(), u64> {
        let Some(rate) = self.limits.per_client else { return Ok(()) };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.get(client).is_none() {
            buckets.insert(client.to_string(), Bucket::new(rate));
        }
        match buckets.get_mut(client).map(Bucket::take) {
            Some(Err(wait)) => Err(wait.as_secs().max(1)),
            _ => Ok(()),
        }
    }
}

/// Who a request counts against: its bearer token (at most 128 bytes of it), else its
/// peer address.
fn client_of(req: &Request) -> String {
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        // A header value read as text is visible ASCII: any byte is a boundary.
        Some(t) => format!("t:{}", t.get(..128).unwrap_or(t)),
        None => {
            let plain = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            let tls = || req.extensions().get::<ConnectInfo<crate::tls::TlsPeer>>().map(|c| c.0 .0);
            match plain.or_else(tls) {
                Some(addr) => format!("a:{}", addr.ip()),
                None => "a:unknown".into(),
            }
        }
    }
}

/// The guards as axum middleware (see the module doc).
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let long_poll = path == "/device/v1/down/cmd";
    let own_limits = long_poll || path.starts_with("/device/") || path.starts_with("/callbacks/");
    if !own_limits {
        if let Err(retry_in) = g.take(&client_of(&req)) {
            return ApiError::RateLimited(retry_in).into_response();
        }
    }
    if long_poll {
        return next.run(req).await;
    }
    let Ok(_permit) = g.in_flight.clone().try_acquire_owned() else {
        return ApiError::Unavailable {
            code: "overloaded",
            message: format!(
                "this node is serving its limit of {} requests; retry shortly",
                g.limits.max_in_flight
            ),
        }
        .into_response();
    };
    let timeout = g.limits.request_timeout;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Unavailable {
            code: "timeout",
            message: format!("the request took longer than {} s", timeout.as_secs()),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_rate_waits_and_others_do_not() {
        let g = Guard::new(HttpLimits {
            per_client: Some(RateLimit {
                per_second: 1.0,
                burst: 2.0,
            }),
            ..HttpLimits::default()
        });
        assert_eq!(g.take("t:a"), Ok(()));
        assert_eq!(g.take("t:a"), Ok(()));
        assert_eq!(g.take("t:a"), Err(1), "the burst is spent");
        assert_eq!(g.take("t:b"), Ok(()), "another client has its own bucket");
        let open = Guard::new(HttpLimits {
            per_client: None,
            ..HttpLimits::default()
        });
        assert!((0..10_000).all(|_| open.take("t:a").is_ok()));
    }

    #[test]
    fn clients_are_told_apart_by_token_then_address() {
        let with = |auth: Option<&str>| {
            let mut b = axum::http::Request::builder().uri("/api/v1/orders");
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            let mut r = b.body(axum::body::Body::empty()).unwrap();
            r.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 5555))));
            client_of(&r)
        };
        assert_eq!(with(Some("Bearer abc")), "t:abc");
        assert_eq!(with(None), "a:10.0.0.7", "the port is not part of the client");
        assert_eq!(with(Some(&format!("Bearer {}", "x".repeat(500)))).len(), 2 + 128);
    }
}
