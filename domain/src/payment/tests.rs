//! Given/when/then tests for the payment aggregate: opening at the provider, the
//! authorization, collection and cancellation, and the idempotency of each callback.

use super::*;
use crate::{Cents, ConfirmMode, ProviderKind};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};

const AT: UnixMs = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

fn open(confirm_mode: ConfirmMode) -> PaymentCommand {
    PaymentCommand::Open {
        order_id: "order-1".into(),
        provider: ProviderKind::Alipay,
        confirm_mode,
        provider_order_ref: "ali-123".into(),
        confirm_url: (confirm_mode == ConfirmMode::EachTime).then(|| "https://pay.example/confirm".to_string()),
        authorized: confirm_mode == ConfirmMode::Once,
        at: AT,
    }
}

fn opened(confirm_mode: ConfirmMode) -> PaymentEvent {
    PaymentEvent::PaymentOpened {
        order_id: "order-1".into(),
        provider: ProviderKind::Alipay,
        confirm_mode,
        provider_order_ref: "ali-123".into(),
        confirm_url: (confirm_mode == ConfirmMode::EachTime).then(|| "https://pay.example/confirm".to_string()),
        at: AT,
    }
}

fn authorized(notification_id: Option<&str>, at: UnixMs) -> PaymentEvent {
    PaymentEvent::PaymentAuthorized {
        notification_id: notification_id.map(Into::into),
        at,
    }
}

fn confirm(notification_id: &str) -> PaymentCommand {
    PaymentCommand::ConfirmAuthorization {
        notification_id: Some(notification_id.into()),
        at: AT + 10,
    }
}

fn request(amount: i64) -> PaymentCommand {
    PaymentCommand::RequestCollection {
        amount: Cents::new(amount),
        at: AT + 100,
    }
}

fn requested(amount: i64, attempt: u32) -> PaymentEvent {
    PaymentEvent::CollectionRequested {
        amount: Cents::new(amount),
        attempt,
        at: AT + 100,
    }
}

fn collect(amount: i64) -> PaymentCommand {
    PaymentCommand::RecordCollected {
        transaction_id: "tx-1".into(),
        amount: Cents::new(amount),
        notification_id: Some("n-2".into()),
        at: AT + 200,
    }
}

fn collected(amount: i64) -> PaymentEvent {
    PaymentEvent::PaymentCollected {
        transaction_id: "tx-1".into(),
        amount: Cents::new(amount),
        notification_id: Some("n-2".into()),
        at: AT + 200,
    }
}

fn fail() -> PaymentCommand {
    PaymentCommand::RecordCollectionFailed {
        reason: "insufficient_funds".into(),
        at: AT + 150,
    }
}

fn failed(attempt: u32) -> PaymentEvent {
    PaymentEvent::CollectionFailed {
        attempt,
        reason: "insufficient_funds".into(),
        at: AT + 150,
    }
}

fn cancel() -> PaymentCommand {
    PaymentCommand::Cancel {
        reason: "authorization_timeout".into(),
        at: AT + 50,
    }
}

fn cancelled() -> PaymentEvent {
    PaymentEvent::PaymentCancelled {
        reason: "authorization_timeout".into(),
        at: AT + 50,
    }
}

/// Opened in confirm-each-time mode: waiting for the shopper.
fn awaiting() -> Vec<PaymentEvent> {
    vec![opened(ConfirmMode::EachTime)]
}

/// Pre-authorized at once (confirm-once mode).
fn authorized_once() -> Vec<PaymentEvent> {
    vec![opened(ConfirmMode::Once), authorized(None, AT)]
}

fn collecting(amount: i64) -> Vec<PaymentEvent> {
    with(authorized_once(), [requested(amount, 1)])
}

fn collected_history(amount: i64) -> Vec<PaymentEvent> {
    with(collecting(amount), [collected(amount)])
}

fn with(mut events: Vec<PaymentEvent>, more: impl IntoIterator<Item = PaymentEvent>) -> Vec<PaymentEvent> {
    events.extend(more);
    events
}

