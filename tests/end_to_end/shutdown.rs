//! SIGTERM stops `tare serve` as gracefully as Ctrl-C [issue 9]: under Docker the process
//! is stopped with SIGTERM and killed 10 s later, so a node that ignored it would lose
//! whatever was in flight. Here the embedded demo is stopped with SIGTERM while its
//! shoppers are buying: the process exits 0 well within 10 s, says it stopped cleanly, and
//! a restart on the same data directory has every event the API had already shown.

use crate::common::cluster::{free_port, start, Proc};
use crate::common::eventually;
use serde_json::Value;
use std::time::{Duration, Instant};

const TOKEN: &str = "shutdown-test-token";

/// Every event id of the feed, in feed order, read through the API.
async fn feed(http: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = http
            .get(format!("{base}/api/v1/events?after={after}&limit=1000"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("events request")
            .json()
            .await
            .expect("events body");
        let events = page["events"].as_array().expect("events array");
        if events.is_empty() {
            return ids;
        }
        ids.extend(events.iter().map(|e| e["event_id"].as_str().expect("event id").to_string()));
        after = page["next"].as_i64().expect("next position");
    }
}

async fn stop_with_sigterm(p: &mut Proc) -> Duration {
    let asked = Instant::now();
    p.signal("TERM").expect("kill -TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), p.child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running 10 s after SIGTERM:\n{}", p.tail()))
        .expect("wait");
    assert!(status.success(), "exit status {status:?} after SIGTERM:\n{}", p.tail());
    asked.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_gracefully_and_nothing_shown_is_lost() {
    let data = std::env::temp_dir().join(format!("tare-shutdown-{}", uuid::Uuid::new_v4().simple()));
    let base = format!("http://127.0.0.1:{}", free_port());
    let serve = |demo: bool| {
        let mut args: Vec<String> = ["serve", "--data", data.to_str().unwrap()].map(String::from).to_vec();
        args.extend(["--http".into(), base.trim_start_matches("http://").to_string()]);
        args.extend(["--mqtt".into(), format!("127.0.0.1:{}", free_port())]);
        if demo {
            args.push("--demo".into());
        }
        args
    };
    let env = [("TARE_ADMIN_TOKEN", TOKEN)];
    let mut demo = start(&serve(true), &env, "demo fleet").await;
    let http = reqwest::Client::new();

    // Shoppers are buying: wait for paid orders in the log, then stop mid-stream.
    let shown = eventually(60, "a few paid orders", || async {
        let ids = feed(&http, &base).await;
        let page: Value = http
            .get(format!("{base}/api/v1/events?after=0&limit=1000"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let paid = page["events"].as_array()?.iter().filter(|e| e["event_type"] == "OrderPaid").count();
        (paid >= 3).then_some(ids)
    })
    .await;
    let took = stop_with_sigterm(&mut demo).await;
    assert!(demo.printed("SIGTERM: stopping"), "{}", demo.tail());
    assert!(demo.printed("stopped cleanly"), "{}", demo.tail());
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");

    // A restart on the same data has everything the API showed before the signal, in
    // the same order.
    let mut again = start(&serve(false), &env, "listening").await;
    let after = feed(&http, &base).await;
    assert!(after.len() >= shown.len(), "{} events before, {} after", shown.len(), after.len());
    assert_eq!(after[..shown.len()], shown[..], "the feed changed across the restart");
    stop_with_sigterm(&mut again).await;
    let _ = std::fs::remove_dir_all(&data);
}
