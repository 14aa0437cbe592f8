//! Given/when/then tests for the shopper aggregate: creation with the account, the
//! one-open-order slot, and the coupon wallet.

use super::*;
use crate::coupon::{Coupon, CouponKind};
use crate::{Cents, ConfirmMode, ProviderKind, Sku};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};

const AT: UnixMs = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

fn create(phone: &str) -> ShopperCommand {
    ShopperCommand::Create {
        shopper_id: "shopper-1".into(),
        phone: phone.into(),
        phone_sealed: None,
        provider: ProviderKind::Wechat,
        confirm_mode: ConfirmMode::Once,
        token_sha256: "ab12".into(),
        at: AT,
    }
}

fn created(phone: &str) -> ShopperEvent {
    ShopperEvent::ShopperCreated {
        shopper_id: "shopper-1".into(),
        phone: phone.into(),
        phone_sealed: None,
        provider: ProviderKind::Wechat,
        confirm_mode: ConfirmMode::Once,
        token_sha256: "ab12".into(),
        at: AT,
    }
}

fn account_opened() -> ShopperEvent {
    ShopperEvent::AccountOpened {
        balance: Cents::new(0),
        at: AT,
    }
}

/// A created shopper with an open account.
fn existing() -> Vec<ShopperEvent> {
    vec![created("+8613800000000"), account_opened()]
}

fn with(mut events: Vec<ShopperEvent>, more: impl IntoIterator<Item = ShopperEvent>) -> Vec<ShopperEvent> {
    events.extend(more);
    events
}

fn begin(order_id: &str) -> ShopperCommand {
    ShopperCommand::BeginOrder {
        order_id: order_id.into(),
        max_opens_per_hour: None,
        max_disputes_per_month: None,
        at: AT + 10,
    }
}

fn begun(order_id: &str) -> ShopperEvent {
    ShopperEvent::OrderBegun {
        order_id: order_id.into(),
        at: AT + 10,
    }
}

fn end(order_id: &str) -> ShopperCommand {
    ShopperCommand::EndOrder {
        order_id: order_id.into(),
        outcome: "paid".into(),
        at: AT + 20,
    }
}

fn ended(order_id: &str) -> ShopperEvent {
    ShopperEvent::OrderEnded {
        order_id: order_id.into(),
        outcome: "paid".into(),
        at: AT + 20,
    }
}

fn cash_coupon(id: &str, value: i64) -> Coupon {
    Coupon {
        id: id.into(),
        kind: CouponKind::Cash {
            value: Cents::new(value),
            min_spend: Cents::new(0),
        },
        expires_at: Some(AT + 86_400_000),
    }
}

fn granted(coupon: Coupon) -> ShopperEvent {
    ShopperEvent::CouponGranted { coupon, at: AT + 5 }
}

fn redeem(coupon_id: &str, order_id: &str) -> ShopperCommand {
    ShopperCommand::RedeemCoupon {
        coupon_id: coupon_id.into(),
        order_id: order_id.into(),
        at: AT + 30,
    }
}

fn redeemed(coupon_id: &str, order_id: &str) -> ShopperEvent {
    ShopperEvent::CouponRedeemed {
        coupon_id: coupon_id.into(),
        order_id: order_id.into(),
        at: AT + 30,
    }
}

fn given(events: Vec<ShopperEvent>) -> AggregateTestExecutor<Shopper> {
    TestFramework::<Shopper>::with(()).given(events)
}

fn fresh() -> AggregateTestExecutor<Shopper> {
    TestFramework::<Shopper>::with(()).given_no_previous_events()
}

fn state_after(events: Vec<ShopperEvent>) -> Shopper {
    let mut shopper = Shopper::default();
    for e in events {
        shopper.apply(e);
    }
    shopper
}

// ---------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------

#[test]
fn create_emits_shopper_created_and_account_opened_together() {
    fresh().when(create("+8613800000000")).then_expect_events(existing());
    let shopper = state_after(existing());
    assert_eq!(shopper.id.as_deref(), Some("shopper-1"));
    assert_eq!(shopper.phone, "+8613800000000");
    assert_eq!(shopper.provider, Some(ProviderKind::Wechat));
    assert_eq!(shopper.confirm_mode, Some(ConfirmMode::Once));
    assert_eq!(shopper.token_sha256, "ab12");
    assert!(shopper.account_open);
    assert_eq!(shopper.balance, Cents::new(0));
    assert_eq!(shopper.open_order, None);
}

