//! The purchase saga [O3–O8]: reacts to order, payment and cabinet events with the
//! effects that move a purchase along, and arms the durable timers (authorization
//! timeout, door checks, stable-weight wait, deduction retry).
//!
//! - [`decide`]: pure, from one event to its scheduled effects;
//! - `effects`: the effects, each against the ports; `collect`: the deduction; `refund`:
//!   refunds and charges settled by hand.

mod collect;
mod decide;
mod effects;
mod refund;

pub use decide::decide;
pub use effects::run;
