//! The HTTP edge's guards [issue 14, item 3]: every answer carries a request id (made,
//! or the caller's echoed); a client past its rate gets 429 with `Retry-After` while
//! others go on; a node at its limit of requests in flight answers 503 `overloaded` at
//! once; a body that never arrives is given up after the body timeout, freeing its slot.

use crate::common::{config, eventually, Store, TestStore};
use reqwest::StatusCode;
use std::time::Duration;
use tare::app::App;
use tare_gateway::api::guard::{rate_of, HttpLimits};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn request_ids_rates_and_the_in_flight_bound() {
    let store = TestStore::new(Store::Sqlite).await;
    let mut cfg = config(&store);
    cfg.http_limits = HttpLimits {
        max_in_flight: 1,
        per_client: Some(rate_of(1)),
        request_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(1),
    };
    let app = App::start(cfg).await.expect("app");
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.base_url);

    // A request id on every answer: made when absent, the caller's kept when sent.
    let r = http.get(url("/api/v1/openapi.json")).send().await.unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let r = http
        .get(url("/api/v1/openapi.json"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");

    // One client's burst (10 at 1/s) is spent; it waits, others do not.
    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = http
            .get(url("/api/v1/dead-letters"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
        codes.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
    }
    assert_eq!(codes.iter().filter(|c| **c == StatusCode::OK).count(), 10, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::TOO_MANY_REQUESTS).count(),
        2,
        "{codes:?}"
    );
    let r = http
        .get(url("/api/v1/dead-letters"))
        .bearer_auth("someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "another client is not held back by the first's rate"
    );

    // A request whose body never comes holds the node's one slot: the next is refused
    // at once, until the body timeout gives the slot back.
    let mut slow = tokio::net::TcpStream::connect(app.http.addr).await.unwrap();
    slow.write_all(b"POST /api/v1/shoppers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    // (Each probe as a client of its own, so no rate stands in the way.)
    let probe = || {
        http.get(url("/api/v1/openapi.json"))
            .bearer_auth(uuid::Uuid::new_v4().to_string())
            .send()
    };
    let overloaded = eventually(10, "the slot taken by the slow body", || async {
        let r = probe().await.unwrap();
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
    })
    .await;
    assert_eq!(overloaded.headers()["retry-after"], "1");
    let body: serde_json::Value = overloaded.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    eventually(10, "the slot given back after the body timeout", || async {
        let r = probe().await.unwrap();
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    drop(slow);
    app.stop().await;
    store.cleanup().await;
}

/// `tare sandbox` stands in for the providers' apps: its confirm tap, which authorizes a
/// door, wants the sandbox's secret [issue 14, item 7].
#[tokio::test]
async fn the_sandbox_service_confirms_only_with_its_secret() {
    let dir = std::env::temp_dir().join(format!("tare-sbx-{}", uuid::Uuid::new_v4().simple()));
    let keys = tare_providers::keys::ProviderKeys::load_or_generate(&dir).unwrap();
    let sandboxes = tare::app::sandboxes(&keys).unwrap();
    let router = tare_gateway::sandbox_service::router(&sandboxes, "s3cret");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/sandbox/alipay/authorizations/unknown/confirm",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let status = |token: Option<&'static str>| {
        let mut r = http.post(&url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status() }
    };
    assert_eq!(status(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(Some("guess")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(Some("s3cret")).await,
        StatusCode::NOT_FOUND,
        "past the gate: no such authorization"
    );
    server.abort();
    let _ = std::fs::remove_dir_all(dir);
}
