//! `tare bench providers`: what one payment provider call costs the platform now that the
//! adapters speak the providers' protocols over HTTP, beside the cost of its signing
//! alone and of a bare loopback round trip, measured in the same run.
//!
//! The embedded app is started (its sandboxes on its own listener, as in `bench
//! purchase`); the platform's adapters, made exactly as the app makes them, call the
//! sandboxes over loopback one call at a time: N authorizations (confirm-once), N
//! deductions of those, N queries of them. Their notifications go to a sink that only
//! acknowledges, so that no platform work is counted. Baselines, on one core like the
//! calls: the four RSA operations of one round trip done in process (the merchant signs
//! the request, the provider verifies it, signs its answer, the merchant verifies that),
//! and a bare HTTP round trip to the same listener (an unknown path, 404).

use crate::app::{adapters, App, AppConfig, ProviderEndpoints};
use anyhow::{bail, Context};
use serde_json::json;
use std::time::Instant;
use tare_domain::{Cents, ConfirmMode};
use tare_providers::keys::ProviderKeys;
use tare_sagas::ports::{AuthorizationRequest, CollectionOutcome, CollectionRequest, PaymentProvider, ProviderOrderStatus};

/// Settings of the provider-call benchmark.
#[derive(Debug, Clone)]
pub struct ProvidersBench {
    /// Calls of each kind per provider.
    pub calls: usize,
}

/// Starts a server on loopback that acknowledges every notification (WeChat counts 200,
/// Alipay needs the body `success`).
async fn notification_sink() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new().fallback(|| async { tare_providers::alipay::ACK });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{addr}"), task))
}

/// Mean seconds of the four RSA operations of one WeChat round trip, in process.
fn wechat_crypto(keys: &ProviderKeys, n: usize) -> anyhow::Result<f64> {
    let w = &keys.wechat;
    let platform = w.platform_private_key.as_ref().context("the sandbox's WeChat platform key")?;
    let body = json!({"out_order_no": "0123456789abcdef0123456789abcdef", "appid": w.merchant.appid, "service_id": w.merchant.service_id,
        "service_introduction": "Tare 无人售货柜", "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 5000},
        "time_range": {"start_time": "OnAccept"}, "notify_url": "http://127.0.0.1:8780/callbacks/wechat", "openid": "oBench", "need_user_confirm": false})
    .to_string();
    let path = "/sandbox/wechat/v3/payscore/serviceorder";
    let started = Instant::now();
    for _ in 0..n {
        let now = now_secs();
        let auth = tare_providers::wechat::sign::authorization(w, "POST", path, body.as_bytes(), now);
        let mut req = reqwest::header::HeaderMap::new();
        req.insert(reqwest::header::AUTHORIZATION, auth.parse()?);
        tare_providers::wechat::sign::verify_request(w, "POST", path, &req, body.as_bytes(), now * 1000)
            .map_err(|e| anyhow::anyhow!("request: {e}"))?;
        let mut answer = reqwest::header::HeaderMap::new();
        tare_providers::wechat::sign::sign_response(platform, &w.platform.serial_no, body.as_bytes(), now, &mut answer);
        tare_providers::wechat::sign::verify_response(&w.platform_public_key, &w.platform.serial_no, &answer, body.as_bytes(), now * 1000)
            .map_err(|e| anyhow::anyhow!("response: {e}"))?;
    }
    Ok(started.elapsed().as_secs_f64() / n as f64)
}

