//! `tare soak`, small [issue 14]: the chaos soak's own machinery, run as a user runs it.
//! Three nodes on a private PostgreSQL and NATS, a fleet buying over MQTT with duplicated,
//! reordered and lost device messages, while every kind of chaos action happens at least
//! once (a node killed with -9, the providers' notifications dropped and duplicated,
//! NATS killed, PostgreSQL crashed). The report must say every check held, and show the
//! chaos and the money it checked. The full soak (10,000 purchases) is in
//! `docs/soak.md`.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_soak_through_every_kind_of_chaos_holds_every_check() {
    let _heavy = crate::common::exclusive().await;
    let report = std::env::temp_dir().join(format!("tare-soak-report-{}.md", uuid::Uuid::new_v4().simple()));
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_tare"))
        .args([
            "soak",
            "--purchases",
            "70",
            "--cabinets",
            "6",
            "--chaos-every",
            "4",
            "--refund-every",
            "1",
        ])
        .args(["--lose-open-every", "6", "--drop-acks-every", "6", "--max-minutes", "8", "--report"])
        .arg(&report)
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("the soak ends")
        .expect("tare soak runs");
    let printed = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let md = std::fs::read_to_string(&report).expect("the report was written");
    let _ = std::fs::remove_file(&report);
    assert!(md.starts_with("## Soak: every check held"), "{md}");
    // Every check is in the table and held.
    for check in [
        "every order in the log ended",
        "no double charge",
        "no missed charge",
        "every charge exactly what was taken, less discounts",
        "refunds never above charges",
        "ledger = inventory, lane by lane",
        "inventory = shelves, lane by lane (or flagged by the platform)",
        "every take in the ledger under its order",
        "no sale recorded twice",
        "the feed reached JetStream whole",
    ] {
        assert!(md.contains(&format!("| {check} | yes |")), "{check}:\n{md}");
    }
    assert!(!md.contains("| **no** |"), "{md}");
    // Every kind of chaos happened.
    for action in [
        "kill -9 node",
        "drop, duplicate and reorder notifications",
        "kill -9 NATS",
        "PostgreSQL crashes",
    ] {
        assert!(md.contains(action), "{action}:\n{md}");
    }
    // The figures are real: purchases, collections and refunds at the providers, and
    // duplicated device messages the nodes recognised.
    let figure = |label: &str| -> i64 {
        md.lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{label} in:\n{md}"))
    };
    assert!(figure("purchases seen to the end") >= 70, "{md}");
    assert!(figure("collections at the providers") > 0, "{md}");
    assert!(figure("refunds at the providers") > 0, "{md}");
    assert!(figure("`tare_device_uplinks_duplicate_total`") > 0, "{md}");
}
