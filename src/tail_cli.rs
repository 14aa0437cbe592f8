//! `tare tail` [E3]: every saga step of a running node, live, one line a step (colour on a
//! terminal) or `--json` lines — the node's `GET /api/v1/sagas/tail` read over HTTP, so
//! it works against any node, embedded or scaled out.

use anyhow::{bail, Context};
use std::io::{IsTerminal, Write};

/// `tare tail`.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// The node's HTTP address (`http://127.0.0.1:8780`).
    #[arg(long, env = "TARE_URL", default_value = "http://127.0.0.1:8780")]
    http: String,
    /// An operator token.
    #[arg(long, env = "TARE_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Only this cabinet's steps.
    #[arg(long)]
    cabinet: Option<String>,
    /// Only this order's steps.
    #[arg(long)]
    order: Option<String>,
    /// Only this shopper's steps.
    #[arg(long)]
    shopper: Option<String>,
    /// Replay from this feed position first, then follow.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    from: Option<i64>,
    /// One JSON object a line instead of text.
    #[arg(long)]
    json: bool,
    /// Stop after this many steps (default: follow until interrupted).
    #[arg(long)]
    limit: Option<u64>,
}

/// Runs `tare tail` until interrupted, the stream ends, or `--limit` steps.
pub async fn run(a: TailArgs) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = Vec::new();
    for (k, v) in [("cabinet", &a.cabinet), ("order", &a.order), ("shopper", &a.shopper)] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    if let Some(f) = a.from {
        query.push(("from", f.to_string()));
    }
    let url = format!("{}/api/v1/sagas/tail", a.http.trim_end_matches('/'));
    let mut resp = reqwest::Client::new()
        .get(&url)
        .query(&query)
        .bearer_auth(&a.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("{url}: {status}: {}", resp.text().await.unwrap_or_default());
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    let (mut buf, mut shown) = (String::new(), 0_u64);
    while let Some(chunk) = resp.chunk().await.context("reading the stream")? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        // One SSE event per blank-line-terminated block; `data:` carries the step.
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim) else {
                continue;
            };
            let line = if a.json { data.to_string() } else { render(data, colour) };
            writeln!(out, "{line}")?;
            out.flush()?;
            shown += 1;
            if a.limit.is_some_and(|l| shown >= l) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A step as a line: position, time, the order (coloured), the detail.
fn render(data: &str, colour: bool) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
        return data.to_string();
    };
    let (pos, detail, step) = (
        &v["position"],
        v["detail"].as_str().unwrap_or_default(),
        v["step"].as_str().unwrap_or_default(),
    );
    let order = v["order_id"]
        .as_str()
        .map(|o| format!(" [{}]", &o[o.len().saturating_sub(8)..]))
        .unwrap_or_default();
    let at = v["at"].as_i64().unwrap_or_default();
    if !colour {
        return format!("#{pos} {at}{order} {step}: {detail}");
    }
    let hue = if detail.contains("ALERT") || step.contains("Failed") || step.contains("Abnormal") {
        "31"
    } else {
        "32"
    };
    format!("\x1b[2m#{pos} {at}\x1b[0m\x1b[36m{order}\x1b[0m \x1b[{hue}m{step}\x1b[0m: {detail}")
}