#[test]
fn create_accepts_phones_of_5_to_20_digits_with_an_optional_plus() {
    for phone in ["12345", "+12345", "13800000000", "12345678901234567890", "+12345678901234567890"] {
        fresh()
            .when(create(phone))
            .then_expect_events(vec![created(phone), account_opened()]);
    }
}

#[test]
fn create_with_a_bad_phone_is_invalid() {
    for phone in [
        "",
        "+",
        "1234",
        "+1234",
        "123456789012345678901",
        "138-0000-0000",
        "++123456",
        "12345+",
        "１２３４５",
    ] {
        let r = fresh().when(create(phone)).inspect_result();
        assert!(
            matches!(r, Err(ShopperError::Invalid { field: "phone", .. })),
            "{phone:?} gave {r:?}"
        );
    }
}

#[test]
fn create_twice_is_rejected() {
    given(existing())
        .when(create("+8613800000000"))
        .then_expect_error(ShopperError::AlreadyExists);
}

#[test]
fn commands_on_a_missing_shopper_are_not_found() {
    let commands = vec![
        begin("order-1"),
        end("order-1"),
        ShopperCommand::GrantCoupon {
            coupon: cash_coupon("c1", 100),
            at: AT,
        },
        redeem("c1", "order-1"),
    ];
    for command in commands {
        fresh().when(command).then_expect_error(ShopperError::NotFound);
    }
}

// ---------------------------------------------------------------------------------------
// The open-order slot
// ---------------------------------------------------------------------------------------

#[test]
fn begin_order_takes_the_free_slot() {
    given(existing()).when(begin("order-1")).then_expect_events(vec![begun("order-1")]);
    assert_eq!(
        state_after(with(existing(), [begun("order-1")])).open_order.as_deref(),
        Some("order-1")
    );
}

#[test]
fn begin_the_same_order_again_is_a_no_op() {
    given(with(existing(), [begun("order-1")]))
        .when(begin("order-1"))
        .then_expect_events(vec![]);
}

#[test]
fn begin_another_order_while_one_is_unpaid_is_rejected() {
    given(with(existing(), [begun("order-1")]))
        .when(begin("order-2"))
        .then_expect_error(ShopperError::UnpaidOrder("order-1".into()));
}

#[test]
fn end_order_frees_the_slot_for_the_next_order() {
    given(with(existing(), [begun("order-1")]))
        .when(end("order-1"))
        .then_expect_events(vec![ended("order-1")]);
    let history = with(existing(), [begun("order-1"), ended("order-1")]);
    assert_eq!(state_after(history.clone()).open_order, None);
    given(history).when(begin("order-2")).then_expect_events(vec![begun("order-2")]);
}

#[test]
fn end_order_that_does_not_hold_the_slot_is_a_no_op() {
    // Repeated end.
    given(with(existing(), [begun("order-1"), ended("order-1")]))
        .when(end("order-1"))
        .then_expect_events(vec![]);
    // Another order than the open one.
    given(with(existing(), [begun("order-1")]))
        .when(end("order-2"))
        .then_expect_events(vec![]);
    // No open order at all.
    given(existing()).when(end("order-1")).then_expect_events(vec![]);
}

// ---------------------------------------------------------------------------------------
// Coupons
// ---------------------------------------------------------------------------------------

#[test]
fn grant_coupon_puts_it_in_the_wallet() {
    let coupon = cash_coupon("c1", 100);
    given(existing())
        .when(ShopperCommand::GrantCoupon {
            coupon: coupon.clone(),
            at: AT + 5,
        })
        .then_expect_events(vec![granted(coupon.clone())]);
    let shopper = state_after(with(existing(), [granted(coupon.clone())]));
    assert_eq!(shopper.available_coupons(), vec![coupon]);
}

