//! The shopper aggregate with its account [A1, A2]: one aggregate, so creating both is a
//! single commit (both events or neither). It also serializes a shopper's purchases: at
//! most one order that is not yet paid or closed [O1], and a coupon wallet [O7].

use crate::coupon::Coupon;
use crate::{Cents, ConfirmMode, DomainError, ProviderKind, RejectionKind, UnixMs, EVENT_VERSION};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Commands a shopper accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShopperCommand {
    /// Creates the shopper and the account together.
    Create {
        /// Shopper id.
        shopper_id: String,
        /// Phone number (digits, optional leading +): checked here, and recorded only
        /// when `phone_sealed` is not given.
        phone: String,
        /// The phone number sealed under the shopper's own key (crypto-shredding): what
        /// the log records instead of the number when given.
        #[serde(default)]
        phone_sealed: Option<String>,
        /// Payment provider.
        provider: ProviderKind,
        /// Authorization mode.
        confirm_mode: ConfirmMode,
        /// SHA-256 (hex) of the shopper's API token; the token itself is never stored.
        token_sha256: String,
        /// When.
        at: UnixMs,
    },
    /// Reserves the shopper's one open-order slot for `order_id` [O1].
    BeginOrder {
        /// The order.
        order_id: String,
        /// The risk rule on opens [B8]: at most this many orders begun in the last hour
        /// (`None`: no limit).
        #[serde(default)]
        max_opens_per_hour: Option<u32>,
        /// The dispute-rate rule [B8]: no new order for a shopper who disputed this many
        /// charges in the last 30 days (`None`: no limit).
        #[serde(default)]
        max_disputes_per_month: Option<u32>,
        /// When.
        at: UnixMs,
    },
    /// Frees the slot once the order is paid or closed (idempotent).
    EndOrder {
        /// The order.
        order_id: String,
        /// `paid`, `cancelled`, `abandoned`, ….
        outcome: String,
        /// When.
        at: UnixMs,
    },
    /// Puts a coupon in the wallet.
    GrantCoupon {
        /// The coupon.
        coupon: Coupon,
        /// When.
        at: UnixMs,
    },
    /// Records that the shopper's personal data was erased (its key destroyed outside the
    /// log); idempotent.
    Erase {
        /// Who erased it.
        by: String,
        /// Why (a request from the shopper, a retention rule, …).
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// Counts a dispute of order `order_id`'s charge against the shopper [B8]
    /// (idempotent per order: several refunds of one order are one dispute).
    RecordDispute {
        /// The disputed order.
        order_id: String,
        /// When.
        at: UnixMs,
    },
    /// Spends a coupon on an order (idempotent for the same order).
    RedeemCoupon {
        /// The coupon.
        coupon_id: String,
        /// The order.
        order_id: String,
        /// When.
        at: UnixMs,
    },
}

/// Facts about a shopper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShopperEvent {
    /// The shopper exists.
    ShopperCreated {
        /// Id.
        shopper_id: String,
        /// Phone, in clear: only in events written before phones were sealed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        phone: String,
        /// Phone, sealed under the shopper's key (unreadable once the shopper is erased).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone_sealed: Option<String>,
        /// Provider.
        provider: ProviderKind,
        /// Mode.
        confirm_mode: ConfirmMode,
        /// Token hash.
        token_sha256: String,
        /// When.
        at: UnixMs,
    },
    /// The account exists (committed with `ShopperCreated`) [A1].
    AccountOpened {
        /// Opening balance.
        balance: Cents,
        /// When.
        at: UnixMs,
    },
    /// An order took the open-order slot.
    OrderBegun {
        /// The order.
        order_id: String,
        /// When.
        at: UnixMs,
    },
    /// The open-order slot was freed.
    OrderEnded {
        /// The order.
        order_id: String,
        /// How it ended.
        outcome: String,
        /// When.
        at: UnixMs,
    },
    /// A coupon was granted.
    CouponGranted {
        /// The coupon.
        coupon: Coupon,
        /// When.
        at: UnixMs,
    },
    /// The shopper disputed an order's charge and was refunded on it [B8].
    DisputeRecorded {
        /// The disputed order.
        order_id: String,
        /// When.
        at: UnixMs,
    },
    /// The shopper's personal data was erased: its key is destroyed, so what was sealed
    /// under it can no longer be read.
    ShopperErased {
        /// Who.
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: UnixMs,
    },
    /// A coupon was spent.
    CouponRedeemed {
        /// The coupon.
        coupon_id: String,
        /// On which order.
        order_id: String,
        /// When.
        at: UnixMs,
    },
}

impl DomainEvent for ShopperEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ShopperCreated { .. } => "ShopperCreated",
            Self::AccountOpened { .. } => "AccountOpened",
            Self::OrderBegun { .. } => "OrderBegun",
            Self::OrderEnded { .. } => "OrderEnded",
            Self::CouponGranted { .. } => "CouponGranted",
            Self::CouponRedeemed { .. } => "CouponRedeemed",
            Self::DisputeRecorded { .. } => "DisputeRecorded",
            Self::ShopperErased { .. } => "ShopperErased",
        }
        .into()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.into()
    }
}