fn given(events: Vec<PaymentEvent>) -> AggregateTestExecutor<Payment> {
    TestFramework::<Payment>::with(()).given(events)
}

fn fresh() -> AggregateTestExecutor<Payment> {
    TestFramework::<Payment>::with(()).given_no_previous_events()
}

fn state_after(events: Vec<PaymentEvent>) -> Payment {
    let mut payment = Payment::default();
    for e in events {
        payment.apply(e);
    }
    payment
}

// ---------------------------------------------------------------------------------------
// Open
// ---------------------------------------------------------------------------------------

#[test]
fn open_in_each_time_mode_awaits_the_shoppers_confirmation() {
    fresh().when(open(ConfirmMode::EachTime)).then_expect_events(awaiting());
    let payment = state_after(awaiting());
    assert_eq!(payment.state, PaymentState::AwaitingConfirmation);
    assert_eq!(payment.order_id.as_deref(), Some("order-1"));
    assert_eq!(payment.provider, Some(ProviderKind::Alipay));
    assert_eq!(payment.provider_order_ref, "ali-123");
    assert_eq!(payment.confirm_url.as_deref(), Some("https://pay.example/confirm"));
}

#[test]
fn open_in_once_mode_is_authorized_at_once() {
    fresh().when(open(ConfirmMode::Once)).then_expect_events(authorized_once());
    assert_eq!(state_after(authorized_once()).state, PaymentState::Authorized);
}

#[test]
fn repeated_open_is_a_no_op() {
    for history in [awaiting(), authorized_once(), collected_history(500)] {
        for mode in [ConfirmMode::EachTime, ConfirmMode::Once] {
            given(history.clone()).when(open(mode)).then_expect_events(vec![]);
        }
    }
}

#[test]
fn commands_on_a_payment_never_opened_are_not_found() {
    let commands = vec![confirm("n-1"), request(500), collect(500), fail(), cancel()];
    for command in commands {
        fresh().when(command).then_expect_error(PaymentError::NotFound);
    }
}

// ---------------------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------------------

#[test]
fn confirm_authorization_authorizes_an_awaiting_payment() {
    given(awaiting())
        .when(confirm("n-1"))
        .then_expect_events(vec![authorized(Some("n-1"), AT + 10)]);
}

#[test]
fn duplicate_confirmation_is_a_no_op() {
    let histories = [
        with(awaiting(), [authorized(Some("n-1"), AT + 10)]),
        authorized_once(),
        collecting(500),
        collected_history(500),
    ];
    for history in histories {
        given(history).when(confirm("n-1")).then_expect_events(vec![]);
    }
}

#[test]
fn confirmation_after_cancel_is_recorded_as_late() {
    given(with(awaiting(), [cancelled()]))
        .when(confirm("n-9"))
        .then_expect_events(vec![PaymentEvent::LateAuthorizationReceived {
            notification_id: Some("n-9".into()),
            at: AT + 10,
        }]);
    // It changes nothing: the payment stays cancelled.
    let payment = state_after(with(
        awaiting(),
        [
            cancelled(),
            PaymentEvent::LateAuthorizationReceived {
                notification_id: Some("n-9".into()),
                at: AT + 10,
            },
        ],
    ));
    assert_eq!(payment.state, PaymentState::Cancelled);
}

// ---------------------------------------------------------------------------------------
// Collection
// ---------------------------------------------------------------------------------------

#[test]
fn request_collection_on_an_authorized_payment_is_attempt_1() {
    given(authorized_once())
        .when(request(500))
        .then_expect_events(vec![requested(500, 1)]);
    let payment = state_after(collecting(500));
    assert_eq!(payment.state, PaymentState::Collecting);
    assert_eq!(payment.amount, Cents::new(500));
    assert_eq!(payment.attempts, 1);
}

#[test]
fn request_collection_again_while_collecting_is_the_next_attempt() {
    given(with(collecting(500), [failed(1)]))
        .when(request(500))
        .then_expect_events(vec![requested(500, 2)]);
}

#[test]
fn request_collection_after_collected_is_a_no_op() {
    given(collected_history(500)).when(request(500)).then_expect_events(vec![]);
}

