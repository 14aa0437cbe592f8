//! The rules the order saga's effects apply around an order, as pure functions: how much
//! the provider must authorize, how a door session ends on the cabinet, which command id
//! opens the door, and when a failed charge is tried again. The effects only load, call
//! these and commit, so each rule is tested here once.

use super::{Order, OrderState};
use crate::cabinet::{CabinetCommand, LanePlan};
use crate::{Cents, UnixMs};

/// The most a purchase on these lanes could cost: every lane emptied at full capacity.
/// The provider authorizes this much, so no take can exceed the authorization [O3].
pub fn authorization_limit(lanes: &[LanePlan]) -> Cents {
    lanes.iter().map(|l| l.price * l.capacity).sum()
}

/// The id of the `open_door` command of `order_id` (the device executes an id at most
/// once, so a resent open never opens the door twice).
pub fn open_command_id(order_id: &str) -> String {
    format!("{order_id}-open")
}

/// How a failed charge is tried again [O8]: after `retry_ms`, up to `max_attempts`
/// attempts in all, then the order is dead-lettered for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeRetry {
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Delay between attempts (ms).
    pub retry_ms: i64,
}

impl ChargeRetry {
    /// When to try again after attempt `attempt` failed at `now`; `None`: give up.
    pub fn next_attempt_at(&self, attempt: u32, now: UnixMs) -> Option<UnixMs> {
        (attempt < self.max_attempts).then_some(now + self.retry_ms)
    }
}

impl Order {
    /// The discount the coupon gave (subtotal minus total).
    pub fn discount(&self) -> Cents {
        self.subtotal - self.total
    }

    /// How this order's door session ends on the cabinet, once the order no longer needs
    /// the door [O2, R2]: if it was weighed, the cabinet records what left each lane —
    /// as a sale when the order charges (or has charged) for it, otherwise as an
    /// uncharged take awaiting an operator — and frees the door; if it never got that
    /// far, the door is simply released. `None` for an order that names no door.
    pub fn door_session_end(&self, order_id: &str, at: UnixMs) -> Option<CabinetCommand> {
        let door = self.door?;
        if self.inference.is_empty() {
            return Some(CabinetCommand::ReleaseDoor {
                door,
                session_id: order_id.to_string(),
                reason: format!("order_{}", self.state.as_str()),
                at,
            });
        }
        let sold = self
            .inference
            .iter()
            .filter_map(|i| u32::try_from(i.count).ok().filter(|n| *n > 0).map(|n| (i.lane, n)))
            .collect();
        Some(CabinetCommand::FinishSale {
            door,
            order_id: order_id.to_string(),
            sold,
            charged: matches!(self.state, OrderState::Charging | OrderState::Paid),
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weight::{LaneInference, Tolerance};
    use crate::{DoorNo, Grams, LaneNo, Sku};

    fn plan(n: u8, price: i64, capacity: u32) -> LanePlan {
        LanePlan {
            lane: LaneNo::of(n),
            sku: Sku::of("s"),
            name: "S".into(),
            unit_grams: Grams::of(100.0),
            price: Cents::new(price),
            capacity,
            restock_threshold: 0,
            tolerance: Tolerance::default(),
            price_version: 1,
            calibration_version: 0,
        }
    }

    fn inferred(lane: u8, count: i64) -> LaneInference {
        LaneInference {
            lane: LaneNo::of(lane),
            sku: Sku::of("s"),
            before_grams: Grams::ZERO,
            after_grams: Grams::ZERO,
            unit_grams: Grams::of(100.0),
            raw_count: count as f64,
            count,
            residual_grams: Grams::ZERO,
            tolerance_grams: Grams::of(3.0),
            confidence: 1.0,
            within_tolerance: true,
        }
    }

    #[test]
    fn the_authorization_covers_every_lane_emptied() {
        assert_eq!(authorization_limit(&[plan(1, 300, 10), plan(2, 250, 4)]), Cents::new(4000));
        assert_eq!(authorization_limit(&[]), Cents::ZERO);
    }

    #[test]
    fn a_failed_charge_is_retried_until_the_last_attempt() {
        let retry = ChargeRetry {
            max_attempts: 3,
            retry_ms: 1000,
        };
        assert_eq!(retry.next_attempt_at(1, 10), Some(1010));
        assert_eq!(retry.next_attempt_at(2, 10), Some(1010));
        assert_eq!(retry.next_attempt_at(3, 10), None);
    }

    #[test]
    fn an_unweighed_order_releases_its_door_with_its_state() {
        let order = Order {
            door: Some(DoorNo::of(2)),
            state: OrderState::Cancelled,
            ..Order::default()
        };
        assert_eq!(
            order.door_session_end("o1", 5),
            Some(CabinetCommand::ReleaseDoor {
                door: DoorNo::of(2),
                session_id: "o1".into(),
                reason: "order_cancelled".into(),
                at: 5,
            })
        );
        assert_eq!(Order::default().door_session_end("o1", 5), None);
    }

    #[test]
    fn a_weighed_order_records_positive_takes_as_sale_or_uncharged_take() {
        let mut order = Order {
            door: Some(DoorNo::of(1)),
            state: OrderState::Charging,
            inference: vec![inferred(1, 2), inferred(2, 0), inferred(3, -1)],
            ..Order::default()
        };
        let sale = CabinetCommand::FinishSale {
            door: DoorNo::of(1),
            order_id: "o1".into(),
            sold: vec![(LaneNo::of(1), 2)],
            charged: true,
            at: 7,
        };
        assert_eq!(order.door_session_end("o1", 7), Some(sale));
        for (state, charged) in [
            (OrderState::Paid, true),
            (OrderState::Abnormal, false),
            (OrderState::Cancelled, false),
        ] {
            order.state = state;
            let Some(CabinetCommand::FinishSale { charged: got, .. }) = order.door_session_end("o1", 7) else {
                panic!("{state:?}: not a sale");
            };
            assert_eq!(got, charged, "{state:?}");
        }
    }

    #[test]
    fn only_charging_or_ended_orders_let_go_of_the_door() {
        use OrderState as S;
        for s in [S::Authorizing, S::Authorized, S::Opening, S::Open, S::Settling] {
            assert!(s.holds_door(), "{s:?}");
        }
        for s in [S::Charging, S::Paid, S::Cancelled, S::Abnormal, S::Refunded, S::PartiallyRefunded] {
            assert!(!s.holds_door(), "{s:?}");
        }
        assert_eq!(S::PartiallyRefunded.as_str(), "partially_refunded");
        assert_eq!(serde_json::to_value(S::PartiallyRefunded).unwrap(), "partially_refunded");
    }
}