/// Why a shopper command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopperError {
    /// Already created.
    #[error("shopper already exists")]
    AlreadyExists,
    /// Unknown shopper.
    #[error("shopper not found")]
    NotFound,
    /// An earlier order is not paid or closed yet [O1].
    #[error("shopper has an unpaid order {0}")]
    UnpaidOrder(String),
    /// No such coupon, or spent on another order.
    #[error("coupon {0} is not available")]
    CouponUnavailable(String),
    /// More doors opened in the last hour than the risk rule allows [B8].
    #[error("at most {0} orders an hour")]
    TooManyOpens(u32),
    /// More charges disputed in the last 30 days than the risk rule allows [B8].
    #[error("{0} or more disputed charges in 30 days: new orders need an operator's review")]
    TooManyDisputes(u32),
    /// A field was invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl DomainError for ShopperError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::AlreadyExists | Self::UnpaidOrder(_) | Self::CouponUnavailable(_) | Self::TooManyOpens(_) | Self::TooManyDisputes(_) => {
                RejectionKind::Conflict
            }
            Self::NotFound => RejectionKind::NotFound,
            Self::Invalid { .. } => RejectionKind::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "shopper_exists",
            Self::NotFound => "shopper_not_found",
            Self::UnpaidOrder(_) => "unpaid_order",
            Self::CouponUnavailable(_) => "coupon_unavailable",
            Self::TooManyOpens(_) => "too_many_opens",
            Self::TooManyDisputes(_) => "too_many_disputes",
            Self::Invalid { .. } => "invalid_field",
        }
    }
    fn field(&self) -> Option<String> {
        match self {
            Self::Invalid { field, .. } => Some(field.to_string()),
            _ => None,
        }
    }
}

/// A coupon in the wallet and whether it is spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletCoupon {
    /// The coupon.
    pub coupon: Coupon,
    /// The order it was spent on.
    pub redeemed_by: Option<String>,
}

/// A shopper's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shopper {
    /// Id, once created.
    pub id: Option<String>,
    /// Phone in clear (shoppers created before phones were sealed).
    pub phone: String,
    /// Phone sealed under the shopper's key.
    #[serde(default)]
    pub phone_sealed: Option<String>,
    /// When the shopper's personal data was erased.
    #[serde(default)]
    pub erased_at: Option<UnixMs>,
    /// Provider.
    pub provider: Option<ProviderKind>,
    /// Mode.
    pub confirm_mode: Option<ConfirmMode>,
    /// Token hash.
    pub token_sha256: String,
    /// Whether the account exists.
    pub account_open: bool,
    /// Account balance.
    pub balance: Cents,
    /// The order holding the open-order slot.
    pub open_order: Option<String>,
    /// Wallet.
    pub coupons: BTreeMap<String, WalletCoupon>,
    /// When the latest orders were begun (the newest [`RECENT_OPENS`]) [B8].
    #[serde(default)]
    pub recent_opens: std::collections::VecDeque<UnixMs>,
    /// The latest disputed orders and when (the newest [`RECENT_DISPUTES`]) [B8].
    #[serde(default)]
    pub recent_disputes: std::collections::VecDeque<(String, UnixMs)>,
}

/// How many disputes a shopper remembers for the dispute-rate rule.
pub const RECENT_DISPUTES: usize = 100;

/// The dispute-rate rule's window: 30 days.
pub const DISPUTE_WINDOW_MS: UnixMs = 30 * 24 * 3_600_000;

/// How many begin times a shopper remembers for the open-frequency rule.
pub const RECENT_OPENS: usize = 200;

impl Shopper {
    /// Orders begun within the hour before `at`.
    pub fn opens_in_last_hour(&self, at: UnixMs) -> usize {
        self.recent_opens.iter().filter(|t| at - **t < 3_600_000).count()
    }

    /// Charges disputed within the 30 days before `at`.
    pub fn disputes_in_last_month(&self, at: UnixMs) -> usize {
        self.recent_disputes.iter().filter(|(_, t)| at - *t < DISPUTE_WINDOW_MS).count()
    }

    /// The risk rules at a new order [B8]: the open-frequency and dispute-rate limits.
    fn check_risk(&self, max_opens_per_hour: Option<u32>, max_disputes_per_month: Option<u32>, at: UnixMs) -> Result<(), ShopperError> {
        if let Some(max) = max_opens_per_hour.filter(|m| self.opens_in_last_hour(at) >= *m as usize) {
            return Err(ShopperError::TooManyOpens(max));
        }
        if let Some(max) = max_disputes_per_month.filter(|m| self.disputes_in_last_month(at) >= *m as usize) {
            return Err(ShopperError::TooManyDisputes(max));
        }
        Ok(())
    }
}

impl Shopper {
    /// Coupons not yet spent.
    pub fn available_coupons(&self) -> Vec<Coupon> {
        self.coupons
            .values()
            .filter(|c| c.redeemed_by.is_none())
            .map(|c| c.coupon.clone())
            .collect()
    }
}

