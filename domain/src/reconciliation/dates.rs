//! The providers' local date (China, UTC+8): bills are per local day, `YYYY-MM-DD`.

use crate::UnixMs;

const DAY_MS: i64 = 86_400_000;
const OFFSET_MS: i64 = 8 * 3_600_000;

/// The provider's local date of `at`.
pub fn china_date(at: UnixMs) -> String {
    let (y, m, d) = civil_from_days((at + OFFSET_MS).div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` (a real calendar day) into days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &s[r];
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize];
    (d <= len).then(|| days_from_civil(y, m as u32, d as u32))
}

/// The date `days` after `date` (`None` for a malformed date).
pub fn add_days(date: &str, days: i64) -> Option<String> {
    let n = parse_date(date)? + days;
    let (y, m, d) = civil_from_days(n);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// The first moment (Unix ms) of local `date`.
pub fn day_start(date: &str) -> Option<UnixMs> {
    Some(parse_date(date)? * DAY_MS - OFFSET_MS)
}

/// The next nightly run at local minute-of-day `minute` strictly after `now`: the day
/// it reconciles (the local day before the run) and when it is due.
pub fn next_nightly(now: UnixMs, minute: i64) -> (String, UnixMs) {
    let today = china_date(now);
    let start = day_start(&today).unwrap_or(0);
    let mut due = start + minute.clamp(0, 1439) * 60_000;
    if due <= now {
        due += DAY_MS;
    }
    let run_day = china_date(due);
    (add_days(&run_day, -1).unwrap_or(today), due)
}

/// When the nightly run for local `date` is due (the next day at `minute`).
pub fn nightly_due(date: &str, minute: i64) -> Option<UnixMs> {
    Some(day_start(date)? + DAY_MS + minute.clamp(0, 1439) * 60_000)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant):
/// the one calendar every China-time format of the platform and the providers uses.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_dates() {
        assert_eq!(china_date(0), "1970-01-01");
        // 2026-12-01 16:30 UTC is 2026-12-02 00:30 in Beijing.
        assert_eq!(china_date(1_796_142_600_000), "2026-12-02");
        assert_eq!(china_date(1_796_142_600_000 - 3_600_000), "2026-12-01");
        assert_eq!(china_date(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn parsing_round_trips_and_refuses_non_days() {
        for s in ["1970-01-01", "2000-02-29", "2026-12-31", "1969-12-31"] {
            assert_eq!(add_days(s, 0).as_deref(), Some(s));
        }
        for s in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "20261201",
            "2026-12-32",
            "abcd-ef-gh",
            "+026-12-01",
        ] {
            assert_eq!(parse_date(s), None, "{s}");
        }
        assert_eq!(add_days("2026-03-01", -1).as_deref(), Some("2026-02-28"));
        assert_eq!(add_days("2024-12-31", 1).as_deref(), Some("2025-01-01"));
        assert_eq!(day_start("1970-01-02"), Some(86_400_000 - 8 * 3_600_000));
    }

    #[test]
    fn the_nightly_run_is_the_next_ten_o_clock_for_the_day_before() {
        let start = day_start("2026-12-02").unwrap();
        // 09:59 local: today's run at 10:00 reconciles yesterday.
        let (date, due) = next_nightly(start + 599 * 60_000, 600);
        assert_eq!((date.as_str(), due), ("2026-12-01", start + 600 * 60_000));
        // 10:00 exactly has started: the next is tomorrow's, for today.
        let (date, due) = next_nightly(start + 600 * 60_000, 600);
        assert_eq!((date.as_str(), due), ("2026-12-02", start + 86_400_000 + 600 * 60_000));
        assert_eq!(nightly_due("2026-12-01", 600), Some(start + 600 * 60_000));
    }
}
