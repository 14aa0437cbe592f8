//! The providers' money units, at the adapters only [P4]: WeChat speaks integer fen (the
//! platform's cents, one to one); Alipay speaks yuan as a string with exactly two decimals
//! (`"0.10"`, never `"0.1"`, never a float). Inside the platform money stays `Cents`.

use tare_domain::Cents;

/// Why an amount from a provider was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not `digits.dd`.
    #[error("amount `{0}` is not yuan with exactly two decimals")]
    NotYuan(String),
    /// Negative, or beyond what any single payment can be.
    #[error("amount {0} is out of range")]
    OutOfRange(String),
}

/// The most one payment may be in yuan at Alipay (100,000,000.00) [PAYMENTS.md §2].
const MAX_YUAN_CENTS: i64 = 100_000_000 * 100;

/// Cents as WeChat's integer fen.
pub fn fen(amount: Cents) -> i64 {
    amount.get()
}

/// WeChat's integer fen as cents (never negative).
pub fn from_fen(fen: i64) -> Result<Cents, MoneyError> {
    if !(0..=MAX_YUAN_CENTS).contains(&fen) {
        return Err(MoneyError::OutOfRange(fen.to_string()));
    }
    Ok(Cents::new(fen))
}

/// Cents as Alipay's yuan string: `"12.05"`, `"0.10"`.
pub fn yuan(amount: Cents) -> String {
    let c = amount.get();
    format!("{}.{:02}", c / 100, c % 100)
}

/// Alipay's yuan string as cents: digits, a dot, exactly two digits; nothing else (no
/// sign, exponent, spaces or a third decimal).
pub fn parse_yuan(s: &str) -> Result<Cents, MoneyError> {
    let not_yuan = || MoneyError::NotYuan(s.to_string());
    let (whole, frac) = s.split_once('.').ok_or_else(not_yuan)?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.len() != 2 || !digits(frac) || (whole.len() > 1 && whole.starts_with('0')) || whole.len() > 12 {
        return Err(not_yuan());
    }
    let cents = whole
        .parse::<i64>()
        .ok()
        .and_then(|w| w.checked_mul(100))
        .and_then(|w| w.checked_add(frac.parse::<i64>().ok()?))
        .ok_or_else(not_yuan)?;
    if cents > MAX_YUAN_CENTS {
        return Err(MoneyError::OutOfRange(s.to_string()));
    }
    Ok(Cents::new(cents))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn yuan_strings_have_exactly_two_decimals() {
        assert_eq!(yuan(Cents::new(10)), "0.10");
        assert_eq!(yuan(Cents::new(1205)), "12.05");
        assert_eq!(yuan(Cents::new(0)), "0.00");
        assert_eq!(parse_yuan("0.10"), Ok(Cents::new(10)));
        assert_eq!(parse_yuan("100000000.00"), Ok(Cents::new(MAX_YUAN_CENTS)));
        for bad in [
            "0.1",
            "1",
            "1.000",
            "-1.00",
            "+1.00",
            "1e2",
            " 1.00",
            "1.00 ",
            "01.00",
            "1,00",
            ".10",
            "1.",
            "NaN",
            "100000000.01",
        ] {
            assert!(parse_yuan(bad).is_err(), "{bad}");
        }
        assert_eq!(from_fen(-1), Err(MoneyError::OutOfRange("-1".into())));
        assert_eq!(from_fen(250).map(fen), Ok(250));
    }

    proptest! {
        #[test]
        fn yuan_round_trips(c in 0i64..=MAX_YUAN_CENTS) {
            prop_assert_eq!(parse_yuan(&yuan(Cents::new(c))), Ok(Cents::new(c)));
        }
    }
}