/// Whether `p` is a phone number the platform takes: 5-20 digits, optionally after a `+`.
pub fn valid_phone(p: &str) -> bool {
    let digits = p.strip_prefix('+').unwrap_or(p);
    (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Aggregate for Shopper {
    const TYPE: &'static str = "shopper";
    type Command = ShopperCommand;
    type Event = ShopperEvent;
    type Error = ShopperError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        if self.id.is_none() && !matches!(command, ShopperCommand::Create { .. }) {
            return Err(ShopperError::NotFound);
        }
        match command {
            ShopperCommand::Create {
                shopper_id,
                phone,
                phone_sealed,
                provider,
                confirm_mode,
                token_sha256,
                at,
            } => {
                if self.id.is_some() {
                    return Err(ShopperError::AlreadyExists);
                }
                if !valid_phone(&phone) {
                    return Err(ShopperError::Invalid {
                        field: "phone",
                        reason: "must be 5-20 digits, optionally after a +".into(),
                    });
                }
                // Sealed, the number itself stays out of the log.
                let phone = if phone_sealed.is_some() { String::new() } else { phone };
                sink.write(
                    ShopperEvent::ShopperCreated {
                        shopper_id,
                        phone,
                        phone_sealed,
                        provider,
                        confirm_mode,
                        token_sha256,
                        at,
                    },
                    self,
                )
                .await;
                sink.write(
                    ShopperEvent::AccountOpened {
                        balance: Cents::new(0),
                        at,
                    },
                    self,
                )
                .await;
            }
            ShopperCommand::BeginOrder {
                order_id,
                max_opens_per_hour,
                max_disputes_per_month,
                at,
            } => match &self.open_order {
                Some(open) if *open == order_id => {}
                Some(open) => return Err(ShopperError::UnpaidOrder(open.clone())),
                None => {
                    self.check_risk(max_opens_per_hour, max_disputes_per_month, at)?;
                    sink.write(ShopperEvent::OrderBegun { order_id, at }, self).await
                }
            },
            ShopperCommand::EndOrder { order_id, outcome, at } => {
                if self.open_order.as_deref() == Some(order_id.as_str()) {
                    sink.write(ShopperEvent::OrderEnded { order_id, outcome, at }, self).await;
                }
            }
            ShopperCommand::GrantCoupon { coupon, at } => {
                if self.coupons.contains_key(&coupon.id) {
                    return Ok(()); // the same grant again
                }
                sink.write(ShopperEvent::CouponGranted { coupon, at }, self).await;
            }
            ShopperCommand::Erase { by, reason, at } => {
                if self.erased_at.is_none() {
                    sink.write(ShopperEvent::ShopperErased { by, reason, at }, self).await;
                }
            }
            ShopperCommand::RecordDispute { order_id, at } => {
                if !self.recent_disputes.iter().any(|(o, _)| *o == order_id) {
                    sink.write(ShopperEvent::DisputeRecorded { order_id, at }, self).await;
                }
            }
            ShopperCommand::RedeemCoupon { coupon_id, order_id, at } => match self.coupons.get(&coupon_id) {
                Some(c) if c.redeemed_by.as_deref() == Some(order_id.as_str()) => {}
                Some(c) if c.redeemed_by.is_none() => {
                    sink.write(ShopperEvent::CouponRedeemed { coupon_id, order_id, at }, self).await;
                }
                _ => return Err(ShopperError::CouponUnavailable(coupon_id)),
            },
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ShopperEvent::ShopperCreated {
                shopper_id,
                phone,
                phone_sealed,
                provider,
                confirm_mode,
                token_sha256,
                ..
            } => {
                self.id = Some(shopper_id);
                self.phone = phone;
                self.phone_sealed = phone_sealed;
                self.provider = Some(provider);
                self.confirm_mode = Some(confirm_mode);
                self.token_sha256 = token_sha256;
            }
            ShopperEvent::ShopperErased { at, .. } => {
                self.erased_at = Some(at);
                self.phone.clear();
            }
            ShopperEvent::AccountOpened { balance, .. } => {
                self.account_open = true;
                self.balance = balance;
            }
            ShopperEvent::OrderBegun { order_id, at } => {
                self.open_order = Some(order_id);
                self.recent_opens.push_back(at);
                while self.recent_opens.len() > RECENT_OPENS {
                    self.recent_opens.pop_front();
                }
            }
            ShopperEvent::OrderEnded { .. } => self.open_order = None,
            ShopperEvent::DisputeRecorded { order_id, at } => {
                self.recent_disputes.push_back((order_id, at));
                while self.recent_disputes.len() > RECENT_DISPUTES {
                    self.recent_disputes.pop_front();
                }
            }
            ShopperEvent::CouponGranted { coupon, .. } => {
                self.coupons.insert(coupon.id.clone(), WalletCoupon { coupon, redeemed_by: None });
            }
            ShopperEvent::CouponRedeemed { coupon_id, order_id, .. } => {
                if let Some(c) = self.coupons.get_mut(&coupon_id) {
                    c.redeemed_by = Some(order_id);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "shopper_tests.rs"]
mod tests;
