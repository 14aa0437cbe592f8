//! TLS listeners [issue 14, item 7]: `serve --tls-cert --tls-key --https ADDR --mqtts ADDR`.
//! The API answers over HTTPS to a client that trusts the certificate and to no one in
//! clear on that port; cabinets connect over MQTT over TLS (with no plain MQTT listener
//! at all) and a purchase goes through to payment. A client that does not trust the
//! certificate, or speaks plain TCP to a TLS port, is refused and counted. A bad
//! certificate file stops `serve` with the file and the reason.

use crate::common::{config, eventually, Store, TestStore};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tare::app::App;
use tare::fleet::{Fleet, FleetSpec, FleetTarget};
use tare_domain::{DoorNo, LaneNo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
fn certificate(dir: &std::path::Path) -> tare_gateway::tls::TlsFiles {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("a certificate");
    std::fs::create_dir_all(dir).unwrap();
    let files = tare_gateway::tls::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, ck.cert.pem()).unwrap();
    std::fs::write(&files.key, ck.key_pair.serialize_pem()).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_devices_over_tls_and_nothing_in_clear_on_its_ports() {
    let store = TestStore::new(Store::Sqlite).await;
    let dir = std::env::temp_dir().join(format!("tare-tls-{}", uuid::Uuid::new_v4().simple()));
    let files = certificate(&dir);
    let mut cfg = config(&store);
    cfg.tls = Some(files.clone());
    cfg.https = Some("127.0.0.1:0".into());
    cfg.mqtts = Some("127.0.0.1:0".into());
    cfg.mqtt = None; // TLS is the only way in for devices.
    let app = App::start(cfg).await.expect("app");
    assert!(app.mqtt.is_none());
    let https = app.http.tls_addr.expect("an HTTPS listener");
    let mqtts = app.mqtts.as_ref().expect("an MQTT over TLS listener").addr;

    // HTTPS for a client that trusts the certificate.
    let pem = std::fs::read(&files.cert).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = trusting
        .get(format!("https://127.0.0.1:{}/api/v1/dead-letters", https.port()))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"), "the same router, with its layers");

    // Not for one that does not trust it, and nothing in clear on the TLS port.
    let strict = reqwest::Client::new();
    let e = strict
        .get(format!("https://127.0.0.1:{}/api/v1/openapi.json", https.port()))
        .send()
        .await;
    assert!(e.is_err(), "an untrusted certificate must fail the handshake");
    let clear = strict
        .get(format!("http://127.0.0.1:{}/api/v1/openapi.json", https.port()))
        .send()
        .await;
    assert!(
        clear.is_err() || !clear.unwrap().status().is_success(),
        "no HTTP in clear on the HTTPS port"
    );
    eventually(10, "failed handshakes counted", || async {
        let page = trusting
            .get(format!("https://127.0.0.1:{}/metrics", https.port()))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (tare::local_cluster::metric(&page, "tare_https_handshakes_failed_total") >= 2).then_some(())
    })
    .await;

    // Cabinets over MQTT over TLS: registered, online, and a purchase paid.
    let target = FleetTarget {
        mqtt: Some(mqtts),
        ..FleetTarget::of(&app)
    };
    let spec = FleetSpec {
        cabinets: 1,
        pk: "tls".into(),
        mqtt_tls: Some(tare_sim::transport::tls_trusting(&files.cert).expect("a client config")),
        ..FleetSpec::default()
    };
    let fleet = Fleet::provision_at(&target, &spec).await.expect("a fleet over TLS");
    let shopper = fleet.new_shopper("13900000077", "wechat", "once").await.unwrap();
    let p = fleet
        .purchase(&shopper, 0, DoorNo::of(1), &[(LaneNo::of(1), 1)])
        .await
        .expect("a purchase over TLS");
    assert_eq!(p.order["state"], "paid", "{}", p.order);
    assert_eq!(p.order["total_cents"].as_i64(), Some(p.true_subtotal()));
    let counters = &app.mqtts.as_ref().unwrap().endpoint.counters;
    assert_eq!(counters.connections_open.load(Relaxed), 1);
    assert!(counters.publishes_accepted.load(Relaxed) >= 4, "door and weights went over TLS");

    // A device speaking plain MQTT to the TLS port is refused and counted.
    let mut raw = tokio::net::TcpStream::connect(mqtts).await.unwrap();
    raw.write_all(&[0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00])
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(&[0x20]), "no CONNACK in clear: {answer:?}");
    eventually(10, "the plain connect refused", || async {
        (counters.refused("tls_handshake_failed") >= 1).then_some(())
    })
    .await;

    app.stop().await;
    store.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_refuses_a_tls_listener_without_a_usable_certificate() {
    let dir = std::env::temp_dir().join(format!("tare-tls-bad-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.join("key.pem"), "not a key\n").unwrap();
    let run = |args: &[&str]| {
        let data = dir.join("data");
        std::process::Command::new(env!("CARGO_BIN_EXE_tare"))
            .args([
                "serve",
                "--data",
                data.to_str().unwrap(),
                "--http",
                "127.0.0.1:0",
                "--mqtt",
                "127.0.0.1:0",
            ])
            .args(args)
            .env("TARE_ADMIN_TOKEN", "t")
            .output()
            .expect("tare runs")
    };
    // --https without a certificate: a usage error naming what is missing.
    let out = run(&["--https", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
    // A file that is no certificate: the file and the reason, before anything listens.
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = run(&[
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cert.pem") && err.contains("no CERTIFICATE"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    let _ = std::fs::remove_dir_all(&dir);
}
