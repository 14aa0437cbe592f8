//! `tare reconcile bills`: asks a running node to reconcile one provider day's bill
//! (`POST /api/v1/reconciliation/bills`: the node holds the provider adapters and the
//! views), prints a readable summary (or the JSON with `--json`) and fails with exit
//! status 1 when the day has discrepancies.

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// `tare reconcile …`.
#[derive(clap::Args)]
pub struct ReconcileArgs {
    /// What to reconcile.
    #[command(subcommand)]
    pub what: ReconcileWhat,
}

/// What `tare reconcile` reconciles.
#[derive(clap::Subcommand)]
pub enum ReconcileWhat {
    /// A provider's bill of one day against our charges and refunds [R3].
    Bills(BillsArgs),
}

/// The provider.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Provider {
    /// WeChat Pay Score.
    Wechat,
    /// Alipay.
    Alipay,
}

/// `tare reconcile bills`.
#[derive(clap::Args)]
pub struct BillsArgs {
    /// The provider.
    #[arg(long, value_enum)]
    pub provider: Provider,
    /// The provider's local (China) date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_day)]
    pub date: String,
    /// The node's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8780")]
    pub http: String,
    /// Operator token of the node.
    #[arg(long, env = "TARE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_day(s: &str) -> Result<String, String> {
    tare_domain::reconciliation::dates::parse_date(s)
        .map(|_| s.to_string())
        .ok_or_else(|| "must be a calendar date YYYY-MM-DD".to_string())
}

/// Runs `tare reconcile`; `Ok(false)` when discrepancies were found.
pub async fn run(a: ReconcileArgs) -> anyhow::Result<bool> {
    let ReconcileWhat::Bills(b) = a.what;
    let provider = match b.provider {
        Provider::Wechat => "wechat",
        Provider::Alipay => "alipay",
    };
    let url = format!("{}/api/v1/reconciliation/bills", b.http.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&b.token)
        .json(&json!({"provider": provider, "date": b.date}))
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.context("reading the answer")?;
    if !status.is_success() {
        let e = &body["error"];
        bail!(
            "{status}: {} {}",
            e["code"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        );
    }
    if b.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", summary(&body));
    }
    let clean = ["missing_at_provider", "missing_here", "mismatched"]
        .iter()
        .all(|k| body[*k].as_array().is_none_or(Vec::is_empty));
    Ok(clean)
}

fn item(i: &Value) -> String {
    let what = match i["refund_id"].as_str() {
        Some(r) => format!("refund {r}"),
        None => i["kind"].as_str().unwrap_or("?").to_string(),
    };
    let cents = i["amount_cents"].as_i64().unwrap_or(0);
    format!(
        "order {} {what} {}.{:02} ({}, {})",
        i["order_id"].as_str().unwrap_or("?"),
        cents / 100,
        cents % 100,
        i["transaction_id"].as_str().unwrap_or("?"),
        i["state"].as_str().unwrap_or("?")
    )
}

/// The readable summary of a reconciliation body.
pub fn summary(body: &Value) -> String {
    let list = |k: &str| body[k].as_array().cloned().unwrap_or_default();
    let (missing_at, missing_here, mismatched) = (list("missing_at_provider"), list("missing_here"), list("mismatched"));
    let mut out = format!(
        "{} bill of {}: {} matched, {} missing at the provider, {} missing here, {} mismatched\n",
        body["provider"].as_str().unwrap_or("?"),
        body["date"].as_str().unwrap_or("?"),
        body["matched"],
        missing_at.len(),
        missing_here.len(),
        mismatched.len()
    );
    for i in &missing_at {
        out += &format!("  missing at provider: {}\n", item(i));
    }
    for i in &missing_here {
        out += &format!("  missing here:        {}\n", item(i));
    }
    for m in &mismatched {
        out += &format!(
            "  {} mismatch: ours {} / theirs {}\n",
            m["why"].as_str().unwrap_or("?"),
            item(&m["ours"]),
            item(&m["theirs"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_each_discrepancy() {
        let charge =
            json!({"order_id": "o1", "transaction_id": "t1", "kind": "charge", "amount_cents": 1205, "state": "succeeded", "at": 0});
        let body = json!({"provider": "wechat", "date": "2026-12-01", "matched": 3,
            "missing_at_provider": [charge], "missing_here": [], "mismatched": []});
        let s = summary(&body);
        assert!(
            s.starts_with("wechat bill of 2026-12-01: 3 matched, 1 missing at the provider, 0 missing here, 0 mismatched\n"),
            "{s}"
        );
        assert!(s.contains("missing at provider: order o1 charge 12.05 (t1, succeeded)"), "{s}");
        assert!(parse_day("2026-02-30").is_err());
    }
}
