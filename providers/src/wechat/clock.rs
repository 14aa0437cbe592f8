//! The times WeChat writes, all in China time (UTC+8): RFC 3339 with `+08:00`
//! (notifications, refunds), `yyyyMMddHHmmss` (time ranges) and `yyyy-MM-dd HH:mm:ss`
//! (bills). Hand-written because the crate carries no date library; the calendar is the domain's.

use tare_domain::reconciliation::dates::{civil_from_days, days_from_civil};
use tare_domain::UnixMs;

const DAY_MS: i64 = 86_400_000;
const CHINA_OFFSET_MS: i64 = 8 * 3_600_000;

/// Calendar parts of a China-time instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChinaTime {
    /// Year.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day 1..=31.
    pub day: u32,
    /// Seconds since local midnight.
    pub second_of_day: u32,
}

/// Splits `at` into China calendar parts.
pub fn china_time(at: UnixMs) -> ChinaTime {
    let local = at.saturating_add(CHINA_OFFSET_MS);
    let (year, month, day) = civil_from_days(local.div_euclid(DAY_MS));
    let second_of_day = u32::try_from(local.rem_euclid(DAY_MS) / 1000).unwrap_or(0);
    ChinaTime {
        year,
        month,
        day,
        second_of_day,
    }
}

fn hms(s: u32) -> (u32, u32, u32) {
    (s / 3600, s / 60 % 60, s % 60)
}

/// `2026-12-02T00:30:00+08:00` (notification `create_time`, refund times).
pub fn rfc3339_china(at: UnixMs) -> String {
    let t = china_time(at);
    let (h, m, s) = hms(t.second_of_day);
    format!("{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}+08:00", t.year, t.month, t.day)
}

/// `20261202003000` (`time_range`, `paid_time`).
pub fn compact_china(at: UnixMs) -> String {
    let t = china_time(at);
    let (h, m, s) = hms(t.second_of_day);
    format!("{:04}{:02}{:02}{h:02}{m:02}{s:02}", t.year, t.month, t.day)
}

/// `2026-12-02 00:30:00` (the bill's 交易时间).
pub fn bill_time(at: UnixMs) -> String {
    let t = china_time(at);
    let (h, m, s) = hms(t.second_of_day);
    format!("{:04}-{:02}-{:02} {h:02}:{m:02}:{s:02}", t.year, t.month, t.day)
}

/// Reads a bill time back (whole seconds); `None` for anything else.
pub fn parse_bill_time(s: &str) -> Option<UnixMs> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let days = days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    Some(days * DAY_MS + (h * 3600 + mi * 60 + se) * 1000 - CHINA_OFFSET_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_times_format_and_parse_back() {
        // 2026-12-01 16:30 UTC is 2026-12-02 00:30 in Beijing.
        let at = 1_796_142_600_000;
        assert_eq!(rfc3339_china(at), "2026-12-02T00:30:00+08:00");
        assert_eq!(compact_china(at), "20261202003000");
        assert_eq!(bill_time(at), "2026-12-02 00:30:00");
        assert_eq!(parse_bill_time("2026-12-02 00:30:00"), Some(at));
        assert_eq!(
            parse_bill_time("2000-02-29 23:59:59").map(bill_time).as_deref(),
            Some("2000-02-29 23:59:59")
        );
        for bad in [
            "2026-12-02T00:30:00",
            "2026-13-02 00:30:00",
            "2026-12-02 24:00:00",
            "x026-12-02 00:30:00",
            "",
        ] {
            assert_eq!(parse_bill_time(bad), None, "{bad}");
        }
    }
}
