//! `tare bench gateway`: the MQTT device endpoint under load, against a plain broker.
//!
//! 1. N cabinets connect (signed CONNECT, CONNACK) and stay idle: connections per second
//!    and resident memory per connected cabinet (the growth of this process's RSS over
//!    N; it includes the benchmark's own client sockets, so it is an upper bound).
//! 2. P of them publish M weight messages (QoS 0, as the contract says) as fast as they
//!    can, each ending with a PINGREQ whose PINGRESP proves every publish before it was
//!    decoded, validated and handed to the hub: accepted messages per second.
//! 3. The same frames from P connections to the machine's Mosquitto (no auth, no
//!    subscribers, no processing), with the same PINGREQ barrier: the raw rate.
//!
//! Reported as the ratio of the two rates first (the machines are shared and noisy).

use crate::app::{App, AppConfig};
use crate::fleet::ApiClient;
use anyhow::{bail, Context};
use bytes::BytesMut;
use futures::StreamExt;
use rumqttc::mqttbytes::{v4, QoS};
use serde_json::json;
use std::time::{Duration, Instant};
use tare_domain::CabinetId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Settings of the gateway benchmark.
#[derive(Debug, Clone)]
pub struct GatewayBench {
    /// Idle cabinets to connect.
    pub connections: usize,
    /// Connections that publish telemetry.
    pub publishers: usize,
    /// Telemetry messages in all.
    pub messages: usize,
    /// The plain broker for the baseline.
    pub broker: String,
}

/// Resident memory now (VmRSS), in KiB.
fn rss_kib() -> f64 {
    crate::bench::proc_status_kib("VmRSS")
}

fn encode(p: v4::Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    let _ = p.write(&mut b, usize::MAX);
    b.to_vec()
}

/// Opens an MQTT 3.1.1 connection and waits for a successful CONNACK.
async fn connect(addr: &str, client_id: &str, login: Option<(String, String)>) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut c = v4::Connect::new(client_id);
    c.keep_alive = 0;
    if let Some((u, p)) = login {
        c.set_login(u, p);
    }
    s.write_all(&encode(v4::Packet::Connect(c))).await?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await?;
    if ack[0] != 0x20 || ack[3] != 0 {
        bail!("connection of {client_id} refused (CONNACK {ack:?})");
    }
    Ok(s)
}

/// Writes `frames` then a PINGREQ, and waits for the PINGRESP.
async fn publish_all(s: &mut TcpStream, frames: &[u8]) -> anyhow::Result<()> {
    s.write_all(frames).await?;
    s.write_all(&[0xC0, 0x00]).await?;
    let mut buf = [0u8; 2];
    loop {
        s.read_exact(&mut buf[..1]).await?;
        if buf[0] == 0xD0 {
            s.read_exact(&mut buf[1..2]).await?;
            return Ok(());
        }
        // Anything else (none expected at QoS 0): read its length and skip it.
        let mut len = 0usize;
        for i in 0..4 {
            s.read_exact(&mut buf[1..2]).await?;
            len |= ((buf[1] & 0x7f) as usize) << (7 * i);
            if buf[1] & 0x80 == 0 {
                break;
            }
        }
        let mut skip = vec![0u8; len];
        s.read_exact(&mut skip).await?;
    }
}

/// The weight frames for publisher `p` (its share of `total`).
fn frames_for(id: &CabinetId, p: usize, share: usize, now: i64) -> Vec<u8> {
    let topic = format!("{}/{}/up/weight", id.pk(), id.dn());
    let mut out = Vec::new();
    for i in 0..share {
        let body = json!({"id": format!("b{p}-{i}"), "seq": i + 1, "ts": now + i as i64, "door": 1, "stable": i % 3 == 0,
            "lanes": [{"lane": 1, "grams": 3300.0 + (i % 7) as f64}, {"lane": 2, "grams": 700.0}]});
        out.extend(encode(v4::Packet::Publish(v4::Publish::new(
            &topic,
            QoS::AtMostOnce,
            body.to_string(),
        ))));
    }
    out
}