#[test]
fn grant_the_same_coupon_again_is_a_no_op() {
    let history = with(existing(), [granted(cash_coupon("c1", 100))]);
    given(history.clone())
        .when(ShopperCommand::GrantCoupon {
            coupon: cash_coupon("c1", 100),
            at: AT + 6,
        })
        .then_expect_events(vec![]);
    // The id decides: a different coupon under a used id is not granted either.
    given(history)
        .when(ShopperCommand::GrantCoupon {
            coupon: cash_coupon("c1", 999),
            at: AT + 6,
        })
        .then_expect_events(vec![]);
}

#[test]
fn redeem_coupon_spends_it_on_the_order() {
    let history = with(existing(), [granted(cash_coupon("c1", 100)), granted(cash_coupon("c2", 200))]);
    given(history.clone())
        .when(redeem("c1", "order-1"))
        .then_expect_events(vec![redeemed("c1", "order-1")]);
    let shopper = state_after(with(history, [redeemed("c1", "order-1")]));
    assert_eq!(shopper.coupons["c1"].redeemed_by.as_deref(), Some("order-1"));
    assert_eq!(shopper.available_coupons(), vec![cash_coupon("c2", 200)]);
}

#[test]
fn redeem_the_same_coupon_for_the_same_order_again_is_a_no_op() {
    given(with(existing(), [granted(cash_coupon("c1", 100)), redeemed("c1", "order-1")]))
        .when(redeem("c1", "order-1"))
        .then_expect_events(vec![]);
}

#[test]
fn redeem_a_coupon_spent_by_another_order_is_unavailable() {
    given(with(existing(), [granted(cash_coupon("c1", 100)), redeemed("c1", "order-1")]))
        .when(redeem("c1", "order-2"))
        .then_expect_error(ShopperError::CouponUnavailable("c1".into()));
}

#[test]
fn redeem_an_unknown_coupon_is_unavailable() {
    given(with(existing(), [granted(cash_coupon("c1", 100))]))
        .when(redeem("nope", "order-1"))
        .then_expect_error(ShopperError::CouponUnavailable("nope".into()));
}

