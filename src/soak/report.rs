//! The soak's report: what ran, what the chaos did and when, what the shoppers and the
//! operator saw, and every check with its figures — as Markdown for `docs/soak.md`.

use super::checks::Checked;
use super::{Buying, SoakArgs};
use std::fmt::Write;
use std::time::Duration;

/// A finished soak.
pub struct SoakReport {
    /// Whether the soak reached its purchases and every check held.
    pub passed: bool,
    /// The report.
    pub markdown: String,
}

impl SoakReport {
    /// The report of a soak run with `args`.
    pub fn new(args: &SoakArgs, buying: &Buying, checked: Checked, took: Duration) -> Self {
        let passed = buying.reached && buying.chaos_failure.is_none() && checked.checks.iter().all(|c| c.passed);
        let mut m = String::new();
        let secs = buying.took.as_secs_f64();
        let done = buying.tally.completed();
        let _ = writeln!(m, "## Soak: {}\n", if passed { "every check held" } else { "FAILED" });
        let _ = writeln!(
            m,
            "`tare soak --purchases {} --cabinets {} --capacity {} --chaos-every {} --duplicate-pct {} --reorder-pct {} --lose-open-every {} --drop-acks-every {} --refund-every {} --seed {}`\n",
            args.purchases, args.cabinets, args.capacity, args.chaos_every, args.duplicate_pct, args.reorder_pct, args.lose_open_every, args.drop_acks_every, args.refund_every, args.seed
        );
        let _ = writeln!(
            m,
            "Three `tare serve` nodes on a private PostgreSQL and NATS JetStream, a shared `tare sandbox`, {} cabinets over MQTT.\n",
            args.cabinets
        );
        let _ = writeln!(m, "| | |\n|---|---|");
        let _ = writeln!(
            m,
            "| purchases seen to the end | {done}{} |",
            if buying.reached { "" } else { " (target not reached)" }
        );
        let _ = writeln!(
            m,
            "| buying phase | {secs:.0} s ({:.1} purchases/s) |",
            done as f64 / secs.max(0.001)
        );
        let _ = writeln!(m, "| whole soak (start, buy, settle, check) | {:.0} s |", took.as_secs_f64());
        let _ = writeln!(m, "| attempts cut off by the chaos (tried again) | {} |", buying.tally.failures());
        let states: Vec<String> = checked.orders_by_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let _ = writeln!(m, "| orders in the log, by end state | {} |", states.join(", "));
        let _ = writeln!(
            m,
            "| collections at the providers | {} ({} cents) |",
            checked.collections.0, checked.collections.1
        );
        let _ = writeln!(
            m,
            "| refunds at the providers | {} orders ({} cents) |",
            checked.refunds.0, checked.refunds.1
        );
        let reasons: Vec<String> = checked.ledger_reasons.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let _ = writeln!(m, "| ledger movements by reason | {} |", reasons.join(", "));
        if !checked.abnormal_reasons.is_empty() {
            let a: Vec<String> = checked.abnormal_reasons.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let _ = writeln!(m, "| anomalies of the abnormal orders | {} |", a.join(", "));
        }
        for (name, v) in &checked.metrics {
            let _ = writeln!(m, "| `{name}` (all nodes, since their last start) | {v} |");
        }
        if let Some(why) = &buying.chaos_failure {
            let _ = writeln!(m, "\n**The chaos stopped early:** {}\n", why.lines().next().unwrap_or_default());
        }
        let _ = writeln!(m, "\n### Checks\n\n| check | held | figures |\n|---|---|---|");
        for c in &checked.checks {
            let _ = writeln!(
                m,
                "| {} | {} | {} |",
                c.name,
                if c.passed { "yes" } else { "**no**" },
                c.detail.replace('|', "\\|")
            );
        }
        let _ = writeln!(
            m,
            "\n### Chaos ({} actions)\n\n| at (s) | action | out for (s) |\n|---|---|---|",
            buying.chaos.len()
        );
        for d in &buying.chaos {
            let _ = writeln!(m, "| {:.0} | {} | {:.1} |", d.at_secs, d.action.describe(), d.out_secs);
        }
        let errors = buying.tally.errors.lock().unwrap_or_else(|e| e.into_inner());
        if !errors.is_empty() {
            let _ = writeln!(m, "\n### Attempts cut off, by kind (of the first {})\n", errors.len());
            let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
            for e in errors.iter() {
                *kinds.entry(kind_of(e)).or_default() += 1;
            }
            for (k, n) in kinds {
                let _ = writeln!(m, "- {n} × {k}");
            }
        }
        Self { passed, markdown: m }
    }
}

/// An attempt's error without what differs between attempts (the cabinet, ids, amounts,
/// ports), so the report can count them by kind.
fn kind_of(error: &str) -> String {
    let after_cabinet = error.split_once(": ").map_or(error, |(_, rest)| rest);
    let words: Vec<String> = after_cabinet
        .split_whitespace()
        .take(8)
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                "…".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    words.join(" ")
}
