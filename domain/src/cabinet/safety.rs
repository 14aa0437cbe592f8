//! Temperature lockout [B8]: a cabinet of chilled goods that got too warm may have
//! spoiled them. Above its limit the cabinet locks shoppers out — and stays locked after
//! it cools down, until an operator who checked the goods resets it remotely.

use super::aggregate::{when, Decision};
use super::{CabinetError, CabinetEvent};
use crate::UnixMs;
use serde::{Deserialize, Serialize};

/// The lowest and highest limit an operator may set, °C.
const LIMIT_RANGE_C: std::ops::RangeInclusive<f64> = -40.0..=80.0;

/// A cabinet's temperature limit and lockout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemperatureGuard {
    /// The limit, °C (`None`: not watched).
    pub max_c: Option<f64>,
    /// Locked out: the temperature that did it and when.
    pub locked: Option<(f64, UnixMs)>,
}

impl TemperatureGuard {
    /// Sets or clears the limit (a limit within −40…80 °C); the same limit again
    /// records nothing.
    pub(super) fn set_limit(&self, max_c: Option<f64>, by: String, at: UnixMs) -> Decision {
        if let Some(m) = max_c {
            if !m.is_finite() || !LIMIT_RANGE_C.contains(&m) {
                return Err(CabinetError::Invalid {
                    field: "max_c".into(),
                    reason: "must be a temperature between -40 and 80".into(),
                });
            }
        }
        Ok(when(self.max_c != max_c, || CabinetEvent::TemperatureLimitSet { max_c, by, at }))
    }

    /// Whether a reported temperature locks the cabinet out: above the limit, once.
    pub fn would_lock(&self, temp_c: f64) -> bool {
        self.locked.is_none() && self.max_c.is_some_and(|m| temp_c.is_finite() && temp_c > m)
    }

    /// A reported temperature: above the limit locks the cabinet out (once).
    pub(super) fn observe(&self, temp_c: f64, at: UnixMs) -> Vec<CabinetEvent> {
        match self.max_c {
            Some(max_c) if self.would_lock(temp_c) => vec![CabinetEvent::TemperatureLockedOut { temp_c, max_c, at }],
            _ => vec![],
        }
    }

    /// An operator lifts the lockout (409 `not_locked_out` when there is none).
    pub(super) fn reset(&self, by: String, reason: String, at: UnixMs) -> Decision {
        if self.locked.is_none() {
            return Err(CabinetError::NotLockedOut);
        }
        if reason.trim().is_empty() || reason.len() > 500 {
            return Err(CabinetError::Invalid {
                field: "reason".into(),
                reason: "must say what was checked (1-500 characters)".into(),
            });
        }
        Ok(vec![CabinetEvent::TemperatureLockoutReset { by, reason, at }])
    }

    /// Refuses shoppers while locked out.
    pub fn check(&self) -> Result<(), CabinetError> {
        match self.locked {
            Some((temp_c, _)) => Err(CabinetError::TemperatureLockout {
                temp_c,
                max_c: self.max_c.unwrap_or(temp_c),
            }),
            None => Ok(()),
        }
    }

    /// Folds the limit and lockout events.
    pub(super) fn apply(&mut self, event: CabinetEvent) {
        match event {
            CabinetEvent::TemperatureLimitSet { max_c, .. } => self.max_c = max_c,
            CabinetEvent::TemperatureLockedOut { temp_c, at, .. } => self.locked = Some((temp_c, at)),
            CabinetEvent::TemperatureLockoutReset { .. } => self.locked = None,
            _ => {}
        }
    }
}