/// Runs the benchmark and prints its figures.
pub async fn run(b: GatewayBench) -> anyhow::Result<()> {
    if b.publishers == 0 || b.publishers > b.connections {
        bail!("--publishers must be from 1 to --connections");
    }
    let dir = std::env::temp_dir().join(format!("tare-bench-gw-{}", uuid::Uuid::new_v4().simple()));
    let mut cfg = AppConfig::embedded(&dir);
    // Measure the endpoint, not the flood control.
    cfg.mqtt_config.rate = tare_gateway::rate::RateLimit {
        per_second: 1e9,
        burst: 1e9,
    };
    cfg.mqtt_config.max_connections = b.connections as u64 + 10;
    let app = App::start(cfg).await?;
    let mqtt_addr = app.mqtt.as_ref().context("mqtt")?.addr.to_string();
    let client = ApiClient::new(&app.base_url, &app.admin_token);
    client
        .post(
            "/api/v1/products",
            &client.admin,
            &json!({"sku": "cola", "name": "Cola", "unit_grams": 330.0, "price_cents": 300}),
        )
        .await?;
    // Register the fleet (not measured).
    let devices = register_fleet(&client, b.connections).await?;

    // 1. Idle connections.
    let rss_before = rss_kib();
    let started = Instant::now();
    let clock = app.platform.clock().clone();
    let conns: Vec<anyhow::Result<TcpStream>> = futures::stream::iter(devices.iter())
        .map(|(id, secret)| {
            let addr = mqtt_addr.clone();
            let clock = clock.clone();
            async move {
                let user = tare_protocol::signing::mqtt_username(id, clock.now_ms());
                let pass = tare_protocol::signing::sign(secret, &user);
                connect(&addr, &id.to_string(), Some((user, pass))).await
            }
        })
        .buffered(200)
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut conns: Vec<TcpStream> = conns.into_iter().collect::<Result<_, _>>()?;
    // Let the sessions settle into idle (their first buffers freed).
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.platform.devices().connection_count() < b.connections && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_after = rss_kib();
    let per_conn_kib = (rss_after - rss_before) / b.connections as f64;

    // 2. Telemetry through the gateway.
    let share = b.messages / b.publishers;
    let total = share * b.publishers;
    let now = clock.now_ms();
    let frames: Vec<Vec<u8>> = (0..b.publishers).map(|p| frames_for(&devices[p].0, p, share, now)).collect();
    let accepted_before = app.platform.metrics().await?.devices.accepted;
    let started = Instant::now();
    let results = futures::future::join_all(
        conns
            .iter_mut()
            .take(b.publishers)
            .zip(frames.iter())
            .map(|(s, f)| publish_all(s, f)),
    )
    .await;
    let gw_secs = started.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    let accepted = app.platform.metrics().await?.devices.accepted - accepted_before;
    if accepted != total as u64 {
        bail!("the gateway accepted {accepted} of {total} messages");
    }

    // 3. The same frames to a plain broker.
    let (raw, raw_secs) = publish_to_broker(&b.broker, &frames).await?;
    let gw_rate = total as f64 / gw_secs;
    let raw_rate = total as f64 / raw_secs;
    let bytes_per_msg = frames.iter().map(|f| f.len()).sum::<usize>() as f64 / total as f64;
    println!(
        "\n## tare bench gateway ({} idle cabinets, {} publishers, {} weight messages of {:.0} bytes, QoS 0)\n",
        b.connections, b.publishers, total, bytes_per_msg
    );
    println!("| measure | Tare MQTT endpoint | plain broker (Mosquitto, no processing) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| telemetry messages/s accepted, decoded, validated, handed to the hub | {gw_rate:.0} | {raw_rate:.0} | {:.2} |",
        gw_rate / raw_rate
    );
    println!(
        "| signed connections/s (CONNECT → CONNACK, 200 at a time) | {:.0} | — | — |",
        b.connections as f64 / connect_secs
    );
    println!(
        "\nresident memory per idle connected cabinet: {per_conn_kib:.1} KiB (RSS {:.1} → {:.1} MiB over {} connections, client sockets included); at that rate 100,000 cabinets take {:.0} MiB",
        rss_before / 1024.0,
        rss_after / 1024.0,
        b.connections,
        per_conn_kib * 100_000.0 / 1024.0
    );
    println!("peak memory (VmHWM, whole process): {:.1} MiB", crate::bench::peak_rss_mib());
    drop(conns);
    drop(raw);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Registers `n` two-lane cabinets `gw.G000000…` and returns their ids and secrets.
async fn register_fleet(client: &ApiClient, n: usize) -> anyhow::Result<Vec<(CabinetId, String)>> {
    let devices: Vec<anyhow::Result<(CabinetId, String)>> = futures::stream::iter(0..n)
        .map(|i| {
            let client = &client;
            async move {
                let dn = format!("G{i:06}");
                let body = json!({"pk": "gw", "dn": dn, "kind": "weight", "location": {"lat": 31.2, "lng": 121.4},
                    "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola", "capacity": 20, "restock_threshold": 2},
                                                   {"lane": 2, "sku": "cola", "capacity": 20, "restock_threshold": 2}]}]});
                let (st, v) = client.post("/api/v1/cabinets", &client.admin, &body).await?;
                if st.as_u16() != 201 {
                    bail!("registering {dn}: {st} {v}");
                }
                Ok((
                    CabinetId::new("gw", &dn)?,
                    v["device_secret"].as_str().unwrap_or_default().to_string(),
                ))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    devices.into_iter().collect()
}

/// Publishes each publisher's frames to a plain broker at `broker`, all at once; returns
/// the connections (kept open until the report) and the seconds it took.
async fn publish_to_broker(broker: &str, frames: &[Vec<u8>]) -> anyhow::Result<(Vec<TcpStream>, f64)> {
    let mut raw = Vec::new();
    for p in 0..frames.len() {
        raw.push(
            connect(broker, &format!("tare-bench-{}-{p}", std::process::id()), None)
                .await
                .with_context(|| format!("connecting to the baseline broker {}", broker))?,
        );
    }
    let started = Instant::now();
    let results = futures::future::join_all(raw.iter_mut().zip(frames.iter()).map(|(s, f)| publish_all(s, f))).await;
    let raw_secs = started.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    Ok((raw, raw_secs))
}