/// Mean seconds of the four RSA operations of one Alipay round trip, in process.
fn alipay_crypto(keys: &ProviderKeys, n: usize) -> anyhow::Result<f64> {
    let a = &keys.alipay;
    let alipay = a.alipay_private_key.as_ref().context("the sandbox's Alipay key")?;
    let method = "alipay.fund.auth.order.freeze";
    let biz = json!({"out_order_no": "0123456789abcdef0123456789abcdef", "out_request_no": "0123456789abcdef0123456789abcdef",
        "order_title": "Tare 无人售货柜", "amount": "50.00", "product_code": "PREAUTH_PAY", "payer_user_id": "2088000000000000", "timeout_express": "2d"});
    let inner =
        json!({"code": "10000", "msg": "Success", "auth_no": "2026120210002001", "out_order_no": "0123456789abcdef0123456789abcdef",
        "operation_id": "20261202000001", "out_request_no": "0123456789abcdef0123456789abcdef", "amount": "50.00", "status": "SUCCESS"})
        .to_string();
    let started = Instant::now();
    for _ in 0..n {
        let params =
            tare_providers::alipay::build_request(a, method, &biz, Some("http://127.0.0.1:8780/callbacks/alipay"), now_secs() * 1000);
        if !tare_providers::alipay::sign::verify_request(&a.app_public_key, &params) {
            bail!("the request does not verify");
        }
        let body = tare_providers::alipay::sign::signed_response(alipay, &tare_providers::alipay::sign::response_key(method), &inner);
        tare_providers::alipay::parse_response(&a.alipay_public_key, method, &body).map_err(|e| anyhow::anyhow!("response: {e}"))?;
    }
    Ok(started.elapsed().as_secs_f64() / n as f64)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Mean seconds of a bare loopback HTTP round trip to `url` (404 expected), one at a time.
async fn http_floor(http: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    for _ in 0..n {
        let r = http.post(url).body("{}").send().await?;
        if r.status().as_u16() != 404 {
            bail!("the HTTP floor answered {}", r.status());
        }
        let _ = r.bytes().await?;
    }
    Ok(started.elapsed().as_secs_f64() / n as f64)
}

/// Seconds per operation of each kind: (create, collect, query).
async fn calls(p: &dyn PaymentProvider, n: usize) -> anyhow::Result<[f64; 3]> {
    let orders: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let started = Instant::now();
    for (i, o) in orders.iter().enumerate() {
        let created = p
            .create_authorization(AuthorizationRequest {
                order_id: o.clone(),
                shopper_id: format!("2088{i:012}"),
                confirm_mode: ConfirmMode::Once,
                limit: Cents::new(5000),
            })
            .await
            .map_err(|e| anyhow::anyhow!("create: {e:?}"))?;
        if !created.authorized {
            bail!("create: not authorized at once");
        }
    }
    let create = started.elapsed().as_secs_f64() / n as f64;
    let started = Instant::now();
    for o in &orders {
        let out = p
            .collect(CollectionRequest {
                order_id: o.clone(),
                provider_order_ref: tare_providers::refs::out_order_no(o),
                amount: Cents::new(300),
                lines: vec![],
                discount: Cents::ZERO,
            })
            .await
            .map_err(|e| anyhow::anyhow!("collect: {e:?}"))?;
        if matches!(out, CollectionOutcome::Failed { .. }) {
            bail!("collect: {out:?}");
        }
    }
    let collect = started.elapsed().as_secs_f64() / n as f64;
    let started = Instant::now();
    for o in &orders {
        match p.query(o).await.map_err(|e| anyhow::anyhow!("query: {e:?}"))? {
            ProviderOrderStatus::Collected { .. } | ProviderOrderStatus::Collecting => {}
            other => bail!("query: {other:?}"),
        }
    }
    let query = started.elapsed().as_secs_f64() / n as f64;
    Ok([create, collect, query])
}

/// Runs the benchmark and prints its figures.
pub async fn run(b: ProvidersBench) -> anyhow::Result<()> {
    if b.calls == 0 {
        bail!("--calls must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("tare-bench-pv-{}", uuid::Uuid::new_v4().simple()));
    let mut cfg = AppConfig::embedded(&dir);
    cfg.mqtt = None;
    let app = App::start(cfg).await?;
    let result = measure(&app, &b).await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let rows = result?;
    println!(
        "\n## tare bench providers ({} calls of each kind per provider, one at a time, over loopback to the sandboxes on the node's listener)\n",
        b.calls
    );
    println!("| provider | operation | HTTP round trips | ms per operation | ms per round trip | ÷ signing alone | ÷ bare HTTP round trip | signing alone, ms per round trip | bare HTTP round trip, ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        for (op, trips, secs) in &r.ops {
            let per_trip = secs / *trips as f64;
            println!(
                "| {} | {op} | {trips} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.3} |",
                r.provider,
                secs * 1000.0,
                per_trip * 1000.0,
                per_trip / r.crypto,
                per_trip / r.floor,
                r.crypto * 1000.0,
                r.floor * 1000.0
            );
        }
    }
    println!("\npeak memory (VmHWM, whole process): {:.1} MiB", crate::bench::peak_rss_mib());
    Ok(())
}

struct Row {
    provider: &'static str,
    /// (operation, round trips, seconds per operation).
    ops: Vec<(&'static str, usize, f64)>,
    crypto: f64,
    floor: f64,
}

async fn measure(app: &App, b: &ProvidersBench) -> anyhow::Result<Vec<Row>> {
    let (sink, sink_task) = notification_sink().await?;
    let providers = adapters(
        &app.provider_keys,
        &ProviderEndpoints::sandboxes_at(&app.base_url),
        &sink,
        crate::app::PROVIDER_TIMEOUT,
    );
    let http = reqwest::Client::new();
    let floor_url = format!("{}/providers-bench/no-such-endpoint", app.base_url);
    // Warm up (connections, caches): not measured.
    http_floor(&http, &floor_url, 20).await?;
    for p in &providers {
        calls(p.as_ref(), 5).await?;
    }
    let mut rows = Vec::new();
    for p in &providers {
        let [create, collect, query] = calls(p.as_ref(), b.calls).await?;
        let floor = http_floor(&http, &floor_url, b.calls.max(200)).await?;
        let row = match p.kind() {
            tare_domain::ProviderKind::Wechat => Row {
                provider: "WeChat Pay Score",
                ops: vec![
                    ("create (confirm-once)", 1, create),
                    ("collect (complete)", 1, collect),
                    ("query", 1, query),
                ],
                crypto: wechat_crypto(&app.provider_keys, b.calls)?,
                floor,
            },
            // The adapter's round trips (providers/src/alipay/adapter.rs): a freeze; the
            // freeze's detail then the trade.pay; the trade query (the trade exists).
            tare_domain::ProviderKind::Alipay => Row {
                provider: "Alipay",
                ops: vec![
                    ("create (freeze)", 1, create),
                    ("collect (detail + trade.pay)", 2, collect),
                    ("query (trade.query)", 1, query),
                ],
                crypto: alipay_crypto(&app.provider_keys, b.calls)?,
                floor,
            },
        };
        rows.push(row);
    }
    sink_task.abort();
    Ok(rows)
}
