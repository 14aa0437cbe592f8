//! Value types that are parsed, not validated: once built they are known to be valid.
//! The edges (HTTP, device protocol) construct them with the fallible `parse`/`new`
//! functions and report the returned [`ValueError`] with the offending field. Their
//! fields are private, so there is no other way in.

mod geo;
mod grams;
mod ids;
mod kinds;
mod money;

pub use geo::GeoPoint;
pub use grams::Grams;
pub use ids::{CabinetId, DoorNo, LaneNo, Sku};
pub use kinds::{CabinetKind, ConfirmMode, ProviderKind};
pub use money::Cents;

/// Why a raw value could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValueError {
    /// The field (or value kind) that was rejected.
    pub field: &'static str,
    /// A human-readable reason.
    pub reason: String,
}

impl ValueError {
    /// Builds an error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// How a rejected command maps onto the outside world (the HTTP layer turns it into a
/// status code; the sagas into "retry" or "give up").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The aggregate does not exist.
    NotFound,
    /// The command conflicts with the current state (busy, already done, wrong state).
    Conflict,
    /// The command carried an invalid value.
    Invalid,
}

/// Implemented by every aggregate's error so the edges can classify it without
/// matching on each variant.
pub trait DomainError: std::error::Error {
    /// Which class of rejection this is.
    fn kind(&self) -> RejectionKind;
    /// A stable machine-readable code (`cabinet_busy`, `unpaid_order`, …).
    fn code(&self) -> &'static str;
    /// For an invalid value: the field it came in (`doors[0].lanes[1].capacity`).
    fn field(&self) -> Option<String> {
        None
    }
}