#[test]
fn request_collection_before_authorization_or_after_cancel_is_wrong_state() {
    given(awaiting())
        .when(request(500))
        .then_expect_error(PaymentError::WrongState(PaymentState::AwaitingConfirmation));
    given(with(authorized_once(), [cancelled()]))
        .when(request(500))
        .then_expect_error(PaymentError::WrongState(PaymentState::Cancelled));
}

#[test]
fn record_collected_completes_the_collection() {
    given(collecting(500)).when(collect(500)).then_expect_events(vec![collected(500)]);
    let payment = state_after(collected_history(500));
    assert_eq!(payment.state, PaymentState::Collected);
    assert_eq!(payment.collected, Cents::new(500));
    assert_eq!(payment.transaction_id.as_deref(), Some("tx-1"));
}

#[test]
fn duplicate_record_collected_is_a_no_op() {
    given(collected_history(500)).when(collect(500)).then_expect_events(vec![]);
}

#[test]
fn record_collected_with_another_amount_is_a_mismatch() {
    given(collecting(500))
        .when(collect(450))
        .then_expect_error(PaymentError::AmountMismatch { want: 500, got: 450 });
}

#[test]
fn record_collected_when_no_collection_was_requested_is_wrong_state() {
    let cases = [
        (awaiting(), PaymentState::AwaitingConfirmation),
        (authorized_once(), PaymentState::Authorized),
        (with(awaiting(), [cancelled()]), PaymentState::Cancelled),
    ];
    for (history, state) in cases {
        given(history).when(collect(500)).then_expect_error(PaymentError::WrongState(state));
    }
}

#[test]
fn record_collection_failed_keeps_the_payment_collecting() {
    given(collecting(500)).when(fail()).then_expect_events(vec![failed(1)]);
    let history = with(collecting(500), [failed(1)]);
    assert_eq!(state_after(history.clone()).state, PaymentState::Collecting);
    // The provider may still succeed later.
    given(history).when(collect(500)).then_expect_events(vec![collected(500)]);
}

#[test]
fn record_collection_failed_reports_the_current_attempt() {
    given(with(collecting(500), [failed(1), requested(500, 2)]))
        .when(fail())
        .then_expect_events(vec![failed(2)]);
}

