//! Counts by reason (the edges' refusals), exported as one Prometheus counter family:
//! every refusal of device traffic is counted under the same label its error carries.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts keyed by a reason label.
#[derive(Default)]
pub struct ReasonCounts(Mutex<BTreeMap<&'static str, u64>>);

impl ReasonCounts {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one for `reason`.
    pub fn add(&self, reason: &'static str) {
        *self.map().entry(reason).or_default() += 1;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        self.map().get(reason).copied().unwrap_or(0)
    }

    /// All counts together.
    pub fn total(&self) -> u64 {
        self.map().values().sum()
    }

    /// The family `name{reason="…"}` with its HELP and TYPE lines.
    pub fn prometheus(&self, name: &str, help: &str) -> String {
        let mut s = format!("# HELP {name} {help}\n# TYPE {name} counter\n");
        for (reason, n) in self.map().iter() {
            s.push_str(&format!("{name}{{reason=\"{reason}\"}} {n}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_exports_by_reason() {
        let c = ReasonCounts::default();
        c.add("too_large");
        c.add("too_large");
        c.add("topic_denied");
        assert_eq!((c.get("too_large"), c.get("nope"), c.total()), (2, 0, 3));
        let text = c.prometheus("x_total", "X.");
        assert!(text.starts_with("# HELP x_total X.\n# TYPE x_total counter\n"));
        assert!(text.contains("x_total{reason=\"too_large\"} 2\n"));
    }
}
