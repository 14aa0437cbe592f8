//! `tare bench callbacks`: the providers' notification endpoints under load, against
//! the cost of their cryptography alone and against the same HTTP server's cheapest
//! answer.
//!
//! The embedded app is started; N genuine notifications per provider are made with the
//! app's own provider keys — WeChat's `REFUND.ABNORMAL` (the envelope signed with the
//! platform key, the refund resource AES-256-GCM under the APIv3 key), Alipay's
//! `trade_status_sync` of a refund (an RSA2-signed form) — notifications that verify,
//! are for this merchant and need nothing done, so that what is measured is the edge:
//! read the body, verify the signature, decrypt, parse, check the merchant and
//! acknowledge (WeChat 204, Alipay `success`). C clients send them over HTTP; every
//! answer must be the acknowledgement (any other makes the run fail).
//!
//! Baselines, in the same run, on the same cores:
//! - the cryptography alone: the same RSA verifications (and, for WeChat, the AES-GCM
//!   decryptions) of the same notifications, in process on every core;
//! - the whole `verify_notification` in process on every core (crypto, parsing, checks);
//! - the HTTP floor: the same bodies POSTed by the same C clients to an unknown path of
//!   the same listener (404 `route_not_found`: routing and framing, no work).

use crate::app::{App, AppConfig};
use anyhow::{bail, Context};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::json;
use std::time::{Duration, Instant};
use tare_providers::keys::ProviderKeys;
use tare_providers::wechat::wire::{encrypt_resource, EncryptedResource, Envelope};

/// Settings of the callbacks benchmark.
#[derive(Debug, Clone)]
pub struct CallbacksBench {
    /// Notifications per provider.
    pub notifications: usize,
    /// Concurrent HTTP clients.
    pub concurrency: usize,
}

