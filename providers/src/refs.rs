//! The merchant order numbers the providers see. Our order ids are hyphenated UUIDs
//! (36 characters); WeChat's `out_order_no` allows 32 of `[0-9A-Za-z_-|*]`, so the
//! providers get the UUID's 32 hex digits, and notifications are mapped back.

/// The merchant order number (`out_order_no`, `out_trade_no`) of order `order_id`: a
/// UUID without its hyphens; any other id as it is.
pub fn out_order_no(order_id: &str) -> String {
    match uuid::Uuid::parse_str(order_id) {
        Ok(u) => u.simple().to_string(),
        Err(_) => order_id.to_string(),
    }
}

/// Our order id of a merchant order number (the inverse of [`out_order_no`]).
pub fn order_id_of(out_order_no: &str) -> String {
    match uuid::Uuid::try_parse(out_order_no) {
        Ok(u) if out_order_no.len() == 32 => u.hyphenated().to_string(),
        _ => out_order_no.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_fit_the_providers_and_map_back() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let no = out_order_no(id);
        assert_eq!(no, "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b");
        assert_eq!(no.len(), 32);
        assert_eq!(order_id_of(&no), id);
        assert_eq!(out_order_no("o-1"), "o-1");
        assert_eq!(order_id_of("o-1"), "o-1");
    }
}