#[test]
fn wallet_keeps_group_buy_coupons_too() {
    let gb = Coupon {
        id: "gb".into(),
        kind: CouponKind::GroupBuy {
            sku: Sku::of("cola"),
            price: Cents::new(99),
        },
        expires_at: None,
    };
    let shopper = state_after(with(existing(), [granted(cash_coupon("c1", 100)), granted(gb.clone())]));
    // Wallet order is by coupon id.
    assert_eq!(shopper.available_coupons(), vec![cash_coupon("c1", 100), gb]);
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[test]
fn errors_map_to_rejection_kinds_and_codes() {
    let cases = [
        (ShopperError::AlreadyExists, RejectionKind::Conflict, "shopper_exists"),
        (ShopperError::NotFound, RejectionKind::NotFound, "shopper_not_found"),
        (ShopperError::UnpaidOrder("o".into()), RejectionKind::Conflict, "unpaid_order"),
        (
            ShopperError::CouponUnavailable("c".into()),
            RejectionKind::Conflict,
            "coupon_unavailable",
        ),
        (
            ShopperError::Invalid {
                field: "phone",
                reason: "x".into(),
            },
            RejectionKind::Invalid,
            "invalid_field",
        ),
    ];
    for (error, kind, code) in cases {
        assert_eq!(error.kind(), kind, "{error:?}");
        assert_eq!(error.code(), code, "{error:?}");
    }
    assert_eq!(
        ShopperError::UnpaidOrder("order-1".into()).to_string(),
        "shopper has an unpaid order order-1"
    );
}

#[test]
fn the_open_frequency_rule_refuses_a_shopper_opening_too_often_in_an_hour() {
    let mut s = Shopper::default();
    let begin_at = |n: u32, at: UnixMs| ShopperCommand::BeginOrder {
        order_id: format!("o{n}"),
        max_opens_per_hour: Some(2),
        max_disputes_per_month: None,
        at,
    };
    for (n, at) in [(1, AT), (2, AT + 60_000)] {
        s.apply(ShopperEvent::OrderBegun {
            order_id: format!("o{n}"),
            at,
        });
        s.apply(ShopperEvent::OrderEnded {
            order_id: format!("o{n}"),
            outcome: "paid".into(),
            at,
        });
    }
    assert_eq!(s.opens_in_last_hour(AT + 120_000), 2);
    assert_eq!(s.opens_in_last_hour(AT + 3_600_000 + 1), 1, "the first has aged out");
    let mut history = existing();
    history.extend([
        ShopperEvent::OrderBegun {
            order_id: "o1".into(),
            at: AT,
        },
        ShopperEvent::OrderEnded {
            order_id: "o1".into(),
            outcome: "paid".into(),
            at: AT,
        },
        ShopperEvent::OrderBegun {
            order_id: "o2".into(),
            at: AT + 60_000,
        },
        ShopperEvent::OrderEnded {
            order_id: "o2".into(),
            outcome: "paid".into(),
            at: AT + 60_000,
        },
    ]);
    TestFramework::<Shopper>::with(())
        .given(history.clone())
        .when(begin_at(3, AT + 120_000))
        .then_expect_error(ShopperError::TooManyOpens(2));
    TestFramework::<Shopper>::with(())
        .given(history)
        .when(begin_at(3, AT + 3_600_001))
        .then_expect_events(vec![ShopperEvent::OrderBegun {
            order_id: "o3".into(),
            at: AT + 3_600_001,
        }]);
    assert_eq!(ShopperError::TooManyOpens(2).code(), "too_many_opens");
}

#[test]
fn the_dispute_rate_rule_refuses_a_shopper_who_disputed_too_often_in_30_days() {
    let disputed = |o: &str, at: UnixMs| ShopperEvent::DisputeRecorded { order_id: o.into(), at };
    let mut history = existing();
    history.extend([disputed("o1", AT), disputed("o2", AT + 1_000)]);
    // The same order disputed again (a second partial refund) is still one dispute.
    TestFramework::<Shopper>::with(())
        .given(history.clone())
        .when(ShopperCommand::RecordDispute {
            order_id: "o2".into(),
            at: AT + 2_000,
        })
        .then_expect_events(vec![]);
    let begin_at = |at: UnixMs| ShopperCommand::BeginOrder {
        order_id: "o3".into(),
        max_opens_per_hour: None,
        max_disputes_per_month: Some(2),
        at,
    };
    TestFramework::<Shopper>::with(())
        .given(history.clone())
        .when(begin_at(AT + 5_000))
        .then_expect_error(ShopperError::TooManyDisputes(2));
    let month_later = AT + DISPUTE_WINDOW_MS + 1;
    TestFramework::<Shopper>::with(())
        .given(history)
        .when(begin_at(month_later))
        .then_expect_events(vec![ShopperEvent::OrderBegun {
            order_id: "o3".into(),
            at: month_later,
        }]);
    assert_eq!(ShopperError::TooManyDisputes(2).code(), "too_many_disputes");
}

#[test]
fn a_sealed_phone_stays_out_of_the_log_and_erasure_is_recorded_once() {
    let sealed = ShopperCommand::Create {
        shopper_id: "s1".into(),
        phone: "13800000000".into(),
        phone_sealed: Some("v1:00:ff".into()),
        provider: ProviderKind::Alipay,
        confirm_mode: ConfirmMode::Once,
        token_sha256: "h".into(),
        at: AT,
    };
    let created = ShopperEvent::ShopperCreated {
        shopper_id: "s1".into(),
        phone: String::new(),
        phone_sealed: Some("v1:00:ff".into()),
        provider: ProviderKind::Alipay,
        confirm_mode: ConfirmMode::Once,
        token_sha256: "h".into(),
        at: AT,
    };
    assert!(!serde_json::to_string(&created).unwrap().contains("13800000000"));
    TestFramework::<Shopper>::with(())
        .given_no_previous_events()
        .when(sealed)
        .then_expect_events(vec![created.clone(), account_opened()]);
    let erase = || ShopperCommand::Erase {
        by: "admin".into(),
        reason: "asked".into(),
        at: 9,
    };
    let erased = ShopperEvent::ShopperErased {
        by: "admin".into(),
        reason: "asked".into(),
        at: 9,
    };
    TestFramework::<Shopper>::with(())
        .given(vec![created.clone(), account_opened()])
        .when(erase())
        .then_expect_events(vec![erased.clone()]);
    TestFramework::<Shopper>::with(())
        .given(vec![created, account_opened(), erased])
        .when(erase())
        .then_expect_events(vec![]);
}