/// One notification as it goes on the wire, and what its crypto needs.
struct Prepared {
    headers: HeaderMap,
    body: Vec<u8>,
    /// WeChat: `TS\nNONCE\nBODY\n` and the signature; Alipay: the signed content and `sign`.
    signed_message: Vec<u8>,
    signature: String,
    /// WeChat only.
    resource: Option<EncryptedResource>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// WeChat `REFUND.ABNORMAL` number `i`: genuine, ours, nothing to do.
fn wechat_notification(keys: &ProviderKeys, i: usize) -> anyhow::Result<Prepared> {
    let w = &keys.wechat;
    let order = uuid::Uuid::new_v4().simple().to_string();
    let refund = uuid::Uuid::new_v4().simple().to_string();
    let resource = json!({"mchid": w.merchant.mchid, "out_trade_no": order, "transaction_id": format!("42000{i:015}"),
        "out_refund_no": format!("{order}{refund}"), "refund_id": format!("50300{i:015}"), "refund_status": "ABNORMAL",
        "user_received_account": "招商银行信用卡0403",
        "amount": {"total": 1200, "refund": 300, "payer_total": 1200, "payer_refund": 300}});
    let resource = encrypt_resource(&w.apiv3_key, "refund", &serde_json::to_vec(&resource)?);
    let envelope = Envelope {
        id: format!("EV-bench-{i}-{refund}"),
        create_time: "2026-12-02T12:00:00+08:00".into(),
        event_type: "REFUND.ABNORMAL".into(),
        resource_type: "encrypt-resource".into(),
        summary: "退款异常".into(),
        resource: resource.clone(),
    };
    let body = serde_json::to_vec(&envelope)?;
    let mut headers = HeaderMap::new();
    let key = w.platform_private_key.as_ref().context("the sandbox's WeChat platform key")?;
    tare_providers::wechat::sign::sign_response(key, &w.platform.serial_no, &body, now_secs(), &mut headers);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let signed_message = tare_providers::wechat::sign::response_message(
        &h(tare_providers::wechat::sign::H_TIMESTAMP),
        &h(tare_providers::wechat::sign::H_NONCE),
        &body,
    );
    let signature = h(tare_providers::wechat::sign::H_SIGNATURE);
    Ok(Prepared {
        headers,
        body,
        signed_message,
        signature,
        resource: Some(resource),
    })
}

/// Alipay `trade_status_sync` of a refund, number `i`: genuine, ours, nothing to do.
fn alipay_notification(keys: &ProviderKeys, i: usize) -> anyhow::Result<Prepared> {
    let a = &keys.alipay;
    let order = uuid::Uuid::new_v4().simple().to_string();
    let mut params: Vec<(String, String)> = [
        ("notify_id", format!("bench{i}{order}")),
        ("notify_type", "trade_status_sync".into()),
        ("notify_time", "2026-12-02 12:00:00".into()),
        ("app_id", a.app.app_id.clone()),
        ("seller_id", a.app.seller_id.clone()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("out_trade_no", order),
        ("trade_no", format!("2026120222001{i:015}")),
        ("out_biz_no", format!("refund{i}")),
        ("trade_status", "TRADE_SUCCESS".into()),
        ("total_amount", "12.00".into()),
        ("refund_fee", "3.00".into()),
        ("gmt_refund", "2026-12-02 12:00:00.000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let key = a.alipay_private_key.as_ref().context("the sandbox's Alipay key")?;
    tare_providers::alipay::sign::sign_notification(key, &mut params);
    let signed_message =
        tare_providers::alipay::sign::notification_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))).into_bytes();
    let signature = tare_providers::alipay::sign::lookup(&params, "sign")
        .unwrap_or_default()
        .to_string();
    let mut u = reqwest::Url::parse("http://x/")?;
    u.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let body = u.query().unwrap_or("").as_bytes().to_vec();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    Ok(Prepared {
        headers,
        body,
        signed_message,
        signature,
        resource: None,
    })
}

/// Runs `work(i)` for every `i < n` on every core; returns the rate per second.
fn on_every_core(n: usize, work: impl Fn(usize) -> bool + Sync) -> anyhow::Result<f64> {
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
    let started = Instant::now();
    let ok: usize = std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || (t..n).step_by(threads).filter(|i| work(*i)).count()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let secs = started.elapsed().as_secs_f64();
    if ok != n {
        bail!("{} of {n} did not verify in process", n - ok);
    }
    Ok(n as f64 / secs)
}

/// What sending a batch over HTTP came to.
struct Sent {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    wrong: usize,
    first_wrong: Option<String>,
}

/// POSTs every notification to `url` with `concurrency` clients at once; `ok` says
/// whether an answer (status, body) is the expected one.
async fn send_all(
    http: &reqwest::Client,
    url: &str,
    batch: &[Prepared],
    concurrency: usize,
    ok: fn(u16, &str) -> bool,
) -> anyhow::Result<Sent> {
    let started = Instant::now();
    let answers: Vec<anyhow::Result<(Duration, u16, String)>> = futures::stream::iter(batch.iter())
        .map(|p| async move {
            let t = Instant::now();
            let r = http.post(url).headers(p.headers.clone()).body(p.body.clone()).send().await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            Ok((t.elapsed(), status, text))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(answers.len());
    let (mut wrong, mut first_wrong) = (0, None);
    for a in answers {
        let (d, status, text) = a.with_context(|| format!("POST {url}"))?;
        latencies.push(d.as_secs_f64() * 1000.0);
        if !ok(status, &text) {
            wrong += 1;
            first_wrong.get_or_insert_with(|| format!("{status} {}", text.chars().take(200).collect::<String>()));
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Sent {
        per_s: batch.len() as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        wrong,
        first_wrong,
    })
}

/// The node's `tare_callbacks_*_total` counters (applied, refused, moot).
async fn callback_counters(http: &reqwest::Client, app: &App) -> anyhow::Result<[u64; 3]> {
    let text = http
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth(&app.admin_token)
        .send()
        .await?
        .text()
        .await?;
    let read = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Ok([
        read("tare_callbacks_applied_total"),
        read("tare_callbacks_refused_total"),
        read("tare_callbacks_moot_total"),
    ])
}

struct Row {
    provider: &'static str,
    callbacks: Sent,
    floor: Sent,
    crypto_per_s: f64,
    verify_per_s: f64,
    bytes: f64,
}

/// Runs the benchmark and prints its figures; fails if any notification was not
/// acknowledged.
pub async fn run(b: CallbacksBench) -> anyhow::Result<()> {
    if b.notifications == 0 || b.concurrency == 0 {
        bail!("--notifications and --concurrency must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("tare-bench-cb-{}", uuid::Uuid::new_v4().simple()));
    let mut cfg = AppConfig::embedded(&dir);
    cfg.mqtt = None;
    let app = App::start(cfg).await?;
    let result = measure(&app, &b).await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let rows = result?;

    println!(
        "\n## tare bench callbacks ({} genuine notifications per provider, {} concurrent clients, {} cores)\n",
        b.notifications,
        b.concurrency,
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1)
    );
    println!("| provider | verified notifications/s over HTTP | ÷ crypto alone | ÷ verify_notification in process | ÷ HTTP floor (404, same bodies) | crypto alone/s | verify_notification/s | HTTP floor/s | p50 / p99 ms | body bytes |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.0} | {:.2} / {:.2} | {:.0} |",
            r.provider,
            r.callbacks.per_s,
            r.callbacks.per_s / r.crypto_per_s,
            r.callbacks.per_s / r.verify_per_s,
            r.callbacks.per_s / r.floor.per_s,
            r.crypto_per_s,
            r.verify_per_s,
            r.floor.per_s,
            r.callbacks.p50_ms,
            r.callbacks.p99_ms,
            r.bytes
        );
    }
    println!(
        "\nevery answer was the acknowledgement (WeChat 204, Alipay 200 `success`); peak memory (VmHWM, whole process): {:.1} MiB",
        crate::bench::peak_rss_mib()
    );
    Ok(())
}

async fn measure(app: &App, b: &CallbacksBench) -> anyhow::Result<Vec<Row>> {
    let keys = app.provider_keys.clone();
    let n = b.notifications;
    let http = reqwest::Client::builder().pool_max_idle_per_host(b.concurrency).build()?;
    let floor_url = format!("{}/callbacks-bench/no-such-endpoint", app.base_url);
    let is_404 = |s: u16, _: &str| s == 404;
    let mut rows = Vec::new();
    for provider in ["wechat", "alipay"] {
        // Made (and signed) just before sending: WeChat's timestamps stay fresh (5 min).
        let batch: Vec<Prepared> = (0..n)
            .map(|i| match provider {
                "wechat" => wechat_notification(&keys, i),
                _ => alipay_notification(&keys, i),
            })
            .collect::<anyhow::Result<_>>()?;
        let bytes = batch.iter().map(|p| p.body.len()).sum::<usize>() as f64 / n as f64;
        let url = format!("{}/callbacks/{provider}", app.base_url);
        let ack: fn(u16, &str) -> bool = match provider {
            "wechat" => |s, _| s == 204,
            _ => |s, t| s == 200 && t == tare_providers::alipay::ACK,
        };
        // Warm the connections (not measured).
        send_all(&http, &floor_url, &batch[..b.concurrency.min(n)], b.concurrency, is_404).await?;

        let before = callback_counters(&http, app).await?;
        let callbacks = send_all(&http, &url, &batch, b.concurrency, ack).await?;
        let after = callback_counters(&http, app).await?;
        if callbacks.wrong > 0 {
            bail!(
                "{provider}: {} of {n} notifications were not acknowledged (first: {})",
                callbacks.wrong,
                callbacks.first_wrong.unwrap_or_default()
            );
        }
        let (applied, refused) = (after[0] - before[0], after[1] - before[1]);
        if applied + (after[2] - before[2]) != n as u64 || refused != 0 {
            bail!("{provider}: the node counted {applied} applied, {refused} refused of {n}");
        }
        let floor = send_all(&http, &floor_url, &batch, b.concurrency, is_404).await?;
        if floor.wrong > 0 {
            bail!(
                "the HTTP floor answered something else than 404: {}",
                floor.first_wrong.unwrap_or_default()
            );
        }

        let (crypto_per_s, verify_per_s) = match provider {
            "wechat" => {
                let w = &keys.wechat;
                let crypto = on_every_core(n, |i| {
                    let p = &batch[i];
                    let r = p.resource.as_ref().expect("a WeChat resource");
                    tare_providers::crypto::rsa_verify(&w.platform_public_key, &p.signed_message, &p.signature)
                        && tare_providers::crypto::aes_gcm_decrypt(
                            w.apiv3_key.bytes(),
                            r.nonce.as_bytes(),
                            r.associated_data.as_bytes(),
                            &r.ciphertext,
                        )
                        .is_ok()
                })?;
                let now = now_secs() * 1000;
                let verify = on_every_core(n, |i| {
                    tare_providers::wechat::verify_notification(w, &batch[i].headers, &batch[i].body, now).is_ok()
                })?;
                (crypto, verify)
            }
            _ => {
                let a = &keys.alipay;
                let crypto = on_every_core(n, |i| {
                    tare_providers::crypto::rsa_verify(&a.alipay_public_key, &batch[i].signed_message, &batch[i].signature)
                })?;
                let verify = on_every_core(n, |i| tare_providers::alipay::verify_notification(a, &batch[i].body).is_ok())?;
                (crypto, verify)
            }
        };
        rows.push(Row {
            provider: if provider == "wechat" {
                "WeChat Pay Score (`REFUND.ABNORMAL`, RSA + AES-256-GCM)"
            } else {
                "Alipay (`trade_status_sync` of a refund, RSA2 form)"
            },
            callbacks,
            floor,
            crypto_per_s,
            verify_per_s,
            bytes,
        });
    }
    Ok(rows)
}