#[test]
fn record_collection_failed_outside_collecting_is_a_no_op() {
    for history in [
        awaiting(),
        authorized_once(),
        collected_history(500),
        with(awaiting(), [cancelled()]),
    ] {
        given(history).when(fail()).then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_before_collection_cancels_the_payment() {
    for history in [awaiting(), authorized_once()] {
        given(history.clone()).when(cancel()).then_expect_events(vec![cancelled()]);
        assert_eq!(state_after(with(history, [cancelled()])).state, PaymentState::Cancelled);
    }
}

#[test]
fn repeated_cancel_is_a_no_op() {
    given(with(awaiting(), [cancelled()])).when(cancel()).then_expect_events(vec![]);
}

#[test]
fn cancel_is_refused_while_collecting_or_once_collected() {
    given(collecting(500))
        .when(cancel())
        .then_expect_error(PaymentError::WrongState(PaymentState::Collecting));
    given(collected_history(500))
        .when(cancel())
        .then_expect_error(PaymentError::WrongState(PaymentState::Collected));
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[test]
fn errors_map_to_rejection_kinds_and_codes() {
    let cases = [
        (PaymentError::NotFound, RejectionKind::NotFound, "payment_not_found"),
        (
            PaymentError::WrongState(PaymentState::Collecting),
            RejectionKind::Conflict,
            "payment_state",
        ),
        (
            PaymentError::AmountMismatch { want: 1, got: 2 },
            RejectionKind::Invalid,
            "amount_mismatch",
        ),
    ];
    for (error, kind, code) in cases {
        assert_eq!(error.kind(), kind, "{error:?}");
        assert_eq!(error.code(), code, "{error:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Refunds [O9] and settling by hand [O8]
// ---------------------------------------------------------------------------------------

fn refund(id: &str, amount: i64) -> PaymentCommand {
    PaymentCommand::RequestRefund {
        refund_id: id.into(),
        amount: Cents::new(amount),
        reason: "damaged".into(),
        requested_by: "operator".into(),
        dispute: true,
        at: AT + 300,
    }
}

fn refund_requested(id: &str, amount: i64) -> PaymentEvent {
    PaymentEvent::RefundRequested {
        refund_id: id.into(),
        amount: Cents::new(amount),
        reason: "damaged".into(),
        requested_by: "operator".into(),
        dispute: true,
        at: AT + 300,
    }
}

fn refund_succeeded(id: &str, amount: i64) -> PaymentEvent {
    PaymentEvent::RefundSucceeded {
        refund_id: id.into(),
        amount: Cents::new(amount),
        provider_refund_id: format!("p-{id}"),
        notification_id: None,
        at: AT + 400,
    }
}

fn refund_ok(id: &str) -> PaymentCommand {
    PaymentCommand::RecordRefundSucceeded {
        refund_id: id.into(),
        provider_refund_id: format!("p-{id}"),
        notification_id: None,
        at: AT + 400,
    }
}

#[test]
fn a_refund_reserves_its_amount_and_succeeds_once() {
    given(collected_history(500))
        .when(refund("r1", 200))
        .then_expect_events(vec![refund_requested("r1", 200)]);
    let pending = with(collected_history(500), [refund_requested("r1", 200)]);
    // The same refund asked again changes nothing; the same id for another amount is taken.
    given(pending.clone()).when(refund("r1", 200)).then_expect_events(vec![]);
    given(pending.clone())
        .when(refund("r1", 300))
        .then_expect_error(PaymentError::RefundIdTaken("r1".into()));
    given(pending.clone())
        .when(refund_ok("r1"))
        .then_expect_events(vec![refund_succeeded("r1", 200)]);
    let done = with(pending, [refund_succeeded("r1", 200)]);
    given(done.clone()).when(refund_ok("r1")).then_expect_events(vec![]);
    let state = state_after(done);
    assert_eq!(state.refunded, Cents::new(200));
    assert_eq!(state.refundable(), Cents::new(300));
    assert_eq!(state.refunds["r1"].state, RefundState::Succeeded);
}

#[test]
fn refunds_never_exceed_the_charge_counting_those_in_progress() {
    let pending = with(collected_history(500), [refund_requested("r1", 400)]);
    given(pending.clone())
        .when(refund("r2", 101))
        .then_expect_error(PaymentError::RefundExceedsCharge {
            refundable: Cents::new(100),
        });
    given(pending.clone())
        .when(refund("r2", 100))
        .then_expect_events(vec![refund_requested("r2", 100)]);
    // A failed refund gives its amount back to the refundable.
    let failed = PaymentEvent::RefundFailed {
        refund_id: "r1".into(),
        reason: "closed".into(),
        at: AT + 500,
    };
    given(with(pending, [failed]))
        .when(refund("r3", 500))
        .then_expect_events(vec![refund_requested("r3", 500)]);
    given(collected_history(500))
        .when(refund("r0", 0))
        .then_expect_error(PaymentError::ZeroRefund);
    given(collecting(500))
        .when(refund("r0", 100))
        .then_expect_error(PaymentError::WrongState(PaymentState::Collecting));
    given(collected_history(500))
        .when(refund_ok("nope"))
        .then_expect_error(PaymentError::RefundNotFound("nope".into()));
}

#[test]
fn a_charge_settled_by_hand_closes_the_payment_but_never_a_collected_one() {
    let abandon = PaymentCommand::Abandon {
        reason: "written off by ops".into(),
        at: AT + 600,
    };
    given(with(collecting(500), [failed(1)]))
        .when(abandon.clone())
        .then_expect_events(vec![PaymentEvent::PaymentAbandoned {
            reason: "written off by ops".into(),
            at: AT + 600,
        }]);
    given(collected_history(500))
        .when(abandon)
        .then_expect_error(PaymentError::WrongState(PaymentState::Collected));
}
